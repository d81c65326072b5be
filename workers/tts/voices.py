"""A stable voice per speaker, so listeners can tell the speakers of a room apart.

The choice is a hash of (session, speaker) over the backend's voice list: the same speaker
keeps the same voice on every worker and after restarts, with no shared state. Python's
`hash()` is salted per process, so a keyed BLAKE2 digest is used instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def voice_index(count: int, session: str, speaker: str) -> int:
    if count <= 0:
        raise ValueError("the backend offers no voice")
    key = f"{session}\x1f{speaker}".encode()
    digest = hashlib.blake2b(key, digest_size=8, person=b"s2st-tts").digest()
    return int.from_bytes(digest, "big") % count


def pick_voice(voices: Sequence[str], session: str = "", speaker: str = "") -> str:
    """The voice of this speaker among `voices` (the first one when no speaker is named)."""
    if not voices:
        raise ValueError("the backend offers no voice")
    if not speaker and not session:
        return voices[0]
    return voices[voice_index(len(voices), session, speaker)]
