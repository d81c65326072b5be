"""The ASR stage on the bus: real speech through a real worker, and a worker killed mid-utterance."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bus.events import AudioChunk, ControlEvent, Transcript, decode_event
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import run_worker, scratch_client
from capture_agent.pipeline import CaptureConfig, CaptureProcessor
from capture_agent.publisher import to_event
from capture_agent.sources import FileSource
from workers.asr.stage import ASRConfig, ASRStage
from workers.asr.textnorm import normalize_text, word_error_rate

pytestmark = pytest.mark.slow
CLIP = "ljspeech_LJ001-0001_to_0032_continuous"
SENTENCES = 4  # the first four LJ sentences, about 22 s of speech


def _settings(**kw: Any) -> BusSettings:
    return BusSettings(key_prefix="asr" + uuid.uuid4().hex[:8], lease_ttl_ms=1500,
                       heartbeat_ms=300, discovery_ms=150, block_ms=50, log_level="warning",
                       **kw)


def _chunks(row: dict[str, Any], room: str, session: str) -> list[AudioChunk]:
    end_s = row["segments"][SENTENCES - 1]["end"] + 0.3
    t0 = time.time()
    out = []
    proc = CaptureProcessor(CaptureConfig(min_silence_ms=250))
    for chunk in proc.run(FileSource(row["path"], realtime=False)):
        if chunk.offset / 16000 > end_s:
            break
        event = to_event(chunk, room, session)
        # a live-looking timeline: audio captured from now on
        shift = t0 - event.capture_start + chunk.offset / 16000
        event.capture_start += shift
        event.capture_end += shift
        out.append(event)
    out[-1].utt_end = True
    return out


def _reference(manifest: dict[str, dict[str, Any]]) -> str:
    return " ".join(manifest[f"ljspeech_LJ001-000{i}"]["transcript"] for i in range(1, 5))


@pytest.fixture
async def bus() -> AsyncIterator[tuple[BusSettings, Any]]:
    settings = _settings()
    async with scratch_client(settings) as client:
        yield settings, client


async def _transcripts(client: Any, settings: BusSettings, part: Partition) -> list[Any]:
    return [decode_event(f) for _i, f in
            await client.xrange(settings.keys.stream("transcript", part))]


async def _wait_end(client: Any, settings: BusSettings, part: Partition, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        events = await _transcripts(client, settings, part)
        if events and isinstance(events[-1], ControlEvent):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the transcript stream did not end in time")


def _check_committed(events: list[Any], reference: str) -> list[Transcript]:
    committed = [e for e in events if isinstance(e, Transcript) and e.kind == "committed"]
    assert [e.seq for e in committed] == list(range(len(committed)))
    # never revised, never repeated: committed audio ranges move forward
    for a, b in itertools.pairwise(committed):
        assert b.sample_start >= a.sample_end - 1600, (a.text, b.text)
    wer = word_error_rate([reference], [" ".join(e.text for e in committed)])
    assert wer < 0.15, (wer, [e.text for e in committed])
    # nothing said twice (a repeat inside one event would not show in the sample ranges)
    got = normalize_text(" ".join(e.text for e in committed)).split()
    ref = normalize_text(reference).split()
    grams = Counter(tuple(got[i:i + 4]) for i in range(len(got) - 3))
    in_ref = Counter(tuple(ref[i:i + 4]) for i in range(len(ref) - 3))
    repeated = [g for g, n in grams.items() if n > max(1, in_ref[g])]
    assert not repeated, (repeated, " | ".join(e.text for e in committed))
    return committed


async def test_worker_transcribes_real_speech(manifest: dict[str, dict[str, Any]],
                                              bus: tuple[BusSettings, Any]) -> None:
    settings, client = bus
    part = Partition("asrroom", "alice")
    await Registry(client, settings.keys).register_session(part.room, part.session, "en")
    key = settings.keys.stream("audio", part)
    chunks = _chunks(manifest[CLIP], part.room, part.session)
    async with run_worker(ASRStage(ASRConfig(model="tiny.en", device="cpu")), settings):
        for event in chunks:
            await client.xadd(key, event.to_fields())
            await asyncio.sleep(0.1)  # five times real time: live enough for partials
        now = time.time()
        await client.xadd(key, ControlEvent.end_of(part.room, part.session, at=now,
                                                   seq=len(chunks)).to_fields())
        await _wait_end(client, settings, part, limit=150)
    events = await _transcripts(client, settings, part)
    committed = _check_committed(events, _reference(manifest))
    assert any(isinstance(e, Transcript) and e.kind == "partial" for e in events)
    assert committed[-1].final
    first = committed[0]
    assert first.trace[-1].stage == "asr" and first.lang == "en"
    assert chunks[0].capture_start <= first.capture_start < first.capture_end
    assert first.words and first.words[0].start >= 0


def _spawn(settings: BusSettings, worker_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "S2ST_KEY_PREFIX": settings.key_prefix, "S2ST_WORKER_ID": worker_id,
           "S2ST_LEASE_TTL_MS": str(settings.lease_ttl_ms),
           "S2ST_HEARTBEAT_MS": str(settings.heartbeat_ms),
           "S2ST_DISCOVERY_MS": str(settings.discovery_ms), "S2ST_LOG_LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "asr", "--model", "tiny.en",
                             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


async def test_worker_killed_mid_utterance_loses_and_repeats_nothing(
        manifest: dict[str, dict[str, Any]], bus: tuple[BusSettings, Any], tmp_path: Path) -> None:
    settings, client = bus
    part = Partition("asrkill", "bob")
    await Registry(client, settings.keys).register_session(part.room, part.session, "en")
    key = settings.keys.stream("audio", part)
    lease = settings.keys.lease("asr", "audio", part)
    chunks = _chunks(manifest[CLIP], part.room, part.session)
    a = _spawn(settings, "asr-a")
    b = None
    try:
        deadline = time.monotonic() + 60
        while await client.get(lease) != b"asr-a":
            assert time.monotonic() < deadline, "worker A did not take the session"
            await asyncio.sleep(0.1)
        b = _spawn(settings, "asr-b")
        killed = False
        for i, event in enumerate(chunks):
            await client.xadd(key, event.to_fields())
            await asyncio.sleep(0.25)  # twice real time
            if not killed and i >= 16:
                events = await _transcripts(client, settings, part)
                if any(isinstance(e, Transcript) and e.kind == "committed" for e in events):
                    a.send_signal(signal.SIGKILL)  # mid-utterance, after some commits
                    a.wait(timeout=10)
                    killed = True
        assert killed, "worker A never committed anything"
        now = time.time()
        await client.xadd(key, ControlEvent.end_of(part.room, part.session, at=now,
                                                   seq=len(chunks)).to_fields())
        await _wait_end(client, settings, part, limit=150)
        assert await client.get(lease) in (None, b"asr-b")
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    events = await _transcripts(client, settings, part)
    committed = _check_committed(events, _reference(manifest))
    workers = {e.trace[-1].worker for e in committed if e.trace}
    assert {"asr-a", "asr-b"} <= workers, workers
