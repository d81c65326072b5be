"""The browser speaker's server side: the speaker websocket of `s2st web` (frames with session
sample offsets into the capture pipeline, capture_agent's PushedSource) driven by a plain
websocket client with a real dev-set clip: refused without a speaker token, the same session and
contiguous chunk seqs across a dropped link, end markers on leave and after the grace."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
import websockets
from player_helpers import load_clip, transcript
from web_server import running_web

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from player_agent.web.speak import frame
from player_agent.web.tokens import mint

SECRET = b"a-test-secret-that-is-long-enough-0123456789"
FRAME = 800  # what the page sends: 50 ms at 16 kHz


async def speak(url: str, hello: dict[str, Any], clip: np.ndarray, start: int, stop: int,
                *, resend_from: int | None = None, leave: bool = False,
                pace: float = 0.01) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send ``clip[start:stop]`` in page frames (after resending from ``resend_from``); the
    ready message and what came back."""
    got: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(hello))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert ready["type"] == "ready", ready
        first = start if resend_from is None else resend_from
        for offset in range(first, stop, FRAME):
            await ws.send(frame(offset, clip[offset:min(stop, offset + FRAME)].tobytes()))
            await asyncio.sleep(pace)
        if leave:
            await ws.send(json.dumps({"type": "leave"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                got.append(message)
                if message["type"] == "ended":
                    break
        else:
            await asyncio.sleep(0.3)
    return ready, got


async def audio_entries(client: Any, settings: BusSettings, room: str, session: str
                        ) -> list[dict[bytes, bytes]]:
    key = settings.keys.stream("audio", Partition(room, session))
    return [fields for _, fields in await client.xrange(key)]


async def test_speaker_websocket_runs_the_capture_pipeline_across_a_dropped_link(
        client: Any, settings: BusSettings, manifest: dict[str, Any]) -> None:
    await Registry(client, settings.keys).create_room("hall", ["es"])
    clip = load_clip(manifest["fleurs_en_1972"]["path"])
    clip = np.concatenate([np.zeros(8000, "<i2"), clip, np.zeros(16000, "<i2")])
    speaker = mint(SECRET, "hall", "speaker", 600)[0]
    listener = mint(SECRET, "hall", "listener", 600)[0]
    with running_web(settings, secret=SECRET) as base:
        url = base.replace("http", "ws") + "/ws/hall/speak"
        for tok in (None, listener, mint(SECRET, "annex", "speaker", 600)[0], speaker[:-3]):
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "hello", "token": tok, "lang": "en"}))
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 15)
            assert ws.close_code == 4401, (tok, ws.close_code)
        hello = {"type": "hello", "token": speaker, "speaker": "Ada", "lang": "en"}
        half = len(clip) // 2 // FRAME * FRAME
        ready, _ = await speak(url, hello, clip, 0, half)
        session = ready["session"]
        assert ready["offset"] == 0 and not ready["resumed"]
        info = await Registry(client, settings.keys).session("hall", session)
        assert info is not None and info.active and info.speaker == "Ada"
        # what the ASR would write meanwhile: the page gets its own captions (from the start)
        t0 = time.time()
        await Publisher(client, settings).publish(
            settings.keys.stream("transcript", Partition("hall", session)),
            transcript("hall", session, 0, "committed", "many people", t0 - 1, t0, final=True))
        # the link dropped; the page comes back, resending 1 s it is not sure of
        ready, got = await speak(url, dict(hello, session=session), clip, half, len(clip),
                                 resend_from=half - 16000, leave=True)
        assert ready["resumed"] and ready["session"] == session and ready["offset"] == half
        ended = got[-1]
        assert ended == {"type": "ended", "session": session, "reason": "left"}
        captions = [m for m in got if m["type"] == "caption"]
        assert [(c["track"], c["text"]) for c in captions] == [("source", "many people")]
        status = [m for m in got if m["type"] == "status"][-1]
        assert status["offset"] == len(clip) and status["duplicate_samples"] == 16000
        assert status["gap_samples"] == 0
    entries = await audio_entries(client, settings, "hall", session)
    assert entries[-1][b"type"] == b"control" and entries[-1][b"reason"] == b"left"
    chunks = entries[:-1]
    assert [int(e[b"seq"]) for e in chunks] == list(range(len(chunks))) and len(chunks) >= 6
    assert int(entries[-1][b"seq"]) == len(chunks)
    # each chunk holds the clip's samples at its offset (nothing lost, repeated or moved)
    import msgpack

    for e in chunks:
        offset, samples = int(e[b"offset"]), int(e[b"samples"])
        pcm = np.frombuffer(msgpack.unpackb(e[b"payload"])["pcm"], "<i2")
        assert np.abs(pcm.astype(int) - clip[offset:offset + samples]).max() <= 1
    spoken = sum(int(e[b"samples"]) for e in chunks)
    assert 2.5 * 16000 < spoken < len(clip)
    info = await Registry(client, settings.keys).session("hall", session)
    assert info is not None and not info.active


async def test_a_speaker_that_does_not_come_back_is_ended_after_the_grace(
        client: Any, settings: BusSettings, manifest: dict[str, Any]) -> None:
    await Registry(client, settings.keys).create_room("hall", ["es"])
    clip = load_clip(manifest["fleurs_en_1972"]["path"])
    hello = {"type": "hello", "speaker": "Bo", "lang": "en"}
    with running_web(settings, speaker_grace_s=1.0) as base:  # no secret: loopback, no tokens
        ready, _ = await speak(base.replace("http", "ws") + "/ws/hall/speak", hello, clip, 0,
                               len(clip), pace=0.002)
        session = ready["session"]
        deadline = time.monotonic() + 20
        while (info := await Registry(client, settings.keys).session("hall", session)
               ) is None or info.active:
            assert time.monotonic() < deadline, "the session was not ended"
            await asyncio.sleep(0.2)
    entries = await audio_entries(client, settings, "hall", session)
    assert entries[-1][b"reason"] == b"disconnected"
    assert [int(e[b"seq"]) for e in entries] == list(range(len(entries)))


async def test_stopping_the_server_ends_its_speakers_sessions(
        client: Any, settings: BusSettings, manifest: dict[str, Any]) -> None:
    await Registry(client, settings.keys).create_room("hall", ["es"])
    clip = load_clip(manifest["fleurs_en_1972"]["path"])
    with running_web(settings) as base:
        ws = await websockets.connect(base.replace("http", "ws") + "/ws/hall/speak")
        await ws.send(json.dumps({"type": "hello", "speaker": "Cy", "lang": "en"}))
        session = json.loads(await asyncio.wait_for(ws.recv(), 20))["session"]
        for offset in range(0, len(clip), FRAME):
            await ws.send(frame(offset, clip[offset:offset + FRAME].tobytes()))
        await asyncio.sleep(0.5)
    # (the page is still connected while the server stops)
    info = await Registry(client, settings.keys).session("hall", session)
    assert info is not None and not info.active
    entries = await audio_entries(client, settings, "hall", session)
    assert entries[-1][b"reason"] == b"stopped" and len(entries) >= 4
    await ws.close()
