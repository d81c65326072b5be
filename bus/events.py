"""Typed events and their flat Redis encoding.

An event is a pydantic model.  On the wire it is a flat Redis stream entry:
metadata as plain, readable fields (``redis-cli XRANGE`` shows session, seq,
stage, text and timestamps), binary or structured payloads (PCM, word lists)
packed with msgpack into a single ``payload`` field.  Every entry carries the
schema version ``v`` and its ``type``; decoding is strict: a missing field, an
unknown field, a wrong version or a value of the wrong type raises
:class:`MalformedEvent`.

Every session event carries ``capture_start``/``capture_end`` (wall-clock
epoch seconds of the first and last sample of the source audio it derives
from) and ``trace``, the hops it went through, so end-to-end and per-stage
latency can be computed from any stream.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import from_json, to_json

from bus.ids import Lang, RoomId, SessionId, SourceLang
from bus.text import as_text

SCHEMA_VERSION = 1
PAYLOAD_FIELD = "payload"

Fields = dict[str, bytes | str]
# an entry as read: a mapping of names to values, or Redis's flat [name, value, ...] list
EntryFields = dict[Any, Any] | list[Any]


class MalformedEvent(ValueError):
    """A stream entry that is not a valid event of this schema version."""


class Hop(BaseModel):
    """One stage an event went through: when the input was read and the output made."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    worker: str
    t_in: float
    t_out: float


