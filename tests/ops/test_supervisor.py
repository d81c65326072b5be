"""The stack's process supervisor: prefixed output, stop order, failures, no orphans."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
from ops_helpers import ROOT, all_gone

from ops.supervisor import Supervisor

PY = sys.executable


def sleeper(on_term: str = "print('bye', flush=True); sys.exit(0)") -> list[str]:
    code = textwrap.dedent(f"""
        import signal, sys, time, os
        def term(*_):
            {on_term}
        signal.signal(signal.SIGTERM, term)
        print('hello from', os.getpid(), flush=True)
        while True:
            time.sleep(0.05)
    """)
    return [PY, "-c", code]


def wait_for_line(out: io.StringIO, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in out.getvalue():
        assert time.monotonic() < deadline, f"no {text!r} in:\n{out.getvalue()}"
        time.sleep(0.05)


def test_output_is_prefixed_and_stop_goes_from_clients_to_redis() -> None:
    out = io.StringIO()
    sup = Supervisor(out=out, stop_timeout_s=5)
    client = sup.start("client", sleeper(), tier=2, service=False)
    # the "redis" stand-in reports on SIGTERM whether the client was still running
    probe = f"print('client alive:', os.path.exists('/proc/{client.pid}'), flush=True); sys.exit(0)"
    sup.start("redis", sleeper(probe), tier=0)
    wait_for_line(out, "redis  | hello from")
    wait_for_line(out, "client | hello from")
    codes = sup.stop()
    assert codes == {"client": 0, "redis": 0}
    text = out.getvalue()
    assert "client | bye" in text
    assert "redis  | client alive: False" in text
    assert all(c.returncode is not None for c in sup.children)


def test_a_dead_service_is_a_failure_a_finished_task_is_not() -> None:
    sup = Supervisor(out=io.StringIO(), stop_timeout_s=5)
    task = sup.start("task", [PY, "-c", "pass"], service=False)
    assert sup.wait_child(task, 10) == 0
    assert sup.failed() is None
    service = sup.start("svc", [PY, "-c", "import sys; sys.exit(3)"])
    assert sup.run_forever() is service and service.returncode == 3
    sup.stop()


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    out = io.StringIO()
    sup = Supervisor(out=out, stop_timeout_s=1)
    child = sup.start("stubborn", sleeper("pass"))
    wait_for_line(out, "hello from")
    began = time.monotonic()
    codes = sup.stop()
    assert codes["stubborn"] == -signal.SIGKILL
    assert time.monotonic() - began < 5
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == "zombie"


def test_children_die_with_a_killed_supervisor() -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ops.supervisor import Supervisor
        sup = Supervisor()
        child = sup.start("sleeper", [{PY!r}, "-c", "import time; time.sleep(60)"])
        print("child", child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    child: psutil.Process | None = None
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        child = psutil.Process(int(line.split()[-1]))
        assert child.is_running()
        parent.kill()  # no chance to clean up
        parent.wait(10)
        assert all_gone([child], 10) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and child.is_running():
            child.kill()


def test_sigterm_to_the_supervisor_requests_a_stop() -> None:
    sup = Supervisor(out=io.StringIO())
    before = signal.getsignal(signal.SIGTERM)
    with sup.signals_handled():
        os.kill(os.getpid(), signal.SIGTERM)
        assert sup.stop_requested.wait(2)
        assert sup.run_forever() is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_in_charge_kills_every_child_when_the_block_raises() -> None:
    sup = Supervisor(out=io.StringIO(), stop_timeout_s=5)
    before = signal.getsignal(signal.SIGTERM)
    child = sup.start("svc", sleeper())
    try:
        with sup.in_charge():
            raise KeyboardInterrupt  # as a second Ctrl-C would
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the exception did not go on")
    assert child.proc.wait(5) is not None
    assert signal.getsignal(signal.SIGTERM) is before
