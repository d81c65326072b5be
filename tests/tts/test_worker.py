"""The TTS worker on the real bus: real Redis, real voices, real text (and its handler in
memory, with bus.harness, where a test is about what it writes rather than the bus).

Spanish: the FLORES reference translations of FLEURS clips (Kokoro); English: LJ Speech
transcripts (Piper); espeak-ng where a test is about the bus rather than the voice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bus.events import ControlEvent, Hop, Speech, Translation, decode_event
from bus.harness import run_stage
from bus.keys import Partition
from bus.registry import Registry, SessionInfo
from bus.settings import BusSettings
from bus.testing import run_worker
from workers.tts.audio import gated_rms_dbfs, to_float
from workers.tts.backends import Audio, SynthesisError
from workers.tts.config import TtsConfig, parse_backends
from workers.tts.engine import TtsEngine
from workers.tts.pacing import PaceConfig
from workers.tts.stage import TTSStage, default_warm_langs

from .conftest import FLEURS_ES, LJ_EN

ROOM = "hall"
SESSION = "s1"
SPEAKER = "Ana"
# the opening of LJ Speech's continuous reading: 51 words, five pieces, about 17 s of speech
LONG_EN = (
    "Printing, in the only sense with which we are at present concerned, differs from most if "
    "not from all the arts and crafts represented in the Exhibition in being comparatively "
    "modern. For although the Chinese took impressions from wood blocks engraved in relief for "
    "centuries before the woodcutters of the Netherlands"
)


# -- helpers ------------------------------------------------------------------------------


def translation(seq: int, lang: str, text: str, *,
                kind: Literal["partial", "committed"] = "committed",
                session: str = SESSION, age_s: float = 3.0) -> Translation:
    """A translation of source words that ended ``age_s`` ago (live: the voice's own pace)."""
    start = time.time() - age_s - 2.5 + seq * 0.01
    return Translation(
        room=ROOM, session=session, seq=seq, capture_start=start, capture_end=start + 2.5,
        kind=kind, utterance=seq // 2, src_seq=seq, src_seq_first=max(0, seq - 1),
        src_lang="en", lang=lang, text=text, emitted=time.time(),
        trace=[Hop(stage="mt", worker="mt-1", t_in=start + 2.6, t_out=start + 2.7)],
    )


def end_of(session: str = SESSION) -> ControlEvent:
    now = time.time()
    return ControlEvent.end_of(ROOM, session, at=now, seq=99, reason="test", emitted=now)


async def open_room(client: Any, settings: BusSettings, langs: list[str],
                    sessions: tuple[str, ...] = (SESSION,)) -> None:
    registry = Registry(client, settings.keys)
    await registry.create_room(ROOM, langs)
    for session in sessions:
        await registry.register_session(ROOM, session, "en", speaker=SPEAKER)


async def send(client: Any, settings: BusSettings, lang: str, events: list[Any],
               session: str = SESSION) -> None:
    key = settings.keys.stream("translation", Partition(ROOM, session, lang))
    for event in events:
        await client.xadd(key, event.to_fields())


async def room_speech(client: Any, settings: BusSettings, lang: str) -> list[Any]:
    key = settings.keys.room_stream("speech", ROOM, lang)
    return [decode_event(fields) for _id, fields in await client.xrange(key)]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def until_ended(client: Any, settings: BusSettings, lang: str,
                      timeout: float = 60.0) -> list[Any]:
    """The room's speech stream of `lang` once its end marker has arrived."""

    async def ended() -> bool:
        events = await room_speech(client, settings, lang)
        return any(isinstance(e, ControlEvent) for e in events)

    await wait_until(ended, timeout)
    return await room_speech(client, settings, lang)


# segments sent in a burst: no catching up, and no voice passed over for being late
UNPACED = PaceConfig(max_speed=1.0, late_s=0.0, ready_lag_s=0.0)


def engine(backends: str, fallback: str = "espeak", pace: PaceConfig = UNPACED,
           **synths: Any) -> TtsEngine:
    return TtsEngine(TtsConfig(backends=parse_backends(backends), fallback=fallback,
                               pace=pace), synths)


def segments(events: list[Any]) -> dict[int, list[Speech]]:
    out: dict[int, list[Speech]] = {}
    for event in events:
        if isinstance(event, Speech):
            out.setdefault(event.seq, []).append(event)
    return out


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def check_segment(pieces: list[Speech], source: Translation, backend: str) -> None:
    """One segment's pieces: complete, in order, copied fields, a tts hop, real speech."""
    assert [p.part for p in pieces] == list(range(len(pieces)))
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert " ".join(p.text for p in pieces).split() == source.text.split()
    for piece in pieces:
        assert (piece.capture_start, piece.capture_end) == (source.capture_start,
                                                            source.capture_end)
        assert (piece.src_seq, piece.utterance, piece.lang) == (source.src_seq,
                                                                source.utterance, source.lang)
        assert piece.speaker == SPEAKER and piece.voice and piece.backend == backend
        assert [h.stage for h in piece.trace] == ["mt", "tts"]
        assert piece.trace[-1].t_in <= piece.trace[-1].t_out
        pcm = np.frombuffer(piece.pcm, dtype="<i2")
        assert pcm.size == piece.samples and piece.rate == 24_000
        assert piece.duration == pytest.approx(piece.samples / piece.rate)
        level = gated_rms_dbfs(to_float(pcm), piece.rate)
        assert level is not None and level > -30, level  # speech at about -23 dBFS
    seconds = sum(p.duration for p in pieces)
    words = len(source.text.split())
    assert 0.15 * words < seconds < 1.0 * words, (seconds, words)


def check_room_stream(events: list[Any], committed: list[Translation], backend: str) -> None:
    """Every committed segment spoken, in (seq, part) order, nothing else, the end marker last."""
    assert isinstance(events[-1], ControlEvent) and events[-1].action == "end"
    assert events[-1].trace[-1].stage == "tts"
    assert sum(isinstance(e, ControlEvent) for e in events) == 1
    speech = [e for e in events if isinstance(e, Speech)]
    assert [(s.seq, s.part) for s in speech] == sorted((s.seq, s.part) for s in speech)
    by_seq = segments(events)
    assert sorted(by_seq) == [t.seq for t in committed]  # no partial was spoken
    for source in committed:
        check_segment(by_seq[source.seq], source, backend)


class WrappedVoice:
    """A real voice with something wrong with it (the subclasses say what)."""

    def __init__(self, voice: Any) -> None:
        self.voice = voice
        self.name = voice.name

    def supports(self, lang: str) -> bool:
        return bool(self.voice.supports(lang))

    def voices(self, lang: str) -> list[str]:
        return list(self.voice.voices(lang))

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        return self.voice.synthesize(text, lang, voice, speed)  # type: ignore[no-any-return]


class FailsOnText(WrappedVoice):
    """Raises whenever the text contains `marker` (a crashed model)."""

    def __init__(self, voice: Any, marker: str) -> None:
        super().__init__(voice)
        self.marker = marker
        self.failures = 0

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        if self.marker in text:
            self.failures += 1
            raise SynthesisError("onnxruntime: invalid input shape")
        return super().synthesize(text, lang, voice, speed)


class StallsOnce(WrappedVoice):
    """Hangs once, on its `stall_on`-th call (a wedged model)."""

    def __init__(self, voice: Any, stall_on: int, seconds: float) -> None:
        super().__init__(voice)
        self.stall_on = stall_on
        self.seconds = seconds
        self.calls = 0

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        self.calls += 1
        if self.calls == self.stall_on:
            time.sleep(self.seconds)
        return super().synthesize(text, lang, voice, speed)


class SlowVoice(WrappedVoice):
    """Takes ``rtf`` times the audio's duration to make it (a slow host)."""

    def __init__(self, voice: Any, rtf: float) -> None:
        super().__init__(voice)
        self.rtf = rtf

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        audio = super().synthesize(text, lang, voice, speed)
        time.sleep(self.rtf * audio.duration)
        return audio


# -- tests --------------------------------------------------------------------------------


async def test_committed_translations_are_spoken_in_order_per_language(
    bus_settings: BusSettings, bus_client: Any, manifest: dict[str, dict[str, Any]],
    kokoro: Any, piper: Any, espeak: Any,
) -> None:
    # one FLEURS sentence for Kokoro (the slowest voice by far), three LJ sentences for Piper
    spanish = [translation(2, "es", manifest[FLEURS_ES[0]]["translation_es"])]
    english = [translation(2 * i + 2, "en", manifest[c]["transcript"])
               for i, c in enumerate(LJ_EN)]
    stage = TTSStage(engine("es=kokoro,en=piper", kokoro=kokoro, piper=piper, espeak=espeak))
    ttfa_before = metric("s2st_tts_first_audio_seconds_count", lang="en")
    await open_room(bus_client, bus_settings, ["es", "en"])
    async with run_worker(stage, bus_settings):
        # a partial before each committed segment: captions only, never spoken
        for lang, committed in (("es", spanish), ("en", english)):
            events: list[Any] = []
            for event in committed:
                events += [translation(event.seq - 1, lang, "Muchas personas no",
                                       kind="partial"), event]
            await send(bus_client, bus_settings, lang, [*events, end_of()])
        es = await until_ended(bus_client, bus_settings, "es", timeout=120)
        en = await until_ended(bus_client, bus_settings, "en")
    for events, committed, backend in ((es, spanish, "kokoro"), (en, english, "piper")):
        check_room_stream(events, committed, backend)
    for lang in ("es", "en"):
        key = bus_settings.keys.stream("translation", Partition(ROOM, SESSION, lang))
        assert (await bus_client.xpending(key, "tts"))["pending"] == 0
    assert metric("s2st_tts_first_audio_seconds_count", lang="en") == ttfa_before + 3


async def test_a_failing_voice_is_replaced_by_espeak_on_the_bus(
    bus_settings: BusSettings, bus_client: Any, manifest: dict[str, dict[str, Any]],
    piper: Any, espeak: Any,
) -> None:
    texts = [manifest[c]["transcript"] for c in LJ_EN]
    crashing = FailsOnText(piper, marker="Printing")  # the whole of the second sentence
    stage = TTSStage(engine("en=piper", piper=crashing, espeak=espeak))
    fallbacks_before = metric("s2st_tts_fallbacks_total", lang="en", backend="espeak")
    failures_before = metric("s2st_tts_backend_failures_total", backend="piper")
    committed = [translation(i + 1, "en", text) for i, text in enumerate(texts)]
    await open_room(bus_client, bus_settings, ["en"])
    async with run_worker(stage, bus_settings):
        await send(bus_client, bus_settings, "en", [*committed, end_of()])
        events = await until_ended(bus_client, bus_settings, "en")
    by_seq = segments(events)
    assert sorted(by_seq) == [1, 2, 3]
    check_segment(by_seq[1], committed[0], "piper")
    check_segment(by_seq[3], committed[2], "piper")
    assert "Printing" in committed[1].text
    failed = by_seq[2]
    assert [p.part for p in failed] == list(range(len(failed))) and failed[-1].last
    crash = next(i for i, p in enumerate(failed) if "Printing" in p.text)
    # the voice that took over speaks the rest of the segment: no switching back mid-sentence
    assert all(p.backend == "piper" for p in failed[:crash])
    assert all(p.backend == "espeak" for p in failed[crash:])
    switched = len(failed) - crash
    speech = [e for e in events if isinstance(e, Speech)]
    assert [(s.seq, s.part) for s in speech] == sorted((s.seq, s.part) for s in speech)
    assert crashing.failures == 1
    assert stage.engine.stats.fallbacks == switched
    assert metric("s2st_tts_fallbacks_total", lang="en",
                  backend="espeak") == fallbacks_before + switched
    assert metric("s2st_tts_backend_failures_total",
                  backend="piper") == failures_before + 1


async def test_first_piece_is_on_the_bus_before_the_segment_is_synthesized(
    bus_settings: BusSettings, bus_client: Any, piper: Any, espeak: Any,
) -> None:
    stage = TTSStage(engine("en=piper", piper=piper, espeak=espeak))
    source = translation(1, "en", LONG_EN)
    key = bus_settings.keys.stream("translation", Partition(ROOM, SESSION, "en"))
    await open_room(bus_client, bus_settings, ["en"])
    async with run_worker(stage, bus_settings):
        await send(bus_client, bus_settings, "en", [source])

        async def first_piece() -> bool:
            return bool(await room_speech(bus_client, bus_settings, "en"))

        await wait_until(first_piece)
        # the first piece is readable while the segment is still being synthesized
        seen = await room_speech(bus_client, bus_settings, "en")
        still_pending = (await bus_client.xpending(key, "tts"))["pending"]
        await send(bus_client, bus_settings, "en", [end_of()])
        events = await until_ended(bus_client, bus_settings, "en")
    pieces = segments(events)[1]
    assert len(pieces) >= 4
    assert not seen[-1].last and len(seen) < len(pieces) and still_pending == 1
    # written before the last piece was even ready
    assert pieces[0].emitted < pieces[-1].trace[-1].t_out
    assert pieces[0].emitted < pieces[1].trace[-1].t_out
    check_segment(pieces, source, "piper")


async def test_a_segment_cut_off_midway_is_spoken_again_without_repeated_parts(
    bus_settings: BusSettings, bus_client: Any, espeak: Any,
) -> None:
    # the third piece hangs past the handler timeout: parts 0 and 1 are already on the bus
    voice = StallsOnce(espeak, stall_on=4, seconds=2.5)  # call 1 is the warm-up
    stage = TTSStage(engine("*=espeak", espeak=voice))
    settings = bus_settings.model_copy(update={"handler_timeout_s": 1.0})
    source = translation(1, "en", LONG_EN)
    await open_room(bus_client, settings, ["en"])
    async with run_worker(stage, settings):
        await send(bus_client, settings, "en", [source, end_of()])
        events = await until_ended(bus_client, settings, "en")
    pieces = segments(events)[1]
    assert voice.calls > len(pieces) + 1  # the first parts were synthesized twice
    assert [p.part for p in pieces] == list(range(len(pieces))) and pieces[-1].last
    assert " ".join(p.text for p in pieces).split() == LONG_EN.split()
    assert not await bus_client.xrange(settings.keys.deadletter(ROOM))


async def test_two_languages_of_a_session_are_two_streams(
    bus_settings: BusSettings, bus_client: Any, manifest: dict[str, dict[str, Any]],
    espeak: Any,
) -> None:
    spanish = [translation(i + 1, "es", manifest[c]["translation_es"])
               for i, c in enumerate(FLEURS_ES)]
    english = [translation(i + 1, "en", manifest[c]["transcript"]) for i, c in enumerate(LJ_EN)]
    stage = TTSStage(engine("*=espeak", espeak=espeak))
    await open_room(bus_client, bus_settings, ["es", "en"])
    async with run_worker(stage, bus_settings) as worker:
        await send(bus_client, bus_settings, "es", [*spanish, end_of()])
        await send(bus_client, bus_settings, "en", english[:1])
        es = await until_ended(bus_client, bus_settings, "es")
        # the Spanish stream has ended; the English one of the same session goes on

        async def first_english() -> bool:
            return bool(segments(await room_speech(bus_client, bus_settings, "en")))

        await wait_until(first_english)
        owned = {o.part.lang for o in worker.owned.values()}
        await send(bus_client, bus_settings, "en", [*english[1:], end_of()])
        en = await until_ended(bus_client, bus_settings, "en")
    assert "en" in owned  # still held after the Spanish stream was finished
    check_room_stream(es, spanish, "espeak")
    check_room_stream(en, english, "espeak")


async def test_unspeakable_input_is_dead_lettered_and_the_session_goes_on(piper: Any) -> None:
    """Handler behaviour, in memory (bus.harness): one run per language stream."""
    # Spanish has no voice here (Piper speaks English only, no fallback)
    stage = TTSStage(engine("*=piper", fallback="", piper=piper), warm_langs=["en"])
    info = SessionInfo(room=ROOM, session=SESSION, source_lang="en", speaker=SPEAKER)
    await stage.setup()
    es = await run_stage(stage, [translation(1, "es", "Hola a todos."), end_of()],
                         session=info, lang="es", langs=["es", "en"], setup=False)
    en = await run_stage(stage, [
        translation(1, "es", "Hola."),  # in the wrong language's stream
        translation(2, "en", "   \u200b 🙂 "),  # nothing speakable: acked, no output
        translation(3, "en", "Good morning."), end_of()],
        session=info, lang="en", langs=["es", "en"], setup=False)
    assert [type(e).__name__ for e in es.room_stream("speech", "es")] == ["ControlEvent"]
    assert sorted(segments(en.room_stream("speech", "en"))) == [3]
    dead = es.dead + en.dead
    assert all(d.stage == "tts" and d.attempts == 1 for d in dead)
    errors = sorted(d.error for d in dead)
    assert len(errors) == 2 and all(e.startswith("rejected:") for e in errors), errors
    assert any("no TTS backend speaks 'es'" in e for e in errors)
    assert any("'es' translation in the 'en' stream" in e for e in errors)


def test_bad_tts_settings_stop_the_command_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from ops.cli import main

    monkeypatch.setenv("S2ST_TTS_BACKENDS", "es=festival")
    assert main(["tts", "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert "S2ST_TTS_BACKENDS: unknown TTS backend 'festival'" in capsys.readouterr().err
    monkeypatch.delenv("S2ST_TTS_BACKENDS")
    assert main(["tts", "--first-words", "many"]) == 2
    assert "S2ST_TTS_FIRST_WORDS must be an integer" in capsys.readouterr().err


async def test_the_tts_command_speaks_and_stops_on_sigterm(
    bus_settings: BusSettings, bus_client: Any,
) -> None:
    env = {**os.environ, "S2ST_TTS_BACKENDS": "*=espeak", "S2ST_KEY_PREFIX":
           bus_settings.key_prefix, "S2ST_DISCOVERY_MS": "100", "S2ST_BLOCK_MS": "50"}
    await open_room(bus_client, bus_settings, ["es"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", "tts", "--log-level", "warning", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        source = translation(1, "es", "Muchas personas no se los representan como dinosaurios.")
        await send(bus_client, bus_settings, "es", [source])

        async def spoken() -> bool:
            events = segments(await room_speech(bus_client, bus_settings, "es"))
            return bool(events) and events[1][-1].last

        await wait_until(spoken, timeout=60)
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-2000:]
    pieces = segments(await room_speech(bus_client, bus_settings, "es"))[1]
    assert all(p.backend == "espeak" and p.lang == "es" for p in pieces)
    assert [p.part for p in pieces] == list(range(len(pieces)))


def test_the_voices_warmed_at_start_cover_the_backend_table() -> None:
    assert default_warm_langs(TtsConfig()) == ["es", "en", "fr"]
    assert default_warm_langs(TtsConfig(backends=parse_backends("en=piper"))) == ["en"]
    with pytest.raises(ValueError, match="parallel"):
        TTSStage(engine("*=espeak"), parallel=0)


PACING_SENTENCE = "The committee will meet again next week to discuss the budget for the new hall."


async def test_a_listener_falling_behind_hears_a_faster_voice_then_the_fast_one(
    bus_settings: BusSettings, bus_client: Any, piper: Any, espeak: Any,
) -> None:
    pace = PaceConfig(target_lag_s=1.0, horizon_s=2.0, max_speed=1.5, late_s=25.0,
                      ready_lag_s=0.0)  # the pacer alone
    stage = TTSStage(engine("en=piper", pace=pace, piper=piper, espeak=espeak))
    late_before = metric("s2st_tts_late_segments_total", lang="en")
    await open_room(bus_client, bus_settings, ["en"])
    async with run_worker(stage, bus_settings):
        # four sentences said back to back arrive at once (just spoken: made now, once the
        # worker is up, so that its start, slow on a busy host, does not count as the
        # listener's lag), then one long overdue
        burst = [translation(seq, "en", PACING_SENTENCE, age_s=0.0) for seq in range(1, 5)]
        overdue = translation(5, "en", PACING_SENTENCE, age_s=40.0)
        await send(bus_client, bus_settings, "en", [*burst, overdue, end_of()])
        events = await until_ended(bus_client, bus_settings, "en")
    spoken = segments(events)
    durations = {seq: sum(p.duration for p in pieces) for seq, pieces in spoken.items()}
    backends = {seq: {p.backend for p in pieces} for seq, pieces in spoken.items()}
    # how late after its source words each segment was taken up (the first: well within the
    # target lag of 1 s, so at the voice's own pace)
    taken = {seq: round(pieces[0].trace[-1].t_in - burst[0].capture_end, 2)
             for seq, pieces in spoken.items()}
    # the first at the voice's own pace; the ones queued behind it faster (at most 1.5x)
    assert backends[1] == backends[2] == backends[4] == {"piper"}
    assert durations[4] < 0.85 * durations[1], (durations, taken)
    assert durations[4] > durations[1] / 1.5 - 0.3, durations
    # too late to catch up with any neural voice: espeak-ng says it
    assert backends[5] == {"espeak"}
    assert metric("s2st_tts_late_segments_total", lang="en") == late_before + 1
    key = bus_settings.keys.stream("translation", Partition(ROOM, SESSION, "en"))
    assert (await bus_client.xpending(key, "tts"))["pending"] == 0
