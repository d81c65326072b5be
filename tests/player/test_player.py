"""The player on a real Redis: pieces made from real speech, published in a live session's timing."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from player_helpers import RATE, SegmentSpec, end_marker, keyed, load_clip, speech_pieces
from prometheus_client import REGISTRY

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from player_agent.outputs import WavSink
from player_agent.player import Player, PlayerConfig, PlayReport, UnknownRoom

ROOM = "hall"


class ListSink:
    """Records what is played; plays instantly (the output is never the bottleneck)."""

    rate = RATE

    def __init__(self) -> None:
        self.pieces: list[tuple[int, float]] = []

    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float:
        self.pieces.append((len(pcm), capture_start))
        return time.time()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def clips(manifest: dict[str, Any]) -> list[np.ndarray]:
    return [load_clip(manifest[cid]["path"], seconds=2.0)
            for cid in ("fleurs_es_1764", "picovoice_cheetah_es", "fleurs_es_1820")]


async def start_player(client: Any, settings: BusSettings, lang: str, sink: Any = None,
                       **kw: Any) -> tuple[Player, asyncio.Event, asyncio.Task[PlayReport]]:
    cfg = PlayerConfig(ROOM, lang, hold_s=0.05, deadline_s=0.4, block_ms=50, **kw)
    player = Player(client, settings.keys, cfg, sink or ListSink())
    stop = asyncio.Event()
    task = asyncio.create_task(player.run(stop))
    await asyncio.sleep(0.2)  # resolved its live position
    return player, stop, task


async def finish(stop: asyncio.Event, task: asyncio.Task[PlayReport], after: float = 0.8
                 ) -> PlayReport:
    await asyncio.sleep(after)
    stop.set()
    return await asyncio.wait_for(task, 5)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_out_of_order_duplicated_late_and_missing(client: Any, settings: BusSettings,
                                                        clips: list[np.ndarray]) -> None:
    await Registry(client, settings.keys).register_session(ROOM, "s1", "en", "Ada")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", ROOM, "es")
    before = _metric("s2st_player_latency_seconds_count", kind="playback", lang="es")
    _, stop, task = await start_player(client, settings, "es")
    t0 = time.time()
    seg0 = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 2, clips[0], "a b c d"), 4)
    seg1 = speech_pieces(ROOM, "es", SegmentSpec("s1", 1, t0 + 2, t0 + 4, clips[1], "e f g"), 3)
    # part 1 before part 0, a duplicate; then part 3 a little late
    await pub.publish_many(key, [seg0[1], seg0[0], seg0[1], seg0[2]])  # type: ignore[list-item]
    await asyncio.sleep(0.1)
    # part 0 redelivered after it was played; seg1 part 1 is lost: part 2 must be played
    # after the deadline, not waited on forever
    await pub.publish_many(key, [seg0[3], seg0[0], seg1[0], seg1[2]])  # type: ignore[list-item]
    report = await finish(stop, task)
    assert _metric("s2st_player_latency_seconds_count", kind="playback", lang="es") - before == 6
    assert keyed(report.played) == [("s1", 0, 0), ("s1", 0, 1), ("s1", 0, 2), ("s1", 0, 3),
                                    ("s1", 1, 0), ("s1", 1, 2)]
    assert report.stats.duplicates == 2
    assert report.stats.missing == 1
    assert report.latency is not None
    summary = report.latency.summary("playback")
    assert summary.count == 6
    assert report.latency.summary("first").count == 2  # one per segment
    # the piece after the gap waited for the deadline (0.4 s) before it played
    after_gap = report.played[-1]
    assert after_gap.started - after_gap.available >= 0.35


async def test_two_listeners_of_a_language_each_hear_everything(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    await reg.register_session(ROOM, "s2", "en", "Bob")
    pub = Publisher(client, settings)
    players = [await start_player(client, settings, lang) for lang in ("es", "es", "fr")]
    t0 = time.time()
    published: dict[str, list[tuple[str, int, int]]] = {"es": [], "fr": []}
    for lang in ("es", "fr"):
        key = settings.keys.room_stream("speech", ROOM, lang)
        for i, (session, clip) in enumerate((("s1", clips[0]), ("s2", clips[1]), ("s1", clips[2]))):
            seq = i // 2 if session == "s1" else 0
            pieces = speech_pieces(ROOM, lang, SegmentSpec(session, seq, t0 + 2 * i, t0 + 2 * i + 2,
                                                           clip, "uno dos tres"), 3)
            await pub.publish_many(key, pieces)  # type: ignore[arg-type]
            published[lang] += keyed(pieces)
    reports = [await finish(stop, task) for _, stop, task in players]
    es1, es2, fr = (keyed(r.played) for r in reports)
    assert es1 == es2 == published["es"]
    assert fr == published["fr"]
    # announced as listeners: both languages are targets of the room now
    assert await reg.room_targets(ROOM) == ["es", "fr"]


async def test_speakers_are_queued_without_overlap_in_speech_order(
        client: Any, settings: BusSettings, clips: list[np.ndarray], tmp_path: Path) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    await reg.register_session(ROOM, "s2", "en", "Bob")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", ROOM, "es")
    sink = WavSink(tmp_path / "mix.wav", paced=True)
    _, stop, task = await start_player(client, settings, "es", sink)
    t0 = time.time()
    a = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 1.0, clips[0][: RATE // 2], "a b"), 2)
    b = speech_pieces(ROOM, "es", SegmentSpec("s2", 0, t0 + 0.2, t0 + 1.2, clips[1][: RATE // 2],
                                              "c d"), 2)
    # the two speakers' pieces arrive interleaved, the later speaker's first
    await pub.publish_many(key, [b[0], a[0], b[1], a[1]])  # type: ignore[list-item]
    report = await finish(stop, task, after=1.5)
    sink.close()
    assert keyed(report.played) == [("s1", 0, 0), ("s1", 0, 1), ("s2", 0, 0), ("s2", 0, 1)]
    starts = [p.started for p in report.played]
    ends = [p.started + p.duration for p in report.played]
    assert all(starts[i + 1] >= ends[i] - 1e-6 for i in range(3)), "pieces overlap"


async def test_late_listener_starts_at_live_unless_told_otherwise(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    await Registry(client, settings.keys).register_session(ROOM, "s1", "en", "Ada")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", ROOM, "es")
    t0 = time.time()
    old = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 2, clips[0], "old words"), 2)
    first_id = (await pub.publish_many(key, old))[0]  # type: ignore[arg-type]
    _, stop, task = await start_player(client, settings, "es")
    _, stop2, task2 = await start_player(client, settings, "es", position="0-0")
    new = speech_pieces(ROOM, "es", SegmentSpec("s1", 1, t0 + 3, t0 + 5, clips[1], "new words"), 2)
    await pub.publish_many(key, new)  # type: ignore[arg-type]
    live_report, replay_report = await finish(stop, task), await finish(stop2, task2, after=0)
    assert keyed(live_report.played) == [("s1", 1, 0), ("s1", 1, 1)]
    assert keyed(replay_report.played) == keyed(old) + keyed(new)
    assert replay_report.played[0].entry_id == first_id


async def test_wav_output_lines_up_with_the_source_timeline(
        client: Any, settings: BusSettings, clips: list[np.ndarray], tmp_path: Path) -> None:
    reg = Registry(client, settings.keys)
    info = await reg.register_session(ROOM, "s1", "en", "Ada")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", ROOM, "es")
    t0 = info.started
    short = clips[0][: RATE // 2]
    segs = [SegmentSpec("s1", 0, t0 + 1.0, t0 + 2.0, short, "uno"),
            SegmentSpec("s1", 1, t0 + 1.2, t0 + 2.5, short, "dos"),  # would overlap: goes after
            SegmentSpec("s1", 2, t0 + 4.0, t0 + 5.0, short, "tres")]
    for seg in segs:
        await pub.publish_many(key, speech_pieces(ROOM, "es", seg, 1))  # type: ignore[arg-type]
    await pub.publish(key, end_marker(ROOM, "s1"))
    await reg.end_session(ROOM, "s1")
    out = tmp_path / "timeline.wav"
    sink = WavSink(out, paced=False)
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", position="0-0", hold_s=0.05,
                    deadline_s=0.4, block_ms=50, until_ended=True), sink)
    report = await asyncio.wait_for(player.run(), 10)
    sink.close()
    assert len(report.played) == 3
    with wave.open(str(out)) as w:
        assert w.getframerate() == RATE
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    half = RATE // 2
    expected = np.zeros(4 * RATE + half, dtype="<i2")
    expected[RATE:RATE + half] = short
    expected[RATE + half:RATE + 2 * half] = short
    expected[4 * RATE:4 * RATE + half] = short
    assert len(pcm) == len(expected)
    assert np.array_equal(pcm, expected)


async def test_unknown_room_and_bad_ids_are_refused(client: Any, settings: BusSettings) -> None:
    with pytest.raises(UnknownRoom, match="does not exist"):
        await Player(client, settings.keys, PlayerConfig("nowhere", "es"), ListSink()).run()
    with pytest.raises(ValueError, match="invalid room id"):
        PlayerConfig("a}b", "es")
    with pytest.raises(ValueError, match="invalid language"):
        PlayerConfig("hall", "es:x")


async def test_until_ended_plays_speech_that_comes_after_the_speaker_stopped(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", ROOM, "es")
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.05, deadline_s=0.4,
                    block_ms=50, until_ended=True), ListSink())
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.6)  # the player saw the session active
    await reg.end_session(ROOM, "s1")
    await asyncio.sleep(0.8)  # translation and synthesis still running upstream
    assert not task.done()
    t0 = time.time()
    pieces = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 2, clips[0], "a b"), 2)
    await pub.publish_many(key, [*pieces, end_marker(ROOM, "s1")])  # type: ignore[list-item]
    report = await asyncio.wait_for(task, 5)
    assert keyed(report.played) == [("s1", 0, 0), ("s1", 0, 1)]


async def _s1_says_one_piece_and_ends(client: Any, settings: BusSettings, reg: Registry,
                                     clip: np.ndarray, task: asyncio.Task[PlayReport]
                                     ) -> PlayReport:
    """Session s1's one piece and its end marker on the speech stream, s1 ended; the report of
    the player ``task`` (which must stop by itself)."""
    t0 = time.time()
    pieces = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 2, clip, "a b"), 1)
    await Publisher(client, settings).publish_many(
        settings.keys.room_stream("speech", ROOM, "es"),
        [*pieces, end_marker(ROOM, "s1")])  # type: ignore[list-item]
    await reg.end_session(ROOM, "s1")
    return await asyncio.wait_for(task, 5)


async def test_until_ended_started_before_anyone_speaks_waits_for_a_session(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.05, deadline_s=0.4,
                    block_ms=50, until_ended=True), ListSink())
    await Registry(client, settings.keys).create_room(ROOM, ["es"])
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.8)  # an empty room is not a room that fell quiet
    assert not task.done()
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    report = await _s1_says_one_piece_and_ends(client, settings, reg, clips[0], task)
    assert keyed(report.played) == [("s1", 0, 0)]


async def test_until_ended_does_not_wait_for_a_session_removed_from_the_room(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    # a capture agent whose file turned out corrupt before its first chunk registered its
    # session and removed it again: that session will never have an end marker
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    await reg.register_session(ROOM, "broken", "en")
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.05, deadline_s=0.4,
                    block_ms=50, until_ended=True), ListSink())
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.6)  # the player saw both active
    await reg.remove_session(ROOM, "broken")
    report = await _s1_says_one_piece_and_ends(client, settings, reg, clips[0], task)
    assert keyed(report.played) == [("s1", 0, 0)]


async def test_a_player_of_one_session_hears_only_it_and_stops_when_it_ends(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    await reg.register_session(ROOM, "s2", "en", "Bo")
    player = Player(client, settings.keys, PlayerConfig(
        ROOM, "es", hold_s=0.05, deadline_s=0.4, block_ms=50, until_ended=True,
        session="s2", position="0-0"), ListSink())
    t0 = time.time()
    key = settings.keys.room_stream("speech", ROOM, "es")
    pub = Publisher(client, settings)
    await pub.publish_many(key, [  # type: ignore[list-item]
        *speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 1, clips[0], "a"), 1),
        *speech_pieces(ROOM, "es", SegmentSpec("s2", 0, t0, t0 + 1, clips[1], "b"), 2),
        end_marker(ROOM, "s2")])
    await reg.end_session(ROOM, "s2")  # s1 goes on speaking
    report = await asyncio.wait_for(player.run(), 5)
    assert keyed(report.played) == [("s2", 0, 0), ("s2", 0, 1)]
    with pytest.raises(ValueError, match="invalid session id"):
        PlayerConfig(ROOM, "es", session="a b")


class PacedSink(ListSink):
    """Returns once the piece has played, like a loudspeaker (or the paced WAV writer)."""

    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float:
        started = await super().play(pcm, rate, capture_start)
        await asyncio.sleep(0.8)
        return started


async def test_until_ended_lets_the_last_piece_play_to_its_end(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.05, deadline_s=0.4,
                    block_ms=50, until_ended=True), PacedSink())
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.4)
    t0 = time.time()
    pieces = speech_pieces(ROOM, "es", SegmentSpec("s1", 3, t0, t0 + 1, clips[0], "a"), 1)
    await reg.end_session(ROOM, "s1")  # a short session: it ends as its only piece arrives
    await Publisher(client, settings).publish_many(
        settings.keys.room_stream("speech", ROOM, "es"),
        [*pieces, end_marker(ROOM, "s1")])  # type: ignore[list-item]
    report = await asyncio.wait_for(task, 5)
    assert keyed(report.played) == [("s1", 3, 0)]


class FailingSink(ListSink):
    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float:
        raise OSError("device unplugged")


class FlakyRedis:
    """The real client, but the first two XREADs fail as if Redis were restarting."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures = 2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def xread(self, *args: Any, **kw: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Connection refused")
        return await self._client.xread(*args, **kw)


