"""The publisher's bounded buffer and the status line's publishing part (no Redis)."""

from __future__ import annotations

import asyncio

import pytest

from capture_agent.chunker import Chunk
from capture_agent.meter import render_status
from capture_agent.pipeline import CaptureStats
from capture_agent.publisher import ChunkBuffer, PublishStats, to_event


def chunk(seq: int, samples: int = 8000, utt_end: bool = False) -> Chunk:
    return Chunk(
        seq=seq, utterance=0, offset=seq * 8000, samples=samples, rate=16000,
        pcm=bytes(2 * samples), capture_start=100.0 + seq / 2, capture_end=100.4 + seq / 2,
        speech_prob=0.9, vad="speech", utt_start=seq == 0, utt_end=utt_end,
    )  # fmt: skip


def test_a_full_buffer_drops_the_oldest_and_counts_them():
    buffer = ChunkBuffer(max_samples=16000)  # 1 s = two 500 ms chunks
    assert buffer.push(chunk(0)) == [] and buffer.push(chunk(1)) == []
    dropped = buffer.push(chunk(2))
    assert [c.seq for c in dropped] == [0]
    assert [c.seq for c in buffer.peek(10)] == [1, 2]
    assert buffer.stats.dropped == 1 and buffer.stats.dropped_samples == 8000
    assert buffer.stats.buffered == 2 and buffer.stats.buffered_s == 1.0
    # an empty end mark weighs nothing
    assert buffer.push(chunk(3, samples=0, utt_end=True)) == []
    assert [c.seq for c in buffer.push(chunk(4))] == [1]
    assert [c.seq for c in buffer.pop(2)] == [2, 3]
    assert buffer.samples == 8000 and buffer.stats.buffered == 1


def test_the_newest_chunk_is_kept_even_past_a_tiny_bound():
    buffer = ChunkBuffer(max_samples=100)
    buffer.push(chunk(0))
    assert [c.seq for c in buffer.push(chunk(1))] == [0]
    assert [c.seq for c in buffer.peek(5)] == [1]


def test_pop_through_skips_what_the_stream_already_holds():
    buffer = ChunkBuffer(max_samples=10**6)
    for seq in range(5):
        buffer.push(chunk(seq))
    assert [c.seq for c in buffer.pop_through(2)] == [0, 1, 2]
    assert [c.seq for c in buffer.pop_through(1)] == []
    assert [c.seq for c in buffer.peek(9)] == [3, 4]


async def test_put_waits_for_room_instead_of_dropping():
    buffer = ChunkBuffer(max_samples=16000)
    await buffer.put(chunk(0))
    await buffer.put(chunk(1))
    waiting = asyncio.create_task(buffer.put(chunk(2)))
    await asyncio.sleep(0.05)
    assert not waiting.done() and len(buffer) == 2
    buffer.pop(1)
    await asyncio.wait_for(waiting, 1)
    assert [c.seq for c in buffer.peek(5)] == [1, 2] and buffer.stats.dropped == 0
    blocked = asyncio.create_task(buffer.put(chunk(3)))
    await asyncio.sleep(0.02)
    buffer.close()  # an abort releases the producer; the chunk is not kept
    await asyncio.wait_for(blocked, 1)
    assert len(buffer) == 2


def test_bound_must_be_positive():
    with pytest.raises(ValueError):
        ChunkBuffer(0)


def test_chunk_event_carries_the_chunk():
    event = to_event(chunk(7, utt_end=True), "hall", "mic1")
    assert (event.room, event.session, event.seq, event.offset) == ("hall", "mic1", 7, 56000)
    assert event.utt_end and event.samples == 8000 and len(event.pcm) == 16000
    assert event.capture_start == 103.5 and event.vad == "speech"


def test_status_line_shows_the_publisher():
    line = render_status(CaptureStats(), PublishStats(published=12))
    assert line.endswith("sent 12")
    down = PublishStats(published=3, buffered=4, buffered_samples=32000, dropped=2, redis_up=False)
    assert render_status(CaptureStats(), down).endswith("sent 3  buffered 2.0s  LOST 2  REDIS DOWN")
