"""TTS pacing in Redis's time: a worker whose host clock is off is not fooled into thinking
its segments are late (or early) behind their source words (bus/clock.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bus import clock
from bus.events import ControlEvent, Hop, Speech, Translation, decode_event
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import run_worker
from workers.tts.config import TtsConfig, parse_backends
from workers.tts.engine import TtsEngine
from workers.tts.pacing import PaceConfig, Pacer
from workers.tts.stage import TTSStage

ROOM, SESSION = "hall", "s1"
TEXT = "The committee will meet again next week."


@pytest.fixture(autouse=True)
def fresh_clock() -> Iterator[None]:
    yield
    clock.reset()


def late_total(lang: str) -> float:
    return REGISTRY.get_sample_value("s2st_tts_late_segments_total", {"lang": lang}) or 0.0


def speed_sum(lang: str) -> float:
    return REGISTRY.get_sample_value("s2st_tts_speed_sum", {"lang": lang}) or 0.0


def test_the_pacer_sees_the_lag_on_one_clock() -> None:
    """Segments stamped in Redis's time, planned with this host's reading 20 s ahead of it:
    late with the host's clock, on time with the bus clock."""
    clock.set_offset(-20.0)  # this host's clock is 20 s ahead of Redis's
    source_end = clock.now() - 0.5  # said half a second ago, stamped by the capture host
    pacer = Pacer(PaceConfig())
    assert pacer.plan(source_end, time.time()).late  # what comparing with time.time() did
    on_time = pacer.plan(source_end, clock.now())
    assert not on_time.late and on_time.speed == 1.0 and 0.4 < on_time.lag_s < 2.0


async def test_a_worker_with_its_clock_ahead_speaks_a_fresh_segment_at_its_own_pace(
        bus_settings: BusSettings, bus_client: Any, espeak: Any) -> None:
    """The TTS stage on the bus, on a host whose clock is 20 s ahead of Redis's: a fresh
    segment (stamped in Redis's time, as capture agents do) is neither late nor hurried."""
    lang = "en"
    stage = TTSStage(TtsEngine(TtsConfig(backends=parse_backends("en=espeak"),
                                         fallback="espeak", pace=PaceConfig()),
                               {"espeak": espeak}))
    registry = Registry(bus_client, bus_settings.keys)
    await registry.create_room(ROOM, [lang])
    await registry.register_session(ROOM, SESSION, "en", speaker="Ana")
    key = bus_settings.keys.stream("translation", Partition(ROOM, SESSION, lang))
    late_before, speed_before = late_total(lang), speed_sum(lang)
    clock.set_offset(-20.0)  # (set after the fixtures connected: they measured about 0)
    async with run_worker(stage, bus_settings, client=bus_client):
        end = clock.now() - 0.3  # just said
        event = Translation(
            room=ROOM, session=SESSION, seq=1, capture_start=end - 2.0, capture_end=end,
            kind="committed", utterance=1, src_seq=1, src_seq_first=1,
            src_lang="en", lang=lang, text=TEXT, emitted=clock.now(),
            trace=[Hop(stage="mt", worker="mt-1", t_in=end + 0.1, t_out=end + 0.2)])
        await bus_client.xadd(key, event.to_fields())
        spoken = await _speech_of(bus_client, bus_settings, lang, 1)
        now = clock.now()
        await bus_client.xadd(key, ControlEvent.end_of(
            ROOM, SESSION, at=now, seq=99, reason="test", emitted=now).to_fields())
    assert spoken and all(isinstance(p, Speech) for p in spoken)
    assert late_total(lang) == late_before  # not "late": the fast voice did not take over
    assert speed_sum(lang) == pytest.approx(speed_before + 1.0)  # at the voice's own pace
    for piece in spoken:  # and its stamps are in Redis's time too
        assert 0 <= piece.emitted - piece.capture_end < 10, piece.emitted - piece.capture_end
        hop = piece.trace[-1]
        assert hop.stage == "tts" and 0 <= hop.t_in - piece.capture_end < 10


async def _speech_of(client: Any, settings: BusSettings, lang: str, seq: int,
                     timeout: float = 60.0) -> list[Any]:
    """The speech pieces of segment ``seq``, once its last piece is on the room's stream."""
    key = settings.keys.room_stream("speech", ROOM, lang)
    deadline = time.monotonic() + timeout
    while True:
        pieces = [e for e in (decode_event(f) for _id, f in await client.xrange(key))
                  if isinstance(e, Speech) and e.seq == seq]
        if pieces and pieces[-1].last:
            return pieces
        assert time.monotonic() < deadline, f"segment {seq} not spoken"
        await asyncio.sleep(0.05)
