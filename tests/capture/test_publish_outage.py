"""Redis lost in the middle of a live session: buffering, dropping the oldest, recovery.

The file is played "live" (drop-oldest buffering) on a paced fake clock that stops at
chosen points of the audio, so the test can stop the redis-server, let a known amount
of audio be captured during the outage, restart the server on the same port and check
what reached the stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bus.events import AudioChunk, decode_event
from bus.keys import Keys, Partition
from bus.settings import BusSettings
from capture_agent.agent import AgentOptions, CaptureAgent
from capture_agent.clock import ManualClock
from capture_agent.pipeline import CaptureProcessor
from capture_agent.publisher import PublisherTiming, SessionRef
from capture_agent.sources import FileSource
from ops.redis_servers import RedisServer

DEV_CLIP = "ljspeech_LJ001-0001"  # 9.7 s of read speech
# the fake clock runs the capture as fast as the CPU goes: it is paced in half seconds, as a
# live source would be (3 s at once would overflow a 1 s buffer before the outage)
BEFORE = [0.5, 1.0, 1.5, 2.0, 2.5]
OUTAGE = (3.0, 7.0)  # seconds of audio captured while Redis is down
AFTER = [7.5, 8.0, 8.5, 9.0, 9.5]
TIMING = PublisherTiming(heartbeat_s=0.2, backoff_min_s=0.05, backoff_max_s=0.2, op_timeout_s=2)


class GateClock(ManualClock):
    """A fake clock for the pacer that stops the capture at given points of the audio."""

    def __init__(self, gates: list[float]) -> None:
        super().__init__()
        self.gates = sorted(gates)
        self.paused = threading.Event()
        self._resume = threading.Event()

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.gates and self.monotonic() >= self.gates[0]:
            self.gates.pop(0)
            self._resume.clear()
            self.paused.set()
            assert self._resume.wait(timeout=60), "the test never resumed the capture"

    def resume(self) -> None:
        self.paused.clear()
        self._resume.set()

    async def wait_paused(self) -> None:
        assert await asyncio.to_thread(self.paused.wait, 30)


async def until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def stream_events(url: str, prefix: str) -> list:
    r = redis.Redis.from_url(url)
    try:
        key = Keys(prefix).stream("audio", Partition("hall", "mic1"))
        return [decode_event(fields) for _id, fields in r.xrange(key)]
    finally:
        r.close()


@pytest.fixture
def server(tmp_path: Path):
    srv = RedisServer(tmp_path / "redis", args=("--appendonly", "yes", "--appendfsync", "always"))
    srv.start()
    yield srv
    srv.stop(kill=True)


@dataclass
class OutageRun:
    agent: CaptureAgent
    code: int  # exit code
    first: int  # seq of the first chunk made while Redis was down
    count: int  # chunks made while Redis was down
    events: list  # the stream at the end


async def run_with_outage(
    server: RedisServer, path: Path, buffer_s: float, *, lose_data: bool = False
) -> OutageRun:
    """Capture `path` live with Redis stopped while OUTAGE is captured."""
    settings = BusSettings(redis_url=server.url, key_prefix="tout", metrics_port=0)
    clock = GateClock([*BEFORE, *OUTAGE, *AFTER])
    processor = CaptureProcessor()
    agent = CaptureAgent(
        settings,
        AgentOptions(SessionRef("hall", "mic1", "en"), buffer_s=buffer_s, timing=TIMING),
        FileSource(path, realtime=True, clock=clock),
        processor,
    )
    run = asyncio.create_task(agent.run())
    stats = agent.stats

    for _ in [*BEFORE, OUTAGE[0]]:  # at 3 s: everything so far is written
        await clock.wait_paused()
        await until(lambda: stats.published == processor.stats.chunks_sent)
        if clock.monotonic() < OUTAGE[0]:
            clock.resume()
    first_in_outage = processor.chunker.next_seq
    server.stop(kill=lose_data)  # SIGTERM flushes the append-only file
    clock.resume()
    await clock.wait_paused()  # at 7 s: 4 s of audio captured while Redis is down
    await until(lambda: not stats.redis_up)
    await asyncio.sleep(0.3)  # the publisher keeps retrying meanwhile
    in_outage = processor.chunker.next_seq - first_in_outage
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics").read()
    assert b"s2st_capture_redis_up 0.0" in metrics
    assert stats.buffered_samples <= buffer_s * 16000 + 8000
    if lose_data:  # a fresh, empty server on the same port
        server.args = ()
    server.start()
    await until(lambda: stats.redis_up and stats.buffered == 0)
    restarted = time.time()
    clock.resume()
    while not run.done():  # the rest, no faster than the publisher writes it
        if clock.paused.is_set():
            await until(lambda: stats.buffered == 0)
            clock.resume()
        await asyncio.sleep(0.01)
    code = await run
    events = stream_events(server.url, "tout")
    alive = redis.Redis.from_url(server.url).hget(Keys("tout").alive("hall"), "mic1")
    assert int(alive) / 1000 >= restarted - 0.5, "the heartbeat resumed after the outage"
    return OutageRun(agent, code, first_in_outage, in_outage, events)


async def test_outage_within_the_buffer_loses_nothing(clip, server):
    path = clip(DEV_CLIP)
    expected = list(CaptureProcessor().run(FileSource(path, realtime=False)))
    run = await run_with_outage(server, path, buffer_s=60)
    agent = run.agent
    assert run.code == 0 and run.count >= 6  # a real outage: chunks made while Redis was down
    audio, marker = run.events[:-1], run.events[-1]
    assert [e.seq for e in audio] == [c.seq for c in expected]
    assert [e.pcm for e in audio] == [c.pcm for c in expected]
    assert [e.offset for e in audio] == [c.offset for c in expected]
    assert marker.action == "end" and marker.reason == "eof" and marker.seq == len(expected)
    assert agent.stats.outages == 1 and agent.stats.dropped == 0
    assert agent.metrics.value("s2st_capture_published_chunks_total") == len(expected)
    assert agent.metrics.value("s2st_capture_redis_outages_total") == 1


async def test_too_small_a_buffer_drops_the_oldest_and_counts_them(clip, server):
    path = clip(DEV_CLIP)
    expected = list(CaptureProcessor().run(FileSource(path, realtime=False)))
    run = await run_with_outage(server, path, buffer_s=1.0)
    agent, first, count, events = run.agent, run.first, run.count, run.events
    assert run.code == 0
    audio = [e for e in events if isinstance(e, AudioChunk)]
    sent = {e.seq for e in audio}
    missing = [c.seq for c in expected if c.seq not in sent]
    # exactly the oldest chunks of the outage are gone, and they are all counted
    assert len(missing) == agent.stats.dropped >= 4
    assert missing == list(range(first, first + len(missing)))
    kept = [c for c in expected if first + len(missing) <= c.seq < first + count]
    assert 0.5 * 16000 <= sum(c.samples for c in kept) <= 1.0 * 16000 + 8000
    dropped_s = sum(c.samples for c in expected if c.seq in missing) / 16000
    assert agent.stats.dropped_samples / 16000 == pytest.approx(dropped_s)
    assert agent.metrics.value("s2st_capture_buffer_dropped_chunks_total") == len(missing)
    # what was kept is intact and in order
    by_seq = {c.seq: c for c in expected}
    assert [e.seq for e in audio] == sorted(sent)
    assert all(e.pcm == by_seq[e.seq].pcm for e in audio)
    assert events[-1].action == "end" and events[-1].seq == len(expected)


async def test_a_server_that_lost_its_data_gets_the_session_registered_again(clip, server):
    path = clip(DEV_CLIP)
    run = await run_with_outage(server, path, buffer_s=60, lose_data=True)
    assert run.code == 0
    audio = [e for e in run.events if isinstance(e, AudioChunk)]
    # what was written before the outage went with the old data; the rest is all there
    assert [e.seq for e in audio] == list(range(run.first, run.first + len(audio)))
    assert run.events[-1].action == "end" and run.events[-1].seq == audio[-1].seq + 1
    r = redis.Redis.from_url(server.url)
    keys = Keys("tout")
    assert r.hget(keys.status("hall"), "mic1") == b"ended"
    announced = [decode_event(f) for _id, f in r.xrange(keys.announce)]
    assert [a.action for a in announced] == ["start", "end"]  # registered again, then ended
    r.close()
