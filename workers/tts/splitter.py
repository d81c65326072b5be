"""Cut a translated segment into pieces that can be synthesized and played one after another.

Pieces end at clause or sentence boundaries where possible. The first piece is kept short
(a few words) so its audio is ready quickly, and each later piece may be about twice as long
as the one before, up to `max_words`: while a piece plays, the next, longer one is being
synthesized, so playback starts early and does not run dry as long as the voice is faster
than real time.
"""

from __future__ import annotations

from dataclasses import dataclass

SENTENCE_END = ".!?…。！？"
CLAUSE_END = ",;:，、；：—–"
CLOSERS = "\"'»”’)]}"
ABBREVIATIONS = frozenset(
    "sr sra srta dr dra ud uds etc mr mrs ms st vs no núm pág p.ej e.g i.e approx dept jr".split()
)
# Words a clause-less phrase may be cut before (conjunctions, relatives, prepositions).
CUT_BEFORE = frozenset(
    """
    y e o u ni que pero porque aunque cuando como donde para por con sin sobre entre hasta desde
    and or but nor that which who because although when while where for with without to from
    into about between until
    et ou mais donc car qui quand comme pour avec sans dans entre
    und oder aber denn dass weil wenn als für mit ohne zwischen
    mas porém quando onde com sem até
    """.split()
)
MAX_TOKEN_CHARS = 40


@dataclass(frozen=True)
class SplitPolicy:
    first_words: int = 4  # the first piece has at most this many words
    min_first_words: int = 2  # ... and at least this many when the text is cut
    growth: float = 2.0  # each later piece may be this many times longer
    max_words: int = 24  # no piece is longer than this

    def __post_init__(self) -> None:
        if not 1 <= self.min_first_words <= self.first_words <= self.max_words:
            raise ValueError(
                "need 1 <= min_first_words <= first_words <= max_words, got "
                f"{self.min_first_words}, {self.first_words}, {self.max_words}"
            )
        if self.growth < 1.0:
            raise ValueError(f"growth must be >= 1, not {self.growth}")

    def budget(self, index: int) -> int:
        return min(self.max_words, round(self.first_words * self.growth**index))


def split_text(text: str, policy: SplitPolicy | None = None) -> list[str]:
    """Split `text` into pieces to speak in order; [] when it holds no words."""
    policy = policy or SplitPolicy()
    words = _words(text)
    if not words:
        return []
    units = _clauses(words)
    pieces: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        remaining = list(unit)
        while remaining:
            budget = policy.budget(len(pieces))
            room = budget - len(current)
            if len(remaining) <= room:
                current.extend(remaining)
                remaining = []
                if len(current) == budget:
                    pieces.append(current)
                    current = []
            elif current:
                pieces.append(current)  # the unit does not fit: close the piece at a boundary
                current = []
            else:
                cut = _cut_point(remaining, budget, policy.min_first_words)
                pieces.append(remaining[:cut])
                remaining = remaining[cut:]
    if current:
        pieces.append(current)
    return [" ".join(piece) for piece in pieces]


def _words(text: str) -> list[str]:
    words: list[str] = []
    for token in text.split():
        while len(token) > MAX_TOKEN_CHARS:
            words.append(token[:MAX_TOKEN_CHARS])
            token = token[MAX_TOKEN_CHARS:]
        if token:
            words.append(token)
    return words


def _clauses(words: list[str]) -> list[list[str]]:
    """Group words into clauses, each ending at a clause or sentence mark."""
    clauses: list[list[str]] = []
    current: list[str] = []
    for word in words:
        current.append(word)
        if ends_clause(word):
            clauses.append(current)
            current = []
    if current:
        clauses.append(current)
    return clauses


def ends_sentence(word: str) -> bool:
    core = word.rstrip(CLOSERS)
    if not core or core[-1] not in SENTENCE_END:
        return False
    if core[-1] == ".":
        stem = core.rstrip(".").lower()
        if stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
            return False
    return True


def ends_clause(word: str) -> bool:
    core = word.rstrip(CLOSERS)
    return bool(core) and (core[-1] in CLAUSE_END or ends_sentence(word))


def _cut_point(words: list[str], budget: int, minimum: int) -> int:
    """How many words to take from a clause longer than `budget`."""
    lowest = min(minimum, budget)
    for count in range(budget, lowest - 1, -1):
        if count < len(words) and words[count].lower().strip("¿¡\"'«(") in CUT_BEFORE:
            return count
    return budget
