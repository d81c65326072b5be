"""One page's live feed of a room: captions and speech of one language, as messages.

A :class:`RoomFeed` follows, with plain XREAD from the current end (nothing is kept on the
server per page), the room's speech stream of the page's language and, for every session
of the room that is active (or ended less than ``linger_s`` ago), its transcript stream
and its translation stream in that language.  Sessions that appear later are followed
from their beginning.  Speech pieces go through the same
jitter buffer as the player (order, no duplicates, gaps skipped after the deadline) and
are released as soon as they may be played; the page queues them without overlap.
With ``lang=None`` and ``only_session`` (the speaker page's own captions) it follows that
session's transcript stream alone, from its beginning: no speech, no translation.

Messages are dicts (sent as JSON) except speech, sent as one binary frame:
``uint32 big-endian header length | header JSON (UTF-8) | int16 LE mono PCM``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from bus import clock
from bus.events import ControlEvent, Speech, Transcript, Translation
from bus.ids import check_id, check_lang
from bus.keys import Keys
from bus.registry import Registry, SessionInfo
from pipeline import PIPELINE
from player_agent.jitter import JitterBuffer, Piece
from player_agent.subscriber import LIVE, Entry, StreamReader

Message = dict[str, Any] | bytes

# what the page reads of the pipeline (pipeline/__init__.py): the sessions' captions and the
# room's speech; an end marker in a room-wide stream ends that session's speech
WEB_READS = PIPELINE.read_by("web")
ROOM_WIDE = frozenset(f.name for f in WEB_READS if f.room_wide)


def speech_frame(speech: Speech, available: float, now: float) -> bytes:
    header = {
        "type": "speech", "session": speech.session, "seq": speech.seq, "part": speech.part,
        "last": speech.last, "rate": speech.rate, "samples": speech.samples,
        "text": speech.text, "speaker": speech.speaker, "capture_start": speech.capture_start,
        "capture_end": speech.capture_end, "available": available, "server_time": now,
    }
    raw = json.dumps(header, ensure_ascii=False).encode()
    return struct.pack(">I", len(raw)) + raw + speech.pcm


def parse_speech_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """The inverse of :func:`speech_frame` (what the page does, for tests and tools)."""
    (size,) = struct.unpack(">I", frame[:4])
    return json.loads(frame[4:4 + size]), frame[4 + size:]


def caption_message(event: Transcript | Translation, read_at: float) -> dict[str, Any]:
    return {
        "type": "caption", "track": "source" if isinstance(event, Transcript) else "translation",
        "session": event.session, "utterance": event.utterance, "seq": event.seq,
        "kind": event.kind, "final": event.final, "text": event.text, "lang": event.lang,
        "capture_end": event.capture_end, "latency": read_at - event.capture_end,
    }


class RoomFeed:
    def __init__(self, client: Any, keys: Keys, room: str, lang: str | None, *,
                 hold_s: float = 0.15, deadline_s: float = 1.0, block_ms: int = 250,
                 rescan_s: float = 1.0, linger_s: float = 120.0,
                 only_session: str | None = None) -> None:
        self.room = check_id(room, "room id")
        self.lang = None if lang is None else check_lang(lang)
        self.only_session = None if only_session is None else check_id(only_session,
                                                                        "session id")
        self.keys = keys
        self.registry = Registry(client, keys)
        self.block_ms = block_ms
        self.reader = StreamReader(client, block_ms=block_ms)
        self.buffer = JitterBuffer(hold_s, deadline_s)
        self.rescan_s = rescan_s
        self.linger_s = linger_s
        self._sessions: dict[str, SessionInfo] = {}
        self._targets: list[str] = []
        self._next_scan = 0.0

    async def messages(self) -> AsyncIterator[Message]:
        """The feed, forever: a sessions list first, then captions, speech and updates."""
        if self.lang is not None:
            for family in WEB_READS:  # the room's speech in the page's language
                if family.room_wide:
                    await self.reader.add(family.key(self.keys, self.room, lang=self.lang), LIVE)
        first = True
        while True:
            now = clock.now()
            if now >= self._next_scan:
                self._next_scan = now + self.rescan_s
                changed = await self._scan_sessions(LIVE if first else "0-0")
                if changed or first:
                    yield self.sessions_message()
                first = False
            wake = self.buffer.next_wakeup(clock.now())
            wait_ms = self.block_ms if wake is None else (wake - clock.now()) * 1000
            self.reader.block_ms = int(min(max(wait_ms, 1), self.block_ms))
            for entry in await self.reader.read():
                message = self._handle(entry)
                if message is not None:
                    yield message
            now = clock.now()
            while (piece := self.buffer.pop(now)) is not None:
                entry = piece.item
                yield speech_frame(entry.event, entry.read_at, now)

    def sessions_message(self) -> dict[str, Any]:
        return {"type": "sessions", "room": self.room, "lang": self.lang,
                "langs": self._targets, "sessions": [
                    {k: v for k, v in asdict(s).items() if k in ("session", "speaker",
                                                                  "source_lang", "status")}
                    for s in self._sessions.values()
                ]}

    async def _scan_sessions(self, position: str) -> bool:
        """Follow the room's live sessions (and those ended in the last ``linger_s``)."""
        targets = await self.registry.room_targets(self.room)
        changed = targets != self._targets
        self._targets = targets
        now = clock.now()
        for info in await self.registry.sessions(self.room):
            if self.only_session is not None:
                if info.session != self.only_session:
                    continue
                position = "0-0"  # the speaker's own captions, all of them (after a reconnect)
            # the session's captions: its source text, and its translation into the language
            streams: tuple[str, ...] = tuple(
                family.key(self.keys, self.room, info.session, self.lang if family.per_lang
                           else None)
                for family in WEB_READS
                if family.per_session and (self.lang is not None or not family.per_lang))
            known = self._sessions.get(info.session)
            recent = info.active or now - info.ended < self.linger_s
            if not recent:
                if known is not None:
                    for stream in streams:
                        self.reader.remove(stream)
                    del self._sessions[info.session]
                    changed = True
                continue
            if known is None:
                for stream in streams:
                    await self.reader.add(stream, position)
            if known is None or known.status != info.status or known.speaker != info.speaker:
                changed = True
            self._sessions[info.session] = info
        return changed

    def _handle(self, entry: Entry) -> Message | None:
        event = entry.event
        if isinstance(event, Speech) and event.lang == self.lang:
            self.buffer.push(Piece(event.session, event.seq, event.part, event.last,
                                   event.capture_start, event.capture_end, entry.read_at, entry))
            return None
        if isinstance(event, Transcript):
            return caption_message(event, entry.read_at)
        if isinstance(event, Translation) and event.lang == self.lang:
            return caption_message(event, entry.read_at)
        if isinstance(event, ControlEvent) and event.action == "end":
            family = self.keys.local_part(entry.stream).split(":", 1)[0]
            if family in ROOM_WIDE:
                self.buffer.end_session(event.session)
            return {"type": "end", "session": event.session, "track": family}
        return None
