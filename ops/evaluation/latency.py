"""Latency of a speech-to-speech session, computation-aware, as SimulEval defines it.

Every time here is in seconds on the **source timeline**: 0 is the capture time of the
clip's first sample, and because the clip is spoken into the system at real-time pace,
source second ``x`` is captured at wall clock ``t0 + x``. A wall-clock time ``t`` of anything
downstream is therefore ``t - t0`` on the same axis, and every delay below includes all the
computation and queueing of the real system (SimulEval's computation-aware, ``_CA``, variant).

For output speech piece ``i`` (in the order the player played them):

- ``d_i``: when it was available at the player (read from the bus), the emission delay;
- ``dur_i``: its duration;
- playback as SimulEval lays it out: ``s_1 = d_1``, ``s_i = max(e_{i-1}, d_i)``,
  ``e_i = s_i + dur_i`` (speech is never overlapped; gaps are silence).

Then, per clip of source length ``|X|``:

- **StartOffset** ``= d_1``;
- **EndOffset** ``= e_last - |X|``;
- **AL** ``= 1/tau * sum_{k<=tau} (D_k - (k-1) * |X| / |Y|)`` over the output *words*, with
  ``D_k`` the time word ``k`` starts to be heard: its piece's ``s_i`` plus where the word
  starts in the piece, **measured** when the translated speech was transcribed back with word
  times (the word found there), else **estimated** by character position between the measured
  words around it (a piece spoken at an even rate: with nothing measured, its share of the
  piece by characters); ``|Y|`` the reference translation's length in words (the output's
  when there is none) and ``tau`` the first word with ``D_k >= |X|`` (all words when none is);
- **LAAL**: AL with ``|Y|`` replaced by ``max(|Y|, |Y_hat|)`` (no reward for over-generation).

On the **long-form stream** (the clip's whole output, the words ``D_k`` above, against
reference segments ``(o_j, L_j, R_j)``: where segment ``j``'s source speech starts, how long
it lasts, and its reference translation; one segment ``(0, |X|, reference)`` when the manifest
gives no segmentation), the output words are first **resegmented** (assigned to reference
segments), then each segment is scored with delays ``d = D_k - o_j`` from its start:

- **LongYAAL** (OmniSTEval, the IWSLT 2026 simultaneous track's latency; Polák, Papi,
  Bentivogli, Bojar, "Better Late Than Never", arXiv:2509.17349; ``omnisteval/scoring.py``
  and ``alignment.py``): SoftSegmenter resegmentation, then per segment
  ``YAAL_j = 1/tau * sum_{t<=tau} (d_t - (t-1) * L_j / max(|Y_hat_j|, |R_j|))`` over the
  words heard before the recording ends (``tau`` = the words with ``d_t < T - o_j``, ``T`` the
  recording's end; words after the segment's own end still count); a segment without such
  words is not scored; LongYAAL is the mean over the scored segments;
- **StreamLAAL** (Papi et al., "StreamAtt", ACL 2024; simulstream ``stream_laal.py``):
  resegmentation minimising the word edit distance (mwerSegmenter's criterion), then per
  segment LAAL with ``|X| = L_j`` and ``|Y| = |R_j|`` (the first word at or after the segment's
  end still counts, none after it); segments without words are not scored; the mean.

And the listener's view, measured rather than laid out: for every translated segment, its
**segment latency** is the time from the end of the source words it translates
(``capture_end``) to the moment the player started playing its first piece.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from player_agent.latency import percentile


@dataclass(frozen=True)
class OutputPiece:
    """One piece of translated speech, timed on the source timeline (seconds)."""

    emitted: float  # d_i: available at the player
    duration: float
    text: str
    source_end: float  # end of the source words it translates
    started: float | None = None  # when the player really started it (measured)
    first: bool = True  # the first piece of its segment
    # per word of ``text``: where it starts in the piece (s), measured; None where unknown
    word_starts: tuple[float | None, ...] = ()


def playback(pieces: Sequence[OutputPiece]) -> list[tuple[float, float]]:
    """SimulEval's playback intervals ``(s_i, e_i)``: each piece when it is available, or
    right after the previous one ends."""
    intervals: list[tuple[float, float]] = []
    end = -math.inf
    for p in pieces:
        start = max(end, p.emitted)
        end = start + p.duration
        intervals.append((start, end))
    return intervals


def start_offset(pieces: Sequence[OutputPiece]) -> float | None:
    return pieces[0].emitted if pieces else None


def end_offset(pieces: Sequence[OutputPiece], source_s: float) -> float | None:
    if not pieces:
        return None
    return playback(pieces)[-1][1] - source_s


def word_onsets(pieces: Sequence[OutputPiece]) -> list[float]:
    """When each output word starts to be heard (``D_k``), in output order."""
    return [t for t, _measured in timed_words(pieces)]


def timed_words(pieces: Sequence[OutputPiece]) -> list[tuple[float, bool]]:
    """``(D_k, measured)`` for each output word, in output order: measured where the piece
    says where the word starts, else by character position between the measured words around
    it (the piece's start and end when there are none: its share of the piece)."""
    out: list[tuple[float, bool]] = []
    for p, (start, _end) in zip(pieces, playback(pieces), strict=True):
        out += [(start + t, m) for t, m in _piece_word_times(p)]
    return out


def _piece_word_times(p: OutputPiece) -> list[tuple[float, bool]]:
    words = p.text.split()
    if not words:
        return []
    chars: list[int] = []  # where each word starts, in characters
    at = 0
    for w in words:
        chars.append(at)
        at += len(w) + 1
    total = at - 1  # characters of the text, spaces between words included
    measured: list[float | None] = [None] * len(words)
    last = 0.0
    for k, t in enumerate(p.word_starts[:len(words)]):
        if t is not None and last <= t:  # words in order (a word heard out of order: estimated)
            measured[k] = last = min(t, p.duration)
    anchors = [(c, t) for c, t in zip(chars, measured, strict=True) if t is not None]
    if not anchors or anchors[0][0] > 0:
        anchors.insert(0, (0, 0.0))
    anchors.append((total, p.duration))
    out: list[tuple[float, bool]] = []
    i = 0
    for c, t in zip(chars, measured, strict=True):
        if t is not None:
            out.append((t, True))
            continue
        while anchors[i + 1][0] <= c:
            i += 1
        (a, ta), (b, tb) = anchors[i], anchors[i + 1]
        out.append((ta + (tb - ta) * (c - a) / (b - a), False))
    return out


def match_heard(texts: Sequence[str], spans: Sequence[tuple[float, float]],
                heard: Sequence[tuple[str, float, float]]) -> list[tuple[float | None, ...]]:
    """Where each word of each piece starts in it, from the words transcribed back.

    ``texts``: the pieces' texts; ``spans``: ``(offset, length)`` of each piece in the audio
    transcribed back; ``heard``: ``(word, start, end)`` there. A heard word belongs to the piece
    its middle falls in (or the gap after it); within a piece, the text's words and the heard
    words are matched in order (longest common subsequence, compared without case and
    punctuation and accents) and a matched word starts where it was heard. Unmatched words get
    None."""
    if len(spans) != len(texts):
        raise ValueError(f"{len(texts)} pieces but {len(spans)} spans")
    by_piece: list[list[tuple[str, float]]] = [[] for _ in texts]
    for word, start, end in heard if spans else ():
        middle = (start + end) / 2
        i = max((n for n, (offset, _len) in enumerate(spans) if offset <= middle), default=0)
        offset, length = spans[i]
        by_piece[i].append((word, min(max(start - offset, 0.0), length)))
    out: list[tuple[float | None, ...]] = []
    for text, got in zip(texts, by_piece, strict=True):
        words = [_norm(w, accents=False) for w in text.split()]
        starts: list[float | None] = [None] * len(words)
        for k, j in _lcs(words, [_norm(w, accents=False) for w, _t in got]):
            starts[k] = got[j][1]
        out.append(tuple(starts))
    return out


def _norm(word: str, *, accents: bool = True) -> str:
    """``word`` lowercased, without punctuation (and without accents unless ``accents``)."""
    text = unicodedata.normalize("NFKC" if accents else "NFKD", word).lower()
    return "".join(ch for ch in text if ch.isalnum() and unicodedata.category(ch) != "Mn")


def _lcs(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b`` (empty strings never
    match)."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = (table[i + 1][j + 1] + 1 if a[i] and a[i] == b[j]
                           else max(table[i + 1][j], table[i][j + 1]))
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if a[i] and a[i] == b[j]:
            pairs.append((i, j))
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def average_lagging(delays: Sequence[float], source_s: float, reference_words: int | None,
                    *, length_adaptive: bool = False) -> float | None:
    """AL (or LAAL) of one instance; None without output or source."""
    if not delays or source_s <= 0:
        return None
    if delays[0] > source_s:
        return delays[0]
    target = reference_words if reference_words else len(delays)
    if length_adaptive:
        target = max(target, len(delays))
    rate = source_s / target  # |X| / |Y|
    total = 0.0
    tau = 0
    for k, d in enumerate(delays):
        total += d - k * rate
        tau = k + 1
        if d >= source_s:
            break
    return total / tau


def yaal(delays: Sequence[float], source_s: float, reference_words: int, *,
         recording_end: float = math.inf, long_form: bool = True) -> float | None:
    """YAAL of one segment (OmniSTEval ``scoring.py``, ``YAALScorer.compute``), ``delays`` from
    the segment's start, ``recording_end`` the recording's end from the same start.

    ``gamma = max(|delays|, |R|) / L``; the sum runs over the words before the recording's end
    (also before the segment's end unless ``long_form``), the first word at or after it
    excluded. None when no word is before it."""
    if not delays or source_s <= 0:
        return None
    end = recording_end if long_form else min(recording_end, source_s)
    rate = source_s / max(len(delays), reference_words)  # 1 / gamma
    total = 0.0
    tau = 0
    for k, d in enumerate(delays):
        if d >= end:
            break
        total += d - k * rate
        tau = k + 1
    return total / tau if tau else None


@dataclass(frozen=True)
class RefSegment:
    """One reference segment of the long-form stream: where its source speech starts on the
    source timeline, how long it lasts (s), and its reference translation."""

    start: float
    duration: float
    text: str


# OmniSTEval alignment.py: a punctuation token never aligns with a word
_PUNCT = frozenset(".!?,;:-()") | frozenset("。！？，；：—（）ー")


def _split_punct(word: str) -> list[str]:
    """Lowercased NFKC ``word`` with the punctuation at its edges split off, one token per
    mark (what the Moses tokenizer does to punctuation before SoftSegmenter aligns)."""
    text = unicodedata.normalize("NFKC", word).lower()
    head: list[str] = []
    tail: list[str] = []
    while text and unicodedata.category(text[0]).startswith("P"):
        head.append(text[0])
        text = text[1:]
    while text and unicodedata.category(text[-1]).startswith("P"):
        tail.insert(0, text[-1])
        text = text[:-1]
    return head + ([text] if text else []) + tail


def _similarity(a: str, b: str) -> float:
    """SoftSegmenter's: -inf between punctuation and a word, else the Jaccard similarity of
    the two tokens' character sets."""
    if (a in _PUNCT) != (b in _PUNCT):
        return -math.inf
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def soft_segment(words: Sequence[str], segments: Sequence[RefSegment]) -> list[int | None]:
    """The reference segment of each output word by SoftSegmenter (OmniSTEval
    ``alignment.py``): the tokens of the output and of the concatenated references are aligned
    to maximise the summed similarity, with no gap penalty (ties: match, then skip a reference
    token, then skip an output token); an output token left unaligned goes to the reference
    token after the gap if it is strictly more similar to it than to the one before, else to
    the one before (and the rest of that gap follows a choice of the one after); a word goes
    where its first token goes. None: a word that found no segment (a leading punctuation)."""
    ref: list[tuple[str, int]] = [(tok, j) for j, seg in enumerate(segments)
                                  for w in seg.text.split() for tok in _split_punct(w)]
    hyp: list[tuple[str, int]] = []  # (token, word index); first token of each word first
    firsts: dict[int, int] = {}
    for k, w in enumerate(words):
        for n, tok in enumerate(_split_punct(w) or [w]):
            if n == 0:
                firsts[len(hyp)] = k
            hyp.append((tok, k))
    out: list[int | None] = [None] * len(words)
    if not ref or not hyp:
        return out
    n, m = len(ref), len(hyp)
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[2] * (m + 1) for _ in range(n + 1)]  # 0 match, 1 skip a reference token, 2 skip output
    for i in range(1, n + 1):
        move[i][0] = 1
        for j in range(1, m + 1):
            match = score[i - 1][j - 1] + _similarity(ref[i - 1][0], hyp[j - 1][0])
            skip_ref, skip_hyp = score[i - 1][j], score[i][j - 1]
            if match >= skip_ref and match >= skip_hyp:
                score[i][j], move[i][j] = match, 0
            elif skip_ref >= skip_hyp:
                score[i][j], move[i][j] = skip_ref, 1
            else:
                score[i][j], move[i][j] = skip_hyp, 2
    pairs: list[tuple[int | None, int | None]] = []  # (ref token, output token), in order
    i, j = n, m
    while i > 0 or j > 0:
        step = move[i][j]
        if step == 0:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif step == 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    pairs.reverse()
    last: int | None = None  # the reference token last aligned
    ahead: int | None = None  # in a gap that chose the token after it: that token
    gap_end = 0  # the gap runs up to here (exclusive)
    for at, (r, h) in enumerate(pairs):
        if r is None and h is not None:
            if at >= gap_end:
                gap_end = next((x for x in range(at, len(pairs)) if pairs[x][0] is not None),
                               len(pairs))
                after = pairs[gap_end][0] if gap_end < len(pairs) else None
                token = hyp[h][0]
                to_next = _similarity(ref[after][0], token) if after is not None else -math.inf
                to_last = _similarity(ref[last][0], token) if last is not None else -math.inf
                if to_next > to_last:
                    r = ahead = after
                else:
                    r, ahead, gap_end = last, None, at
            else:
                r = ahead
        if r is not None and at >= gap_end:
            last = r
        if h is not None and r is not None and h in firsts:
            out[firsts[h]] = ref[r][1]
    return out


