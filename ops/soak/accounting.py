"""The soak's accounting: what went in and came out of each session, read from the streams.

Everything here is pure (lists of light records in, figures out), so that the rules can be
tested on hand-made streams. A record (:class:`Rec`) is a stream entry's plain fields
(its id, type, session, seq, part, kind, text, times and the workers of its trace), read
without decoding the PCM or word payloads.

For one session, per target language, following a committed segment down the pipeline:

- **audio**: chunk seqs are 0, 1, 2... with no gap (a capture agent cut off from Redis
  buffers and resyncs; a chunk it dropped would leave a gap);
- **transcripts**: committed transcript seqs are 0, 1, 2... (the ASR numbers its commits);
- **translations**: every committed transcript that has words is inside the source span
  ``[src_seq_first, src_seq]`` of a committed translation; the translations' source texts,
  joined, are the transcripts' words once each (``missing_words``/``extra_words``);
- **speech**: every committed translation that has words has pieces ``0..k``, the last one
  marked ``last``, whose texts are the translation's words.

A committed transcript with no translation, a translation with no speech or with pieces
missing, and a gap in the audio or transcript seqs count as **lost** (unless the entry that
should have produced them was dead-lettered: that is counted under dead letters). The same
key (a seq, or a seq and part) written twice to a stream counts as **duplicated**; a key
below one written before it in the same stream as **out of order**.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bus.deadletters import dead_reason as dead_reason  # (moved there; read here too)
from bus.text import as_text
from player_agent.latency import percentile

K = TypeVar("K", int, tuple[int, int])

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    """The plain fields of one stream entry (no payload)."""

    id: str
    type: str
    session: str
    seq: int
    part: int = 0
    kind: str = ""
    action: str = ""
    last: bool = False
    text: str = ""
    source_text: str = ""
    src_seq: int = 0
    src_seq_first: int = 0
    capture_end: float = 0.0
    emitted: float = 0.0
    hops: tuple[tuple[str, str], ...] = ()  # (stage, worker) of the trace, in order

    @property
    def ms(self) -> int:
        """When Redis wrote it (the entry id's milliseconds)."""
        return int(self.id.split("-", 1)[0])

    @property
    def is_end(self) -> bool:
        return self.type == "control" and self.action == "end"

    @property
    def committed(self) -> bool:
        return self.kind == "committed"

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, self.part)

    def worker(self, stage: str) -> str | None:
        """The worker of ``stage`` that made this event (the last such hop of its trace)."""
        found = None
        for s, w in self.hops:
            if s == stage:
                found = w
        return found


# a reply as text (a field that is not UTF-8 shows replacement characters)
_text = partial(as_text, errors="replace")


def parse_entry(entry_id: Any, fields: Mapping[Any, Any]) -> Rec | None:
    """A stream entry as a :class:`Rec`; None if it is not a session event (malformed,
    a dead letter)."""
    f = {_text(k): v for k, v in fields.items()}
    try:
        kind = _text(f["type"])
        if kind == "dead":
            return None
        hops: tuple[tuple[str, str], ...] = ()
        raw_trace = f.get("trace")
        if raw_trace:
            hops = tuple((str(h["stage"]), str(h["worker"])) for h in json.loads(raw_trace))
        return Rec(
            id=_text(entry_id), type=kind, session=_text(f["session"]), seq=int(f["seq"]),
            part=int(f.get("part", 0)), kind=_text(f.get("kind", "")),
            action=_text(f.get("action", "")), last=_text(f.get("last", "0")) in ("1", "True"),
            text=_text(f.get("text", "")), source_text=_text(f.get("source_text", "")),
            src_seq=int(f.get("src_seq", 0)), src_seq_first=int(f.get("src_seq_first", 0)),
            capture_end=float(f.get("capture_end", 0.0)), emitted=float(f.get("emitted", 0.0)),
            hops=hops,
        )
    except (KeyError, ValueError, TypeError):
        return None


# -- order, duplicates, gaps ------------------------------------------------------------------


