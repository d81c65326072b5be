"""Helpers of the ops tests: child processes of the test, their output, their descendants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def dead_url() -> str:
    """A Redis URL nobody answers at."""
    from ops.redis_servers import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


def s2st(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    """`s2st ARGS` as a child process of the test, its output merged and captured as text."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "ops.cli", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def cpu_stack_config(rooms: dict[str, list[str]], **settings: str) -> str:
    """A stack config (TOML) with one worker a stage on the CPU profile's small models (tiny.en,
    Apertium, espeak-ng); ``settings`` go into that profile too."""
    profile = {"S2ST_ASR_MODEL": "tiny.en", "S2ST_ASR_DEVICE": "cpu", **settings,
               "S2ST_MT_BACKENDS": "*=apertium", "S2ST_TTS_BACKENDS": "*=espeak"}
    lines = ["[rooms]", *(f"{room} = {json.dumps(langs)}" for room, langs in rooms.items()),
             "[workers]", "asr = 1", "mt = 1", "tts = 1", "[profiles.cpu]",
             *(f"{name} = {json.dumps(value)}" for name, value in profile.items())]
    return "\n".join(lines) + "\n"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


class Output:
    """Every line a child prints, read by a thread (a select() on a buffered pipe misses lines)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, marker: str, timeout_s: float) -> bool:
        """True once a line contains ``marker``; False at the end of the output or timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(marker in line for line in self.lines):
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def finish(self, timeout_s: float) -> str:
        """Wait for the child to exit and its output to end; all of it."""
        self.proc.wait(timeout_s)
        self._thread.join(timeout_s)
        return self.text()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def all_gone(procs: list[psutil.Process], timeout_s: float = 10.0) -> list[psutil.Process]:
    """The processes still running after ``timeout_s`` (zombies count as gone)."""
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def stop_hard(proc: subprocess.Popen[str], children: list[psutil.Process]) -> None:
    """Cleanup after a failed test: kill what is left."""
    for p in [*children]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def exit_codes(output: str) -> dict[str, int]:
    """The children's exit statuses from the supervisor's last 'stopped: a=0, b=0' line."""
    lines = [ln for ln in output.splitlines() if "| stopped: " in ln]
    assert lines, output
    pairs = lines[-1].split("| stopped: ", 1)[1].split(", ")
    return {name: int(code) for name, code in (p.split("=") for p in pairs)}
