"""Real model, real speech: accuracy offline and streaming, guards, takeover, batching."""

from __future__ import annotations

import itertools
from typing import Any

import jiwer
import numpy as np
import pytest

from workers.asr.audio import load_audio
from workers.asr.batching import BatchScheduler
from workers.asr.decoder import DecodedWord, DecodeRequest, WhisperDecoder
from workers.asr.simulate import make_chunks, replay
from workers.asr.streaming import (
    PcmBlock,
    RecognizerState,
    StreamConfig,
    StreamingRecognizer,
    Update,
)
from workers.asr.textnorm import normalize_text, word_error_rate

pytestmark = pytest.mark.slow

CONTINUOUS = "ljspeech_LJ001-0001_to_0032_continuous"


def committed_text(updates: list[Update]) -> str:
    return " ".join(u.text for u in updates if u.kind == "committed" and u.text)


def run_stream(rec: StreamingRecognizer, chunks: list[PcmBlock]) -> list[Update]:
    updates: list[Update] = []
    for chunk in chunks:
        updates += rec.feed(chunk)
    return updates + rec.end_utterance()


def test_tiny_en_offline_wer_on_lj_speech(tiny_decoder: WhisperDecoder, lj_clips) -> None:
    audio = [load_audio(row["path"]) for row in lj_clips]
    hyps = [tiny_decoder.decode(DecodeRequest(a, "en")) for a in audio]
    wer = word_error_rate([row["transcript"] for row in lj_clips], [h.text for h in hyps])
    assert wer < 0.10, f"WER {wer:.3f}"
    first = hyps[0]
    assert first.words and all(w.end >= w.start for w in first.words)
    assert first.words[-1].end <= len(audio[0]) / 16000 + 0.05
    starts = [w.start for w in first.words]
    assert starts == sorted(starts)


def test_batched_decoding_matches_single(tiny_decoder: WhisperDecoder, lj_clips) -> None:
    audio = [load_audio(row["path"]) for row in lj_clips[:6]]
    single = [tiny_decoder.decode(DecodeRequest(a)).text for a in audio]
    batched = [h.text for h in tiny_decoder.decode_batch([DecodeRequest(a) for a in audio])]
    refs = [row["transcript"] for row in lj_clips[:6]]
    assert word_error_rate(refs, batched) <= word_error_rate(refs, single) + 0.02
    assert sum(a == b for a, b in zip(single, batched, strict=True)) >= 4


@pytest.fixture(scope="module")
def continuous(manifest: dict[str, dict[str, Any]]) -> tuple[np.ndarray, str]:
    row = manifest[CONTINUOUS]
    return load_audio(row["path"]), row["transcript"]


def test_streaming_matches_offline_on_the_long_clip(
    tiny_decoder: WhisperDecoder, continuous: tuple[np.ndarray, str]
) -> None:
    audio, reference = continuous
    segments, _ = tiny_decoder.model.transcribe(audio, language="en", beam_size=1)
    offline = " ".join(s.text.strip() for s in segments)
    # One decode per second of audio (instead of per 0.5 s chunk) keeps the test short.
    rec = StreamingRecognizer(tiny_decoder, StreamConfig(min_decode_s=1.0))
    updates = run_stream(rec, make_chunks(audio, chunk_s=0.5))
    streamed = committed_text(updates)
    wer_offline = word_error_rate([reference], [offline])
    wer_stream = word_error_rate([reference], [streamed])
    assert wer_stream <= wer_offline + 0.02, (wer_stream, wer_offline)

    committed = [u for u in updates if u.kind == "committed"]
    assert committed[-1].final and sum(u.final for u in committed) == 1
    # Committed words are never revised: each commit continues where the previous one
    # ended (word timings of successive hypotheses may overlap by an alignment frame or two).
    words = [w for u in committed for w in u.words]
    assert all(b.start >= a.end for a, b in itertools.pairwise(words))
    ends = [u.sample_end for u in committed]
    assert ends == sorted(ends)
    assert all(u.capture_end >= u.capture_start for u in committed)
    # A partial only ever covers audio after the last commit.
    last_end = 0
    for u in updates:
        if u.kind == "committed" and u.words:
            last_end = u.sample_end
        elif u.kind == "partial":
            assert u.sample_start >= last_end - 320
    # Bounded cost on long speech: the decoded buffer never grows past the trim policy.
    assert rec.max_buffer_seconds <= rec.config.force_commit_s + 1.0


def test_no_words_on_silence_and_noise(
    tiny_decoder: WhisperDecoder, manifest: dict[str, dict[str, Any]]
) -> None:
    rng = np.random.default_rng(1)
    white = rng.standard_normal(16000 * 8) * 10 ** (-30 / 20)
    brown = np.cumsum(rng.standard_normal(16000 * 8))
    brown = brown / np.abs(brown).max() * 0.1
    hum = 0.05 * np.sin(2 * np.pi * 50 * np.arange(16000 * 6) / 16000)
    room = load_audio(manifest["extra_test"]["path"])
    quiet_parts = np.concatenate(
        [room[int(7.15 * 16000) : int(9.0 * 16000)], room[int(47.1 * 16000) : int(48.5 * 16000)]]
    )
    clips = [np.zeros(16000 * 8), white, brown, hum, quiet_parts]
    rec = StreamingRecognizer(tiny_decoder, StreamConfig())
    updates: list[Update] = []
    offset = 0
    for utt, clip in enumerate(clips):
        chunks = make_chunks(clip.astype(np.float32), utterance=utt, offset=offset)
        updates += run_stream(rec, chunks)
        offset += len(clip) + 16000
    assert [u.text for u in updates if u.text] == []