async def test_a_failing_output_stops_the_player_with_the_error(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    await Registry(client, settings.keys).register_session(ROOM, "s1", "en", "Ada")
    player = Player(client, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.0, block_ms=50),
                    FailingSink())
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.3)
    t0 = time.time()
    await Publisher(client, settings).publish_many(
        settings.keys.room_stream("speech", ROOM, "es"),
        speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 1, clips[0], "a"), 1))  # type: ignore[arg-type]
    with pytest.raises(OSError, match="device unplugged"):
        await asyncio.wait_for(task, 5)


async def test_the_reader_survives_a_redis_restart(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    await Registry(client, settings.keys).register_session(ROOM, "s1", "en", "Ada")
    flaky = FlakyRedis(client)
    player = Player(flaky, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.0, block_ms=50),
                    ListSink())
    stop = asyncio.Event()
    task = asyncio.create_task(player.run(stop))
    await asyncio.sleep(0.2)
    t0 = time.time()
    pieces = speech_pieces(ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 1, clips[0], "a b"), 2)
    await Publisher(client, settings).publish_many(
        settings.keys.room_stream("speech", ROOM, "es"), pieces)  # type: ignore[arg-type]
    report = await finish(stop, task, after=1.5)
    assert flaky.failures == 0
    assert keyed(report.played) == keyed(pieces)


