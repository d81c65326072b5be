"""The soak's report: the JSON, its verdict, a few lines for the terminal and the PNG."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.evaluation.latency import stats
from ops.soak.accounting import latency_windows
from ops.soak.monitor import summary

if TYPE_CHECKING:
    from ops.soak.run import Soak

LATENCY_DEFINITION = (
    "per committed translation that was spoken: when its first speech piece was written to "
    "speech:<lang> (emitted, available to every player) minus the end of the source words it "
    "translates (capture_end); windows by when the source words ended")


def build_report(soak: Soak, command: str) -> dict[str, Any]:
    cfg = soak.cfg
    env = soak.stack.env() if soak.stack.redis else {}
    runs = [r for r in soak.sessions.values() if r.registered]
    sessions = []
    totals: dict[str, Any] = {
        "sessions": len(runs), "sessions_done": 0, "hung": 0, "capture_failures": 0,
        "capture_retries": soak.capture_retries, "audio_chunks": 0, "transcripts": 0,
        "lost": 0, "duplicated": 0, "out_of_order": 0, "text_errors": 0,
        "by_lang": {lang: Counter() for lang in cfg.langs},
    }
    points: dict[str, list[tuple[float, float]]] = {lang: [] for lang in cfg.langs}
    ended_after = []
    for run in runs:
        check = run.check
        audio_end = next((r.ms / 1000 for r in run.streams.get("audio", {}).values()
                          if r.is_end), None)
        item: dict[str, Any] = {
            "room": run.room, "session": run.session, "speaker": run.speaker, "clip": run.clip,
            "clip_s": run.clip_s, "started_s": round(run.started - soak.t0, 2),
            "capture_ended_s": None if run.capture_ended is None else round(
                run.capture_ended - soak.t0, 2),
            "capture_status": run.status,
            # from the end marker in the audio stream to the last one in a speech stream
            "end_after_s": None if run.done_at is None or audio_end is None else round(
                run.done_at - audio_end, 2),
            "hung": run.hung,
        }
        if item["end_after_s"] is not None:
            ended_after.append(item["end_after_s"])
        if run.hung or (not run.finished and not soak.interrupted):
            totals["hung"] += 1
        else:
            totals["sessions_done"] += 1
        if run.status not in (0, None):
            totals["capture_failures"] += 1
        if check is not None:
            item.update(check.as_dict())
            totals["audio_chunks"] += check.audio_chunks
            totals["transcripts"] += check.transcripts
            totals["lost"] += check.lost
            totals["duplicated"] += check.duplicated
            totals["out_of_order"] += check.out_of_order
            totals["text_errors"] += check.text_errors
            for lang, c in check.langs.items():
                t = totals["by_lang"].setdefault(lang, Counter())
                t.update(translations=c.translations, spoken=c.spoken, pieces=c.pieces,
                         lost=c.lost, duplicated=c.duplicated, out_of_order=c.out_of_order,
                         untranslated=len(c.untranslated), unspoken=len(c.unspoken),
                         incomplete=len(c.incomplete), dead_lettered=len(c.dead_lettered),
                         missing_words=c.missing_words, extra_words=c.extra_words,
                         speech_text_mismatch=len(c.speech_text_mismatch),
                         orphan_pieces=len(c.orphan_pieces))
                points.setdefault(lang, []).extend(c.latencies)
        sessions.append(item)
    totals["by_lang"] = {lang: dict(c) for lang, c in totals["by_lang"].items()}
    totals["end_marker_delay_s"] = stats(ended_after).as_dict()
    totals["fenced_writes"] = sum(f.get("fenced_writes", 0) for f in soak.faults)

    dead = soak.tail.dead if soak.tail else []
    latency = {
        "definition": LATENCY_DEFINITION, "window_s": cfg.window_s,
        "overall": _stats([v for p in points.values() for _t, v in p]),
        "by_lang": {lang: _stats([v for _t, v in p]) for lang, p in points.items()},
        "windows": {lang: latency_windows(p, soak.t0, cfg.window_s, cfg.duration_s)
                    for lang, p in points.items()},
    }
    report: dict[str, Any] = {
        "bench": "soak", "ok": False, "failures": [], "interrupted": soak.interrupted,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soak.t0 or time.time())),
        "command": command, "cpus": os.cpu_count(), "host": soak.host,
        "config": {
            "duration_s": cfg.duration_s, "rooms": soak.rooms,
            "speakers_per_room": cfg.speakers, "langs": cfg.langs,
            "sessions": "one session per clip: each speaker speaks dev-set English clips one "
                        "after another at real-time pace, each in a new session",
            "clips": len(cfg.clips), "clip_s_total": round(sum(c.duration_s for c in cfg.clips), 1),
            "workers": dict(cfg.workers), "profile": soak.stack.profile,
            "asr_model": env.get("S2ST_ASR_MODEL"), "mt_backends": env.get("S2ST_MT_BACKENDS"),
            "tts_backends": env.get("S2ST_TTS_BACKENDS"), "lease_ttl_s": soak.lease_ttl_s,
            "stop_s": soak.stop_s, "link_s": cfg.link_s, "redis_down_s": cfg.redis_down_s,
            "retention_s": cfg.retention_s, "end_wait_s": cfg.end_wait_s,
            "sample_s": cfg.sample_s, "workers_ready_s": soak.ready_s,
            "faults": [f"{f.label}:{f.at_s:g}s" for f in cfg.faults],
        },
        "redis": {"url": soak.redis_url, "appendonly": True, "run_dir": str(soak.run_dir)},
        "totals": totals,
        "dead_letters": {"count": len(dead), "by_reason": dict(Counter(d["reason"] for d in dead)),
                         "entries": dead[:20]},
        "latency": latency,
        "faults": [{k: v for k, v in f.items() if k not in ("cut_ms", "end_ms", "up_ms")}
                   for f in soak.faults],
        "unexpected_exits": soak.unexpected,
        "workers_at_stop": soak.stop_codes,
        "players": soak.player_reports,
        "rss": {"sample_s": cfg.sample_s, "summary": summary(soak.sampler.samples),
                "samples": soak.sampler.samples},
        "redis_memory": soak.redis_memory,
        "sessions": sessions,
    }
    report["failures"] = verdict(report, soak.failures)
    report["ok"] = not report["failures"] and not soak.interrupted
    return report


def _stats(values: list[float]) -> dict[str, Any]:
    out = stats(values).as_dict()
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def verdict(report: dict[str, Any], failures: list[str]) -> list[str]:
    """Everything that makes the run fail, one line each."""
    out = list(failures)
    t = report["totals"]
    if t["lost"]:
        out.append(f"{t['lost']} lost: " + _where(report, "lost"))
    if t["duplicated"]:
        out.append(f"{t['duplicated']} duplicated: " + _where(report, "duplicated"))
    if t["out_of_order"]:
        out.append(f"{t['out_of_order']} out of order: " + _where(report, "out_of_order"))
    if t["text_errors"]:
        out.append(f"{t['text_errors']} text errors (words translated twice or not at all, "
                   "speech not saying its translation): " + _where(report, "text"))
    if t["hung"]:
        out.append(f"{t['hung']} session(s) hung: " + "; ".join(
            f"{s['room']}/{s['session']}: {' / '.join(s['hung']) or 'not accounted'}"
            for s in report["sessions"] if s["hung"])[:600])
    if t["fenced_writes"]:
        out.append(f"{t['fenced_writes']} write(s) by a paused worker after its lease was "
                   "taken (fencing)")
    if report["dead_letters"]["count"]:
        out.append(f"{report['dead_letters']['count']} dead letter(s): "
                   f"{report['dead_letters']['by_reason']}")
    for f in report["faults"]:
        if not f["applied"]:
            label = f["kind"] + (f"@{f['stage']}" if f.get("stage") else "")
            out.append(f"fault {label} at {f['scheduled_s']:g} s not applied: {f['error']}")
    if report["config"]["faults"] and len(report["faults"]) < len(report["config"]["faults"]):
        out.append(f"only {len(report['faults'])} of {len(report['config']['faults'])} "
                   "scheduled faults were applied before the end")
    for name, code in report["workers_at_stop"].items():
        if code != 0:
            out.append(f"{name} exited with status {code} when stopped (0 expected: drained)")
    if not t["sessions_done"] and not report["interrupted"]:
        out.append("no session was spoken to its end")
    return out


def _where(report: dict[str, Any], what: str) -> str:
    found = []
    for s in report["sessions"]:
        name = f"{s['room']}/{s['session']}"
        if what == "text":
            for lang, c in s.get("langs", {}).items():
                if c["missing_words"] or c["extra_words"] or c["speech_text_mismatch"]:
                    found.append(f"{name}/{lang} (missing {c['missing_words']} words, extra "
                                 f"{c['extra_words']}, speech {c['speech_text_mismatch']})")
            continue
        if not s.get(what):
            continue
        parts = []
        audio, tr = s.get("audio", {}), s.get("transcripts", {})
        if what == "lost":
            if audio.get("gaps"):
                parts.append(f"audio chunks {audio['gaps'][:5]}")
            if tr.get("gaps"):
                parts.append(f"transcripts {tr['gaps'][:5]}")
        elif what == "duplicated":
            if audio.get("duplicated"):
                parts.append(f"audio chunks {audio['duplicated'][:5]}")
            if tr.get("duplicated"):
                parts.append(f"transcripts {tr['duplicated'][:5]}")
        for lang, c in s.get("langs", {}).items():
            if what == "lost":
                for k in ("untranslated", "unspoken", "incomplete"):
                    if c[k]:
                        parts.append(f"{lang} {k} {c[k][:5]}")
            elif what == "duplicated":
                for k in ("duplicated_translations", "duplicated_pieces"):
                    if c[k]:
                        parts.append(f"{lang} {k} {c[k][:5]}")
            elif c["out_of_order"]:
                parts.append(f"{lang} {c['out_of_order']}")
        found.append(f"{name} ({', '.join(parts)})")
    return "; ".join(found)[:600]


def summary_lines(report: dict[str, Any]) -> list[str]:
    t = report["totals"]
    lines = [f"sessions {t['sessions']}: {t['sessions_done']} ended, {t['hung']} hung; "
             f"{t['audio_chunks']} audio chunks, {t['transcripts']} committed transcripts"]
    for lang, c in t["by_lang"].items():
        lines.append(f"  en->{lang}: {c.get('translations', 0)} translations, "
                     f"{c.get('spoken', 0)} spoken in {c.get('pieces', 0)} pieces; lost "
                     f"{c.get('lost', 0)}, duplicated {c.get('duplicated', 0)}, out of order "
                     f"{c.get('out_of_order', 0)}")
    lat = report["latency"]
    o = lat["overall"]
    lines.append(f"segment latency (speech written - source words end): p50 {_f(o['p50'])} "
                 f"p95 {_f(o['p95'])} max {_f(o['max'])} s (n={o['count']})")
    for lang, windows in lat["windows"].items():
        cells = ", ".join(f"{w['start_s'] / 60:g}m: {_f(w['p50'])}/{_f(w['p95'])}"
                          for w in windows)
        lines.append(f"  {lang} p50/p95 per {lat['window_s'] / 60:g} min window: {cells}")
    lines.append(f"dead letters: {report['dead_letters']['count']} "
                 f"{report['dead_letters']['by_reason'] or ''}".rstrip())
    for f in report["faults"]:
        label = f["kind"] + (f"@{f['stage']}" if f.get("stage") else "")
        extra = []
        for key in ("victim", "takeover_s", "replacement_ready_s", "stopped_s",
                    "fenced_writes", "answered_after_s", "next_speech_s", "aof_kept",
                    "session", "connections_cut", "resync_s"):
            if f.get(key) is not None:
                extra.append(f"{key}={f[key]}")
        state = "applied" if f["applied"] else f"NOT APPLIED ({f['error']})"
        lines.append(f"fault {label} at {f.get('applied_s', f['scheduled_s'])} s: {state}; "
                     + " ".join(extra))
    rss = report["rss"]["summary"]
    rss_cells = [f"{name} {v['rss_mb_first']:.0f}->{v['rss_mb_last']:.0f} MB"
             + (f" ({v['rss_growth_mb_per_h']:+.0f}/h)" if v["rss_growth_mb_per_h"] is not None
                else "")
             for name, v in rss.items() if not name.startswith("cap")]
    lines.append("RSS: " + ", ".join(rss_cells))
    return lines


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# -- the plot ----------------------------------------------------------------------------------


def plot(path: Path, report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8), sharex=True)
    window = report["latency"]["window_s"]
    for lang, windows in report["latency"]["windows"].items():
        mids = [(w["start_s"] + min(w["end_s"], report["config"]["duration_s"])) / 2 / 60
                for w in windows]
        for key, style in (("p50", "o-"), ("p95", "s--")):
            top.plot(mids, [w[key] if w[key] is not None else float("nan") for w in windows],
                     style, label=f"{lang} {key}")
    top.set_ylabel("segment latency (s)")
    top.set_title(f"Soak: segment latency per {window / 60:g}-minute window "
                  f"({'ok' if report['ok'] else 'FAILED'})")
    top.grid(alpha=0.3)
    # one line per process (a replaced worker's line starts again), one colour per name
    series: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for s in report["rss"]["samples"]:
        name = "capture agents" if s["name"].startswith("cap") else s["name"]
        series.setdefault(name, {}).setdefault(s["pid"], []).append((s["t_s"] / 60, s["rss_mb"]))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, by_pid) in enumerate(sorted(series.items())):
        color = cycle[i % len(cycle)]
        for k, pts in enumerate(by_pid.values()):
            label = name if k == 0 else None
            if name == "capture agents":
                bottom.plot([p[0] for p in pts], [p[1] for p in pts], ".", ms=3, color=color,
                            label=label)
            else:
                bottom.plot([p[0] for p in pts], [p[1] for p in pts], "-", lw=1.2,
                            color=color, label=label)
    mem = report["redis_memory"]
    if mem:
        bottom.plot([m["t_s"] / 60 for m in mem], [m["used_mb"] for m in mem], "k:",
                    label="redis used_memory")
    bottom.set_ylabel("RSS (MB)")
    bottom.set_xlabel("minutes since the speakers started")
    bottom.grid(alpha=0.3)
    colors = {"kill": "red", "stop": "orange", "redis": "purple", "link": "green"}
    for f in report["faults"]:
        at = f.get("applied_s", f["scheduled_s"]) / 60
        label = f["kind"] + (f"@{f['stage']}" if f.get("stage") else "")
        for ax in (top, bottom):
            ax.axvline(at, color=colors.get(f["kind"], "gray"), lw=0.9, ls=":")
        top.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                     fontsize=7, va="top", ha="right", color=colors.get(f["kind"], "gray"))
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
