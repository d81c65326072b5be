"""The stack file: TOML and YAML, validation, profiles and what the environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.settings import BusSettings
from ops.stack import Stack
from ops.stackconfig import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from ops.supervisor import Supervisor

TOML = """
[rooms]
hall = ["es", "ca"]
side = "fr,de"
[workers]
asr = 2
[profiles.cpu]
S2ST_ASR_MODEL = "tiny.en"
S2ST_TTS_WARM = false
"""

YAML = """
rooms:
  hall: [es, ca]
workers: {asr: 2, tts: 0}
profiles:
  gpu: {S2ST_ASR_MODEL: large-v3, S2ST_ASR_DEVICE: cuda}
"""


def test_default_config_has_both_profiles() -> None:
    config = load_config()
    assert config.source == str(DEFAULT_CONFIG)
    assert config.rooms == {"demo": ["es"]}
    assert config.workers == {"asr": 1, "mt": 1, "tts": 1}
    cpu, gpu = config.profile_env("cpu"), config.profile_env("gpu")
    assert cpu["S2ST_ASR_MODEL"] == "tiny.en" and cpu["S2ST_MT_BACKENDS"] == "*=apertium"
    assert gpu["S2ST_ASR_DEVICE"] == "cuda" and gpu["S2ST_ASR_MODEL"] != "tiny.en"


def test_toml_and_yaml(tmp_path: Path) -> None:
    toml = parse_config(TOML, ".toml")
    assert toml.rooms == {"hall": ["es", "ca"], "side": ["fr", "de"]}
    assert toml.workers == {"asr": 2, "mt": 1, "tts": 1}
    assert toml.profile_env("cpu") == {"S2ST_ASR_MODEL": "tiny.en", "S2ST_TTS_WARM": "false"}
    path = tmp_path / "stack.yml"
    path.write_text(YAML)
    yaml = load_config(path)
    assert yaml.rooms == {"hall": ["es", "ca"]}
    assert yaml.workers == {"asr": 2, "mt": 1, "tts": 0}
    assert yaml.profile_env("gpu")["S2ST_ASR_DEVICE"] == "cuda"


@pytest.mark.parametrize(("text", "message"), [
    ("[rooms]\n'bad room' = ['es']", "room id"),
    ("[rooms]\nhall = ['spanish']", "language"),
    ("[workers]\nasr = -1", "workers.asr"),
    ("[workers]\ngpu = 1", "unknown stage"),
    ("[profiles.cpu]\nASR_MODEL = 'x'", "not an S2ST_"),
    ("[extra]\nx = 1", "unknown section"),
    ("rooms = [", "invalid TOML"),
])
def test_invalid_files_say_why(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, ".toml")


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no profile 'tpu'"):
        load_config().profile_env("tpu")


def test_overrides_from_the_command_line() -> None:
    config = load_config().with_workers({"asr": 3, "mt": None}).with_room("demo", ["ca", "es"])
    assert config.workers == {"asr": 3, "mt": 1, "tts": 1}
    assert config.rooms["demo"] == ["es", "ca"]
    with pytest.raises(ConfigError):
        config.with_workers({"tts": 1000})


def test_environment_wins_over_the_profile() -> None:
    stack = Stack(load_config(), BusSettings(key_prefix="k1"), Supervisor(), profile="cpu",
                  base_env={"S2ST_TTS_BACKENDS": "es=espeak", "HOME": "/h"})
    from ops.redis_local import RedisPlan

    stack.redis = RedisPlan("redis://127.0.0.1:7777/0", "existing")
    env = stack.env(S2ST_WORKER_ID="w1")
    assert env["S2ST_TTS_BACKENDS"] == "es=espeak"  # the environment wins
    assert env["S2ST_ASR_MODEL"] == "tiny.en"  # the profile fills the rest
    assert env["S2ST_REDIS_URL"] == "redis://127.0.0.1:7777/0"  # the Redis chosen
    assert env["S2ST_KEY_PREFIX"] == "k1" and env["S2ST_WORKER_ID"] == "w1"


@pytest.mark.parametrize(("argv", "message"), [
    (["up", "--config", "/nonexistent/stack.toml"], "cannot read the stack config"),
    (["up", "--profile", "tpu"], "no profile 'tpu' (defined: cpu, gpu)"),
    (["demo", "--mic", "--file", "x.wav"], "--file or --mic, not both"),
    (["demo", "--file", "/nonexistent.flac"], "no such file"),
    (["demo", "--room", "bad room"], "room id"),
    (["demo", "--lang", "spanish"], "language"),
])
def test_bad_command_lines_exit_2(argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from ops.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
