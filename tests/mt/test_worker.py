"""The MT stage with real Apertium: its handler in memory (bus.harness: what it writes for a
session, bad input) and on the real bus (local Redis: rooms, listeners joining, takeover,
model backends and the `s2st mt` command)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bus.events import ControlEvent, Event, Transcript, Translation, decode_event
from bus.harness import HarnessResult, run_on_redis, run_stage
from bus.keys import Keys, Partition
from bus.registry import Registry
from bus.runtime import Worker
from bus.settings import BusSettings
from bus.testing import end_marker, scratch_client
from ops.status import collect, format_status
from tests.mt.stream import bus_transcripts, committed_events, fleurs_rows
from workers.mt.casing import fit_span
from workers.mt.config import MTSettings
from workers.mt.engine import EngineConfig, SessionEngine, TranscriptIn
from workers.mt.router import Router
from workers.mt.stage import MTStage
from workers.mt.takeover import translation_seq

ROOT = Path(__file__).resolve().parents[2]
LOCAL_URL = "redis://127.0.0.1:6379/0"
ROOM, SESSION = "room1", "spk1"
PART = Partition(ROOM, SESSION)
# no hold timeout: spans end at boundaries only, so the output does not depend on timing
MT = MTSettings(engine=EngineConfig(hold_timeout_s=60.0, caption_interval_s=0.1))


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def settings(local_redis: str) -> BusSettings:
    return BusSettings(
        redis_url=LOCAL_URL, key_prefix="tmt" + uuid.uuid4().hex[:10], lease_ttl_ms=1200,
        heartbeat_ms=300, discovery_ms=150, block_ms=50, retry_backoff_ms=10, log_level="warning",
    )


@pytest.fixture
async def client(settings: BusSettings) -> AsyncIterator[Any]:
    async with scratch_client(settings) as r:
        yield r


@pytest.fixture(scope="module")
def fleurs(manifest: dict[str, dict[str, Any]]) -> list[Transcript]:
    """The 5 FLEURS English clips as committed ASR pieces of 4 words (one utterance each)."""
    return bus_transcripts(committed_events(fleurs_rows(manifest)), ROOM, SESSION)


class Workers:
    """MT workers started and stopped one by one (each with its own id)."""

    def __init__(self, settings: BusSettings, router: Router | None, mt: MTSettings = MT) -> None:
        self.settings, self.router, self.mt = settings, router, mt
        self.running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(self, **stage_kw: Any) -> Worker:
        stage = MTStage(self.mt, router=self.router, **stage_kw)
        ids = self.settings.worker_id + f"-{len(self.running)}"
        worker = Worker(stage, self.settings.model_copy(update={"worker_id": ids}))
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.started.wait(), timeout=30)
        self.running.append((worker, task))
        return worker

    async def stop(self, worker: Worker) -> None:
        for w, task in self.running:
            if w is worker:
                w.stop()
                await asyncio.wait_for(task, timeout=30)

    async def stop_all(self) -> None:
        for w, task in self.running:
            w.stop()
            await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def workers(settings: BusSettings, router: Router) -> AsyncIterator[Workers]:
    pool = Workers(settings, router)
    yield pool
    await pool.stop_all()


async def open_room(client: Any, keys: Keys, targets: list[str]) -> None:
    reg = Registry(client, keys)
    await reg.create_room(ROOM, targets)
    await reg.register_session(ROOM, SESSION, "en")


async def produce(client: Any, keys: Keys, events: list[Transcript], *, end: bool = False) -> None:
    key = keys.stream("transcript", PART)
    for event in events:
        await client.xadd(key, event.to_fields())
    if end:
        await client.xadd(key, end_marker(ROOM, SESSION, seq=events[-1].seq + 1 if events else 0).to_fields())


async def read(client: Any, keys: Keys, lang: str) -> list[Event]:
    return [decode_event(f) for _id, f in await client.xrange(keys.stream("translation", Partition(ROOM, SESSION, lang)))]


def committed(events: list[Event]) -> list[Translation]:
    return [e for e in events if isinstance(e, Translation) and e.kind == "committed"]


def summary(events: list[Event]) -> list[tuple[int, int, int, str]]:
    return [(t.seq, t.src_seq_first, t.src_seq, t.text) for t in committed(events)]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def mt_health(client: Any, keys: Keys) -> dict[str, Any]:
    """The health record of the one live MT worker, as `s2st status` collects it."""
    status = await collect(client, keys)
    [worker] = [w for w in status["workers"].get("mt", []) if w["alive"]]
    return dict(worker["health"])


def ended(client: Any, keys: Keys, langs: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        for lang in langs:
            got = await read(client, keys, lang)
            if not got or not (isinstance(got[-1], ControlEvent) and got[-1].action == "end"):
                return False
        return True

    return check


def handled(client: Any, keys: Keys) -> Callable[[], Awaitable[bool]]:
    """Every transcript entry written so far is acknowledged by the mt group."""
    key = keys.stream("transcript", PART)

    async def check() -> bool:
        last = await client.xrevrange(key, count=1)
        groups = {g["name"].decode(): g for g in await client.xinfo_groups(key)} if last else {}
        group = groups.get("mt")
        return bool(group) and group["pending"] == 0 and group["last-delivered-id"] == last[0][0]

    return check


def reference(router: Router, events: list[Transcript], langs: list[str]) -> dict[str, list[tuple[int, int, int, str]]]:
    """What one uninterrupted engine publishes for these pieces (no timeouts)."""
    engine = SessionEngine(router, langs, MT.engine)
    outs = []
    for event in events:
        outs += engine.on_committed(TranscriptIn.from_event(event.model_dump()), now=0.0)
    outs += engine.end()
    return {lang: [(translation_seq(o), o.src_seq_first, o.src_seq, o.text) for o in outs if o.lang == lang]
            for lang in langs}


def assert_covers_once(translations: list[Translation], pieces: list[Transcript]) -> None:
    """The spans cover the pieces in order, every word exactly once."""
    assert translations[0].src_seq_first == pieces[0].seq
    assert translations[-1].src_seq == pieces[-1].seq
    for prev, cur in itertools.pairwise(translations):
        assert cur.seq > prev.seq
        if prev.seq % 2 == 0:  # ended inside its last piece: the next span starts in it
            assert cur.src_seq_first == prev.src_seq
        else:
            assert cur.src_seq_first > prev.src_seq
    words = " ".join(p.text for p in pieces).split()
    assert " ".join(t.source_text for t in translations).split() == words


# --- one room --------------------------------------------------------------------------------------


async def test_room_with_spanish_and_catalan_listeners(router: Router, fleurs: list[Transcript]) -> None:
    """Handler behaviour, in memory (bus.harness): what the stage writes for a session."""
    stage = MTStage(MT, router=router)
    result = await run_stage(stage, [*fleurs, end_marker(ROOM, SESSION, seq=fleurs[-1].seq + 1)],
                             langs=["es", "ca"], worker_id="mt-1")
    assert not result.dead and result.finished
    expected = reference(router, fleurs, ["es", "ca"])
    for lang in ("es", "ca"):
        got = result.stream("translation", lang)
        translations = committed(got)
        assert summary(got) == expected[lang] and len(translations) >= 5
        assert len(got) == len(translations) + 1  # and the end marker, last
        assert_covers_once(translations, fleurs)
        assert all(t.lang == lang and t.src_lang == "en" and t.route == f"apertium:en-{lang}"
                   for t in translations)
        assert sum(t.final for t in translations) == 5  # one per utterance (clip)
        # capture times of the merged pieces, and the trace: the source's hops plus ours
        assert translations[0].capture_start == fleurs[0].capture_start
        assert translations[-1].capture_end == fleurs[-1].capture_end
        for t in translations:
            piece = fleurs[t.src_seq]
            assert t.sample_end <= piece.sample_end and t.utterance == piece.utterance
            assert [h.stage for h in t.trace] == ["asr", "mt"]
            assert t.trace[-1].worker == "mt-1" and t.trace[-1].t_out >= t.trace[-1].t_in
    es = committed(result.stream("translation", "es"))
    ca = committed(result.stream("translation", "ca"))
    assert [t.source_text for t in es] == [t.source_text for t in ca]
    assert router.translate(es[0].source_text, "en", "es").text == es[0].text


async def test_the_room_glossary_is_read_by_the_worker_and_refreshed(
    settings: BusSettings, client: Any, workers: Workers, fleurs: list[Transcript]
) -> None:
    """Terms set with `s2st room glossary` (workers.mt.glossary) come out fixed; a change is
    seen within the refresh period, without a restart."""
    from workers.mt import glossary

    keys = settings.keys
    await open_room(client, keys, ["es"])
    await glossary.set_terms(client, keys, ROOM, "es", ["cabbage juice=jugo de repollo"])
    await workers.start()
    first = fleurs[: next(i for i, e in enumerate(fleurs) if e.final) + 1]
    await produce(client, keys, first)
    await wait_for(lambda: _has(client, keys, "jugo de repollo"))
    await glossary.set_terms(client, keys, ROOM, "es", ["the hospital=el hospital municipal"])
    await asyncio.sleep(MTStage.glossary_refresh_s + 0.5)
    await produce(client, keys, fleurs[len(first):], end=True)
    await wait_for(ended(client, keys, ["es"]))
    texts = " ".join(t.text for t in committed(await read(client, keys, "es")))
    assert "hospital municipal" in texts and "jugo de repollo" in texts


async def _has(client: Any, keys: Keys, text: str) -> bool:
    return text in " ".join(t.text for t in committed(await read(client, keys, "es")))


async def test_a_listener_joining_gets_translations_from_then_on(
    settings: BusSettings, client: Any, workers: Workers, fleurs: list[Transcript]
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es"])
    await workers.start()
    first_clip = [e for e in fleurs if e.utterance == 0]
    await produce(client, keys, first_clip)
    await wait_for(handled(client, keys))
    await Registry(client, keys).add_listener(ROOM, "ca")
    await asyncio.sleep(0.5)  # the stage re-reads the room's targets every 0.2 s here
    await produce(client, keys, fleurs[len(first_clip):], end=True)
    await wait_for(ended(client, keys, ["es", "ca"]))
    es, ca = committed(await read(client, keys, "es")), committed(await read(client, keys, "ca"))
    assert_covers_once(es, fleurs)
    assert ca and ca[0].src_seq_first == len(first_clip)  # nothing of the first clip
    assert [t.source_text for t in ca] == [t.source_text for t in es if t.src_seq >= len(first_clip)]


async def test_partial_transcripts_become_captions(
    settings: BusSettings, client: Any, workers: Workers, router: Router
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es"])
    await workers.start()
    t0 = time.time()

    def partial(text: str) -> Transcript:
        return Transcript(room=ROOM, session=SESSION, seq=0, kind="partial", utterance=0, text=text,
                          lang="en", sample_start=0, sample_end=16000, capture_start=t0, capture_end=t0 + 1)

    await produce(client, keys, [partial("we will meet at the")])
    await asyncio.sleep(0.3)
    await produce(client, keys, [partial("we will meet at the station tomorrow")])
    await wait_for(lambda: _has_caption(client, keys, "es"))
    (caption,) = await read(client, keys, "es")
    assert isinstance(caption, Translation) and caption.kind == "partial" and caption.route == "apertium:en-es"
    # the words the translations of both partials agree on, a prefix of the full translation
    # (cased as the session's first sentence: workers.mt.casing)
    full = fit_span(caption.source_text, router.translate(caption.source_text, "en", "es").text,
                    True, "es").split()
    words = caption.text.split()
    assert words and full[: len(words)] == words and caption.source_text.endswith("station tomorrow")


async def _has_caption(client: Any, keys: Keys, lang: str) -> bool:
    return any(isinstance(e, Translation) and e.kind == "partial" for e in await read(client, keys, lang))


async def test_held_text_is_released_by_the_hold_timeout(
    settings: BusSettings, client: Any, router: Router
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es"])
    pool = Workers(settings, router, MTSettings(engine=EngineConfig(hold_timeout_s=0.4)))
    await pool.start()
    try:
        t0 = time.time()
        piece = Transcript(room=ROOM, session=SESSION, seq=0, kind="committed", utterance=0,
                           text="we will meet at the", lang="en", sample_start=0, sample_end=24000,
                           capture_start=t0, capture_end=t0 + 1.5)
        await produce(client, keys, [piece])
        await wait_for(lambda: _has_committed(client, keys, "es"), timeout=10)
        (t,) = committed(await read(client, keys, "es"))
        assert t.source_text == "we will meet at the" and t.seq == 1 and not t.final
        assert t.trace[-1].t_out - t.trace[-1].t_in >= 0.4  # held that long, not longer than needed
    finally:
        await pool.stop_all()


async def _has_committed(client: Any, keys: Keys, lang: str) -> bool:
    return bool(committed(await read(client, keys, lang)))


# --- takeover ----------------------------------------------------------------------------------------


def _cut_after_inner_boundary(expected: list[tuple[int, int, int, str]]) -> int:
    """A cut right after a piece in which a span ended mid-piece (the rest of it held)."""
    inner = [src_seq for seq, _first, src_seq, _text in expected if seq % 2 == 0]
    assert inner, "the FLEURS pieces have a sentence end inside a piece"
    return inner[len(inner) // 2] + 1


def _cut_mid_sentence(pieces: list[Transcript], start: int) -> int:
    """A cut right after a piece that ends mid-sentence (its last words are held)."""
    for i in range(start, len(pieces)):
        if pieces[i].text[-1].isalnum() and not pieces[i].final:
            return i + 1
    raise AssertionError("no mid-sentence piece")


async def test_stopping_the_owner_mid_stream_hands_over_exactly(
    settings: BusSettings, client: Any, workers: Workers, router: Router, fleurs: list[Transcript]
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es", "ca"])
    expected = reference(router, fleurs, ["es", "ca"])
    cuts = sorted({_cut_after_inner_boundary(expected["es"]), _cut_mid_sentence(fleurs, len(fleurs) // 3)})
    a, b = await workers.start(), await workers.start()  # two workers; one owns the session
    pool = [a, b]
    start = 0
    for cut in [*cuts, len(fleurs)]:
        await produce(client, keys, fleurs[start:cut], end=cut == len(fleurs))
        if cut == len(fleurs):
            break
        await wait_for(handled(client, keys))
        owner = next(w for w in pool if PART in w.owned)
        assert owner.owned[PART].ctx.state.engine.segmenter.held_text  # text is held right now
        await workers.stop(owner)
        pool.remove(owner)
        pool.append(await workers.start())
        start = cut
    await wait_for(ended(client, keys, ["es", "ca"]))
    for lang in ("es", "ca"):
        got = await read(client, keys, lang)
        assert summary(got) == expected[lang]  # the same as one uninterrupted worker
        assert len(got) == len(expected[lang]) + 1


async def test_a_worker_that_loses_its_lease_resumes_exactly(
    settings: BusSettings, client: Any, workers: Workers, router: Router, fleurs: list[Transcript]
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es", "ca"])
    expected = reference(router, fleurs, ["es", "ca"])
    cut = _cut_mid_sentence(fleurs, len(fleurs) // 2)
    worker = await workers.start()
    await produce(client, keys, fleurs[:cut])
    await wait_for(handled(client, keys))
    lease = keys.lease("mt", "transcript", PART)
    await client.set(lease, "intruder", px=5000)  # as after a pause longer than the lease

    async def dropped() -> bool:
        return PART not in worker.owned

    await wait_for(dropped, timeout=10)
    await produce(client, keys, fleurs[cut:], end=True)
    await asyncio.sleep(0.3)
    assert committed(await read(client, keys, "es"))[-1].src_seq < cut  # fenced: nothing written
    await client.delete(lease)  # the stream is free again: taken back, rebuilt from the streams
    await wait_for(ended(client, keys, ["es", "ca"]))
    for lang in ("es", "ca"):
        got = await read(client, keys, lang)
        assert summary(got) == expected[lang] and len(got) == len(expected[lang]) + 1


# --- bad input ------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def on(request: pytest.FixtureRequest, router: Router) -> Callable[..., Awaitable[HarnessResult]]:
    """One MT stage run over given entries: in memory (bus.harness.run_stage), or through a
    real Worker on the local Redis (run_on_redis); both give a HarnessResult."""
    if request.param == "memory":
        return lambda entries, langs: run_stage(MTStage(MT, router=router), entries, langs=langs)
    settings = request.getfixturevalue("settings")
    return lambda entries, langs: run_on_redis(MTStage(MT, router=router), entries, settings,
                                               langs=langs)


async def test_bad_transcripts_are_dead_lettered_and_unsupported_targets_skipped(
    on: Callable[..., Awaitable[HarnessResult]], fleurs: list[Transcript]
) -> None:
    """Reject and undecodable entries; the same body in memory and on the real bus."""
    good = [e for e in fleurs if e.utterance < 2]
    huge = good[3].model_copy(update={"seq": 0, "text": "word " * 5000})
    empty = good[3].model_copy(update={"seq": 0, "text": "   "})
    stream = [*good[:3], huge, empty, *good[3:]]
    stream = [e.model_copy(update={"seq": i}) for i, e in enumerate(stream)]
    bad_kind = {**stream[4].to_fields(), "kind": "final"}
    entries = [*stream[:4], bad_kind, *stream[4:], end_marker(ROOM, SESSION, seq=stream[-1].seq + 1)]
    # Apertium has no en-de here
    result = await on(entries, ["es", "de"])

    dead = result.dead
    assert len(dead) == 2
    assert dead[0].error.startswith("rejected: transcript of 5000 words is over the limit")
    assert dead[0].stage == "mt" and dead[0].attempts == 1
    assert dead[1].error.startswith("malformed") and "kind" in dead[1].error
    es = committed(result.stream("translation", "es"))
    pieces = [e for e in stream if e is not stream[3]]
    assert " ".join(t.source_text for t in es).split() == " ".join(p.text for p in pieces).split()
    assert es[-1].src_seq == stream[-1].seq
    de = result.stream("translation", "de")
    assert len(de) == 1 and isinstance(de[0], ControlEvent)  # only the end marker


async def test_a_target_without_a_route_is_a_counted_skip_shown_by_status(
    settings: BusSettings, client: Any, workers: Workers, fleurs: list[Transcript],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A room with a language no backend reaches (en-de with Apertium only): the others get
    every span; that one gets the end marker only, and each span it missed is logged (a
    warning the first time), counted, and shown by `s2st status` until the worker stops."""
    keys = settings.keys
    await open_room(client, keys, ["es", "de"])
    clip = [e for e in fleurs if e.utterance < 2]
    before = metric("s2st_mt_skipped_total", pair="en-de", reason="no_route")
    worker = await workers.start()
    with caplog.at_level(logging.WARNING, logger="workers.mt.engine"):
        await produce(client, keys, clip, end=True)
        await wait_for(ended(client, keys, ["es", "de"]))
    es = committed(await read(client, keys, "es"))
    de = await read(client, keys, "de")
    assert len(es) >= 2 and len(de) == 1 and isinstance(de[0], ControlEvent)
    assert await client.xlen(keys.deadletter(ROOM)) == 0  # the transcripts were good
    assert metric("s2st_mt_skipped_total", pair="en-de", reason="no_route") - before == len(es)
    warned = [r for r in caplog.records if "en->de" in r.getMessage()]
    assert warned and "no translation route from 'en' to 'de'" in warned[0].getMessage()

    async def all_counted() -> bool:
        return (await mt_health(client, keys)).get("skipped") == {"en-de no_route": len(es)}

    await wait_for(all_counted, timeout=10)  # published at the worker's next heartbeat
    health = await mt_health(client, keys)
    assert health["no_route"] == {"en-de": "no translation route from 'en' to 'de': no backend "
                                           "for it directly or through pivots (es, en)"}
    text = format_status(await collect(client, keys))
    assert f"! {worker.worker_id} spans skipped en-de no_route: {len(es)}" in text
    assert f"! {worker.worker_id} no route en-de: no translation route" in text
    await workers.stop(worker)
    assert await client.hgetall(keys.health("mt")) == {}  # it went with its worker