def test_takeover_mid_utterance_neither_drops_nor_repeats(
    tiny_decoder: WhisperDecoder, continuous: tuple[np.ndarray, str], manifest
) -> None:
    audio, _ = continuous
    segments = manifest[CONTINUOUS]["segments"]
    end_s = segments[2]["end"]  # three sentences, 21.8 s, one utterance
    reference = " ".join(manifest[f"ljspeech_{s['utt']}"]["transcript"] for s in segments[:3])
    chunks = make_chunks(audio[: int(end_s * 16000)], chunk_s=0.5, utterance=4)

    # takeover after 7.5 s and 15.5 s; the worker's state carries the open utterance's
    # committed words (with times), an older state only their text in the prompt
    for cut, with_words in ((15, True), (31, True), (31, False)):
        first = StreamingRecognizer(tiny_decoder, StreamConfig())
        before: list[Update] = []
        for chunk in chunks[:cut]:
            before += first.feed(chunk)
        commits = [u for u in before if u.kind == "committed" and u.words]
        assert commits, "something was committed before the takeover"
        # What the new owner knows comes from the transcript stream alone.
        words = tuple(DecodedWord(" " + w.text.strip(), w.start, w.end, w.probability)
                      for u in commits for w in u.words)
        state = RecognizerState(
            utterance=commits[-1].utterance,
            committed_until=commits[-1].sample_end,
            prompt="" if with_words else committed_text(before),
            words=words if with_words else (),
        )
        if with_words:
            assert first.snapshot() == state
        second, caught_up = StreamingRecognizer.resume(tiny_decoder, state, chunks[:cut])
        after = caught_up + run_stream(second, chunks[cut:])
        joined = committed_text(before) + " " + committed_text(after)
        wer = word_error_rate([reference], [joined])
        assert wer < 0.08, (cut, wer, joined)
        ref_words = normalize_text(reference).split()
        got = normalize_text(joined).split()
        assert len(got) == pytest.approx(len(ref_words), abs=2), (cut, joined)
        # Around the seam the alignment with the reference has no inserted (repeated) and
        # no deleted (dropped) word; a misrecognized word would be a substitution.
        seam = len(normalize_text(committed_text(before)).split())
        aligned = jiwer.process_words(" ".join(ref_words), " ".join(got))
        for op in aligned.alignments[0]:
            if op.type in ("insert", "delete"):
                near = op.hyp_start_idx <= seam + 3 and op.hyp_end_idx >= seam - 3
                assert not near, (cut, op, joined)
        new_words = [w for u in after if u.kind == "committed" for w in u.words]
        assert new_words[0].start >= commits[-1].sample_end / 16000 - 0.05


def test_batched_sessions_each_get_their_own_text(tiny_decoder: WhisperDecoder, lj_clips) -> None:
    picks = [lj_clips[0], lj_clips[2], lj_clips[9]]
    recs = {row["id"]: StreamingRecognizer(None, StreamConfig()) for row in picks}
    chunks = {row["id"]: make_chunks(load_audio(row["path"]), utterance=0) for row in picks}
    scheduler = BatchScheduler(tiny_decoder, max_batch=8)
    updates: dict[str, list[Update]] = {key: [] for key in recs}
    for step in range(max(len(c) for c in chunks.values())):
        for key, rec in recs.items():
            if step < len(chunks[key]):
                updates[key] += rec.feed(chunks[key][step], decode=False)
        for key, ups in scheduler.run(recs).items():
            updates[key] += ups
    refs = [row["transcript"] for row in picks]
    hyps = [committed_text(updates[row["id"]]) for row in picks]
    assert word_error_rate(refs, hyps) < 0.12, hyps
    assert scheduler.batches < scheduler.decoded  # several sessions per decode call


def test_streaming_does_not_double_the_first_word(tiny_decoder: WhisperDecoder,
                                                  manifest: dict[str, Any]) -> None:
    # fleurs_en_1904 opens with 1 s of silence and "However,": decoding its first 2 s,
    # tiny.en heard "However, however," twice in a row, and both were committed
    audio = load_audio(manifest["fleurs_en_1904"]["path"])
    result = replay(StreamingRecognizer(tiny_decoder), make_chunks(audio))
    text = result.committed_text()
    assert normalize_text(text).split()[:4] == ["however", "due", "to", "the"], text
    assert word_error_rate([manifest["fleurs_en_1904"]["transcript"]], [text]) < 0.15, text


def test_replay_reports_latency(tiny_decoder: WhisperDecoder, lj_clips) -> None:
    audio = load_audio(lj_clips[0]["path"])
    result = replay(StreamingRecognizer(tiny_decoder), make_chunks(audio))
    lat = result.word_latencies()
    assert len(lat) == len(committed_text([u for _, u in result.updates]).split())
    assert min(lat) > 0
    assert len(result.partial_to_commit()) == len(lat)