class Record(BaseModel):
    """Base of everything written to a stream: version, type, flat encoding."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    TYPE: ClassVar[str] = ""
    PAYLOAD: ClassVar[frozenset[str]] = frozenset()

    v: int = SCHEMA_VERSION
    type: str = ""

    def model_post_init(self, _context: Any) -> None:
        if not self.type:
            self.type = self.TYPE

    @field_validator("v")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema version {v} is not supported (expected {SCHEMA_VERSION})")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v and cls.TYPE and v != cls.TYPE:
            raise ValueError(f"type {v!r} is not {cls.TYPE!r}")
        return v

    # -- encoding ------------------------------------------------------------
    def to_fields(self) -> Fields:
        """Flat stream fields: plain values as text, payload fields msgpack-packed."""
        flat = self.to_flat()
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def to_flat(self) -> list[Any]:
        """The stream fields as one flat ``[name, value, ...]`` list (what XADD takes).

        Runs once per output event: one pass over the values, the encoder picked by type."""
        out: list[Any] = []
        payload: dict[str, Any] | None = None
        payload_names = self.PAYLOAD
        encoders = _ENCODERS
        for name, value in self.__dict__.items():
            if name in payload_names:
                if payload is None:
                    payload = {}
                payload[name] = _plain_payload(value)
                continue
            out.append(name)
            encode = encoders.get(value.__class__)
            out.append(encode(value) if encode is not None else _plain(value))
        if payload is not None:
            out.append(PAYLOAD_FIELD)
            out.append(msgpack.packb(payload, use_bin_type=True))
        return out

    @classmethod
    def _from_data(cls, data: dict[str, Any]) -> Record:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MalformedEvent(_short_error(exc)) from None


class Event(Record):
    """A session event: where it comes from and when its source audio was captured."""

    room: RoomId
    session: SessionId
    seq: int = Field(ge=0)
    capture_start: float = Field(ge=0, allow_inf_nan=False)
    capture_end: float = Field(ge=0, allow_inf_nan=False)
    emitted: float = Field(0.0, allow_inf_nan=False)
    trace: list[Hop] = Field(default_factory=list)

    @field_validator("trace", mode="before")
    @classmethod
    def _trace(cls, v: Any) -> Any:
        if isinstance(v, str | bytes):
            try:  # pydantic-core's JSON parser: a few times faster than json.loads
                return from_json(v) if v else []
            except ValueError as exc:
                raise ValueError(f"trace is not JSON: {exc}") from None
        return v

    @property
    def order(self) -> tuple[int, int]:
        """The (seq, part) pair that orders this event within its session."""
        return (self.seq, self.__dict__.get("part", 0))


class ControlEvent(Event):
    """Session control: start/end announcements and the in-band end-of-stream marker.

    An ``end`` event is written as the last entry of each per-session stream;
    a stage that reads it flushes what it holds and forwards the marker.
    """

    TYPE: ClassVar[str] = "control"
    action: Literal["start", "end", "targets"]
    source_lang: str = ""
    speaker: str = ""
    langs: str = ""
    reason: str = ""

    @classmethod
    def end_of(cls, room: str, session: str, *, at: float, seq: int = 0, reason: str = "",
               emitted: float = 0.0, source_lang: str = "", speaker: str = "") -> ControlEvent:
        """The end-of-stream marker of a session's stream, as a producer writes it: ``at``
        is the capture time it marks (its ``capture_start`` and ``capture_end``), ``seq``
        the one after the stream's last event. A stage forwarding a marker derives it from
        the one it read instead (:meth:`bus.stage.PartitionContext.end_marker`)."""
        return cls(room=room, session=session, seq=seq, capture_start=at, capture_end=at,
                   action="end", reason=reason, emitted=emitted, source_lang=source_lang,
                   speaker=speaker)


class AudioChunk(Event):
    """A fixed-length piece of 16-bit mono PCM from a capture agent."""

    TYPE: ClassVar[str] = "audio"
    PAYLOAD: ClassVar[frozenset[str]] = frozenset({"pcm", "probs"})
    utterance: int = Field(ge=-1)  # -1: silence between utterances (sent only with send-all)
    offset: int = Field(ge=0)
    samples: int = Field(ge=0)
    rate: int = Field(gt=0, le=192_000)
    speech_prob: float = Field(ge=0, le=1)
    vad: Literal["speech", "silence"]
    utt_start: bool = False
    utt_end: bool = False
    pcm: bytes = b""
    probs: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pcm_size(self) -> Self:
        return _check_pcm(self, self.pcm, self.samples)


class Word(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str
    start: float
    end: float
    prob: float = 1.0


class Transcript(Event):
    """Recognized text: ``partial`` (may change) or ``committed`` (never revised)."""

    TYPE: ClassVar[str] = "transcript"
    PAYLOAD: ClassVar[frozenset[str]] = frozenset({"words"})
    kind: Literal["partial", "committed"]
    utterance: int = Field(ge=0)
    text: str
    lang: SourceLang
    sample_start: int = Field(ge=0)
    sample_end: int = Field(ge=0)
    final: bool = False
    source_lang: str = ""  # what was spoken, when it differs from ``lang`` (translate task)
    task: Literal["transcribe", "translate"] = "transcribe"
    words: list[Word] = Field(default_factory=list)


class Translation(Event):
    """Text in one target language, with the route (backends, pivots) that made it."""

    TYPE: ClassVar[str] = "translation"
    kind: Literal["partial", "committed"]
    utterance: int = Field(ge=0)
    src_seq: int = Field(ge=0)
    src_seq_first: int = Field(ge=0, default=0)
    src_lang: SourceLang
    lang: Lang
    text: str
    source_text: str = ""
    route: str = ""
    sample_start: int = Field(ge=0, default=0)
    sample_end: int = Field(ge=0, default=0)
    final: bool = False


class Speech(Event):
    """A piece of synthesized speech in one language (16-bit mono PCM)."""

    TYPE: ClassVar[str] = "speech"
    PAYLOAD: ClassVar[frozenset[str]] = frozenset({"pcm"})
    lang: Lang
    utterance: int = Field(ge=0, default=0)
    src_seq: int = Field(ge=0)
    part: int = Field(ge=0)
    last: bool
    text: str
    rate: int = Field(gt=0, le=192_000)
    samples: int = Field(ge=0)
    duration: float = Field(ge=0)
    voice: str = ""
    backend: str = ""
    speaker: str = ""
    pcm: bytes = b""

    @model_validator(mode="after")
    def _pcm_size(self) -> Self:
        return _check_pcm(self, self.pcm, self.samples)


class DeadLetter(Record):
    """An entry a stage gave up on, with the error and the original fields."""

    TYPE: ClassVar[str] = "dead"
    PAYLOAD: ClassVar[frozenset[str]] = frozenset({"original"})
    stage: str
    worker: str
    stream: str
    entry_id: str
    error: str
    attempts: int = Field(ge=0)
    failed_at: float
    session: str = ""
    original: dict[str, bytes] = Field(default_factory=dict)


EVENT_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls for cls in (ControlEvent, AudioChunk, Transcript, Translation, Speech, DeadLetter)
}


def decode(fields: EntryFields) -> Record:
    """Decode any stream entry by its ``type`` field (strict)."""
    data = _unflatten(fields)
    raw = data.get("type")
    if raw is None:
        raise MalformedEvent("entry has no 'type' field")
    type_name = raw if isinstance(raw, str) else str(raw)
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise MalformedEvent(f"unknown event type {type_name!r}")
    return cls._from_data(data)


def decode_event(fields: EntryFields) -> Event:
    """Decode a session event (anything but a dead letter)."""
    record = decode(fields)
    if not isinstance(record, Event):
        raise MalformedEvent(f"{record.type!r} is not a session event")
    return record


# -- helpers -------------------------------------------------------------------


def _check_pcm(event: Any, pcm: bytes, samples: int) -> Any:
    if len(pcm) != 2 * samples:
        raise ValueError(f"pcm has {len(pcm)} bytes, expected {2 * samples} for {samples} samples")
    return event


def _plain(value: Any) -> str:
    # the general case (subclasses, tuples, dicts, models); to_flat looks exact types up in
    # _ENCODERS first, and both write a value of one kind the same way
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, list | tuple | dict):
        # pydantic-core's serializer (models included): compact, UTF-8 kept, floats exact
        return _json(value)
    if value is None:
        return ""
    raise TypeError(f"cannot encode {type(value).__name__} as a plain field")


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _json(value: Any) -> str:
    return to_json(value).decode()


def _same(value: str) -> str:
    return value


def _float(value: float) -> str:
    # the shortest text that reads back as the same float, as repr() writes it but about
    # three times faster (timestamps: four per event); repr for inf and nan
    return to_json(value).decode() if value - value == 0 else repr(value)


# the encoder of each common plain value type (exact types: bool is not int here)
_ENCODERS: dict[type, Any] = {str: _same, int: int.__repr__, float: _float,
                              bool: _bool, list: _json}


def _plain_payload(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain_payload(v) for v in value]
    return value


def _unflatten(fields: EntryFields) -> dict[str, Any]:
    """Stream fields (bytes as read from Redis, or text; a mapping, or the flat
    ``[name, value, ...]`` list a raw read returns) to the model's input: names and plain
    values as text, the payload's fields merged in."""
    if isinstance(fields, dict):
        pairs: Any = fields.items()
        count = len(fields)
    else:
        it = iter(fields)
        pairs = zip(it, it, strict=False)
        count = len(fields) // 2
    try:  # the common case, in one pass: every name and plain value UTF-8 bytes
        data = {k.decode(): v.decode() for k, v in pairs if k != b"payload"}
    except (AttributeError, UnicodeDecodeError):
        return _unflatten_checked(fields)
    if len(data) == count:
        return data  # no payload, no name twice
    names = list(fields) if isinstance(fields, dict) else fields[::2]
    if names.count(b"payload") != 1 or len(data) != count - 1:
        return _unflatten_checked(fields)  # a name twice: let it say which
    payload = fields[b"payload"] if isinstance(fields, dict) else fields[
        2 * names.index(b"payload") + 1]
    for pname, pvalue in _payload(payload).items():
        if pname in data:
            raise MalformedEvent(f"field {pname!r} appears twice")
        data[pname] = pvalue
    return data


def _unflatten_checked(fields: EntryFields) -> dict[str, Any]:
    """:func:`_unflatten` for mixed text and bytes, naming what is wrong."""
    if isinstance(fields, dict):
        pairs: Any = fields.items()
    else:
        it = iter(fields)
        pairs = zip(it, it, strict=False)
    data: dict[str, Any] = {}
    for key, value in pairs:
        name = as_text(key, "replace")
        if name == PAYLOAD_FIELD:
            for pname, pvalue in _payload(value).items():
                if pname in data:
                    raise MalformedEvent(f"field {pname!r} appears twice")
                data[pname] = pvalue
            continue
        if name in data:
            raise MalformedEvent(f"field {name!r} appears twice")
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise MalformedEvent(f"field {name!r} is not UTF-8 text") from None
        data[name] = value
    return data


def _payload(value: Any) -> dict[str, Any]:
    try:
        payload = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except Exception as exc:
        raise MalformedEvent(f"payload is not msgpack: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("payload is not a map")
    return payload


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "entry"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
