"""Live captions of one session: its committed transcript and one language's translation.

Follows ``transcript:<session>`` and ``translation:<session>:<lang>`` with XREAD in a thread
and hands each committed line (with its delay from the end of the source audio) to a
callback, until both streams reached their end marker or it is stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from bus.events import ControlEvent, MalformedEvent, Transcript, Translation, decode_event
from bus.keys import Keys, Partition
from bus.text import as_text


@dataclass(frozen=True)
class Caption:
    lang: str
    text: str
    delay_s: float  # emitted - capture_end: how long after the words were spoken
    source: bool  # True: the recognized source text; False: its translation


class CaptionFollower:
    def __init__(self, connect: Callable[[], Any], keys: Keys, room: str, session: str,
                 lang: str, emit: Callable[[Caption], None], block_ms: int = 300) -> None:
        part = Partition(room, session)
        self.transcript = keys.stream("transcript", part)
        self.translation = keys.stream("translation", Partition(room, session, lang))
        self.connect = connect  # makes a synchronous Redis client
        self.emit = emit
        self.block_ms = block_ms
        self.captions: list[Caption] = []
        self.ended: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="captions")

    @property
    def done(self) -> bool:
        return self.ended >= {self.transcript, self.translation}

    def start(self) -> CaptionFollower:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        client = self.connect()
        positions: dict[Any, Any] = {self.transcript: "0-0", self.translation: "0-0"}
        try:
            while not self._stop.is_set() and not self.done:
                try:
                    reply: Any = client.xread(positions, block=self.block_ms, count=100)
                except (redis.exceptions.RedisError, OSError):
                    self._stop.wait(0.5)  # Redis restarting or stopped: try again
                    continue
                for raw_key, entries in reply or []:
                    key = as_text(raw_key)
                    for entry_id, fields in entries:
                        positions[key] = entry_id.decode() if isinstance(entry_id, bytes) \
                            else entry_id
                        self._handle(key, fields)
        finally:
            client.close()

    def _handle(self, key: str, fields: dict[Any, Any]) -> None:
        try:
            event = decode_event(fields)
        except MalformedEvent:
            return
        caption: Caption | None = None
        if isinstance(event, ControlEvent) and event.action == "end":
            self.ended.add(key)
        elif isinstance(event, Transcript) and event.kind == "committed" and event.text.strip():
            caption = Caption(event.lang, event.text.strip(), event.emitted - event.capture_end,
                              source=True)
        elif isinstance(event, Translation) and event.kind == "committed" and event.text.strip():
            caption = Caption(event.lang, event.text.strip(), event.emitted - event.capture_end,
                              source=False)
        if caption is not None:
            self.captions.append(caption)
            self.emit(caption)