# --- model backends ---------------------------------------------------------------------------------------

# what docker-compose.yml's mt-llm names: a hub id, not in this host's (empty) cache
HUB_LLM = {"mistral": {"kind": "llm", "path": "mistralai/Mistral-7B-Instruct-v0.3"}}


async def test_a_model_that_cannot_load_falls_back_only_when_asked_and_says_so(
    settings: BusSettings, client: Any, fleurs: list[Transcript], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to load
    mt = MTSettings.from_env({
        "S2ST_MT_BACKENDS": "en-es=mistral|apertium,*=apertium",
        "S2ST_MT_MODELS": json.dumps(HUB_LLM),
        "S2ST_MT_MODEL_FALLBACK": "on",
        "S2ST_MT_HOLD_TIMEOUT_S": "60",
    })
    keys = settings.keys
    await open_room(client, keys, ["es"])
    clip = [e for e in fleurs if e.utterance == 0]
    labels = {"pair": "en-es", "wanted": "mistral", "used": "apertium:en-es"}
    before = metric("s2st_mt_backend_fallback_total", **labels)
    pool = Workers(settings, None, mt)  # the stage builds its router (and loads) from settings
    worker = await pool.start()
    try:
        await produce(client, keys, clip, end=True)
        await wait_for(ended(client, keys, ["es"]))
        es = committed(await read(client, keys, "es"))
        assert es and all(t.route == "apertium:en-es" and t.text for t in es)
        assert metric("s2st_mt_backend_fallback_total", **labels) - before == len(es)
        assert metric("s2st_mt_backend_unavailable", backend="mistral") == 1

        async def published() -> bool:
            return "fallback" in await mt_health(client, keys)

        await wait_for(published, timeout=10)
        health = await mt_health(client, keys)
        assert health["fallback"] == {"en-es": "apertium:en-es, instead of mistral"}
        assert "cannot load LLM mistralai/Mistral-7B-Instruct-v0.3" in health["unavailable"]["mistral"]
        text = format_status(await collect(client, keys))
        assert f"! {worker.worker_id} cannot load mistral: cannot load LLM" in text
        assert f"! {worker.worker_id} fallback route en-es: apertium:en-es, instead of mistral" in text
    finally:
        await pool.stop_all()


def test_s2st_mt_command_stops_at_start_on_a_model_that_cannot_load(
    settings: BusSettings, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "S2ST_MT_BACKENDS": "en-es=mistral|apertium,*=apertium",
           "S2ST_MT_MODELS": json.dumps(HUB_LLM)}
    env.pop("S2ST_MT_MODEL_FALLBACK", None)
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "s2st"), "mt", "--key-prefix", settings.key_prefix],
        cwd=ROOT, capture_output=True, timeout=120, env=env,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("s2st mt: MT model 'mistral' (llm, mistralai/Mistral-7B-Instruct-v0.3) "
                           "cannot load: cannot load LLM"), last
    assert "S2ST_MT_MODEL_FALLBACK=on" in last




