"""Writing events from outside a stage (capture agents, replays, tests).

Applies the same retention as the runtime: each XADD trims the stream to the
configured window (MINID ~ now - retention) or length (MAXLEN ~).  Each write
also rings the stream's bell (``Keys.bell_of``) in the same round trip, so the
workers reading it wake at once.
"""

from __future__ import annotations

from typing import Any

from bus import clock
from bus.events import Record
from bus.keys import BELL_MAXLEN
from bus.settings import BusSettings
from bus.text import as_text


class Publisher:
    def __init__(self, client: Any, settings: BusSettings) -> None:
        self.r = client
        self.settings = settings

    def _trim(self) -> dict[str, Any]:
        if self.settings.retention_s > 0:
            return {"minid": int((clock.now() - self.settings.retention_s) * 1000),
                    "approximate": True}
        if self.settings.maxlen > 0:
            return {"maxlen": self.settings.maxlen, "approximate": True}
        return {}

    async def publish(self, key: str, event: Record) -> str:
        """Add one event; returns its entry id."""
        return (await self.publish_many(key, [event]))[0]

    async def publish_many(self, key: str, events: list[Record]) -> list[str]:
        """Add several events to one stream in one round trip, in order."""
        trim = self._trim()
        pipe = self.r.pipeline(transaction=False)
        now = clock.now()
        for event in events:
            if hasattr(event, "emitted"):
                event.emitted = now  # type: ignore[attr-defined]
            pipe.xadd(key, event.to_fields(), **trim)
        bell = self.settings.keys.bell_of(key)
        if bell is not None and events:
            pipe.xadd(bell, {"keys": key}, maxlen=BELL_MAXLEN, approximate=True)
        ids = (await pipe.execute())[:len(events)]
        return [as_text(i) for i in ids]
