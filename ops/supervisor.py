"""Child processes of the local stack: started, their output prefixed, stopped in order.

Each child runs in its own session (a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order: players and capture first, workers next, Redis
last) and is asked by the kernel to exit if the supervisor itself dies
(``PR_SET_PDEATHSIG``), so nothing outlives the stack.  A *service* that exits while the
stack runs is a failure; a *task* (a capture, a player) is expected to finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

_PR_SET_PDEATHSIG = 1
_prctl: Any
try:  # looked up once here: the forked child must not load libraries (other threads run)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children still get SIGTERM from stop()
    _prctl = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: SIGTERM this child when the process that started it dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    tier: int  # stopped from the highest tier down
    service: bool
    proc: subprocess.Popen[bytes]
    pump: threading.Thread | None = None
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()


@dataclass
class Supervisor:
    """Starts children, prefixes their output with their name, stops them all."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    stop_timeout_s: float = 30.0
    children: list[Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    signals: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- output ---------------------------------------------------------------------
    def say(self, text: str, name: str = "s2st") -> None:
        with self._lock:
            for line in text.splitlines() or [""]:
                self.out.write(f"{name:<7}| {line}\n")
            self.out.flush()

    def _pump(self, child: Child) -> None:
        stream = child.proc.stdout
        assert stream is not None
        for raw in iter(stream.readline, b""):
            self.say(raw.decode("utf-8", "replace").rstrip("\n"), child.name)
        stream.close()

    # -- children -------------------------------------------------------------------
    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
              tier: int = 1, service: bool = True, cwd: str | None = None) -> Child:
        proc = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        child = Child(name, list(argv), tier, service, proc)
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True,
                                      name=f"pump-{name}")
        child.pump.start()
        self.children.append(child)
        return child

    def failed(self) -> Child | None:
        """A service child that exited on its own, if any."""
        for child in self.children:
            if child.service and not child.stopping and child.returncode is not None:
                return child
        return None

    def wait_until(self, ready: Callable[[], bool], timeout_s: float,
                   poll_s: float = 0.2) -> bool:
        """Wait for ``ready()``; False on timeout, on a stop request or when a service died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stop_requested.is_set() or self.failed() is not None:
                return False
            if ready():
                return True
            time.sleep(poll_s)
        return False

    def wait_child(self, child: Child, timeout_s: float | None = None) -> int | None:
        """Wait for one child to exit (or a stop request, a failed service, the timeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while child.returncode is None:
            if self.stop_requested.is_set() or self.failed() is not None:
                return None
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return child.returncode

    def run_forever(self) -> Child | None:
        """Block until a stop is requested (returns None) or a service dies (returns it)."""
        while not self.stop_requested.is_set():
            dead = self.failed()
            if dead is not None:
                return dead
            self.stop_requested.wait(0.2)
        return None

    def stop(self, children: Sequence[Child] | None = None) -> dict[str, int]:
        """SIGTERM children tier by tier (highest first), SIGKILL what outlives the timeout.

        Returns each child's exit status (negative: the signal that ended it).
        """
        chosen = list(self.children if children is None else children)
        for tier in sorted({c.tier for c in chosen}, reverse=True):
            group = [c for c in chosen if c.tier == tier]
            for child in group:
                child.stopping = True
                if child.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(signal.SIGTERM)
            began = time.monotonic()
            while any(c.returncode is None for c in group):
                if time.monotonic() - began > self.stop_timeout_s:  # a 2nd signal shortens it
                    for child in group:
                        if child.returncode is None:
                            self.say(f"{child.name} did not stop in time: killed")
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(child.pid, signal.SIGKILL)
                            child.proc.wait()
                    break
                time.sleep(0.05)
        for child in chosen:
            if child.pump is not None:
                child.pump.join(timeout=5)
        return {c.name: int(c.proc.returncode) for c in chosen}

    def kill_all(self) -> None:
        """Last resort (an exception in the supervisor): SIGKILL every child's group."""
        for child in self.children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait()

    # -- signals --------------------------------------------------------------------
    @contextlib.contextmanager
    def signals_handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM request a clean stop; a second one while stopping kills at once."""
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.signals += 1
            if self.signals > 1:
                self.say(f"{signal.Signals(signum).name} again: killing everything")
                self.stop_timeout_s = 0.5
            self.stop_requested.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextlib.contextmanager
    def in_charge(self) -> Iterator[None]:
        """:meth:`signals_handled`, and every child killed at once should the block raise
        (anything: an error, a second Ctrl-C); the exception goes on."""
        with self.signals_handled():
            try:
                yield
            except BaseException:
                self.kill_all()
                raise