class CancelSwallowingRedis:
    """The real client, but its XREADs lose the first cancellations that reach them, as
    redis-py's do on Python 3.11 when the reply is coming in (the read returns it instead)."""

    def __init__(self, client: Any, swallow: int) -> None:
        self._client = client
        self.swallow = swallow
        self.swallowed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def xread(self, *args: Any, **kw: Any) -> Any:
        try:
            return await self._client.xread(*args, **kw)
        except asyncio.CancelledError:
            if self.swallowed < self.swallow:
                self.swallowed += 1
                return []
            raise


async def test_a_player_stops_although_a_read_lost_its_cancellation(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    # `s2st play --until-ended` in CI, and every lane of `s2st eval`, hung for ever this way
    flaky = CancelSwallowingRedis(client, swallow=3)
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    player = Player(flaky, settings.keys, PlayerConfig(ROOM, "es", hold_s=0.05, deadline_s=0.4,
                    block_ms=1000, until_ended=True), ListSink())
    task = asyncio.create_task(player.run())
    await asyncio.sleep(0.6)
    report = await _s1_says_one_piece_and_ends(client, settings, reg, clips[0], task)
    assert keyed(report.played) == [("s1", 0, 0)] and report.finished
    assert flaky.swallowed == 1  # the read was cancelled mid-way, and did not notice


async def test_until_ended_gives_up_on_an_end_that_never_comes_and_says_where_it_stopped(
        client: Any, settings: BusSettings, clips: list[np.ndarray]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session(ROOM, "s1", "en", "Ada")
    pub = Publisher(client, settings)
    audio = settings.keys.stream("audio", Partition(ROOM, "s1"))
    transcript = settings.keys.stream("transcript", Partition(ROOM, "s1"))
    await pub.publish(transcript, end_marker(ROOM, "s1"))  # the ASR passed the end on ...
    await client.xgroup_create(transcript, "mt", id="0")
    await client.xreadgroup("mt", "stuck-mt", {transcript: ">"})  # ... an MT read it, died
    t0 = time.time()
    key = settings.keys.room_stream("speech", ROOM, "es")
    await pub.publish_many(key, speech_pieces(  # type: ignore[arg-type]
        ROOM, "es", SegmentSpec("s1", 0, t0, t0 + 1, clips[0], "a"), 1))
    await reg.end_session(ROOM, "s1", marker_stream=audio, marker=end_marker(ROOM, "s1"))
    player = Player(client, settings.keys, PlayerConfig(
        ROOM, "es", hold_s=0.05, deadline_s=0.4, block_ms=50, until_ended=True,
        position="0-0", end_wait_s=1.0), ListSink())
    began = time.monotonic()
    report = await asyncio.wait_for(player.run(), 30)
    waited = time.monotonic() - began
    assert keyed(report.played) == [("s1", 0, 0)]
    assert not report.finished and len(report.unfinished) == 1
    why = report.unfinished[0]
    assert "session s1" in why and "end marker in audio, transcript" in why, why
    assert f"none in {settings.keys.stream('translation', Partition(ROOM, 's1', 'es'))}" in why
    assert "which the mt stage writes" in why and "group mt on transcript: 1 pending" in why
    # the bound: end_wait_s plus the session's length (a fraction of a second here)
    assert 1.0 <= waited < 1.0 + 20, waited
    assert "gave up: session s1" in report.text()


async def test_until_ended_gives_up_when_nobody_speaks(
        client: Any, settings: BusSettings) -> None:
    await Registry(client, settings.keys).create_room(ROOM, ["es"])
    player = Player(client, settings.keys, PlayerConfig(
        ROOM, "es", block_ms=50, until_ended=True, start_wait_s=0.5), ListSink())
    report = await asyncio.wait_for(player.run(), 30)
    assert report.unfinished == [f"no session spoke in room {ROOM} within 0 s"] or \
        report.unfinished == [f"no session spoke in room {ROOM} within 1 s"], report.unfinished
