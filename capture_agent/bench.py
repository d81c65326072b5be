"""`s2st bench capture`: CPU cost per second of audio and resident memory of the agent.

Each VAD backend runs in a fresh subprocess (`python -m capture_agent.bench --worker`),
so one backend's imports (torch) do not inflate another's memory figure. The worker
streams the file through the real pipeline (FileSource in fast mode -> VAD -> segmenter
-> chunker -> the bus event of each chunk written to Redis, one XADD each as the agent does,
into a scratch stream deleted afterwards) and reports CPU seconds (process time), split
into decoding and VAD+chunking+publishing, and its peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CLIP = "ljspeech_LJ001-0001_to_0032_continuous.flac"


def default_file() -> Path:
    root = Path(__file__).resolve().parent.parent
    speech = Path(os.environ.get("S2ST_SPEECH_DIR", root.parent / "shared" / "data" / "speech"))
    return speech / DEFAULT_CLIP


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(backend: str, path: Path, repeats: int = 1,
            redis_url: str | None = None) -> dict[str, Any]:
    """Run in the worker process: returns the figures for one backend (publishing every chunk
    to ``redis_url`` when given)."""
    rss_start = _current_rss_mb()
    t0 = time.perf_counter()
    from bus.keys import Partition
    from capture_agent.audio_io import decode_blocks
    from capture_agent.pipeline import CaptureConfig, CaptureProcessor
    from capture_agent.sources import FileSource
    from capture_agent.vad import create_vad

    vad = create_vad(backend)
    load_s = time.perf_counter() - t0
    rss_loaded = _current_rss_mb()

    c0 = time.process_time()
    audio_samples = sum(len(b) for b in decode_blocks(path))
    decode_cpu = time.process_time() - c0

    client, key = None, ""
    if redis_url:
        import uuid

        import redis

        from bus.keys import Keys
        from capture_agent.publisher import to_event

        client = redis.Redis.from_url(redis_url)
        client.ping()
        session = "bench-" + uuid.uuid4().hex[:8]
        key = Keys("s2st-bench").stream("audio", Partition("bench", session))
    total_cpu = 0.0
    chunks = 0
    wall = 0.0
    try:
        for _ in range(repeats):
            vad.reset()
            processor = CaptureProcessor(CaptureConfig(vad_backend=backend), vad=vad)
            w0 = time.perf_counter()
            c0 = time.process_time()
            chunks = 0
            for chunk in processor.run(FileSource(path, realtime=False)):
                if client is not None:
                    client.xadd(key, to_event(chunk, "bench", session).to_fields())  # type: ignore[arg-type]
                chunks += 1
            total_cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
    finally:
        if client is not None:
            client.delete(key)
            client.close()
    total_cpu /= repeats
    wall /= repeats
    audio_s = audio_samples / 16000
    pipeline_cpu = max(0.0, total_cpu - decode_cpu)
    return {
        "backend": backend,
        "audio_s": round(audio_s, 3),
        "load_s": round(load_s, 3),
        "decode_cpu_s": round(decode_cpu, 4),
        "total_cpu_s": round(total_cpu, 4),
        "vad_chunk_cpu_s": round(pipeline_cpu, 4),
        "vad_chunk_cpu_pct_of_core": round(100 * pipeline_cpu / audio_s, 3),
        "total_cpu_pct_of_core": round(100 * total_cpu / audio_s, 3),
        "ms_per_frame": round(1000 * pipeline_cpu / (audio_samples / 512), 4),
        "wall_s": round(wall, 3),
        "chunks": chunks,
        "rss_start_mb": round(rss_start, 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "rss_peak_mb": round(_peak_rss_mb(), 1),
        "repeats": repeats,
        "published": client is not None,
    }


def run_worker(backend: str, path: Path, repeats: int,
               redis_url: str | None = None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "capture_agent.bench",
        "--worker",
        "--backend",
        backend,
        "--file",
        str(path),
        "--repeats",
        str(repeats),
        *(["--redis-url", redis_url] if redis_url else []),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"backend": backend, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


TARGET_CPU_PCT = 5.0
TARGET_RSS_MB = 150.0


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'backend':<11} {'audio s':>8} {'VAD+chunk+pub %core':>19} {'incl. decode':>12} "
        f"{'ms/frame':>8} {'peak RSS MB':>11} {'load s':>6}  target (<{TARGET_CPU_PCT:.0f}%, <{TARGET_RSS_MB:.0f} MB)"
    ]
    for r in results:
        if "error" in r:
            lines.append(f"{r['backend']:<11} error: {r['error']}")
            continue
        ok = r["total_cpu_pct_of_core"] < TARGET_CPU_PCT and r["rss_peak_mb"] < TARGET_RSS_MB
        lines.append(
            f"{r['backend']:<11} {r['audio_s']:>8.1f} {r['vad_chunk_cpu_pct_of_core']:>19.2f} "
            f"{r['total_cpu_pct_of_core']:>12.2f} {r['ms_per_frame']:>8.3f} "
            f"{r['rss_peak_mb']:>11.1f} {r['load_s']:>6.2f}  {'meets' if ok else 'MISSES'}"
        )
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    from capture_agent.audio_io import AudioInputError, probe_audio

    path = Path(args.file) if args.file else default_file()
    try:
        probe_audio(path)
    except AudioInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    url = None if args.no_publish else args.redis_url
    results = [run_worker(b, path, args.repeats, url) for b in backends]
    print(f"capture bench on {path.name} (one core = 100%; "
          f"{'VAD and chunking only' if url is None else 'publishing to ' + url.split('@')[-1]})")
    print(report(results))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"file": str(path), "results": results}, indent=2) + "\n")
        print(f"wrote {out}")
    return 1 if any("error" in r for r in results) else 0


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--backend", default="lite")
    parser.add_argument("--file", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.backend, Path(args.file), args.repeats, args.redis_url)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
