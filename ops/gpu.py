"""`s2st bench gpu`: is this CUDA host ready, and how many sessions does one GPU carry?

One run, in order:

1. **Refuse without CUDA** (unless ``--dry-run`` or ``--device cpu``): torch, CTranslate2 and
   onnxruntime must each see the GPU, else exit 2 naming what is missing.
2. **Components**, in this process, through the project's own engines:
   - ASR: :class:`~workers.asr.decoder.WhisperDecoder` (the worker's cross-session batched
     decode) on ``--batch-sizes`` buffers at once: RTF per batch size;
   - TTS: Kokoro-82M (:mod:`workers.tts.backends.kokoro`) on onnxruntime's CUDA provider: RTF;
   - MT: the LLM backend (:mod:`workers.mt.backends.llm`) on a tiny random Llama built here
     (no hub), 4-bit NF4 through bitsandbytes on CUDA: tokens/s;
   - GPU memory (peak of ``nvidia-smi``'s used memory, and torch's own).
3. **Sessions per GPU**: ``s2st bench scale``'s real-model ramp (a stack of ASR, MT and TTS
   workers on this GPU; N concurrent English->Spanish sessions spoken at real-time pace,
   N = 1, 2, 4, ...) until the segment-latency p95 passes ``--p95-limit`` (1.5 s).

``--dry-run`` runs the same flow on the CPU with tiny sizes (Whisper tiny.en, 1-2 sessions of
a few seconds, the tiny LLM in float32) and writes the same JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

P95_LIMIT_S = 1.5
LLM_NAME = "tinyllm"
# The text the tiny LLM's tokenizer is trained on (it must cover the prompt's words).
TOKENIZER_TEXT = (
    "You are a professional simultaneous interpreter. Translate the text you are given from "
    "English into Spanish. Reply with the Spanish translation only: no notes, no quotes, no "
    "explanations. Previous English sentences, for context only (do not translate). "
    "Good morning, everyone, and welcome to the conference. Today we are going to talk about "
    "the new library in the city. Thank you very much for coming. "
    "Buenos días a todos y bienvenidos a la conferencia. Hoy vamos a hablar de la nueva "
    "biblioteca de la ciudad. Muchas gracias por venir. El tiempo es bueno y nos veremos en "
    "la estación mañana por la tarde."
)
TTS_TEXTS = (
    "Buenos días a todos y bienvenidos a la conferencia.",
    "Hoy vamos a hablar de la nueva biblioteca de la ciudad, que abrirá sus puertas en mayo.",
    "Muchas gracias por venir.",
)


@dataclass(frozen=True)
class Plan:
    """What one run measures (``--dry-run`` picks the tiny sizes)."""

    device: str
    dry_run: bool
    asr_model: str
    compute_type: str
    batch_sizes: list[int]
    window_s: float
    sessions: list[int]
    clip_s: float
    p95_limit_s: float
    quantize: str
    llm_layers: int
    llm_hidden: int
    llm_tokens: int
    llm_answer_tokens: int


def register(commands: Any, bench: Any) -> None:
    from ops.stack import add_stack_options

    b = bench.add_parser(
        "gpu",
        help="CUDA readiness and sessions per GPU within a segment-latency p95 of 1.5 s",
        description="Check that ASR (faster-whisper, batched across sessions), Kokoro "
        "(onnxruntime-gpu) and the 4-bit LLM MT backend run on CUDA, measure each (ASR RTF per "
        "batch size, TTS RTF, LLM tokens/s, GPU memory), then ramp concurrent real-time "
        "sessions through a stack on this GPU (as `s2st bench scale`) and report the most "
        "whose segment latency p95 stays within the limit. JSON. Without CUDA it refuses "
        "(exit 2) unless --dry-run (or --device cpu).",
    )
    b.add_argument("--dry-run", action="store_true",
                   help="the same flow on the CPU with tiny sizes (tiny.en, 1-2 sessions of a "
                   "few seconds, the tiny LLM in float32)")
    b.add_argument("--device", choices=("cuda", "cpu"), help="cuda (default) or cpu (the "
                   "default with --dry-run)")
    b.add_argument("--asr-model", help="Whisper model (default: base on CUDA, the largest "
                   "that installs offline; tiny.en with --dry-run)")
    b.add_argument("--batch-sizes", help="ASR buffers decoded together (default "
                   "1,2,4,8,16,32; 1,2 with --dry-run)")
    b.add_argument("--sessions", help="concurrent sessions to try, in order, until the p95 "
                   "limit is passed (default 1,2,4,8,12,16,24,32,48,64; 1,2 with --dry-run)")
    b.add_argument("--clip-s", type=float, help="seconds each session speaks (60; 6 with "
                   "--dry-run)")
    b.add_argument("--clip", help="the speech each session speaks (default: the dev set's "
                   "LJ Speech clip if the set is here, else the bundled sample, looped)")
    b.add_argument("--p95-limit", type=float, default=P95_LIMIT_S,
                   help="segment latency p95 in seconds (1.5)")
    b.add_argument("--llm-layers", type=int, help="layers of the random Llama (8; 2 with "
                   "--dry-run; 32 with --llm-hidden 4096 is a 7B model's shape)")
    b.add_argument("--llm-hidden", type=int, help="its hidden size (512; 64 with --dry-run)")
    b.add_argument("--llm-answer-tokens", type=int, default=10, help="tokens of each "
                   "translation in the session ramp (10: about a clause of speech)")
    b.add_argument("--skip-stack", action="store_true", help="only the component figures")
    b.add_argument("--json", default="bench-results/gpu.json")
    add_stack_options(b)
    b.set_defaults(func=cmd_gpu)


def plan_from_args(args: argparse.Namespace) -> Plan:
    device = args.device or ("cpu" if args.dry_run else "cuda")
    dry = bool(args.dry_run)
    for name in ("llm_layers", "llm_hidden", "llm_answer_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    return Plan(
        device=device,
        dry_run=dry,
        asr_model=args.asr_model or ("tiny.en" if dry else "base"),
        compute_type="float16" if device == "cuda" else "int8",
        batch_sizes=_ints(args.batch_sizes or ("1,2" if dry else "1,2,4,8,16,32")),
        window_s=4.0 if dry else 10.0,
        sessions=_ints(args.sessions or ("1,2" if dry else "1,2,4,8,12,16,24,32,48,64")),
        clip_s=args.clip_s or (6.0 if dry else 60.0),
        p95_limit_s=args.p95_limit,
        quantize="4bit" if device == "cuda" else "none",
        llm_layers=args.llm_layers or (2 if dry else 8),
        llm_hidden=args.llm_hidden or (64 if dry else 512),
        llm_tokens=16 if dry else 128,
        llm_answer_tokens=args.llm_answer_tokens,
    )


def _ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"comma-separated whole numbers >= 1 expected, not {text!r}")
    return values


def cuda_problems() -> list[str]:
    """Why the ASR, TTS or LLM engine cannot use a CUDA GPU here (empty: all three can)."""
    problems = []
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() < 1:
            problems.append("CTranslate2 (faster-whisper) sees no CUDA device")
    except ImportError:
        problems.append("ctranslate2 is not installed (pip install 's2st[asr]')")
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            problems.append("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu "
                            "in place of onnxruntime)")
    except ImportError:
        problems.append("onnxruntime is not installed (pip install onnxruntime-gpu)")
    try:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"torch {torch.__version__} sees no CUDA device")
    except ImportError:
        problems.append("torch is not installed (pip install torch==2.13.0)")
    return problems


def cmd_gpu(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
    except ValueError as exc:
        print(f"s2st bench gpu: {exc}", file=sys.stderr)
        return 2
    if plan.device == "cuda":
        problems = cuda_problems()
        if problems:
            print("s2st bench gpu: no usable CUDA GPU here: " + "; ".join(problems)
                  + ". Run it on a CUDA host (ops/gpu-check.sh installs the CUDA extras), "
                  "or check the flow on this CPU with --dry-run.", file=sys.stderr)
            return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    out = Path(args.json)
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "bench": "gpu",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "s2st bench gpu " + " ".join(sys.argv[3:]),
        "dry_run": plan.dry_run,
        "device": plan.device,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "gpu": gpu_name()},
        "versions": versions(),
        "p95_limit_s": plan.p95_limit_s,
    }
    clip = speech_clip(args.clip, plan.clip_s, work / "clip.wav")
    part = "asr"
    try:
        with MemoryWatch(plan.device) as memory:
            report["asr"] = bench_asr(plan, clip)
            part = "tts"
            report["tts"] = bench_tts(plan)
            part = "llm"
            llm_dir = build_tiny_llm(work / "tiny-llm", plan)
            report["llm"] = bench_llm(plan, llm_dir)
    except Exception as exc:  # a component that does not run here is the check's finding
        traceback.print_exc()
        print(f"s2st bench gpu: the {part} check failed on {plan.device}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report["gpu_memory_mib"] = {"measure": "GPU memory used (nvidia-smi)" if plan.device == "cuda"
                                else "no GPU: peak resident memory of the components' "
                                "process, and of the stack's workers together",
                                "components_peak": memory.peak_mib,
                                "torch_peak": torch_peak_mib(plan.device),
                                "total": gpu_total_mib()}
    report["stack"] = None
    report["sessions_per_gpu"] = None
    if not args.skip_stack:
        stack_env = stack_settings(plan, llm_dir)
        with MemoryWatch(plan.device, workers=True) as watch:
            code, models = ramp(args, plan, clip, stack_env, work)
        report["gpu_memory_mib"]["stack_peak"] = watch.peak_mib
        if code:
            return code
        report["stack"] = {**models, "settings": stack_env}
        report["sessions_per_gpu"] = models["sustained_sessions"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"wrote {out}")
    return 0


# -- the speech ----------------------------------------------------------------------------


def speech_clip(path: str | None, seconds: float, dest: Path) -> Path:
    """``seconds`` of speech as a 16 kHz WAV: ``path``, the dev set's LJ clip or the sample."""
    import soundfile

    from ops.evaluation.manifest import ManifestError
    from ops.evaluation.scale import source_clip
    from ops.sample import SAMPLE
    from workers.asr.audio import load_audio

    try:
        source = source_clip(path)
    except ManifestError:
        if path:
            raise
        source = SAMPLE
    audio = load_audio(source)
    n = int(seconds * 16_000)
    audio = np.tile(audio, -(-n // len(audio)))[:n]  # looped when shorter
    dest.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(dest), audio, 16_000, subtype="PCM_16")
    return dest


# -- components ----------------------------------------------------------------------------


def bench_asr(plan: Plan, clip: Path) -> dict[str, Any]:
    """RTF of the worker's batched decode, per number of buffers decoded together."""
    from workers.asr.audio import load_audio
    from workers.asr.decoder import SAMPLE_RATE, DecodeRequest, WhisperDecoder
    from workers.asr.models import load_model

    t = time.perf_counter()
    model = load_model(plan.asr_model, plan.device, plan.compute_type)
    load_s = time.perf_counter() - t
    decoder = WhisperDecoder(model)
    audio = load_audio(clip)
    width = int(plan.window_s * SAMPLE_RATE)
    step = max(1, (len(audio) - width) // max(1, max(plan.batch_sizes)))

    def window(k: int) -> np.ndarray:
        a = (k * step) % max(1, len(audio) - width)
        return np.ascontiguousarray(audio[a : a + width], dtype=np.float32)

    decoder.decode(DecodeRequest(window(0)))  # the first call sets CUDA up
    rows = []
    for b in plan.batch_sizes:
        requests = [DecodeRequest(window(k)) for k in range(b)]
        t = time.perf_counter()
        hyps = decoder.decode_batch(requests)
        wall = time.perf_counter() - t
        rows.append({"batch": b, "seconds": round(wall, 3),
                     "rtf": round(wall / (b * plan.window_s), 4),
                     "words": sum(len(h.words) for h in hyps)})
    return {"model": plan.asr_model, "compute_type": plan.compute_type,
            "load_s": round(load_s, 2), "window_s": plan.window_s, "batches": rows}


def bench_tts(plan: Plan) -> dict[str, Any]:
    """Kokoro's real-time factor on this device's onnxruntime provider."""
    from workers.tts.backends.kokoro import KokoroSynthesizer

    os.environ["S2ST_TTS_DEVICE"] = plan.device
    voice = KokoroSynthesizer()
    t = time.perf_counter()
    model = voice.load()
    load_s = time.perf_counter() - t
    session = getattr(model, "sess", None)
    used = list(session.get_providers()) if session is not None else []
    audio_s = wall = 0.0
    for text in TTS_TEXTS:
        t = time.perf_counter()
        out = voice.synthesize(text, "es")
        wall += time.perf_counter() - t
        audio_s += out.pcm.size / out.rate
    return {"backend": "kokoro", "providers": used, "load_s": round(load_s, 2),
            "pieces": len(TTS_TEXTS), "audio_s": round(audio_s, 2),
            "rtf": round(wall / audio_s, 4)}


def build_tiny_llm(folder: Path, plan: Plan) -> Path:
    """A random Llama and a BPE tokenizer trained here on a few sentences: no hub needed."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    core.train_from_iterator(
        TOKENIZER_TEXT.split(". "),
        trainers.BpeTrainer(vocab_size=512, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(19)
    heads = max(2, plan.llm_hidden // 64)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=plan.llm_hidden,
        intermediate_size=plan.llm_hidden * 11 // 4, num_hidden_layers=plan.llm_layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def bench_llm(plan: Plan, folder: Path) -> dict[str, Any]:
    """Load the tiny LLM through the MT backend (4-bit on CUDA), translate, count tokens/s."""
    import torch

    from workers.mt.backends.llm import LLMTranslator

    t = time.perf_counter()
    mt = LLMTranslator(folder, name=LLM_NAME, device=plan.device, quantize=plan.quantize)
    load_s = time.perf_counter() - t
    sample = mt.translate("Thank you very much for coming.", "en", "es")
    prompt = mt.prompt("Good morning, everyone, and welcome to the conference.", "en", "es")
    encoded = mt.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    encoded = {k: v.to(mt.model.device) for k, v in encoded.items()}
    n = plan.llm_tokens
    with torch.inference_mode():  # a fixed number of new tokens: the random model may stop
        mt.model.generate(**encoded, max_new_tokens=4, do_sample=False)
        _sync(plan.device)
        t = time.perf_counter()
        output = mt.model.generate(**encoded, max_new_tokens=n, min_new_tokens=n,
                                   do_sample=False, pad_token_id=mt.tokenizer.pad_token_id)
        _sync(plan.device)
        wall = time.perf_counter() - t
    made = int(output.shape[1] - encoded["input_ids"].shape[1])
    return {"path": str(folder), "quantize": plan.quantize,
            "loaded_in_4bit": any(type(m).__name__ == "Linear4bit" for m in mt.model.modules()),
            "parameters": sum(p.numel() for p in mt.model.parameters()),
            "layers": plan.llm_layers, "hidden": plan.llm_hidden,
            "footprint_mib": round(mt.model.get_memory_footprint() / 2**20, 1),
            "load_s": round(load_s, 2), "prompt_tokens": int(encoded["input_ids"].shape[1]),
            "new_tokens": made, "tokens_per_s": round(made / wall, 1),
            "sample": sample}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# -- the session ramp ------------------------------------------------------------------------


def stack_settings(plan: Plan, llm_dir: Path) -> dict[str, str]:
    """The workers' S2ST_* settings for this run; those already in the environment win."""
    # The random model seldom stops, and its tokens are whole words of the tokenizer's text:
    # bound each answer to about a clause, so the listener's speech is about as long as the
    # speaker's (longer answers only queue speech behind the player, whatever the GPU).
    models = {LLM_NAME: {"kind": "llm", "path": str(llm_dir), "quantize": plan.quantize,
                         "device": plan.device, "max_new_tokens": plan.llm_answer_tokens}}
    cuda = plan.device == "cuda"
    wanted = {
        "S2ST_ASR_MODEL": plan.asr_model,
        "S2ST_ASR_DEVICE": plan.device,
        "S2ST_ASR_COMPUTE_TYPE": plan.compute_type,
        "S2ST_ASR_MAX_BATCH": "32" if cuda else "16",
        "S2ST_MT_MODELS": json.dumps(models),
        "S2ST_MT_BACKENDS": f"en-es={LLM_NAME},*=apertium",
        "S2ST_TTS_BACKENDS": "es=kokoro,*=espeak",
        "S2ST_TTS_DEVICE": plan.device,
        # on the GPU Kokoro must keep up; on a CPU dry run keep it (the figures are not the point)
        "S2ST_TTS_MAX_RTF": "0.35" if cuda else "0",
        "S2ST_TTS_PARALLEL": "4" if cuda else "1",  # pieces of several sessions at once
        "HF_HUB_OFFLINE": "1",
    }
    return {k: os.environ.get(k, v) for k, v in wanted.items()}


def ramp(args: argparse.Namespace, plan: Plan, clip: Path, env: dict[str, str],
         work: Path) -> tuple[int, dict[str, Any]]:
    """`s2st bench scale`'s real-model ramp on a stack with ``env`` (exit code, its result)."""
    from bus.logs import configure_logging
    from ops.evaluation.scale import model_ramp
    from ops.stack import StackError, stack_from_args
    from ops.stackconfig import ConfigError
    from ops.supervisor import Supervisor

    os.environ.update(env)  # the workers inherit it, and it wins over the stack profile
    supervisor = Supervisor()
    try:
        stack = stack_from_args(args, supervisor)
    except ConfigError as exc:
        print(f"s2st bench gpu: {exc}", file=sys.stderr)
        return 2, {}
    configure_logging(stack.settings.log_format, "warning")
    with supervisor.in_charge():
        try:
            models = model_ramp(stack, supervisor, clip, plan.sessions, plan.p95_limit_s, work)
        except StackError as exc:
            print(f"s2st bench gpu: cannot start the stack: {exc}", file=sys.stderr)
            return 2, {}
    return (130 if supervisor.stop_requested.is_set() else 0), models


# -- memory and versions -------------------------------------------------------------------


def _smi(query: str) -> list[str]:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def gpu_name() -> str | None:
    rows = _smi("name")
    return rows[0] if rows else None


def gpu_total_mib() -> float | None:
    rows = _smi("memory.total")
    return float(rows[0]) if rows else None


def gpu_used_mib() -> float | None:
    rows = _smi("memory.used")
    return float(rows[0]) if rows else None


def workers_rss_mib() -> float | None:
    """The resident memory of this process's descendants together (Linux /proc), in MiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue  # gone meanwhile
        pid = int(status.parent.name)
        parents[pid] = int(fields.get("PPid", "0"))
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    if not parents:
        return None
    mine, total = {os.getpid()}, 0
    for _ in range(8):  # a few generations: the supervisor's children and theirs
        found = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        total += sum(rss.get(pid, 0) for pid in found)
        if not found:
            break
        mine |= found
    return round(total / 1024, 1)


def torch_peak_mib(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


class MemoryWatch:
    """The peak of the GPU's used memory (nvidia-smi, every 0.5 s) while the block runs.

    On a CPU, the dry run's stand-in: the peak resident memory of this process or, with
    ``workers``, of its worker processes together.
    """

    def __init__(self, device: str, workers: bool = False) -> None:
        self.device = device
        self.workers = workers
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> float | None:
        if self.device == "cuda":
            return gpu_used_mib()
        if self.workers:
            return workers_rss_mib()
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    def _poll(self) -> None:
        while True:
            value = self._sample()
            if value is not None:
                self.peak_mib = max(value, self.peak_mib or 0.0)
            if self._stop.wait(0.5):
                return

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        value = self._sample()
        if value is not None:
            self.peak_mib = max(value, self.peak_mib or 0.0)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "ctranslate2", "faster-whisper", "onnxruntime", "onnxruntime-gpu",
                 "kokoro-onnx", "transformers", "bitsandbytes", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def summary(report: dict[str, Any]) -> str:
    asr = ", ".join(f"batch {r['batch']}: RTF {r['rtf']}" for r in report["asr"]["batches"])
    tts, llm = report["tts"], report["llm"]
    lines = [
        f"{'DRY RUN on ' if report['dry_run'] else ''}{report['device']}"
        f" ({report['host']['gpu'] or 'no GPU'})",
        f"ASR {report['asr']['model']}/{report['asr']['compute_type']}: {asr}",
        f"TTS kokoro on {','.join(tts['providers']) or '?'}: RTF {tts['rtf']}",
        f"LLM {llm['quantize']} (4-bit loaded: {llm['loaded_in_4bit']}): "
        f"{llm['tokens_per_s']} tokens/s",
        f"memory (MiB): {report['gpu_memory_mib']}",
    ]
    if report["stack"] is not None:
        steps = ", ".join(f"{s['sessions']}: p95 {s['segment_latency_s']['p95']}"
                          for s in report["stack"]["steps"])
        lines.append(f"sessions: {steps} -> {report['sessions_per_gpu']} within p95 "
                     f"{report['p95_limit_s']} s")
    return "\n".join(lines)
