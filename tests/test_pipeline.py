"""pipeline.PIPELINE: the s2st topology holds together, and each real stage writes only the
families it declares (run through bus.harness with the topology checked, as the workers run)."""

from __future__ import annotations

import shutil
import time
import uuid

import pytest

from bus.events import Hop, Transcript, Translation
from bus.harness import HarnessResult, run_on_redis, run_stage
from bus.registry import SessionInfo
from bus.settings import BusSettings
from bus.testing import end_marker
from pipeline import PIPELINE

ROOM, SESSION = "hall", "s1"


def families_written(result: HarnessResult) -> set[str]:
    return {result.keys.local_part(key).split(":", 1)[0] for key in result.emits}


def test_the_pipeline_as_declared() -> None:
    assert [f.name for f in PIPELINE] == ["audio", "transcript", "translation", "speech"]
    assert PIPELINE.root.name == "audio" and PIPELINE.source == "capture"
    assert PIPELINE.workers == ("asr", "mt", "tts")
    for stage in PIPELINE.workers:  # each consumer stage reads one family and writes one
        assert len(PIPELINE.writes(stage)) == 1
    speech = PIPELINE.family("speech")
    assert speech.room_wide and speech.per_lang and "player" in speech.readers
    assert [f.name for f in PIPELINE.read_by("web")] == ["transcript", "translation", "speech"]


def test_the_stage_classes_read_what_the_pipeline_says() -> None:
    from workers.asr.stage import ASRStage
    from workers.mt.stage import MTStage
    from workers.tts.stage import TTSStage

    for cls in (ASRStage, MTStage, TTSStage):
        family = PIPELINE.input_of(cls.name)
        assert cls.input_family == family.name and cls.per_lang == family.per_lang


def transcript(seq: int, text: str, kind: str = "committed") -> Transcript:
    t = time.time() - 5 + seq
    return Transcript(
        room=ROOM, session=SESSION, seq=seq, kind=kind, utterance=0, text=text, lang="en",
        sample_start=seq * 16000, sample_end=(seq + 1) * 16000, capture_start=t,
        capture_end=t + 1, final=kind == "committed" and seq == 2, emitted=t + 1.2,
        trace=[Hop(stage="asr", worker="asr-1", t_in=t + 1, t_out=t + 1.2)])


@pytest.mark.parametrize("on", ["memory", "redis"])
async def test_mt_writes_only_its_declared_families(on: str) -> None:
    """In memory (bus.harness) and through a real Worker on the local Redis."""
    if shutil.which("lt-proc") is None:
        pytest.skip("Apertium is not installed")
    from workers.mt.backends.apertium import ApertiumTranslator
    from workers.mt.config import MTSettings
    from workers.mt.engine import EngineConfig
    from workers.mt.router import Router
    from workers.mt.stage import MTStage

    apertium = ApertiumTranslator(timeout_s=20.0)
    try:
        router = Router({"apertium": apertium}, "*=apertium", pivots=("es", "en"))
        stage = MTStage(MTSettings(engine=EngineConfig(hold_timeout_s=60.0,
                                                       caption_interval_s=0.0)), router=router)
        events = [transcript(0, "Good morning", "partial"), transcript(1, "Good morning to all."),
                  transcript(2, "The meeting starts now."), end_marker(ROOM, SESSION, seq=3)]
        if on == "memory":
            result = await run_stage(stage, events, langs=["es", "en"], topology=PIPELINE,
                                     worker_id="mt-1")
        else:
            settings = BusSettings(
                redis_url="redis://127.0.0.1:6379/0", key_prefix="tpl" + uuid.uuid4().hex[:10],
                lease_ttl_ms=1200, heartbeat_ms=300, discovery_ms=150, block_ms=50,
                retry_backoff_ms=10, log_level="warning")
            result = await run_on_redis(stage, events, settings, langs=["es", "en"],
                                        topology=PIPELINE)
    finally:
        apertium.close()
    assert not result.dead and result.finished
    assert families_written(result) == {f.name for f in PIPELINE.writes("mt")}
    assert any(isinstance(e, Translation) for e in result.stream("translation", "es"))


async def test_tts_writes_only_its_declared_families() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from workers.tts.backends.espeak import EspeakSynthesizer
    from workers.tts.config import TtsConfig, parse_backends
    from workers.tts.engine import TtsEngine
    from workers.tts.pacing import PaceConfig
    from workers.tts.stage import TTSStage

    engine = TtsEngine(TtsConfig(backends=parse_backends("*=espeak"), fallback="espeak",
                                 pace=PaceConfig(max_speed=1.0, late_s=0.0, ready_lag_s=0.0)),
                       {"espeak": EspeakSynthesizer()})
    stage = TTSStage(engine, warm_langs=[])
    t = time.time() - 3
    said = Translation(
        room=ROOM, session=SESSION, seq=1, capture_start=t, capture_end=t + 2.5,
        kind="committed", utterance=0, src_seq=1, src_seq_first=0, src_lang="en", lang="es",
        text="Hola a todos.", emitted=time.time(),
        trace=[Hop(stage="mt", worker="mt-1", t_in=t + 2.6, t_out=t + 2.7)])
    info = SessionInfo(room=ROOM, session=SESSION, source_lang="en", speaker="Ana")
    result = await run_stage(stage, [said, end_marker(ROOM, SESSION, seq=2)], session=info,
                             lang="es", langs=["es"], topology=PIPELINE)
    assert not result.dead and result.finished
    assert families_written(result) == {f.name for f in PIPELINE.writes("tts")}
    assert len(result.room_stream("speech", "es")) >= 2  # speech and the end marker


def test_the_end_trace_follows_the_pipeline() -> None:
    from player_agent.end_trace import HOPS

    assert [(f.name, group, writer) for f, group, writer in HOPS] == [
        ("audio", "asr", "the capture agent"), ("transcript", "mt", "the asr stage"),
        ("translation", "tts", "the mt stage"), ("speech", "", "the tts stage")]