def mwer_segment(words: Sequence[str], segments: Sequence[RefSegment]) -> list[int]:
    """The reference segment of each output word so that the summed word edit distance of the
    segments to their references is smallest (mwerSegmenter's criterion, Matusov et al. 2005,
    which simulstream's StreamLAAL applies through ``mweralign``): a Levenshtein alignment of
    the output to the concatenated references, compared without case and punctuation; a
    matched or substituted word goes to its reference word's segment, an inserted word to the
    segment of the reference word before it (the first segment at the start). Ties, traced
    back from the end: leave out a reference word, then insert an output word, then match or
    substitute; these give ``mweralign``'s segmentation wherever it is a minimal one (it also
    never leaves the first segment empty, at the price of more edits: not done here)."""
    ref = [(_norm(w) or w, j) for j, seg in enumerate(segments) for w in seg.text.split()]
    hyp = [_norm(w) or w for w in words]
    if not segments:
        return []
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        cost[i][0] = i
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j - 1] + (ref[i - 1][0] != hyp[j - 1]),
                             cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    out = [0] * m
    i, j = n, m
    while j > 0:
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:  # a reference word left out
            i -= 1
        elif cost[i][j] == cost[i][j - 1] + 1:  # an output word inserted after ref[i - 1]
            out[j - 1] = ref[i - 1][1] if i > 0 else 0
            j -= 1
        else:  # matched or substituted
            out[j - 1] = ref[i - 1][1]
            i, j = i - 1, j - 1
    return out


