"""Settings of `s2st play` (``S2ST_PLAY_*``) and `s2st web` (``S2ST_WEB_*``), each with a
flag made from it (bus/command.py). Which room, language and output are the commands' own
flags; so is --no-auth, which no variable may turn on."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlaySettings(BaseSettings):
    """How the player buffers and paces a room's speech."""

    model_config = SettingsConfigDict(env_prefix="S2ST_PLAY_", extra="ignore",
                                      env_ignore_empty=True)

    jitter_ms: float = Field(150.0, description="hold of a segment's first piece while other "
                             "speakers are open")
    deadline_ms: float = Field(1000.0, description="a missing piece is skipped after this wait")
    rate: int = Field(24000, description="output sample rate")
    end_wait: float = Field(
        30.0, json_schema_extra={"metavar": "S"},
        description="with --until-ended: once the room is quiet, wait this long plus the "
        "session's length for a session's end to reach the speech stream, then give up and "
        "say where it stopped")
    start_wait: float = Field(
        300.0, json_schema_extra={"metavar": "S"},
        description="with --until-ended: give up if nobody speaks in the room within this long")


class WebSettings(BaseSettings):
    """Where `s2st web` listens and how it treats browser speakers (S2ST_WEB_SECRET and
    S2ST_WEB_URL are read where they are used: player_agent/web)."""

    model_config = SettingsConfigDict(env_prefix="S2ST_WEB_", extra="ignore",
                                      env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8080, description="listen port")
    cert: str | None = Field(None, description="serve HTTPS with this certificate (PEM; "
                             "with --key)")
    key: str | None = Field(None, description="the certificate's private key (PEM)")
    speaker_grace: float = Field(
        30.0, json_schema_extra={"metavar": "S"},
        description="how long a browser speaker's session waits for its page to reconnect "
        "after its link dropped, before it is ended")
