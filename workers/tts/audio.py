"""Output audio: one sample rate, one loudness, clean piece edges, int16 little-endian PCM.

Output rate: 24 kHz. It is the native rate of the default neural voice (Kokoro) and of
edge-tts, so the voice heard most is never resampled; Piper and espeak-ng (22.05 kHz) are
resampled up, which costs little and adds nothing audible. 16 kHz would cut the sibilants
above 8 kHz that make synthetic speech intelligible, and 48 kHz doubles the bytes on the bus
for no gain.

Loudness: a gated RMS level, LUFS-like without the K-weighting: 20 ms frames quieter than
-60 dBFS (silence) and those more than 20 dB below the mean of the rest (breaths, tails) are
ignored, and the gain brings what remains to `target_dbfs` (-23, the EBU R128 programme
level, which leaves room for the peaks of speech). Peaks above -6 dBFS pass a smooth soft
limiter that never exceeds `peak_dbfs`; where a peak would need more than 6 dB of limiting the
gain is lowered instead. Every backend is measured the same way, so voices switch without
jumps.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

OUTPUT_RATE = 24_000
TARGET_DBFS = -23.0
PEAK_DBFS = -1.0
LIMIT_KNEE = 0.5  # samples above this (-6 dBFS) are softly compressed toward the ceiling
MAX_LIMIT_DB = 6.0  # at most this much of a peak is squeezed by the limiter
MAX_GAIN_DB = 30.0
FADE_S = 0.008
FRAME_S = 0.02
ABSOLUTE_GATE_DBFS = -60.0
RELATIVE_GATE_DB = 20.0

Float = npt.NDArray[np.float32]


def to_float(pcm: np.ndarray) -> Float:
    """Samples as float32 in [-1, 1] from int16 or any float array."""
    array = np.asarray(pcm).ravel()
    if array.dtype == np.int16:
        return (array.astype(np.float32) / 32768.0).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"PCM must be int16 or float, not {array.dtype}")
    array = array.astype(np.float32)
    return np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)


def to_int16_bytes(samples: Float) -> bytes:
    """float32 [-1, 1] -> int16 little-endian bytes (clipped, rounded)."""
    scaled = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    return scaled.tobytes()


def resample(samples: Float, rate: int, target: int = OUTPUT_RATE) -> Float:
    """Resample mono float32 audio with soxr (high quality)."""
    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {target}")
    if rate == target or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import soxr

    return np.asarray(soxr.resample(samples, rate, target, quality="HQ"), dtype=np.float32)


def gated_rms_dbfs(samples: Float, rate: int) -> float | None:
    """Speech level in dBFS ignoring silence and quiet tails; None for silence."""
    frame = max(1, int(FRAME_S * rate))
    count = samples.size // frame
    if count == 0:
        return None
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    power = np.mean(frames**2, axis=1)
    loud = power[power > 10 ** (ABSOLUTE_GATE_DBFS / 10)]
    if loud.size == 0:
        return None
    relative_gate = np.mean(loud) * 10 ** (-RELATIVE_GATE_DB / 10)
    kept = loud[loud >= relative_gate]
    return float(10 * np.log10(np.mean(kept)))


def normalize_loudness(
    samples: Float, rate: int, target_dbfs: float = TARGET_DBFS, peak_dbfs: float = PEAK_DBFS
) -> Float:
    """Scale to the target gated level (at most +30 dB), peaks softly limited to the ceiling."""
    level = gated_rms_dbfs(samples, rate)
    if level is None:
        return samples
    gain_db = min(target_dbfs - level, MAX_GAIN_DB)
    gain = 10 ** (gain_db / 20)
    ceiling = 10 ** (peak_dbfs / 20)
    peak = float(np.max(np.abs(samples))) * gain
    allowed = ceiling * 10 ** (MAX_LIMIT_DB / 20)
    if peak > allowed:
        gain *= allowed / peak
    return soft_limit((samples * gain).astype(np.float32), ceiling)


def soft_limit(samples: Float, ceiling: float, knee: float = LIMIT_KNEE) -> Float:
    """Leave samples under `knee` alone; bend louder ones smoothly (tanh) below `ceiling`."""
    knee = min(knee, ceiling)
    magnitude = np.abs(samples)
    over = magnitude > knee
    if not np.any(over):
        return samples
    span = ceiling - knee
    out = samples.copy()
    bent = knee + span * np.tanh((magnitude[over] - knee) / span) if span > 0 else knee
    out[over] = np.sign(samples[over]) * bent
    return out.astype(np.float32)


def fade_edges(samples: Float, rate: int, fade_s: float = FADE_S) -> Float:
    """Raised-cosine fade in and out so a piece starts and ends at zero: no click at joins."""
    length = min(int(fade_s * rate), samples.size // 2)
    if length < 2:
        return samples
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length))).astype(np.float32)
    out = samples.astype(np.float32, copy=True)
    out[:length] *= ramp
    out[-length:] *= ramp[::-1]
    return out


def remove_dc(samples: Float) -> Float:
    if samples.size == 0:
        return samples
    return (samples - np.float32(np.mean(samples))).astype(np.float32)


def trim_silence(
    samples: Float, rate: int, floor_dbfs: float = -50.0, keep_s: float = 0.03
) -> Float:
    """Cut leading and trailing silence (below `floor_dbfs`), keeping `keep_s` around speech."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (floor_dbfs / 20))
    if loud.size == 0:
        return samples[:0]
    keep = int(keep_s * rate)
    return samples[max(0, loud[0] - keep) : loud[-1] + keep + 1]


def silence(seconds: float, rate: int = OUTPUT_RATE) -> Float:
    return np.zeros(max(0, round(seconds * rate)), dtype=np.float32)


def finish_piece(
    pcm: np.ndarray,
    rate: int,
    *,
    target_dbfs: float = TARGET_DBFS,
    pause_s: float = 0.0,
    output_rate: int = OUTPUT_RATE,
) -> Float:
    """One backend's output -> output rate, trimmed, normalized, faded, then `pause_s` of silence."""
    samples = resample(remove_dc(to_float(pcm)), rate, output_rate)
    samples = trim_silence(samples, output_rate)
    samples = fade_edges(normalize_loudness(samples, output_rate, target_dbfs), output_rate)
    if pause_s > 0:
        samples = np.concatenate([samples, silence(pause_s, output_rate)])
    return samples
