"""`s2st capture` on the bus (local Redis): the dry run's chunks, the session's life, errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bus.events import AudioChunk, ControlEvent, decode_event
from bus.keys import Keys, Partition
from capture_agent.agent import AgentOptions, CaptureAgent
from capture_agent.audio_io import AudioInputError, load_audio
from capture_agent.pipeline import CaptureProcessor
from capture_agent.publisher import SessionRef
from capture_agent.sources import AudioBlock, FileSource, MicrophoneSource, StreamBuffer
from ops.cli import main
from ops.redis_servers import free_port

LOCAL = "redis://127.0.0.1:6379/0"
DEV_CLIP = "ljspeech_LJ001-0001"  # 9.7 s
S2ST = Path(sys.executable).parent / "s2st"


def read_session(prefix: str, room: str, session: str) -> tuple[list, dict, list]:
    """(the audio stream's events, the registry's fields of the session, announcements)."""
    keys = Keys(prefix)
    r = redis.Redis.from_url(LOCAL)
    try:
        entries = r.xrange(keys.stream("audio", Partition(room, session)))
        events = [decode_event(fields) for _id, fields in entries]
        status = r.hget(keys.status(room), session)
        record = r.hget(keys.sessions(room), session)
        alive = r.hget(keys.alive(room), session)
        announced = [decode_event(f) for _id, f in r.xrange(keys.announce)]
    finally:
        r.close()
    info = {"status": status, "record": record, "alive": alive}
    return events, info, announced


def capture_args(prefix: str, path: Path | str, *extra: str) -> list[str]:
    return [
        "capture", "--room", "hall", "--session", "mic1", "--lang", "en", "--speaker", "Ann",
        "--file", str(path), "--no-meter", "--key-prefix", prefix, "--log-level", "warning",
        *extra,
    ]  # fmt: skip


def test_fast_file_publishes_the_dry_run_chunks_then_ends_the_session(clip, key_prefix):
    path = clip(DEV_CLIP)
    expected = list(CaptureProcessor().run(FileSource(path, realtime=False)))  # = the dry run
    before = time.time()
    assert main(capture_args(key_prefix, path, "--fast")) == 0
    events, info, announced = read_session(key_prefix, "hall", "mic1")
    audio, marker = events[:-1], events[-1]
    assert all(isinstance(e, AudioChunk) for e in audio)
    assert [e.seq for e in audio] == [c.seq for c in expected] == list(range(len(expected)))
    for event, chunk in zip(audio, expected, strict=True):
        assert (event.offset, event.samples, event.utterance) == (
            chunk.offset, chunk.samples, chunk.utterance,
        )  # fmt: skip
        assert (event.utt_start, event.utt_end, event.vad) == (
            chunk.utt_start, chunk.utt_end, chunk.vad,
        )  # fmt: skip
        assert event.pcm == chunk.pcm
        assert event.capture_end - event.capture_start == pytest.approx(
            chunk.capture_end - chunk.capture_start, abs=1e-6
        )
        assert event.emitted >= before
    assert isinstance(marker, ControlEvent) and marker.action == "end"
    assert marker.seq == len(expected) and marker.reason == "eof"
    assert (marker.source_lang, marker.speaker) == ("en", "Ann")
    assert info["status"] == b"ended" and b'"reason": "eof"' in info["record"]
    assert [(a.session, a.action) for a in announced] == [("mic1", "start"), ("mic1", "end")]
    assert announced[0].source_lang == "en" and announced[0].speaker == "Ann"


def test_lang_auto_is_accepted(clip, key_prefix):
    # --lang given twice: argparse keeps the last one
    path = clip("ljspeech_LJ001-0002")
    assert main(capture_args(key_prefix, path, "--fast", "--lang", "auto")) == 0
    _, info, announced = read_session(key_prefix, "hall", "mic1")
    assert announced[0].source_lang == "auto" and info["status"] == b"ended"


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    import struct

    def wav(rate: int, data: bytes, declared: int | None = None) -> bytes:
        size = len(data) if declared is None else declared
        fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
        return (
            b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", size) + data
        )  # fmt: skip

    pcm = bytes(32000)
    files = {
        "empty": b"",
        "not audio": b"this is a text file, not audio\n" * 20,
        "zero rate": wav(0, pcm),
        "truncated wav": wav(16000, pcm[:1000], declared=len(pcm)),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / (name.replace(" ", "_") + ".wav")
        out[name].write_bytes(data)
    out["missing"] = tmp_path / "missing.wav"
    return out


@pytest.mark.parametrize("case", ["empty", "not audio", "zero rate", "truncated wav", "missing"])
def test_bad_input_registers_nothing_and_exits_2(tmp_path, key_prefix, capsys, case):
    path = _bad_inputs(tmp_path)[case]
    assert main(capture_args(key_prefix, path, "--fast")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0]
    r = redis.Redis.from_url(LOCAL)
    assert list(r.scan_iter(match=f"{key_prefix}:*")) == []
    r.close()


def test_file_truncated_mid_stream_ends_the_session_with_error(clip, tmp_path, key_prefix, capsys):
    data = clip(DEV_CLIP).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])  # decodes 4.1 s, then "lost sync"
    assert main(capture_args(key_prefix, cut, "--fast")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated" in err[0] and str(cut) in err[0]
    events, info, _ = read_session(key_prefix, "hall", "mic1")
    audio, marker = events[:-1], events[-1]
    assert len(audio) >= 3 and audio[-1].utt_end  # what was decoded, its utterance closed
    assert marker.action == "end" and marker.reason == "error" and marker.seq == len(audio)
    assert info["status"] == b"ended"


class _BrokenSource:
    """A source whose file turns out unreadable at the first block (after registering)."""

    rate = 16000
    total_samples = None
    overflows = 0
    label = "broken"

    def __iter__(self):
        raise AudioInputError("broken.flac: corrupt or truncated audio (lost sync)")
        yield AudioBlock(None, 0.0)  # pragma: no cover

    def close(self) -> None:
        pass


async def test_error_before_any_chunk_removes_the_session(key_prefix, capsys):
    from bus.settings import BusSettings

    settings = BusSettings(redis_url=LOCAL, key_prefix=key_prefix)
    options = AgentOptions(SessionRef("hall", "mic1", "en"))
    agent = CaptureAgent(settings, options, _BrokenSource(), CaptureProcessor())
    assert await agent.run() == 2
    assert agent.end_reason == "removed"
    assert "lost sync" in capsys.readouterr().err
    events, info, _ = read_session(key_prefix, "hall", "mic1")
    assert events == [] and info == {"status": None, "record": None, "alive": None}


def test_an_existing_session_id_is_refused_and_left_alone(clip, key_prefix, capsys):
    path = clip("ljspeech_LJ001-0002")
    assert main(capture_args(key_prefix, path, "--fast")) == 0
    events, info, _ = read_session(key_prefix, "hall", "mic1")
    assert main(capture_args(key_prefix, path, "--fast")) == 2
    assert "already registered" in capsys.readouterr().err
    assert read_session(key_prefix, "hall", "mic1")[:2] == (events, info)


def test_missing_session_options_and_bad_ids(clip, capsys):
    path = str(clip("ljspeech_LJ001-0002"))
    assert main(["capture", "--file", path, "--fast", "--room", "hall"]) == 2
    assert "--session, --lang required" in capsys.readouterr().err
    bad = ["capture", "--file", path, "--room", "a:b", "--session", "s", "--lang", "en"]
    assert main(bad) == 2
    assert "invalid room id" in capsys.readouterr().err


# --- the real command in a subprocess -------------------------------------------------------


def test_command_without_redis_gives_one_line_and_exit_3(clip):
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [str(S2ST), *capture_args("tcapnone", clip("ljspeech_LJ001-0002"), "--redis-url", url)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("s2st: cannot reach Redis at") and url in lines[0]
    )


def test_command_at_real_time_pace_stops_cleanly_on_sigterm(clip, key_prefix):
    """The real command on a 9.7 s file: SIGTERM after ~3 s flushes the open utterance,
    writes everything and ends the session (reason "stopped")."""
    args = [str(S2ST), *capture_args(key_prefix, clip(DEV_CLIP))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:  # wait until speech is flowing
            events, _, _ = read_session(key_prefix, "hall", "mic1")
            if len(events) >= 3:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    events, info, _ = read_session(key_prefix, "hall", "mic1")
    audio, marker = events[:-1], events[-1]
    assert [e.seq for e in audio] == list(range(len(audio)))
    assert audio[-1].utt_end, "the last utterance was flushed"
    # stopped early: less than the whole file
    assert audio[-1].offset + audio[-1].samples < 9.0 * 16000
    assert marker.action == "end" and marker.reason == "stopped" and marker.seq == len(audio)
    assert info["status"] == b"ended"
    # at real-time pace, chunks are stamped on the wall clock
    assert abs(audio[-1].capture_end - marker.emitted) < 2.0


class _OverflowingMic:
    """A sound card playing real speech in 1024-frame buffers, losing audio twice."""

    rate = 16000
    channels = 1

    def __init__(self, samples, overflow_at: set[int]) -> None:
        self.pcm = (samples * 32767).astype("<i2")
        self.overflow_at = overflow_at
        self.index = 0
        self.t = time.time()

    def read(self, timeout: float) -> StreamBuffer | None:
        part = self.pcm[self.index * 1024 : (self.index + 1) * 1024]
        if not len(part):
            return None
        self.t += len(part) / self.rate
        self.index += 1
        return StreamBuffer(part.tobytes(), self.t, self.index - 1 in self.overflow_at)

    def close(self) -> None:
        pass


async def test_microphone_overflows_are_counted_never_fatal(clip, key_prefix):
    from bus.settings import BusSettings

    mic = _OverflowingMic(load_audio(clip(DEV_CLIP)), overflow_at={5, 60})
    processor = CaptureProcessor()
    agent = CaptureAgent(
        BusSettings(redis_url=LOCAL, key_prefix=key_prefix),
        AgentOptions(SessionRef("hall", "mic1", "en")),
        MicrophoneSource(stream_factory=lambda: mic),
        processor,
    )
    assert await agent.run() == 0
    assert processor.stats.overflows == 2
    assert agent.metrics.value("s2st_capture_overflows_total") == 2
    events, info, _ = read_session(key_prefix, "hall", "mic1")
    assert len(events) - 1 == processor.stats.chunks_sent == agent.stats.published >= 10
    assert events[-1].reason == "eof" and info["status"] == b"ended"
