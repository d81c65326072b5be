"""Applying the soak's faults to the running stack (see ops/soak/schedule.py for the kinds).

Each fault returns a record: what was done to which process or link, when (seconds since the
speakers started), whether it was **applied** (the signal reached a live process and had its
effect, Redis went down and came back, a connection was cut), and what the stack did about
it (a dead worker's streams taken over, Redis answering again). Figures that need the streams
(the first speech after a restart, a cut capture agent's resync, writes a paused owner made
while another worker held its lease) are added once the run is over (:func:`after_run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import psutil

from bus.keys import Partition
from bus.text import as_text
from ops.redis_local import answers
from ops.soak.accounting import fenced_writes, foreign_intervals
from ops.soak.schedule import FaultSpec
from ops.stack import TIER_REDIS

if TYPE_CHECKING:
    from ops.soak.run import SessionRun, Soak, WorkerProc

VICTIM_WAIT_S = 30.0  # a kill or stop waits this long for a worker of the stage to own a stream
TAKEOVER_WAIT_S = 60.0  # a dead owner's streams are taken over within this
REPLACEMENT_READY_S = 300.0  # a replacement worker loads its model within this
SIGNAL_WAIT_S = 10.0  # a signalled process is seen dead, stopped or continued within this
REDIS_STOP_S = 30.0  # Redis shuts down (writes its AOF) within this
LINK_WAIT_S = 60.0  # a capture agent of the speaker is connected within this
AFTER_CONT_S = 3.0  # a continued worker's leases are still watched this long
SAMPLE_S = 0.1  # lease owners are sampled this often during a stop


class Chaos:
    def __init__(self, soak: Soak) -> None:
        self.s = soak
        self.link_turn = 0

    async def apply(self, spec: FaultSpec) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": spec.kind, "stage": spec.stage,
                               "scheduled_s": spec.at_s, "applied": False, "error": None}
        try:
            await getattr(self, f"_{spec.kind}")(rec)
        except Exception as exc:  # a fault that cannot be applied is reported, not fatal
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if rec["error"]:
            rec["applied"] = False
        return rec

    @staticmethod
    def describe(rec: dict[str, Any]) -> str:
        kind = rec["kind"] + (f"@{rec['stage']}" if rec.get("stage") else "")
        if not rec["applied"]:
            return f"{kind}: NOT APPLIED: {rec['error']}"
        if rec["kind"] == "kill":
            return (f"kill: {rec['victim']} SIGKILLed (owned {len(rec['owned'])} stream(s)), "
                    f"taken over after {_f(rec.get('takeover_s'))} s, replacement "
                    f"{rec['replacement']} ready after {_f(rec.get('replacement_ready_s'))} s")
        if rec["kind"] == "stop":
            return (f"stop: {rec['victim']} SIGSTOPped for {rec['stopped_s']:.1f} s (lease TTL "
                    f"{rec['lease_ttl_s']:g} s), its streams taken over after "
                    f"{_f(rec.get('takeover_s'))} s, SIGCONT")
        if rec["kind"] == "redis":
            return (f"redis: stopped (exit {rec['exit_status']}), down {rec['down_s']:.1f} s, "
                    f"answered {rec['answered_after_s']:.2f} s after its restart, "
                    f"AOF kept every stream's last entry: {rec['aof_kept']}")
        return (f"link: {rec['speaker']}'s capture agent ({rec['session']}) cut off for "
                f"{rec['out_s']:g} s ({rec['connections_cut']} connection(s) cut)")

    # -- workers --------------------------------------------------------------------------------
    async def _leases(self, stage: str) -> dict[str, list[str]]:
        """Lease keys of ``stage`` by owner."""
        keys: list[str] = []
        for room in self.s.rooms:
            pattern = f"{self.s.keys.room(room)}:lease:{stage}:*"
            async for raw in self.s.client.scan_iter(match=pattern, count=500):
                keys.append(as_text(raw))
        if not keys:
            return {}
        owners = await self.s.client.mget(keys)
        out: dict[str, list[str]] = {}
        for key, owner in zip(keys, owners, strict=True):
            if owner is not None:
                out.setdefault(owner.decode(), []).append(key)
        return out

    async def _victim(self, stage: str) -> tuple[WorkerProc | None, list[str]]:
        """A live worker of ``stage`` that owns streams (waiting for one up to
        VICTIM_WAIT_S), else any live worker of the stage."""
        deadline = time.monotonic() + VICTIM_WAIT_S
        while True:
            live = {w.worker_id: w for w in self.s.workers if w.stage == stage
                    and w.child.returncode is None and not w.child.stopping}
            owned = {wid: keys for wid, keys in (await self._leases(stage)).items()
                     if wid in live}
            if owned:
                wid = max(owned, key=lambda w: len(owned[w]))
                return live[wid], sorted(owned[wid])
            if time.monotonic() > deadline or self.s.stop_requested() or not live:
                return (next(iter(live.values())) if live else None), []
            await asyncio.sleep(0.25)

    async def _owners(self, keys: list[str]) -> tuple[int, list[str | None]]:
        """Redis's clock (ms) and the holder of each lease, read together."""
        pipe = self.s.client.pipeline(transaction=False)
        pipe.time()
        for key in keys:
            pipe.get(key)
        reply = await pipe.execute()
        sec, usec = reply[0]
        return (int(sec) * 1000 + int(usec) // 1000,
                [None if v is None else v.decode() for v in reply[1:]])

    async def _kill(self, rec: dict[str, Any]) -> None:
        stage = rec["stage"]
        victim, held = await self._victim(stage)
        if victim is None:
            rec["error"] = f"no live {stage} worker to kill"
            return
        rec.update(victim=victim.worker_id, process=victim.name, pid=victim.child.pid,
                   owned=[self.s.keys.local_part(k) for k in held])
        victim.child.stopping = True  # not a failure of the supervisor's services
        os.killpg(victim.child.pid, signal.SIGKILL)
        killed = time.time()
        rec["applied_s"] = round(killed - self.s.t0, 2)
        status = await asyncio.to_thread(_wait, victim.child, SIGNAL_WAIT_S)
        rec["exit_status"] = status
        if status != -signal.SIGKILL:
            rec["error"] = f"the worker did not die of SIGKILL within {SIGNAL_WAIT_S:g} s " \
                           f"(status {status})"
            return
        rec["applied"] = True
        new = self.s.replace_worker(victim)
        rec["replacement"] = new.worker_id
        rec["takeover_s"], rec["taken_by"] = await self._takeover(held, victim.worker_id, killed)
        ready = await self._until(lambda: self._in_worker_set(stage, new.worker_id),
                                  REPLACEMENT_READY_S)
        if ready is None:
            rec["error"] = (f"the replacement {new.worker_id} was not in the {stage} worker set "
                            f"within {REPLACEMENT_READY_S:.0f} s")
        else:
            rec["replacement_ready_s"] = round(time.time() - killed, 2)

    async def _takeover(self, held: list[str], victim: str,
                        since: float) -> tuple[float | None, dict[str, str]]:
        """Seconds until every lease in ``held`` was held by another worker (None if one was
        not within TAKEOVER_WAIT_S: its session may have ended meanwhile), and by whom."""
        taken: dict[str, str] = {}
        deadline = time.monotonic() + TAKEOVER_WAIT_S
        last = None
        while len(taken) < len(held) and time.monotonic() < deadline and \
                not self.s.stop_requested():
            try:
                _ms, owners = await self._owners(held)
            except Exception:  # Redis away for a moment
                owners = [None] * len(held)
            for key, owner in zip(held, owners, strict=True):
                if key not in taken and owner not in (None, victim):
                    taken[key] = owner
                    last = time.time()
            await asyncio.sleep(SAMPLE_S)
        by = {self.s.keys.local_part(k): v for k, v in taken.items()}
        if len(taken) < len(held) or last is None:
            return None, by
        return round(last - since, 2), by

    async def _in_worker_set(self, stage: str, worker_id: str) -> bool:
        return await self.s.client.zscore(self.s.keys.workers(stage), worker_id) is not None

    async def _until(self, check: Any, bound_s: float) -> float | None:
        began = time.monotonic()
        while time.monotonic() - began < bound_s and not self.s.stop_requested():
            with contextlib.suppress(Exception):
                if await check():
                    return time.monotonic() - began
            await asyncio.sleep(0.25)
        return None

    async def _stop(self, rec: dict[str, Any]) -> None:
        stage = rec["stage"]
        victim, held = await self._victim(stage)
        if victim is None:
            rec["error"] = f"no live {stage} worker to stop"
            return
        ttl = self.s.lease_ttl_s
        rec.update(victim=victim.worker_id, process=victim.name, pid=victim.child.pid,
                   owned=[self.s.keys.local_part(k) for k in held], lease_ttl_s=ttl)
        pgid = victim.child.pid
        samples: list[tuple[int, list[str | None]]] = []
        os.killpg(pgid, signal.SIGSTOP)
        self.s.stopped.add(pgid)
        stopped_at = time.time()
        rec["applied_s"] = round(stopped_at - self.s.t0, 2)
        try:
            if not await asyncio.to_thread(_status_is, victim.child.pid, True, SIGNAL_WAIT_S):
                rec["error"] = f"the worker was not seen stopped within {SIGNAL_WAIT_S:g} s"
            samples += await self._watch(held, stopped_at + self.s.stop_s)
        finally:
            os.killpg(pgid, signal.SIGCONT)
            self.s.stopped.discard(pgid)
        continued = time.time()
        rec["stopped_s"] = round(continued - stopped_at, 2)
        if not await asyncio.to_thread(_status_is, victim.child.pid, False, SIGNAL_WAIT_S):
            rec["error"] = rec["error"] or "the worker was not seen running again after SIGCONT"
        samples += await self._watch(held, continued + AFTER_CONT_S)
        # when another worker first held each lease, and the intervals in which the paused
        # owner could not commit (checked against the streams after the run)
        rec["leases"] = {}
        takeovers = []
        for i, key in enumerate(held):
            series = [(ms, owners[i]) for ms, owners in samples]
            first = next(((ms, o) for ms, o in series if o not in (None, victim.worker_id)),
                         None)
            if first is not None:
                takeovers.append(first[0] / 1000 - stopped_at)
            rec["leases"][self.s.keys.local_part(key)] = {
                "key": key, "taken_by": first[1] if first else None,
                "foreign_ms": foreign_intervals(series, victim.worker_id)}
        rec["takeover_s"] = round(max(takeovers), 2) if takeovers and \
            len(takeovers) == len(held) else None
        if rec["stopped_s"] <= ttl and not rec["error"]:
            rec["error"] = f"stopped {rec['stopped_s']} s, not longer than the lease TTL {ttl} s"
        if not rec["error"]:
            rec["applied"] = True

    async def _watch(self, held: list[str], until: float) -> list[tuple[int, list[str | None]]]:
        out: list[tuple[int, list[str | None]]] = []
        while time.time() < until:
            if held:
                with contextlib.suppress(Exception):
                    out.append(await self._owners(held))
            await asyncio.sleep(SAMPLE_S)
        return out

    # -- Redis -----------------------------------------------------------------------------------------
    async def _last_ids(self) -> dict[str, tuple[int, int]]:
        out = {}
        assert self.s.tail is not None
        for key in self.s.tail.speech:
            last = await self.s.client.xrevrange(key, "+", "-", count=1)
            if last:
                raw = last[0][0]
                ms, _, n = as_text(raw).partition("-")
                out[key] = (int(ms), int(n))
        return out

    async def _redis(self, rec: dict[str, Any]) -> None:
        before = await self._last_ids()
        child = self.s.redis_child
        assert child is not None
        child.stopping = True
        down = time.time()
        rec["applied_s"] = round(down - self.s.t0, 2)
        child.proc.send_signal(signal.SIGTERM)  # a clean shutdown: the AOF is written
        status = await asyncio.to_thread(_wait, child, REDIS_STOP_S)
        rec["shutdown_s"] = round(time.time() - down, 2)
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            status = await asyncio.to_thread(_wait, child, SIGNAL_WAIT_S)
            rec["killed"] = True
        rec["exit_status"] = status
        await asyncio.sleep(self.s.cfg.redis_down_s)
        self.s.redis_child = self.s.sup.start("redis", self.s.redis_argv, tier=TIER_REDIS)
        up = time.time()
        rec["down_s"] = round(up - down, 2)
        waited = await self._until(lambda: asyncio.to_thread(answers, self.s.redis_url, 0.5),
                                   60.0)
        if waited is None:
            rec["error"] = "Redis did not answer within 60 s of its restart (AOF not loaded?)"
            self.s.failures.append("Redis did not come back after its restart: run stopped")
            self.s.sup.stop_requested.set()
            return
        rec["answered_after_s"] = round(waited, 2)
        rec["up_ms"] = int((up + waited) * 1000)
        after = await self._last_ids()
        rec["aof_kept"] = all(after.get(k, (0, 0)) >= v for k, v in before.items())
        if status != 0:
            rec["error"] = f"Redis did not shut down cleanly (status {status})"
        elif not rec["aof_kept"]:
            rec["error"] = "entries written before the restart were missing after it"
        else:
            rec["applied"] = True

    # -- a capture agent's link ----------------------------------------------------------------------
    async def _streaming(self, run: SessionRun) -> bool:
        """The capture agent registered its session and wrote audio (a cut before that
        makes it exit at start: a different fault)."""
        try:
            key = self.s.keys.stream("audio", Partition(run.room, run.session))
            return bool(await self.s.client.xlen(key))
        except Exception:
            return False

    async def _link(self, rec: dict[str, Any]) -> None:
        speakers = self.s.speakers
        speaker = speakers[self.link_turn % len(speakers)]
        self.link_turn += 1
        proxy = self.s.proxies[speaker]
        out_s = self.s.cfg.link_s
        rec.update(speaker=f"{speaker[0]}/{speaker[1]}", out_s=out_s)
        began = time.monotonic()
        run: SessionRun | None = None
        while True:
            run = self.s.current.get(speaker)
            waited = time.monotonic() - began
            if run is not None and run.child is not None and run.child.returncode is None \
                    and proxy.connections > 0 and await self._streaming(run):
                left = run.clip_s - (time.time() - run.started)
                # mid-session if one comes within half the wait; any streaming one after
                if left > out_s + 1.0 or waited > LINK_WAIT_S / 2:
                    break
            if waited > LINK_WAIT_S or self.s.stop_requested() or self.s.speaking_over:
                rec["error"] = (f"no capture agent of {rec['speaker']} was connected through "
                                f"its proxy within {LINK_WAIT_S:.0f} s")
                return
            await asyncio.sleep(0.1)
        assert run is not None
        refused = proxy.refused
        cut_at = time.time()
        rec["connections_cut"] = proxy.drop(out_s)
        rec["applied_s"] = round(cut_at - self.s.t0, 2)
        rec["session"] = run.session
        rec["room"] = run.room
        await asyncio.sleep(out_s)
        rec["cut_ms"], rec["end_ms"] = int(cut_at * 1000), int(time.time() * 1000)
        rec["refused_during"] = proxy.refused - refused
        if rec["connections_cut"] < 1:
            rec["error"] = "the capture agent's connection closed before the cut"
        else:
            rec["applied"] = True


