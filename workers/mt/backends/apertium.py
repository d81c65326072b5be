"""Apertium, the offline rule-based default: one warm pipeline per translation direction.

``apertium`` itself is a shell script that starts a pipeline of lt-proc, the tagger and the
transfer stages for every call (about 115 ms here). Instead, for each direction this backend
asks ``apertium-wblank-mode -z`` for the mode's pipeline in null-flush mode and keeps it
running: each text goes in terminated by a NUL, and the translation comes back terminated by a
NUL (about 1 ms a sentence once warm). Deformatting is done in Python (see
:mod:`apertium_format`). A pipeline that dies is restarted and the text retried once; one that
does not answer within the timeout is killed (its whole process group) and restarted, and
the call raises :class:`BackendFailure`, so a session never blocks on it.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .. import langs
from ..casing import capitalised_words, lower_spurious_capitals, mid_sentence_capitals
from ..errors import BackendFailure, BackendUnavailable, InputRejected
from .apertium_format import deformat, match_initial_case, reformat

log = logging.getLogger(__name__)

DEFAULT_DATADIR = Path(os.environ.get("APERTIUM_DATADIR", "/usr/share/apertium"))
REQUIRED_PROGRAMS = ("apertium-wblank-mode", "lt-proc", "bash")


def discover_modes(datadir: Path = DEFAULT_DATADIR) -> dict[tuple[str, str], str]:
    """The installed plain directions, ``{('en', 'es'): 'eng-spa', ...}``.

    Variants (``eng-cat_valencia``, ``spa-eng_US``) are left out; name one explicitly with the
    ``modes`` argument of :class:`ApertiumTranslator` to use it.
    """
    found: dict[tuple[str, str], str] = {}
    for path in sorted((datadir / "modes").glob("*.mode")):
        parts = path.stem.split("-")
        if len(parts) != 2 or not all(p.isalpha() for p in parts):
            continue
        try:
            pair = (langs.normalize(parts[0]), langs.normalize(parts[1]))
        except ValueError:
            continue
        found.setdefault(pair, path.stem)
    return found


class PipelineDied(Exception):
    """The pipeline closed its input or output (it crashed or was killed)."""


class ApertiumPipeline:
    """One long-running, null-flushed Apertium pipeline for one mode (e.g. ``eng-spa``)."""

    def __init__(self, mode: str, datadir: Path = DEFAULT_DATADIR, mark_unknown: bool = True):
        self.mode = mode
        self.datadir = datadir
        self.mark_unknown = mark_unknown
        self.starts = 0
        self._script: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def restarts(self) -> int:
        """How many times the pipeline was started again after the first start."""
        return max(0, self.starts - 1)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _pipeline_script(self) -> str:
        if self._script is None:
            mode_file = self.datadir / "modes" / f"{self.mode}.mode"
            if not mode_file.exists():
                raise BackendUnavailable(f"Apertium mode file {mode_file} not found")
            result = subprocess.run(
                ["apertium-wblank-mode", "-z", str(mode_file)],
                capture_output=True, text=True, timeout=30, check=False,
            )
            if result.returncode != 0 or not result.stdout.strip():
                raise BackendUnavailable(
                    f"apertium-wblank-mode failed for {self.mode}: {result.stderr.strip()}"
                )
            self._script = result.stdout.strip()
        return self._script

    def start(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                return
            log.warning("apertium %s pipeline exited (%s): restarting", self.mode, self._proc.returncode)
        self.stop()
        script = self._pipeline_script()
        self._stderr = tempfile.TemporaryFile(prefix=f"apertium-{self.mode}-")
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        # $1 is the generator's option (-g marks unknown words, -n does not), $2 the tagger's.
        option = "-g" if self.mark_unknown else "-n"
        self._proc = subprocess.Popen(
            ["bash", "-c", script, f"apertium-{self.mode}", option, ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            bufsize=0, env=env, start_new_session=True,
        )
        assert self._proc.stdin is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        self.starts += 1
        log.info("apertium %s pipeline started (pid %d)", self.mode, self._proc.pid)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            proc.wait(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self, limit: int = 400) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace").strip()

    def exchange(self, stream_text: str, timeout_s: float) -> str:
        """Send one NUL-terminated block, return the pipeline's answer to it.

        Raises :class:`TimeoutError` (the caller restarts) or :class:`PipelineDied`.
        """
        self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        payload = memoryview((stream_text + "[]\0").encode("utf-8"))
        written = 0
        answer = bytearray()
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(proc.stdin, selectors.EVENT_WRITE)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"apertium {self.mode} gave no answer in {timeout_s:.1f} s")
                for key, _ in selector.select(remaining):
                    if key.fileobj is proc.stdin:
                        try:
                            written += os.write(proc.stdin.fileno(), payload[written:written + 65536])
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, OSError) as exc:
                            raise PipelineDied(str(exc)) from exc
                        if written == len(payload):
                            selector.unregister(proc.stdin)
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        raise PipelineDied("end of output")
                    answer += chunk
                    end = answer.find(b"\0")
                    if end >= 0:
                        return answer[:end].decode("utf-8", "replace")


class ApertiumTranslator:
    """The :class:`~workers.mt.backends.base.Translator` over warm Apertium pipelines.

    ``modes`` overrides or adds directions, e.g. ``{("en", "ca"): "eng-cat_valencia"}``.
    ``timeout_s`` bounds one call (the first call of a direction also starts its pipeline).
    Texts longer than ``max_chars`` are rejected.
    """

    name = "apertium"
    fast = True

    def __init__(
        self,
        datadir: Path | str = DEFAULT_DATADIR,
        modes: Mapping[tuple[str, str], str] | None = None,
        timeout_s: float = 10.0,
        max_chars: int = 20_000,
    ) -> None:
        self.datadir = Path(datadir)
        missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
        self.available = not missing
        self.modes: dict[tuple[str, str], str] = {}
        if self.available:
            self.modes = discover_modes(self.datadir)
        else:
            log.warning("apertium backend disabled: %s not installed", ", ".join(missing))
        if modes:
            self.modes.update(modes)
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.unknown_words = 0
        self._pipelines: dict[str, ApertiumPipeline] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._names: dict[tuple[str, str], str] = {}  # (mode, source name) -> its translation

    def supports(self, src: str, tgt: str) -> bool:
        return self.available and (src, tgt) in self.modes

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self.modes) if self.available else []

    def _pipeline(self, mode: str) -> tuple[ApertiumPipeline, threading.Lock]:
        with self._guard:
            if mode not in self._pipelines:
                self._pipelines[mode] = ApertiumPipeline(mode, self.datadir)
                self._locks[mode] = threading.Lock()
            return self._pipelines[mode], self._locks[mode]

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        if not self.supports(src, tgt):
            raise BackendUnavailable(f"no Apertium mode for {src}-{tgt}")
        stream_text = deformat(text)
        if not stream_text:
            return ""
        if len(stream_text) > self.max_chars:
            raise InputRejected(
                f"text of {len(stream_text)} characters is over the limit of {self.max_chars}"
            )
        pipeline, lock = self._pipeline(self.modes[(src, tgt)])
        with lock:
            raw = self._exchange_with_retry(pipeline, stream_text)
            keep = set(capitalised_words(text))
            for name in mid_sentence_capitals(text):
                keep.update(capitalised_words(self._name(pipeline, name)))
        result = reformat(raw)
        self.unknown_words += len(result.unknown_words)
        cased = match_initial_case(stream_text, result.text)
        return lower_spurious_capitals(cased, keep, tgt)

    def _name(self, pipeline: ApertiumPipeline, name: str) -> str:
        """The translation of a capitalised source word alone (cached): a name the rules
        translate ("London" -> "Londres") keeps its capital in the sentence."""
        key = (pipeline.mode, name)
        if key not in self._names:
            if len(self._names) > 10_000:
                self._names.clear()
            self._names[key] = reformat(self._exchange_with_retry(pipeline, deformat(name))).text
        return self._names[key]

    def _exchange_with_retry(self, pipeline: ApertiumPipeline, stream_text: str) -> str:
        timeout = self.timeout_s + len(stream_text) / 2000.0
        for attempt in (1, 2):
            try:
                return pipeline.exchange(stream_text, timeout)
            except TimeoutError as exc:
                detail = pipeline.stderr_tail()
                pipeline.stop()
                raise BackendFailure(f"{exc}; pipeline restarted. {detail}".strip()) from exc
            except PipelineDied as exc:
                detail = pipeline.stderr_tail()
                pipeline.stop()
                log.warning("apertium %s pipeline died (%s) %s", pipeline.mode, exc, detail)
                if attempt == 2:
                    raise BackendFailure(
                        f"apertium {pipeline.mode} pipeline died twice: {detail or exc}"
                    ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._guard:
            for pipeline in self._pipelines.values():
                pipeline.stop()
            self._pipelines.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