@dataclass(frozen=True)
class LongForm:
    """LongYAAL and StreamLAAL of one long-form stream, per reference segment (None: not
    scored) and their means over the scored segments."""

    long_yaal: list[float | None]
    stream_laal: list[float | None]

    @property
    def long_yaal_s(self) -> float | None:
        return _mean_of(self.long_yaal)

    @property
    def stream_laal_s(self) -> float | None:
        return _mean_of(self.stream_laal)


def long_form(words: Sequence[str], delays: Sequence[float], segments: Sequence[RefSegment],
              recording_end: float | None = None) -> LongForm:
    """LongYAAL and StreamLAAL of the output ``words`` heard at ``delays`` (source timeline)
    against the reference ``segments``; ``recording_end`` (default: the last segment's end)
    is where the recording ends."""
    if len(words) != len(delays):
        raise ValueError(f"{len(words)} words but {len(delays)} delays")
    if recording_end is None:
        recording_end = max((s.start + s.duration for s in segments), default=0.0)
    soft = soft_segment(words, segments)
    mwer = mwer_segment(words, segments)
    yaals: list[float | None] = []
    laals: list[float | None] = []
    for j, seg in enumerate(segments):
        ref_len = len(seg.text.split())
        mine = [delays[k] - seg.start for k, s in enumerate(soft) if s == j]
        yaals.append(yaal(mine, seg.duration, ref_len,
                          recording_end=recording_end - seg.start) if seg.duration > 0 else None)
        mine = [delays[k] - seg.start for k, s in enumerate(mwer) if s == j]
        laals.append(average_lagging(mine, seg.duration, ref_len, length_adaptive=True))
    return LongForm(yaals, laals)


