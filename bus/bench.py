"""`s2st bench bus`: a no-op stage chained three times over N sessions.

Three relay workers, each a separate process, chained audio -> b1 -> b2 -> b3
against the configured Redis.  For each N:

* throughput: ``events`` entries are written as fast as possible, spread over
  the N sessions; each stage's rate is read off its output stream (entry ids
  are millisecond timestamps), reported as events/s per worker process;
* one worker alone: the same entries written first, then drained by one relay worker
  process with the machine to itself (the figure of "events/s through one worker process");
* latency: ``rate`` events/s are offered for ``duration`` seconds (after one second
  of warm-up at that rate, not measured); the time the
  bus adds per hop is read from the traces of the final events: hop 1 is the
  producer's write to stage 1's read, hop k the previous stage's output to
  stage k's read (includes the previous stage's commit);
* references measured in the same run: the bare ``redis.asyncio`` loop of the
  issue (events/s through one process, no validation, fencing or deduplication)
  and the Redis round trip, the floor of each hop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bus import clock
from bus.connection import connect
from bus.events import decode_event
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import delete_prefix, make_chunk
from bus.text import as_text

FAMILIES = ["audio", "b1", "b2", "b3"]


def _spawn(settings: BusSettings, prefix: str, hop: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "S2ST_REDIS_URL": settings.redis_url,
        "S2ST_REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
        "S2ST_KEY_PREFIX": prefix,
        "S2ST_LOG_LEVEL": "warning",
        "S2ST_RETENTION_S": "0",
    }
    env.pop("S2ST_WORKER_ID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "worker", "--name", f"hop{hop}",
         "--input", FAMILIES[hop - 1], "--output", FAMILIES[hop]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the workers (they drain and exit), kill what is still there after 20 s."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    arr = np.asarray(values) * 1000.0
    return {k: round(float(np.percentile(arr, q)), 3) for k, q in
            (("p50", 50), ("p95", 95), ("p99", 99))}


async def _wait_len(r: Any, keys: list[str], total: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        n = 0
        for key in keys:
            n += await r.xlen(key)
        if n >= total:
            return True
        await asyncio.sleep(0.05)
    return False


async def _stage_rate(r: Any, keys: list[str]) -> float:
    """Events per second of one stage from the first and last ids of its outputs."""
    first, last, n = None, None, 0
    for key in keys:
        head = await r.xrange(key, count=1)
        tail = await r.xrevrange(key, count=1)
        if not head:
            continue
        n += await r.xlen(key)
        h = int(head[0][0].split(b"-")[0])
        t = int(tail[0][0].split(b"-")[0])
        first = h if first is None else min(first, h)
        last = t if last is None else max(last, t)
    if first is None or last is None or last <= first:
        return float("nan")
    return n / ((last - first) / 1000.0)


class _Chunks:
    """The producer's audio chunk entries, made from one encoded chunk per session where only
    the seq, the offset and the times change: a load generator that validated and encoded
    every chunk with pydantic would take a good part of the cores the stages share (the
    stages still decode and validate every entry strictly)."""

    def __init__(self) -> None:
        self._made: dict[Partition, tuple[list[Any], dict[str, int]]] = {}

    def fields(self, p: Partition, seq: int, capture_start: float | None = None) -> dict[Any, Any]:
        made = self._made.get(p)
        if made is None:
            flat = make_chunk(p.room, p.session, 0).to_flat()
            made = self._made[p] = (flat, {name: 2 * i + 1 for i, name in enumerate(flat[::2])})
        flat, at = made
        out = flat.copy()
        now = clock.now()
        t = now if capture_start is None else capture_start
        out[at["seq"]] = str(seq)
        out[at["offset"]] = str(seq * _CHUNK_SAMPLES)
        out[at["capture_start"]] = repr(t)
        out[at["capture_end"]] = repr(t + _CHUNK_SAMPLES / 16000)
        out[at["emitted"]] = repr(now)
        return dict(zip(out[::2], out[1::2], strict=True))


_CHUNK_SAMPLES = 160  # make_chunk's default
_WARMUP_S = 1.0  # at the offered rate before the latency is measured


def _ring(pipe: Any, layout: Keys, keys: set[str]) -> None:
    """Ring the bells of the streams ``keys`` (as a capture agent's publisher does)."""
    by_bell: dict[str, list[str]] = {}
    for key in keys:
        by_bell.setdefault(layout.bell_of(key) or key, []).append(key)
    for bell, names in by_bell.items():
        pipe.xadd(bell, {"keys": " ".join(sorted(names))}, maxlen=BELL_MAXLEN, approximate=True)


async def _produce(r: Any, s: BusSettings, parts: list[Partition], per: int) -> None:
    """``per`` audio entries into each session's stream, as fast as Redis takes them."""
    step = 500 // max(1, len(parts)) + 1
    keys = [s.keys.stream("audio", p) for p in parts]
    chunks = _Chunks()
    for seq in range(0, per, step):
        pipe = r.pipeline(transaction=False)
        for k in range(seq, min(per, seq + step)):
            for p, key in zip(parts, keys, strict=True):
                pipe.xadd(key, chunks.fields(p, k))
        _ring(pipe, s.keys, set(keys))
        await pipe.execute()


async def _single(settings: BusSettings, n_sessions: int, events: int) -> float:
    """Events/s through one worker process alone: the entries are written first, then one
    relay worker (a process of its own) drains them; its rate is read off its output."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"key_prefix": prefix})
    r = await connect(s)
    parts = [Partition(f"bench{i % 10}", f"s{i}") for i in range(n_sessions)]
    reg = Registry(r, s.keys, cluster=s.redis_cluster)
    for p in parts:
        await reg.register_session(p.room, p.session, "en")
    per = max(1, events // n_sessions)
    proc = None
    try:
        await _produce(r, s, parts, per)
        proc = _spawn(settings, prefix, 1)
        out = [s.keys.stream("b1", p) for p in parts]
        if not await _wait_len(r, out, per * n_sessions, limit_s=300):
            raise RuntimeError("the single worker did not finish")
        return await _stage_rate(r, out)
    finally:
        _stop([proc] if proc is not None else [])
        await delete_prefix(r, prefix)
        await r.aclose()


async def _bare(settings: BusSettings, n_sessions: int, events: int) -> float:
    """The reference of the issue: a bare ``redis.asyncio`` loop in this process, on the same
    entries: one XREADGROUP over all the streams (COUNT 100), one MULTI per batch copying
    each entry to its output and acknowledging it. No decoding, validation, fencing,
    deduplication or watermarks. Its events/s calibrate the runtime's on this machine."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"key_prefix": prefix})
    r = await connect(s)
    parts = [Partition(f"bench{i % 10}", f"s{i}") for i in range(n_sessions)]
    per = max(1, events // n_sessions)
    try:
        await _produce(r, s, parts, per)
        inputs = [s.keys.stream("audio", p) for p in parts]
        output = {key: s.keys.stream("b1", p) for key, p in zip(inputs, parts, strict=True)}
        for key in inputs:
            await r.xgroup_create(key, "bare", id="0")
        # one XREADGROUP over all the streams; on a cluster one per room (a command's keys
        # must share a slot)
        reads = [inputs]
        if settings.redis_cluster:
            by_room: dict[str, list[str]] = {}
            for key, p in zip(inputs, parts, strict=True):
                by_room.setdefault(p.room, []).append(key)
            reads = list(by_room.values())
        done, total = 0, per * n_sessions
        # timed here, not off the output ids: a small run fits in one batch, written within
        # one millisecond
        t0 = time.perf_counter()
        # a read blocks only after a round that read nothing (with a read per room, blocking
        # reads would wait 100 ms on every room already drained)
        idle = False
        while done < total:
            reply: list[Any] = []
            for keys in reads:
                reply += await r.xreadgroup("bare", "bare", dict.fromkeys(keys, ">"), count=100,
                                            block=100 if idle else None) or []
            idle = not reply
            pipe = r.pipeline(transaction=not settings.redis_cluster)
            for raw_key, entries in reply or []:
                key = as_text(raw_key)
                for _entry_id, fields in entries:
                    pipe.xadd(output[key], fields)
                pipe.xack(key, "bare", *[entry_id for entry_id, _ in entries])
                done += len(entries)
            await pipe.execute()
        return total / (time.perf_counter() - t0)
    finally:
        await delete_prefix(r, prefix)
        await r.aclose()


async def _round_trip(settings: BusSettings, n: int = 300) -> dict[str, float]:
    """PING round trips to the configured Redis from this process (the floor of a hop: a
    hop takes three, the wake-up, the fenced read and the commit)."""
    r = await connect(settings)
    try:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await r.ping()
            times.append(time.perf_counter() - t0)
        return _pcts(times)
    finally:
        await r.aclose()


async def _one(settings: BusSettings, n_sessions: int, events: int, rate: float,
               duration: float, workers_per_stage: int = 1) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"key_prefix": prefix})
    r = await connect(s)
    reg = Registry(r, s.keys, cluster=s.redis_cluster)
    parts = [Partition(f"bench{i % 10}", f"s{i}") for i in range(n_sessions)]
    for p in parts:
        await reg.register_session(p.room, p.session, "en")
    procs = [_spawn(settings, prefix, hop) for hop in (1, 2, 3)
             for _ in range(workers_per_stage)]

    async def keep_alive() -> None:  # as capture agents do, or the janitor ends the sessions
        # all sessions in one round trip: a hundred round trips one after the other kept this
        # process (the producer) waking up for a fifth of a second every two seconds, and
        # the stages, sharing the two cores, showed it in their hop latency
        while True:
            pipe = r.pipeline(transaction=False)
            now_ms = int(clock.now() * 1000)
            for p in parts:
                pipe.hset(s.keys.alive(p.room), p.session, now_ms)
            await pipe.execute()
            await asyncio.sleep(2)

    heartbeats = asyncio.create_task(keep_alive())
    try:
        # wait until the last stage owns every session
        async def owned() -> bool:
            for p in parts:
                for hop in (1, 2, 3):
                    if not await r.exists(s.keys.lease(f"hop{hop}", FAMILIES[hop - 1], p)):
                        return False
            return True

        deadline = time.monotonic() + 60
        while not await owned():
            if time.monotonic() > deadline:
                raise RuntimeError("bench workers did not take the sessions")
            await asyncio.sleep(0.1)

        # -- throughput ---------------------------------------------------------
        t0 = time.perf_counter()
        per = max(1, events // n_sessions)
        total = per * n_sessions
        await _produce(r, s, parts, per)
        produce_s = time.perf_counter() - t0
        out_keys = {f: [s.keys.stream(f, p) for p in parts] for f in FAMILIES[1:]}
        if not await _wait_len(r, out_keys["b3"], total, limit_s=300):
            raise RuntimeError("throughput run did not finish")
        rates = [await _stage_rate(r, out_keys[f]) for f in FAMILIES[1:]]

        # -- latency at an offered rate -------------------------------------------
        hops: list[list[float]] = [[], [], []]
        e2e: list[float] = []
        sent = 0
        if rate > 0:
            start_seq = per
            chunks = _Chunks()
            tick = 0.01
            per_tick = rate * tick
            owed = 0.0
            t_start = time.perf_counter()
            # the first second at the offered rate is a warm-up, not measured: the stages
            # have just drained the throughput run's burst
            measured_from = clock.now() + _WARMUP_S
            next_t = t_start
            i = 0
            while time.perf_counter() - t_start < _WARMUP_S + duration:
                owed += per_tick
                k = int(owed)
                owed -= k
                pipe = r.pipeline(transaction=False)
                now = clock.now()
                written = set()
                for _ in range(k):
                    p = parts[i % n_sessions]
                    sq = start_seq + i // n_sessions
                    key = s.keys.stream("audio", p)
                    pipe.xadd(key, chunks.fields(p, sq, capture_start=now))
                    written.add(key)
                    i += 1
                if k:
                    _ring(pipe, s.keys, written)
                    await pipe.execute()
                sent += k
                next_t += tick
                await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
            if not await _wait_len(r, out_keys["b3"], total + sent, limit_s=120):
                raise RuntimeError("latency run did not finish")
            for key in out_keys["b3"]:
                for _id, fields in await r.xrange(key):
                    ev = decode_event(fields)
                    if (ev.seq < start_seq or ev.capture_start < measured_from
                            or len(ev.trace) != 3):
                        continue
                    tr = ev.trace
                    hops[0].append(tr[0].t_in - ev.capture_start)
                    hops[1].append(tr[1].t_in - tr[0].t_out)
                    hops[2].append(tr[2].t_in - tr[1].t_out)
                    e2e.append(tr[2].t_out - ev.capture_start)
        all_hops = hops[0] + hops[1] + hops[2]
        return {
            "sessions": n_sessions,
            "workers_per_stage": workers_per_stage,
            "events": total,
            "produce_s": round(produce_s, 3),
            "events_per_s": round(float(np.nanmin(rates)), 1),  # through the whole chain
            "events_per_s_per_worker": round(float(np.nanmin(rates)) / workers_per_stage, 1),
            "events_per_s_by_stage": [round(x, 1) for x in rates],
            "offered_events_per_s": rate,
            "warmup_s": _WARMUP_S if rate > 0 else 0.0,
            "latency_events": len(e2e),
            "hop_latency_ms": _pcts(all_hops),
            "hop_latency_ms_by_hop": [_pcts(h) for h in hops],
            "end_to_end_ms": _pcts(e2e),
        }
    finally:
        heartbeats.cancel()
        _stop(procs)
        await delete_prefix(r, prefix)
        await r.aclose()


async def run_bench(settings: BusSettings, *, sessions: list[int], events: int, rate: float,
                    duration: float, json_path: str | None,
                    workers_per_stage: int = 1) -> dict[str, Any]:
    runs = []
    round_trip = await _round_trip(settings)
    print(f"Redis round trip (PING) from one process: p50 {round_trip['p50']:.2f} ms, "
          f"p99 {round_trip['p99']:.2f} ms")
    for n in sessions:
        res = await _one(settings, n, events, rate, duration, workers_per_stage)
        res["single_worker_events_per_s"] = round(await _single(settings, n, events), 1)
        res["bare_loop_events_per_s"] = round(await _bare(settings, n, events), 1)
        runs.append(res)
        h = res["hop_latency_ms"]
        print(f"N={n:4d}  {res['events_per_s']:9.0f} events/s through {workers_per_stage} "
              f"worker process(es) per stage "
              f"(stages {res['events_per_s_by_stage']})  hop p50/p95/p99 "
              f"{h['p50']:.2f}/{h['p95']:.2f}/{h['p99']:.2f} ms at {rate:.0f} events/s offered; "
              f"one worker alone {res['single_worker_events_per_s']:.0f} events/s "
              f"(bare redis.asyncio loop: {res['bare_loop_events_per_s']:.0f})")
    report = {
        "bench": "bus",
        "redis_url": settings.redis_url.split("@")[-1],
        "cpu_count": os.cpu_count(),
        "redis_round_trip_ms": round_trip,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "s2st bench bus " + " ".join(sys.argv[3:]),
        "runs": runs,
    }
    if json_path:
        _write_json(Path(json_path), report)
        print(f"wrote {json_path}")
    return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
