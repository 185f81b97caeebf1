#!/usr/bin/env bash
# Run HERE (the dev machine, which reaches PyPI), before `bench/gpu_serve.sh` runs on the bare GPU
# machine, which reaches nothing. Builds build/gpu-carry/ (ignored by git; name it in the device
# call's `carry`):
#   wheels/        the server's Python dependencies the GPU image lacks or has too old
#                  (cp312 manylinux wheels, same versions as this venv; torch and numpy stay theirs)
#   anchors_gpu.py a run-time copy of ../shared/bench/anchors_gpu.py (not our code: it is copied
#                  into an ignored folder for the call, never committed)
#   smollm2-vocab/ the SmolLM2 tokenizer as a vocabulary-only GGUF (~2 MB). random:<preset>
#                  models take their tokenizer from the bundled SmolLM2 GGUF, whose 94 MB wheel
#                  exceeds the 64 MiB a call may carry; the weights are not needed for that.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CARRY=${CARRY:-build/gpu-carry}
SHARED_ANCHORS=${SHARED_ANCHORS:-../shared/bench/anchors_gpu.py}
# The serve closure minus what the GPU image already has at a new-enough version.
PACKAGES=(
  transformers tokenizers safetensors huggingface-hub hf-xet httpx2 httpcore2 truststore
  fastapi starlette pydantic pydantic-core annotated-types annotated-doc typing-inspection
  typing-extensions anyio h11 uvicorn gguf prometheus-client typer opentelemetry-api idna click
  regex llguidance python-json-logger
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux1_x86_64)

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/smollm2-vocab"

pins=()
for name in "${PACKAGES[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  pins+=("$name==$version")
done
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$CARRY/wheels" "${pins[@]}"
# py-spy (a sampling profiler, a static binary in its wheel) for gpu_serve.sh's BENCH_PYSPY_S;
# not a server dependency, so kept apart from wheels/.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$CARRY/tools" "py-spy==${PYSPY_VERSION:-0.4.3}"

cp "$SHARED_ANCHORS" "$CARRY/anchors_gpu.py"

"$PY" - "$CARRY/smollm2-vocab" <<'PYEOF'
"""Write the bundled SmolLM2 GGUF's metadata (tokenizer, chat template) without its tensors."""
import struct
import sys
from pathlib import Path

from gguf import GGUFReader

sys.path.insert(0, "image")
from llmserve.models import SMOLLM2_GGUF, bundled_smollm2_gguf  # noqa: E402

source = bundled_smollm2_gguf()
reader = GGUFReader(source)
fields = [f for f in reader.fields.values() if not f.name.startswith("GGUF.")]
start = min(f.offset for f in fields)
end = max(f.offset + sum(part.nbytes for part in f.parts) for f in fields)
raw = source.read_bytes()
version = struct.unpack("<I", raw[4:8])[0]
target = Path(sys.argv[1]) / SMOLLM2_GGUF
# header: magic, version, tensor count (0), key/value count; then the key/value section verbatim
target.write_bytes(raw[:4] + struct.pack("<IQQ", version, 0, len(fields)) + raw[start:end])

from transformers import AutoTokenizer  # noqa: E402

sample = "Hello from llm-uk8s: 你好, UK8S!"
full = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
vocab_only = AutoTokenizer.from_pretrained(target.parent, gguf_file=target.name)
assert full(sample).input_ids == vocab_only(sample).input_ids, "vocab-only GGUF tokenizes differently"
assert full.chat_template == vocab_only.chat_template
print(f"vocab-only GGUF: {target} ({target.stat().st_size} bytes), tokenizer identical")
PYEOF

du -sh "$CARRY" "$CARRY"/*
echo "ready: name '$CARRY' in the device call's carry, then run: bash bench/gpu_serve.sh"