def _mean_of(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def segment_latencies(pieces: Sequence[OutputPiece]) -> list[float]:
    """Source words' end to their first piece starting to play, per segment (measured)."""
    return [p.started - p.source_end for p in pieces if p.first and p.started is not None]


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float | None
    p95: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "max": self.max}


def stats(values: Sequence[float]) -> Stats:
    if not values:
        return Stats(0, None, None, None)
    return Stats(len(values), percentile(list(values), 50), percentile(list(values), 95),
                 max(values))


@dataclass(frozen=True)
class ClipLatency:
    source_s: float
    start_offset_s: float | None
    end_offset_s: float | None
    al_s: float | None
    laal_s: float | None
    segment_latency_s: list[float]
    long_form: LongForm = field(default_factory=lambda: LongForm([], []))
    words: int = 0  # output words
    measured_words: int = 0  # of which the start was measured (heard back), not estimated

    @property
    def long_yaal_s(self) -> float | None:
        return self.long_form.long_yaal_s

    @property
    def stream_laal_s(self) -> float | None:
        return self.long_form.stream_laal_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_s": self.source_s, "start_offset_s": self.start_offset_s,
            "end_offset_s": self.end_offset_s, "al_s": self.al_s, "laal_s": self.laal_s,
            "long_yaal_s": self.long_yaal_s, "stream_laal_s": self.stream_laal_s,
            "long_form_per_segment": {"long_yaal_s": self.long_form.long_yaal,
                                      "stream_laal_s": self.long_form.stream_laal},
            "word_timing": word_timing(self.words, self.measured_words),
            "segment_latency_s": stats(self.segment_latency_s).as_dict(),
        }


def word_timing(words: int, measured: int) -> dict[str, Any]:
    """Where the output words' onsets came from: ``asr`` (every one measured in the speech
    transcribed back), ``characters`` (none: estimated by character position), ``mixed``."""
    source = "asr" if words and measured == words else "characters" if not measured else "mixed"
    return {"source": source, "words": words, "measured": measured}


def clip_latency(pieces: Sequence[OutputPiece], source_s: float,
                 reference_words: int | None,
                 segments: Sequence[RefSegment] = ()) -> ClipLatency:
    timed = timed_words(pieces)
    onsets = [t for t, _m in timed]
    words = [w for p in pieces for w in p.text.split()]
    return ClipLatency(
        source_s=source_s,
        start_offset_s=start_offset(pieces),
        end_offset_s=end_offset(pieces, source_s),
        al_s=average_lagging(onsets, source_s, reference_words),
        laal_s=average_lagging(onsets, source_s, reference_words, length_adaptive=True),
        segment_latency_s=segment_latencies(pieces),
        long_form=long_form(words, onsets, segments, source_s),
        words=len(onsets),
        measured_words=sum(1 for _t, m in timed if m),
    )