def after_run(soak: Soak) -> None:
    """Figures of the faults that come from the streams (call after the accounting)."""
    assert soak.tail is not None
    speech_ms = soak.tail.speech_ms()
    for rec in soak.faults:
        if not rec["applied"]:
            continue
        if rec["kind"] == "redis" and "up_ms" in rec:
            after = next((ms for ms in speech_ms if ms >= rec["up_ms"]), None)
            rec["next_speech_s"] = None if after is None else round(
                (after - rec["up_ms"]) / 1000, 2)
        elif rec["kind"] == "link":
            run = soak.sessions.get((rec["room"], rec["session"]))
            # its entries (chunks, end marker) in the order Redis wrote them
            audio = sorted(r.ms for r in (run.streams.get("audio", {}).values() if run else []))
            # chunks Redis wrote while the link was cut (none: the cut was real)
            rec["written_during"] = sum(1 for ms in audio
                                        if rec["cut_ms"] + 250 < ms < rec["end_ms"] - 250)
            after = next((ms for ms in audio if ms >= rec["end_ms"]), None)
            rec["resync_s"] = None if after is None else round(
                (after - rec["end_ms"]) / 1000, 2)
            if run is None or not run.registered:
                rec["applied"] = False
                rec["error"] = "the cut came before the capture agent registered its session"
            elif rec["written_during"]:
                rec["applied"] = False
                rec["error"] = (f"{rec['written_during']} audio chunk(s) were written while the "
                                "link was cut")
        elif rec["kind"] == "stop":
            bad = []
            for info in rec["leases"].values():
                intervals = [tuple(x) for x in info["foreign_ms"]]
                bad += [r.id for r in _outputs(soak, rec["stage"], info["key"])
                        if r in fenced_writes([r], rec["stage"], rec["victim"], intervals)]
            rec["fenced_writes"] = len(bad)
            rec["fenced_write_ids"] = bad[:10]


def _outputs(soak: Soak, stage: str, lease_key: str) -> list[Any]:
    """What ``stage`` wrote for the partition of a lease key
    (``P:{room}:lease:<stage>:<family>:<session>[:<lang>]``)."""
    room = soak.keys.room_of(lease_key)
    rest = soak.keys.local_part(lease_key).split(":")  # lease, stage, family, session[, lang]
    session = rest[3]
    run = soak.sessions.get((room, session))
    if run is None:
        return []
    if stage == "asr":
        return list(run.streams.get("transcript", {}).values())
    if stage == "mt":
        return [r for lang in soak.cfg.langs
                for r in run.streams.get(f"translation:{lang}", {}).values()]
    assert soak.tail is not None
    lang = rest[4] if len(rest) > 4 else soak.cfg.langs[0]
    return list(soak.tail.session(room, lang, session))


def _wait(child: Any, timeout_s: float) -> int | None:
    try:
        return int(child.proc.wait(timeout=timeout_s))
    except Exception:
        return None


def _status_is(pid: int, stopped: bool, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = psutil.Process(pid).status()
        except psutil.Error:
            return False
        if (status == psutil.STATUS_STOPPED) == stopped:
            return True
        time.sleep(0.02)
    return False


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
