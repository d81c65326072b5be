"""What the fault tests need: a TCP proxy that can drop its connections, worker processes
that can be killed and replaced, and the checks that nothing was lost or repeated."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.events import (
    AudioChunk,
    ControlEvent,
    DeadLetter,
    Speech,
    Transcript,
    Translation,
    decode,
    decode_event,
)
from ops.soak.proxy import DroppingProxy as DroppingProxy  # the fault tests use it

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    """``s2st`` worker processes of a test, by name, with their environment."""

    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path | None = None

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "S2ST_WORKER_ID": name, **extra}
        out = open(self.logs / f"{name}.log", "ab") if self.logs else subprocess.DEVNULL
        proc = subprocess.Popen(self.argv(*args), cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ops.cli", *args]

    def run(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        """Run an ``s2st`` command to its end: (exit status, what it wrote to stderr)."""
        done = subprocess.run(self.argv(*args), cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        return done.returncode, done.stderr

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=10)
        return codes

    def explain(self, codes: dict[str, int | None]) -> str:
        """Each process of ``codes`` that did not exit 0, with the end of its log."""
        out = []
        for name, code in codes.items():
            if code == 0:
                continue
            tail = ""
            if self.logs is not None and (self.logs / f"{name}.log").exists():
                lines = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
                tail = "\n".join(lines[-40:])
            out.append(f"--- {name} exited {code} ---\n{tail}")
        return "\n".join(out)


def worker_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    env.update(PYTHONUNBUFFERED="1", S2ST_REDIS_URL=url, S2ST_KEY_PREFIX=prefix,
               S2ST_LOG_LEVEL="warning", S2ST_LEASE_TTL_MS="1500", S2ST_HEARTBEAT_MS="300",
               S2ST_DISCOVERY_MS="200", S2ST_TTS_BACKENDS="*=espeak", S2ST_ASR_THREADS="1",
               **extra)
    return env


def events(client: Any, key: str, session: str | None = None) -> list[Any]:
    """Every decodable event of ``key`` (of one session), in stream order."""
    out = []
    for _id, fields in client.xrange(key):
        if session is not None and fields.get(b"session") != session.encode():
            continue
        with contextlib.suppress(ValueError):
            out.append(decode_event(fields))
    return out


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def check_session(client: Any, keys: Any, room: str, session: str,
                  langs: list[str]) -> dict[str, int]:
    """Every audio chunk on the bus once, in order; every committed source segment translated
    once per language, in order, and every translation spoken once (its pieces once each, in
    order); the streams ended."""
    from bus.keys import Partition

    part = Partition(room, session)
    # the audio: every chunk the capture agent cut is on the bus once, in order (an outage
    # that lost buffered chunks would leave a gap in the seqs)
    audio = [e for e in events(client, keys.stream("audio", part)) if isinstance(e, AudioChunk)]
    assert audio and [e.seq for e in audio] == list(range(len(audio))), f"{session}: audio seqs"
    assert all(b.offset >= a.offset + a.samples for a, b in itertools.pairwise(audio)), \
        f"{session}: audio offsets overlap"
    transcripts = events(client, keys.stream("transcript", part))
    assert isinstance(transcripts[-1], ControlEvent), "the transcript stream has no end"
    committed = [e for e in transcripts if isinstance(e, Transcript) and e.kind == "committed"]
    assert [e.seq for e in committed] == list(range(len(committed))), "transcript seqs"
    source = words(" ".join(e.text for e in committed))
    assert source, f"{session}: nothing was recognized"
    counts = {"chunks": len(audio), "transcripts": len(committed)}
    for lang in langs:
        stream = events(client, keys.stream("translation", Partition(room, session, lang)))
        assert isinstance(stream[-1], ControlEvent), f"{session}/{lang}: no end of translation"
        done = [e for e in stream if isinstance(e, Translation) and e.kind == "committed"]
        seqs = [e.seq for e in done]
        assert seqs == sorted(set(seqs)), f"{session}/{lang}: translations out of order: {seqs}"
        # the spans translated are the committed text, once, in order
        assert words(" ".join(e.source_text for e in done)) == source, (session, lang)
        speech = events(client, keys.room_stream("speech", room, lang), session)
        assert isinstance(speech[-1], ControlEvent), f"{session}/{lang}: no end of speech"
        pieces = [(e.seq, e.part, e.last, e.text) for e in speech if isinstance(e, Speech)]
        keys_seen = [(s, p) for s, p, _l, _t in pieces]
        assert len(keys_seen) == len(set(keys_seen)), f"{session}/{lang}: a piece twice"
        assert keys_seen == sorted(keys_seen), f"{session}/{lang}: pieces out of order"
        for t in done:
            if not words(t.text):
                continue
            mine = [p for p in pieces if p[0] == t.seq]
            assert [p[1] for p in mine] == list(range(len(mine))) and mine and mine[-1][2], \
                (session, lang, t.seq, mine)
            assert words(" ".join(p[3] for p in mine)) == words(t.text), (session, lang, t.seq)
        counts[f"translations_{lang}"] = len(done)
        counts[f"pieces_{lang}"] = len(pieces)
    return counts


def dead_letters(client: Any, keys: Any, room: str) -> list[DeadLetter]:
    return [d for _id, fields in client.xrange(keys.deadletter(room))
            if isinstance(d := decode(fields), DeadLetter)]