def order_check(keys: Iterable[K]) -> tuple[list[K], int]:
    """Keys in stream order -> (keys written again, entries below a key written before them)."""
    seen: set[K] = set()
    dups: list[K] = []
    out_of_order = 0
    top: K | None = None
    for key in keys:
        if key in seen:
            dups.append(key)
            continue
        seen.add(key)
        if top is not None and key < top:
            out_of_order += 1
        else:
            top = key
    return dups, out_of_order


def seq_gaps(seqs: Iterable[int]) -> list[int]:
    """The seqs missing from 0..max."""
    have = set(seqs)
    return [s for s in range(max(have) + 1) if s not in have] if have else []


def _first_each(recs: Iterable[Rec], key: Any) -> list[Rec]:
    seen: set[Any] = set()
    out = []
    for r in recs:
        k = key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def word_diff(source: Sequence[str], got: Sequence[str]) -> tuple[int, int]:
    """(words of ``source`` not in ``got``, words of ``got`` not in ``source``), aligned."""
    missing = extra = 0
    matcher = difflib.SequenceMatcher(a=source, b=got, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            missing += a1 - a0
        if op in ("insert", "replace"):
            extra += b1 - b0
    return missing, extra


# -- one session ---------------------------------------------------------------------------------


@dataclass
class LangCheck:
    """One session in one target language."""

    translations: int = 0  # committed translations (distinct seqs)
    spoken: int = 0  # of them, spoken completely
    pieces: int = 0  # speech pieces (distinct seq, part)
    untranslated: list[int] = field(default_factory=list)  # transcript seqs: lost
    unspoken: list[int] = field(default_factory=list)  # translation seqs without speech: lost
    incomplete: list[int] = field(default_factory=list)  # translation seqs missing pieces: lost
    dead_lettered: list[str] = field(default_factory=list)  # not produced, dead-lettered
    duplicated_translations: list[int] = field(default_factory=list)
    duplicated_pieces: list[tuple[int, int]] = field(default_factory=list)
    out_of_order_translations: int = 0
    out_of_order_pieces: int = 0
    orphan_pieces: list[tuple[int, int]] = field(default_factory=list)  # no such translation
    missing_words: int = 0  # transcript words no translation's source text has
    extra_words: int = 0  # source-text words beyond the transcripts' (translated twice)
    speech_text_mismatch: list[int] = field(default_factory=list)
    translation_ended: bool = False
    speech_ended: bool = False
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (capture_end, s)

    @property
    def lost(self) -> int:
        return len(self.untranslated) + len(self.unspoken) + len(self.incomplete)

    @property
    def duplicated(self) -> int:
        return len(self.duplicated_translations) + len(self.duplicated_pieces)

    @property
    def out_of_order(self) -> int:
        return self.out_of_order_translations + self.out_of_order_pieces

    def as_dict(self) -> dict[str, Any]:
        return {
            "translations": self.translations, "spoken": self.spoken, "pieces": self.pieces,
            "lost": self.lost, "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "untranslated": self.untranslated, "unspoken": self.unspoken,
            "incomplete": self.incomplete, "dead_lettered": self.dead_lettered,
            "duplicated_translations": self.duplicated_translations,
            "duplicated_pieces": [list(k) for k in self.duplicated_pieces],
            "orphan_pieces": [list(k) for k in self.orphan_pieces],
            "missing_words": self.missing_words, "extra_words": self.extra_words,
            "speech_text_mismatch": self.speech_text_mismatch,
            "translation_ended": self.translation_ended, "speech_ended": self.speech_ended,
        }


@dataclass
class SessionCheck:
    audio_chunks: int = 0
    audio_gaps: list[int] = field(default_factory=list)
    audio_duplicated: list[int] = field(default_factory=list)
    audio_out_of_order: int = 0
    audio_ended: bool = False
    transcripts: int = 0  # committed (distinct seqs)
    transcript_gaps: list[int] = field(default_factory=list)
    transcript_duplicated: list[int] = field(default_factory=list)
    transcript_out_of_order: int = 0
    transcript_ended: bool = False
    langs: dict[str, LangCheck] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return (len(self.audio_gaps) + len(self.transcript_gaps)
                + sum(c.lost for c in self.langs.values()))

    @property
    def duplicated(self) -> int:
        return (len(self.audio_duplicated) + len(self.transcript_duplicated)
                + sum(c.duplicated for c in self.langs.values()))

    @property
    def out_of_order(self) -> int:
        return (self.audio_out_of_order + self.transcript_out_of_order
                + sum(c.out_of_order for c in self.langs.values()))

    @property
    def text_errors(self) -> int:
        return sum(c.missing_words + c.extra_words + len(c.speech_text_mismatch)
                   for c in self.langs.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "audio": {"chunks": self.audio_chunks, "gaps": self.audio_gaps,
                      "duplicated": self.audio_duplicated,
                      "out_of_order": self.audio_out_of_order, "ended": self.audio_ended},
            "transcripts": {"committed": self.transcripts, "gaps": self.transcript_gaps,
                            "duplicated": self.transcript_duplicated,
                            "out_of_order": self.transcript_out_of_order,
                            "ended": self.transcript_ended},
            "langs": {lang: c.as_dict() for lang, c in self.langs.items()},
            "lost": self.lost, "duplicated": self.duplicated, "out_of_order": self.out_of_order,
        }


def check_session(audio: Sequence[Rec], transcripts: Sequence[Rec],
                  translations: Mapping[str, Sequence[Rec]],
                  speech: Mapping[str, Sequence[Rec]],
                  dead: Mapping[str, set[int]] | None = None) -> SessionCheck:
    """Account one session from its streams, each in stream order: its audio, transcript and
    translation streams (per language) and its entries of the room's speech streams.

    ``dead``: seqs of the session's entries that a stage dead-lettered, by the input stream's
    family (``transcript``, ``translation:<lang>``): what they should have produced is not
    counted as lost."""
    dead = dead or {}
    out = SessionCheck()
    chunks = [r for r in audio if r.type == "audio"]
    out.audio_duplicated, out.audio_out_of_order = order_check(r.seq for r in chunks)
    out.audio_chunks = len({r.seq for r in chunks})
    out.audio_gaps = seq_gaps(r.seq for r in chunks)
    out.audio_ended = any(r.is_end for r in audio)

    committed = [r for r in transcripts if r.type == "transcript" and r.committed]
    out.transcript_duplicated, out.transcript_out_of_order = order_check(
        r.seq for r in committed)
    first = sorted(_first_each(committed, lambda r: r.seq), key=lambda r: r.seq)
    out.transcripts = len(first)
    out.transcript_gaps = seq_gaps(r.seq for r in first)
    out.transcript_ended = any(r.is_end for r in transcripts)
    source_words = words(" ".join(r.text for r in first))
    for lang in sorted(set(translations) | set(speech)):
        out.langs[lang] = _check_lang(first, source_words, translations.get(lang, ()),
                                      speech.get(lang, ()), dead.get("transcript", set()),
                                      dead.get(f"translation:{lang}", set()))
    return out


def _check_lang(transcripts: Sequence[Rec], source_words: list[str],
                stream: Sequence[Rec], speech: Sequence[Rec], dead_transcripts: set[int],
                dead_translations: set[int]) -> LangCheck:
    c = LangCheck()
    done = [r for r in stream if r.type == "translation" and r.committed]
    c.duplicated_translations, c.out_of_order_translations = order_check(r.seq for r in done)
    done = sorted(_first_each(done, lambda r: r.seq), key=lambda r: r.seq)
    c.translations = len(done)
    c.translation_ended = any(r.is_end for r in stream)
    spans = [(r.src_seq_first, r.src_seq) for r in done]
    for t in transcripts:
        if not words(t.text) or any(a <= t.seq <= b for a, b in spans):
            continue
        if t.seq in dead_transcripts:
            c.dead_lettered.append(f"transcript {t.seq}")
        else:
            c.untranslated.append(t.seq)
    c.missing_words, c.extra_words = word_diff(
        source_words, words(" ".join(r.source_text for r in done)))

    pieces = [r for r in speech if r.type == "speech"]
    c.duplicated_pieces, c.out_of_order_pieces = order_check(r.key for r in pieces)
    unique = sorted(_first_each(pieces, lambda r: r.key), key=lambda r: r.key)
    c.pieces = len(unique)
    c.speech_ended = any(r.is_end for r in speech)
    by_seq: dict[int, list[Rec]] = {}
    for p in unique:
        by_seq.setdefault(p.seq, []).append(p)
    known = {r.seq for r in done}
    c.orphan_pieces = [p.key for p in unique if p.seq not in known]
    for t in done:
        mine = by_seq.get(t.seq, [])
        if not words(t.text):
            continue
        if not mine:
            if t.seq in dead_translations:
                c.dead_lettered.append(f"translation {t.seq}")
            else:
                c.unspoken.append(t.seq)
            continue
        parts = [p.part for p in mine]
        if parts != list(range(len(mine))) or not mine[-1].last or \
                any(p.last for p in mine[:-1]):
            if t.seq in dead_translations:
                c.dead_lettered.append(f"translation {t.seq}")
            else:
                c.incomplete.append(t.seq)
            continue
        c.spoken += 1
        if words(" ".join(p.text for p in mine)) != words(t.text):
            c.speech_text_mismatch.append(t.seq)
        head = mine[0]
        if head.emitted and head.capture_end:
            c.latencies.append((head.capture_end, head.emitted - head.capture_end))
    return c


# -- latency windows ---------------------------------------------------------------------------


def latency_windows(points: Iterable[tuple[float, float]], t0: float, width_s: float,
                    end_s: float | None = None) -> list[dict[str, Any]]:
    """Segment latencies ``(capture_end, latency)`` in windows of ``width_s`` by when their
    source words ended (seconds after ``t0``): count, p50, p95, max of each window. With
    ``end_s`` (the end of the run) the windows up to it are listed even when empty, and words
    that ended after it (the last utterance, flushed when the capture stopped) count in the
    last one."""
    top = None if end_s is None else int(max(0.0, end_s - 1e-9) // width_s)
    buckets: dict[int, list[float]] = {}
    for when, value in points:
        index = max(0, int((when - t0) // width_s))
        buckets.setdefault(index if top is None else min(index, top), []).append(value)
    last = max(buckets, default=-1) if top is None else top
    out = []
    for i in range(last + 1):
        values = buckets.get(i, [])
        out.append({
            "start_s": round(i * width_s, 3), "end_s": round((i + 1) * width_s, 3),
            "count": len(values),
            "p50": round(percentile(values, 50), 3) if values else None,
            "p95": round(percentile(values, 95), 3) if values else None,
            "max": round(max(values), 3) if values else None,
        })
    return out


# -- fencing: a paused owner must not write once its lease is gone --------------------------------


def foreign_intervals(samples: Sequence[tuple[int, str | None]],
                      owner: str) -> list[tuple[int, int]]:
    """Lease samples ``(redis ms, holder or None)`` in time order -> the intervals between two
    samples in a row that both saw the lease not held by ``owner`` (``owner`` could not
    commit anything in them)."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    prev: int | None = None
    for ms, holder in samples:
        if holder != owner:
            if start is None:
                start = ms
            prev = ms
        else:
            if start is not None and prev is not None and prev > start:
                out.append((start, prev))
            start = prev = None
    if start is not None and prev is not None and prev > start:
        out.append((start, prev))
    return out


def fenced_writes(outputs: Iterable[Rec], stage: str, owner: str,
                  intervals: Sequence[tuple[int, int]]) -> list[Rec]:
    """Outputs that ``owner`` made as ``stage`` and Redis wrote inside one of ``intervals``:
    writes that fencing should have refused."""
    return [r for r in outputs if r.worker(stage) == owner
            and any(a < r.ms < b for a, b in intervals)]