async def test_llm_and_seq2seq_backends_through_the_worker(
    settings: BusSettings, client: Any, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from tests.mt.tiny_models import build_causal_lm, build_marian

    llm, s2s = build_causal_lm(tmp_path / "llm"), build_marian(tmp_path / "m2m", ["__en__", "__es__", "__ca__"])
    mt = MTSettings.from_env({
        "S2ST_MT_BACKENDS": "en-es=tiny_llm,en-ca=tiny_s2s,*=apertium",
        "S2ST_MT_MODELS": (
            f'{{"tiny_llm": {{"kind": "llm", "path": "{llm}", "device": "cpu", "max_new_tokens": 6}},'
            f' "tiny_s2s": {{"kind": "seq2seq", "path": "{s2s}", "device": "cpu", "max_new_tokens": 6}}}}'
        ),
    })
    keys = settings.keys
    await open_room(client, keys, ["es", "ca"])
    pool = Workers(settings, None, mt)  # the stage builds its own router from the settings
    await pool.start()
    try:
        t0 = time.time()
        texts = ["hello everyone , we", "will meet at the station .", "good morning"]
        pieces = [Transcript(room=ROOM, session=SESSION, seq=i, kind="committed", utterance=i // 2,
                             text=text, lang="en", sample_start=i * 16000, sample_end=(i + 1) * 16000,
                             capture_start=t0 + i, capture_end=t0 + i + 1, final=i >= 1)
                  for i, text in enumerate(texts)]
        await produce(client, keys, pieces, end=True)
        await wait_for(ended(client, keys, ["es", "ca"]), timeout=60)
    finally:
        await pool.stop_all()
    for lang, route in (("es", "tiny_llm:en-es"), ("ca", "tiny_s2s:en-ca")):
        translations = committed(await read(client, keys, lang))
        assert [t.source_text for t in translations] == [
            "hello everyone , we will meet at the station .", "good morning"]
        assert all(t.route == route and t.text.strip() for t in translations)


# --- the command -----------------------------------------------------------------------------------------


async def test_s2st_mt_command_translates_and_stops_on_sigterm(
    settings: BusSettings, client: Any, fleurs: list[Transcript]
) -> None:
    keys = settings.keys
    await open_room(client, keys, ["es"])
    env = {**os.environ, "S2ST_MT_HOLD_TIMEOUT_S": "1.0"}
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv" / "bin" / "s2st"), "mt", "--key-prefix", settings.key_prefix,
        "--log-level", "info", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        clip = [e for e in fleurs if e.utterance == 0]
        await produce(client, keys, clip, end=True)
        await wait_for(ended(client, keys, ["es"]), timeout=40)
        assert " ".join(t.source_text for t in committed(await read(client, keys, "es"))).split() == \
            " ".join(e.text for e in clip).split()
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"worker stopped" in err


def test_invalid_mt_settings_stop_the_command_with_a_clear_message() -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "s2st"), "mt", "--hold-timeout-s", "soon"],
        cwd=ROOT, capture_output=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert "S2ST_MT_HOLD_TIMEOUT_S must be a number, not 'soon'" in proc.stderr.decode()



