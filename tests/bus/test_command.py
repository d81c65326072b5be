"""bus/command.py: flags made from a settings class, flag > variable > default, one-line
errors and exit statuses of the shared entry."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.command import (
    EXIT_REDIS,
    SettingsError,
    add_settings_flags,
    run_async,
    settings_from_args,
)
from bus.connection import RedisUnavailable
from bus.logs import configure_logging
from bus.settings import BusSettings


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="S2ST_DEMO_", extra="ignore",
                                      env_ignore_empty=True)

    chunk_ms: float = Field(500.0, gt=0, description="chunk length")
    beam_size: int = Field(1, ge=1, description="beam width")
    mode: Literal["fast", "slow"] = Field("fast", description="how")
    label: str | None = Field(None, description="a label")
    loud: bool = Field(False, description="be loud")
    cpu_threads: int | None = Field(None, description="threads",
                                    json_schema_extra={"flag": "--threads"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    add_settings_flags(p, DemoSettings, title="demo")
    return p


def test_flags_are_made_from_the_fields() -> None:
    p = parser()
    flags = {o for a in p._actions for o in a.option_strings}
    assert {"--chunk-ms", "--beam-size", "--mode", "--label", "--loud", "--threads"} <= flags
    assert "--cpu-threads" not in flags  # the alias replaces the name
    text = p.format_help()
    assert "S2ST_DEMO_CHUNK_MS: chunk length (default 500.0)" in text
    assert "S2ST_DEMO_CPU_THREADS" in text and "{fast,slow}" in text
    args = p.parse_args(["--loud", "--threads", "4", "--mode", "slow"])
    s = settings_from_args(DemoSettings, args)
    assert s.loud is True and s.cpu_threads == 4 and s.mode == "slow"


def test_flag_wins_over_variable_which_wins_over_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CHUNK_MS", "BEAM_SIZE", "MODE", "LABEL", "LOUD", "CPU_THREADS"):
        monkeypatch.delenv(f"S2ST_DEMO_{name}", raising=False)
    assert settings_from_args(DemoSettings, parser().parse_args([])).beam_size == 1
    monkeypatch.setenv("S2ST_DEMO_BEAM_SIZE", "3")
    monkeypatch.setenv("S2ST_DEMO_CHUNK_MS", "250")
    monkeypatch.setenv("S2ST_DEMO_LOUD", "on")
    s = settings_from_args(DemoSettings, parser().parse_args(["--beam-size", "5"]))
    assert (s.beam_size, s.chunk_ms, s.loud, s.label) == (5, 250.0, True, None)
    monkeypatch.setenv("S2ST_DEMO_LABEL", "")  # empty: as if unset
    assert settings_from_args(DemoSettings, parser().parse_args([])).label is None
    # explicit overrides win over everything
    assert settings_from_args(DemoSettings, parser().parse_args(["--beam-size", "5"]),
                              beam_size=7).beam_size == 7


def test_bad_values_name_flag_and_variable_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("S2ST_DEMO_CHUNK_MS", "-1")
    with pytest.raises(SettingsError) as raised:
        settings_from_args(DemoSettings, parser().parse_args(["--threads", "many"]),
                           program="s2st demo")
    assert raised.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "s2st demo: invalid settings:"
    assert any(line.startswith("  --threads / S2ST_DEMO_CPU_THREADS: ") for line in err)
    assert any(line.startswith("  --chunk-ms / S2ST_DEMO_CHUNK_MS: ") for line in err)
    # a choice argparse knows is refused by argparse itself, also with status 2
    with pytest.raises(SystemExit) as refused:
        parser().parse_args(["--mode", "medium"])
    assert refused.value.code == 2


def test_the_worker_flags_keep_their_names_and_variables() -> None:
    from ops.cli import build_parser

    p = build_parser()
    asr = p.parse_args(["asr", "--model", "base", "--threads", "2", "--compute-type", "int8",
                        "--min-decode-s", "0.25", "--beam-size", "2", "--max-batch", "4",
                        "--task", "translate", "--language", "auto", "--device", "cpu"])
    from workers.asr.settings import ASRSettings

    s = settings_from_args(ASRSettings, asr)
    assert (s.model, s.threads, s.compute_type, s.min_decode_s, s.beam_size, s.max_batch,
            s.task, s.language, s.device) == ("base", 2, "int8", 0.25, 2, 4, "translate",
                                              "auto", "cpu")


def bus_args() -> argparse.Namespace:
    return argparse.Namespace(redis_url=None, log_level="error")


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """run_async configures the process's logging (level error here): put back the default
    afterwards, or later tests in this process that capture warnings see none."""
    yield
    configure_logging()


def test_run_async_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    async def unreachable(settings: BusSettings) -> int:
        raise RedisUnavailable("Redis at redis://nowhere did not answer")

    async def fine(settings: BusSettings) -> int:
        return 5

    async def interrupted(settings: BusSettings) -> int:
        raise KeyboardInterrupt

    assert run_async(bus_args(), unreachable) == EXIT_REDIS == 3
    assert capsys.readouterr().err.strip() == "s2st: Redis at redis://nowhere did not answer"
    assert run_async(bus_args(), fine) == 5
    assert run_async(bus_args(), interrupted) == 130


def test_run_async_bad_bus_settings_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        run_async(argparse.Namespace(redis_url="http://x"), lambda s: None)  # type: ignore[arg-type,return-value]
    assert raised.value.code == 2


def test_each_part_takes_flags_over_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from capture_agent.cli import config_from_args
    from ops.cli import build_parser
    from player_agent.settings import PlaySettings, WebSettings
    from workers.mt.settings import mt_settings

    p = build_parser()
    monkeypatch.setenv("S2ST_MT_HOLD_TIMEOUT_S", "2")
    monkeypatch.setenv("S2ST_MT_CONTEXT", "1")
    mt = mt_settings(p.parse_args(["mt", "--hold-timeout-s", "3"]))
    assert (mt.engine.hold_timeout_s, mt.engine.context_sentences) == (3.0, 1)

    monkeypatch.setenv("S2ST_CAPTURE_CHUNK_MS", "250")
    monkeypatch.setenv("S2ST_CAPTURE_PAD_MS", "")
    capture = config_from_args(p.parse_args(["capture", "--pad-ms", "100", "--send-all"]))
    assert (capture.chunk_ms, capture.pre_pad_ms, capture.post_pad_ms, capture.send_all) == \
        (250.0, 100.0, 100.0, True)

    monkeypatch.setenv("S2ST_PLAY_RATE", "16000")
    play = settings_from_args(PlaySettings, p.parse_args(["play", "--jitter-ms", "50"]))
    assert (play.rate, play.jitter_ms, play.deadline_ms) == (16000, 50.0, 1000.0)

    monkeypatch.setenv("S2ST_WEB_PORT", "9000")
    web = settings_from_args(WebSettings, p.parse_args(["web", "--speaker-grace", "5"]))
    assert (web.host, web.port, web.speaker_grace) == ("127.0.0.1", 9000, 5.0)
    assert settings_from_args(WebSettings, p.parse_args(["web", "--port", "81"])).port == 81


def test_tts_flags_reach_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.cli import build_parser
    from workers.tts.cli import build_stage

    args = build_parser().parse_args(["tts", "--backends", "*=espeak", "--parallel", "2",
                                      "--first-words", "3"])
    stage = build_stage(args, env={"S2ST_TTS_PARALLEL": "5", "S2ST_TTS_FIRST_WORDS": "2",
                                   "S2ST_TTS_MAX_WORDS": "9"})
    config = stage.engine.config
    assert config.chain("es") == ["espeak"] and config.split.first_words == 3
    assert config.split.max_words == 9 and stage.parallel == 2
