"""Event encoding: readable flat fields, msgpack payloads, strict decoding."""

from __future__ import annotations

import json

import fakeredis
import msgpack
import pytest

from bus.events import (
    SCHEMA_VERSION,
    AudioChunk,
    ControlEvent,
    DeadLetter,
    Hop,
    MalformedEvent,
    Speech,
    Transcript,
    Translation,
    Word,
    decode,
    decode_event,
)


def _transcript() -> Transcript:
    return Transcript(
        room="r1", session="s1", seq=7, capture_start=1700000000.25, capture_end=1700000001.5,
        kind="committed", utterance=2, text="hello world", lang="en", sample_start=16000,
        sample_end=36000, final=True, words=[Word(word="hello", start=1.0, end=1.4, prob=0.9)],
        trace=[Hop(stage="asr", worker="w1", t_in=1700000001.6, t_out=1700000001.9)],
    )


def test_round_trip_of_every_event_type() -> None:
    events = [
        _transcript(),
        AudioChunk(room="r1", session="s1", seq=0, capture_start=1.0, capture_end=1.5,
                   utterance=0, offset=0, samples=4, rate=16000, speech_prob=0.7, vad="speech",
                   utt_start=True, pcm=b"\x01\x00\x02\x00\x03\x00\x04\x00", probs=[0.1, 0.9]),
        Translation(room="r1", session="s1", seq=3, capture_start=1.0, capture_end=2.0,
                    kind="committed", utterance=0, src_seq=3, src_lang="en", lang="es",
                    text="hola mundo", source_text="hello world", route="apertium:en-es"),
        Speech(room="r1", session="s1", seq=3, capture_start=1.0, capture_end=2.0, lang="es",
               src_seq=3, part=1, last=True, text="hola", rate=24000, samples=2, duration=2 / 24000,
               pcm=b"\x00\x00\xff\x7f"),
        ControlEvent(room="r1", session="s1", seq=0, capture_start=0, capture_end=0,
                     action="end", reason="eof"),
    ]
    for event in events:
        fields = event.to_fields()
        wire = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in fields.items()}
        assert decode(wire) == event


def test_end_of_builds_the_end_marker_a_producer_writes() -> None:
    marker = ControlEvent.end_of("r1", "s1", at=12.5, seq=4, reason="eof", emitted=13.0)
    assert marker == ControlEvent(room="r1", session="s1", seq=4, capture_start=12.5,
                                  capture_end=12.5, action="end", reason="eof", emitted=13.0)
    assert ControlEvent.end_of("r1", "s1", at=1.0) == ControlEvent(
        room="r1", session="s1", seq=0, capture_start=1.0, capture_end=1.0, action="end")


def test_metadata_is_plain_text_and_payload_is_msgpack() -> None:
    fields = _transcript().to_fields()
    assert fields["session"] == "s1" and fields["seq"] == "7" and fields["text"] == "hello world"
    assert fields["type"] == "transcript" and fields["v"] == str(SCHEMA_VERSION)
    assert json.loads(fields["trace"])[0]["stage"] == "asr"
    assert "words" not in fields
    assert msgpack.unpackb(fields["payload"])["words"][0]["word"] == "hello"


def test_readable_in_redis_xrange() -> None:
    r = fakeredis.FakeRedis()
    r.xadd("s", _transcript().to_fields())
    (_id, fields), = r.xrange("s")
    assert fields[b"text"] == b"hello world" and fields[b"capture_start"] == b"1700000000.25"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": "2"}, "schema version"),
        ({"seq": "minus one"}, "seq"),
        ({"seq": "-1"}, "seq"),
        ({"room": "a}b"}, "room"),
        ({"session": "x{y"}, "session"),
        ({"kind": "maybe"}, "kind"),
        ({"extra": "field"}, "extra"),
        ({"capture_end": "nan"}, "capture_end"),
        ({"trace": "not json"}, "trace"),
        ({"payload": b"\xc1"}, "payload"),
        ({"type": "unheard-of"}, "unknown event type"),
    ],
)
def test_strict_decoding_rejects_bad_entries(change: dict[str, object], message: str) -> None:
    fields = {**_transcript().to_fields(), **change}
    with pytest.raises(MalformedEvent, match=message):
        decode(fields)


def test_missing_fields_and_missing_type() -> None:
    fields = _transcript().to_fields()
    del fields["text"]
    with pytest.raises(MalformedEvent, match="text"):
        decode(fields)
    with pytest.raises(MalformedEvent, match="type"):
        decode({"hello": "world"})


def test_pcm_length_must_match_samples() -> None:
    with pytest.raises(ValueError, match="pcm has 3 bytes"):
        AudioChunk(room="r", session="s", seq=0, capture_start=0, capture_end=0, utterance=0,
                   offset=0, samples=2, rate=16000, speech_prob=0, vad="silence", pcm=b"abc")


def test_dead_letter_is_not_a_session_event() -> None:
    dead = DeadLetter(stage="asr", worker="w", stream="k", entry_id="1-0", error="boom",
                      attempts=3, failed_at=1.0, original={"a": b"b"})
    assert decode(dead.to_fields()) == dead
    with pytest.raises(MalformedEvent):
        decode_event(dead.to_fields())


def test_an_entry_as_redis_returns_it_a_flat_list_decodes_the_same() -> None:
    event = _transcript()
    flat = [x.encode() if isinstance(x, str) else x for x in event.to_flat()]
    assert decode(flat) == event
    assert dict(zip(event.to_flat()[::2], event.to_flat()[1::2], strict=True)) == (
        event.to_fields())
    # a name given twice (XADD accepts it) is malformed, whichever value would win
    with pytest.raises(MalformedEvent, match="'text' appears twice"):
        decode([*flat, b"text", b"again"])
    with pytest.raises(MalformedEvent, match="'words' appears twice"):
        decode([*flat, b"words", b"[]"])  # also inside the payload
    bad = list(flat)
    bad[bad.index(b"text") + 1] = b"\xff\xfe"
    with pytest.raises(MalformedEvent, match="'text' is not UTF-8"):
        decode(bad)


def test_floats_travel_exactly() -> None:
    chunk = AudioChunk(room="r", session="s", seq=0, capture_start=1796193671.6634672,
                       capture_end=1e-05, emitted=0.1 + 0.2, utterance=0, offset=0, samples=0,
                       rate=16000, speech_prob=1 / 3, vad="speech")
    back = decode({k.encode(): v if isinstance(v, bytes) else v.encode()
                   for k, v in chunk.to_fields().items()})
    assert back == chunk
    assert chunk.to_fields()["capture_start"] == "1796193671.6634672"