async def test_only_acknowledged_pieces_are_refed(settings: BusSettings, client: Any, fleurs: list[Transcript]) -> None:
    """Pieces the previous owner read but did not acknowledge are left to the normal redelivery."""
    from bus.registry import SessionInfo
    from bus.stage import PartitionContext
    from workers.mt.takeover import handled_pieces

    keys = settings.keys
    ctx = PartitionContext(stage="mt", worker_id="w", family="transcript", partition=PART, keys=keys,
                           client=client, session=SessionInfo(ROOM, SESSION, "en"), targets=["es"])
    await produce(client, keys, fleurs[:10])
    assert await handled_pieces(ctx, 0) == []  # no group yet: nothing handled
    await client.xgroup_create(ctx.input_key, "mt", id="0")
    reply = await client.xreadgroup("mt", "old-owner", {ctx.input_key: ">"}, count=8)
    ids = [entry_id for entry_id, _fields in reply[0][1]]
    await client.xack(ctx.input_key, "mt", *ids[:6])  # 6 handled, 2 read and pending, 2 unread
    assert [p.seq for p in await handled_pieces(ctx, 2)] == [2, 3, 4, 5]
    await client.xack(ctx.input_key, "mt", *ids[6:])
    assert [p.seq for p in await handled_pieces(ctx, 5)] == [5, 6, 7]
