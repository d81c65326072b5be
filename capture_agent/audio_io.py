"""Decoding audio files into 16 kHz mono float32, block by block.

`soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3) is tried first; what it cannot
open goes through an `ffmpeg` subprocess (AAC/M4A, WebM, ...). Either way the channels
are averaged to mono and the rate is converted with soxr (a band-limited resampler), so a
44.1 kHz stereo MP3 and a 16 kHz mono FLAC of the same speech give the same samples up to
coding and resampling error.

Every problem with an input file is raised as `AudioInputError`, whose message is one
line naming the file and the reason.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_RATE = 16000
DEFAULT_BLOCK_FRAMES = 16384


class AudioInputError(Exception):
    """An input file that cannot be used as audio; str() is a one-line reason."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file declares about itself, before decoding."""

    path: Path
    rate: int
    channels: int
    frames: int | None  # declared length in source frames; None when unknown
    decoder: str  # "soundfile" or "ffmpeg"

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.rate

    @property
    def output_samples(self) -> int | None:
        """Declared length after conversion to TARGET_RATE (None when unknown)."""
        if self.frames is None:
            return None
        return round(self.frames * TARGET_RATE / self.rate)


def _fail(path: Path, reason: str) -> AudioInputError:
    reason = " ".join(str(reason).split())  # one line
    return AudioInputError(f"{path}: {reason}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    if path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes)")


def _wav_truncation(path: Path) -> str | None:
    """For RIFF/WAVE files: a reason when the data chunk is shorter than its header says.

    libsndfile silently reads what is there, so a cut-off WAV would otherwise pass.
    Headers written by live recorders (size 0 or 0xFFFFFFFF) are not judged.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                available = size - pos - 8
                if available < chunk_size:
                    return (
                        f"truncated WAV: header declares {chunk_size} data bytes, "
                        f"file holds {available}"
                    )
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def probe_audio(path: str | Path) -> AudioInfo:
    """Open `path` far enough to know its rate, channels and declared length."""
    path = Path(path)
    _check_file(path)
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as sf_error:  # libsndfile raises several types
        return _probe_ffmpeg(path, sf_error)
    if info.samplerate <= 0:
        raise _fail(path, f"invalid sample rate {info.samplerate} Hz")
    if info.channels <= 0:
        raise _fail(path, "no audio channels")
    truncated = _wav_truncation(path)
    if truncated:
        raise _fail(path, truncated)
    frames = int(info.frames) if 0 < info.frames < 2**62 else None
    return AudioInfo(path, int(info.samplerate), int(info.channels), frames, "soundfile")


def _ffmpeg_tool(name: str, path: Path, why: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        raise _fail(path, f"not readable by soundfile ({why}) and {name} is not installed")
    return tool


def _probe_ffmpeg(path: Path, sf_error: BaseException) -> AudioInfo:
    why = str(sf_error).split(":")[-1].strip() or type(sf_error).__name__
    ffprobe = _ffmpeg_tool("ffprobe", path, why)
    proc = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels,duration_ts,time_base",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        if "Invalid sample rate" in proc.stderr:
            raise _fail(path, "invalid sample rate 0 Hz")
        raise _fail(path, f"not a readable audio file ({why}; ffprobe: {last})")
    streams = json.loads(proc.stdout or "{}").get("streams") or []
    if not streams:
        raise _fail(path, "no audio stream in the file")
    stream = streams[0]
    rate = int(stream.get("sample_rate") or 0)
    channels = int(stream.get("channels") or 0)
    if rate <= 0:
        raise _fail(path, f"invalid sample rate {rate} Hz")
    if channels <= 0:
        raise _fail(path, "no audio channels")
    return AudioInfo(path, rate, channels, None, "ffmpeg")


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block; 1-D input passes through."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return block[:, 0].astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


class Resampler:
    """Streaming mono float32 rate conversion with soxr; identity when the rates match."""

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                in_rate, out_rate, 1, dtype="float32", quality=quality
            )

    def process(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return np.ascontiguousarray(mono, dtype=np.float32)
        out = self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last)
        return np.asarray(out, dtype=np.float32)


def decode_blocks(
    path: str | Path, block_frames: int = DEFAULT_BLOCK_FRAMES, info: AudioInfo | None = None
) -> Iterator[np.ndarray]:
    """Yield the file as 16 kHz mono float32 blocks (sizes vary; none empty).

    Raises AudioInputError for unreadable, empty, 0 Hz, truncated or sample-less files and
    for NaN or infinite samples; a flaw found only while decoding is raised after the blocks
    decoded before it.
    """
    info = info or probe_audio(path)
    resampler = Resampler(info.rate)
    raw = _soundfile_frames if info.decoder == "soundfile" else _ffmpeg_frames
    decoded = 0
    produced = 0
    for block in raw(info, block_frames):
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            bad = int(np.argmin(np.isfinite(block).all(axis=-1) if block.ndim > 1
                                else np.isfinite(block)))
            raise _fail(info.path, "corrupt audio: NaN or infinite samples at "
                        f"{(decoded + bad) / info.rate:.2f} s")
        decoded += len(block)
        out = resampler.process(to_mono(block))
        if len(out):
            produced += len(out)
            yield out
    tail = resampler.process(np.zeros(0, dtype=np.float32), last=True)
    if len(tail):
        produced += len(tail)
        yield tail
    if decoded == 0:
        raise _fail(info.path, "the file holds no audio samples")
    if info.frames is not None and decoded < info.frames:
        raise _fail(
            info.path,
            f"truncated: header declares {info.frames / info.rate:.2f} s, "
            f"only {decoded / info.rate:.2f} s could be decoded",
        )


def _soundfile_frames(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    try:
        with sf.SoundFile(str(info.path)) as fh:
            while True:
                block = fh.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield block
    except AudioInputError:
        raise
    except Exception as exc:  # libsndfile: lost sync, unexpected end, ...
        reason = str(exc).split(":", 1)[-1].strip() if ":" in str(exc) else str(exc)
        raise _fail(info.path, f"corrupt or truncated audio ({reason})") from exc


def _ffmpeg_frames(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    ffmpeg = _ffmpeg_tool("ffmpeg", info.path, "format not recognised")
    cmd = [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(info.path),
        "-map",
        "0:a:0",
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "-",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    frame_bytes = 4 * info.channels
    pending = b""
    try:
        while True:
            data = proc.stdout.read(block_frames * frame_bytes)
            if not data:
                break
            data = pending + data
            usable = len(data) - len(data) % frame_bytes
            pending = data[usable:]
            if usable:
                block = np.frombuffer(data[:usable], dtype="<f4").reshape(-1, info.channels)
                yield block
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            last = (err.splitlines() or ["unknown error"])[-1]
            raise _fail(info.path, f"ffmpeg could not decode the file ({last})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def load_audio(path: str | Path) -> np.ndarray:
    """The whole file as 16 kHz mono float32 in [-1, 1]; AudioInputError on bad input."""
    blocks = list(decode_blocks(path))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] -> int16 little-endian bytes (scale 32768, clipped, rounded)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float32) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """int16 little-endian bytes -> float32 [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
