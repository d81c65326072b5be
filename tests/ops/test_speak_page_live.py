"""Speak from the browser, listen in another: the speaker page in headless Chromium with a fake
microphone playing a dev-set English clip, the listener page in Spanish, the real workers of
`s2st up` (tiny.en, Apertium, espeak-ng) between them; the link drops mid-speech.

Checks: the Spanish captions hold Apertium's words for what the ASR heard; every Spanish piece
of the session arrived and was scheduled in order, no seq or part missing; the session's
audio chunk seqs are 0..n without a gap or a repeat across the dropped link, ended by the
page's leave; a speak page without a token or with a listener's is refused; neither page is
wider than a 390 px phone screen. Prints the mic-to-ear segment latency.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from ops_helpers import all_gone, descendants, stop_hard
from speak_live import (
    apertium_es,
    content_words,
    make_wav,
    read_bus,
    speak_and_listen,
    start_stack,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "player"))
import itertools

from room_browser import HAVE_CHROMIUM

from player_agent.latency import percentile

pytestmark = pytest.mark.slow
CLIP = "fleurs_en_1972"  # "Many people don't think about them as dinosaurs because ..."


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
def test_speak_page_to_listener_page_through_the_real_stack(tmp_path: Path, prefix: str,
                                                            local_url: str) -> None:
    from ops.redis_servers import free_port

    wav = tmp_path / "clip.wav"
    clip_s = make_wav([CLIP], wav)
    port = free_port()
    stack, out, _ = start_stack(tmp_path, port, local_url, prefix)
    children = []
    try:
        assert out.wait_for("ready.", 180), out.text()
        children = descendants(stack.pid)
        # the stack prints the speaker link too (the test mints its own with the same secret)
        assert re.search(rf"speak:   http://127\.0\.0\.1:{port}/room/live/speak\?token=\S+",
                         out.text()), out.text()
        run = asyncio.run(speak_and_listen(f"http://127.0.0.1:{port}", wav, clip_s, [CLIP],
                                           drop_at_s=2.5))
        read_bus(run, local_url, prefix)
        stack.send_signal(2)
        out.finish(60)
        assert all_gone(children) == []
    finally:
        stop_hard(stack, children)
    assert run.errors == [], run.errors
    assert run.refusals == {"none": 401, "listener": 401}
    # what the ASR heard, in the speaker's own captions and the listeners'
    # (tiny.en mishears a word now and then, the streaming passes falling differently when
    # the audio held during the drop comes in a burst: "as an resource" for "as dinosaurs" in
    # one run of eight, "comply" for "can fly" in half of them; the audio on the bus is the
    # same in every run)
    said = content_words(run.clip_transcript)
    heard = content_words(run.transcript)
    assert len(said & heard) >= 0.7 * len(said), (said - heard, run.transcript)
    assert content_words(run.speaker_captions) == heard, run.speaker_captions
    assert content_words(run.source) == heard, run.source
    assert "Ada" in run.speakers
    # the Spanish captions: Apertium's words for the transcript, segment by segment as the MT
    # worker took it (each translation names its source text)
    assert " ".join(run.mt_sources).split() == run.transcript.split()
    expected = content_words(" ".join(apertium_es(text) for text in run.mt_sources))
    shown = content_words(run.translation)
    assert len(expected) >= 5 and len(expected & shown) >= 0.9 * len(expected), (
        expected - shown, run.translation)
    # the audio chunks: one session across the dropped link, seqs 0..n, ended by the leave
    speaker = run.speaker
    assert speaker["reconnects"] >= 1 and speaker["framesResent"] >= 1
    assert speaker["ended"] == "left" and not speaker.get("newSessions")
    assert speaker["status"]["gap_samples"] == 0 and speaker["framesLost"] == 0
    seqs = [int(e[b"seq"]) for e in run.audio]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 5, seqs
    assert run.audio[-1][b"type"] == b"control" and run.audio[-1][b"reason"] == b"left"
    offsets = [(int(e[b"offset"]), int(e[b"samples"])) for e in run.audio[:-1]]
    assert all(a + n <= b for (a, n), (b, _) in itertools.pairwise(offsets))
    # the Spanish speech: every piece of the session, in order, none missing
    speech = list(dict.fromkeys(run.speech))  # a redelivered piece is the same piece
    assert speech and speech[-1][2] and speech[0][1] == 0, speech
    played = [(p["seq"], p["part"]) for p in run.listener["played"] if p["session"] == run.session]
    assert played == [(seq, part) for seq, part, _ in speech], (played, speech)
    for (seq, part, last), (nseq, npart, _) in itertools.pairwise(speech):
        assert (nseq > seq and npart == 0) if last else (nseq, npart) == (seq, part + 1)
    stats = run.listener
    assert stats["buffersScheduled"] == stats["buffersReceived"] >= len(speech)
    # a phone's screen: nothing wider than 390 px
    assert run.overflow.keys() == {"listen", "speak"} and max(run.overflow.values()) <= 390, (
        run.overflow)
    lat = run.segment_latencies()
    assert lat and all(0 < x < 20 for x in lat), lat
    print(f"\nmic-to-ear segment latency: n={len(lat)} p50={percentile(lat, 50):.2f} s "
          f"p95={percentile(lat, 95):.2f} s; transcript: {run.transcript!r}; "
          f"Spanish: {run.translation!r}")
