"""The Lua scripts of the bus, loaded from bus/lua/ and registered on a client."""

from __future__ import annotations

from importlib import resources
from typing import Any


def _source(name: str) -> str:
    return resources.files("bus").joinpath("lua").joinpath(name).read_text()


class Scripts:
    """Registered scripts (EVALSHA with automatic reload on NOSCRIPT)."""

    def __init__(self, client: Any) -> None:
        self.commit = client.register_script(_source("commit.lua"))
        self.renew = client.register_script(_source("renew.lua"))
        self.release = client.register_script(_source("release.lua"))
        self.expire_session = client.register_script(_source("expire_session.lua"))
        self.claim = client.register_script(_source("claim.lua"))
        self.fetch = client.register_script(_source("fetch.lua"))
        self.sweep_session = client.register_script(_source("sweep_session.lua"))
        self._client = client

    async def load(self) -> None:
        """Load every script into Redis (after a restart or SCRIPT FLUSH dropped them)."""
        for script in (self.commit, self.renew, self.release, self.expire_session, self.claim,
                       self.fetch, self.sweep_session):
            script.sha = await self._client.script_load(script.script)
