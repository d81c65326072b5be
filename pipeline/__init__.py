"""The s2st pipeline, declared once: which participant writes and reads which stream family.

::

    capture ──audio──▶ asr ──transcript──▶ mt ──translation:<lang>──▶ tts ──speech:<lang>──▶ player
                        (per session)       (per session, language)      (per room, language)
                                 web page ◀── transcript / translation / speech

Everything that walks the key layout by family (``s2st acl``, ``replay``, ``export``,
``session``, the stack's stage list, the web feed) iterates over :data:`PIPELINE`, and the
workers run with it: a stage asking for a stream of a family it does not write gets a
``ValueError`` (``bus.stage.PartitionContext.stream``).

Not a family here: the dead letters (``P:{room}:deadletter``), written by the runtime on
behalf of any stage (docs/architecture.md, the key table).
"""

from __future__ import annotations

from bus.events import AudioChunk, Speech, Transcript, Translation
from bus.topology import Family, Topology

# the participants: the session source (capture agents, and browser speakers through the web
# server's capture agents), the consumer stages, and the readers outside the runtime
STAGES = ("capture", "asr", "mt", "tts", "player", "web")

PIPELINE = Topology(
    stages=STAGES,
    families=(
        # 500 ms chunks of one speaker's session
        Family("audio", writer="capture", readers=("asr",), events=(AudioChunk.TYPE,)),
        # partial and committed transcripts of a session
        Family("transcript", writer="asr", readers=("mt", "web"), events=(Transcript.TYPE,)),
        # translations (and live captions of partials) of a session, one stream per language
        Family("translation", writer="mt", readers=("tts", "web"),
               events=(Translation.TYPE,), per_lang=True),
        # synthesized speech of every session of the room, one stream per language
        Family("speech", writer="tts", readers=("player", "web"), events=(Speech.TYPE,),
               per_session=False, per_lang=True),
    ),
)

__all__ = ["PIPELINE", "STAGES"]
