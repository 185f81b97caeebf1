"""The CPU weight cache: a converted model saved and loaded back is the same model; int8 (a
Hugging Face directory) and int4 (a GGUF file's own Q4_1 blocks) stay within stated tolerances
of the float model (tiny random Llamas, 2 layers); an entry of another format is not loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from llmserve import cpu_weights
from llmserve.gguf_q4 import dequantize_q4_1, split_q4_1
from llmserve.int4_cpu import Int4WeightOnlyLinear
from llmserve.presets import build_random_model
from llmserve.quantization import Int8WeightOnlyLinear

TINY_GGUF = dict(hidden=64, ffn=128, layers=2, heads=4, kv_heads=2, vocab=256)


def write_tiny_gguf(path: Path) -> Path:
    """A random 2-layer Llama GGUF: Q4_1 projections, Q8_0 embedding (tied lm_head), 4 query
    heads over 2 key/value heads (so the q/k row permutation matters)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    hidden, ffn, layers = TINY_GGUF["hidden"], TINY_GGUF["ffn"], TINY_GGUF["layers"]
    heads, kv_heads, vocab = TINY_GGUF["heads"], TINY_GGUF["kv_heads"], TINY_GGUF["vocab"]
    kv_width = kv_heads * hidden // heads
    rng = np.random.default_rng(0)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_block_count(layers)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.add_token_types([1] * vocab)

    def tensor(name: str, shape: tuple[int, ...], kind: GGMLQuantizationType) -> None:
        values = (rng.standard_normal(shape) * 0.5).astype(np.float32)
        if kind == GGMLQuantizationType.F32:
            writer.add_tensor(name, values)
        else:
            writer.add_tensor(name, quantize(values, kind), raw_dtype=kind)

    q4, q8, f32 = GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0, GGMLQuantizationType.F32
    tensor("token_embd.weight", (vocab, hidden), q8)
    tensor("output_norm.weight", (hidden,), f32)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", (hidden,), f32)
        tensor(f"blk.{i}.ffn_norm.weight", (hidden,), f32)
        tensor(f"blk.{i}.attn_q.weight", (hidden, hidden), q4)
        tensor(f"blk.{i}.attn_k.weight", (kv_width, hidden), q4)
        tensor(f"blk.{i}.attn_v.weight", (kv_width, hidden), q4)
        tensor(f"blk.{i}.attn_output.weight", (hidden, hidden), q4)
        tensor(f"blk.{i}.ffn_gate.weight", (ffn, hidden), q4)
        tensor(f"blk.{i}.ffn_up.weight", (ffn, hidden), q4)
        tensor(f"blk.{i}.ffn_down.weight", (hidden, ffn), q4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def float_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = build_random_model("tiny-llama", torch.device("cpu"), torch.float32)
    out = tmp_path / "model"
    model.save_pretrained(out)
    return out


def _greedy(
    model: torch.nn.Module, steps: int, prompt: tuple[int, ...] = (1, 17, 300, 4000, 42)
) -> tuple[list[int], torch.Tensor]:
    ids = torch.tensor([prompt])
    logits_seen = []
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(input_ids=ids).logits[:, -1, :]
            logits_seen.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :].tolist(), torch.cat(logits_seen)


def _float(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_converted_then_cached_model_is_identical(float_dir: Path) -> None:
    said: list[str] = []
    first = cpu_weights.int8_model(float_dir, lambda: _float(float_dir), said.append)
    assert any("first start only" in s for s in said)
    said.clear()
    second = cpu_weights.int8_model(
        float_dir, lambda: pytest.fail("the cache was not used"), said.append
    )
    assert any("from the cache" in s for s in said)
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in second.modules()) == 15
    tokens_a, logits_a = _greedy(first, 16)
    tokens_b, logits_b = _greedy(second, 16)
    assert tokens_a == tokens_b
    assert torch.equal(logits_a, logits_b)


def test_int8_is_within_tolerance_of_float(float_dir: Path) -> None:
    """Stated tolerance (per-channel int8 weights, bf16 activations into the matmul), along the
    float model's 16 greedy tokens: every logit within 8 % of the logits' range, and the same
    top-1 token at >= 12 of the 16 positions (random weights have near-ties, where either
    token is a fair pick). The bundled SmolLM2 still answers "Paris" (test_smollm2 etc.)."""
    reference = _float(float_dir)
    tokens_f, logits_f = _greedy(reference, 16)
    quantized = cpu_weights.int8_model(float_dir, lambda: _float(float_dir), lambda _s: None)
    with torch.inference_mode():  # compare on the float model's own continuation
        ids = torch.tensor([[1, 17, 300, 4000, 42, *tokens_f]])
        logits_q = quantized(input_ids=ids).logits[0, 4:-1]
        top1_q = logits_q.argmax(-1).tolist()
    spread = (logits_f.max() - logits_f.min()).item()
    error = (logits_q - logits_f).abs().max().item()
    assert error <= 0.08 * spread  # measured: 5.1 % (1.99 of 39.2)
    agree = sum(q == f for q, f in zip(top1_q, tokens_f, strict=True))
    assert agree >= 12, f"top-1 agreement {agree}/16"


def test_a_broken_cache_entry_is_rebuilt(float_dir: Path) -> None:
    cpu_weights.int8_model(float_dir, lambda: _float(float_dir), lambda _s: None)
    entry = cpu_weights.entry_dir(cpu_weights.source_digest(float_dir))
    (entry / cpu_weights.WEIGHTS_FILE).write_bytes(b"broken")
    said: list[str] = []
    model = cpu_weights.int8_model(float_dir, lambda: _float(float_dir), said.append)
    assert any("first start only" in s for s in said)
    assert isinstance(model.lm_head, Int8WeightOnlyLinear)


def test_digest_is_of_the_bytes_and_remembered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "w.gguf"
    f.write_bytes(b"abc")
    import hashlib

    assert cpu_weights.file_digest(f) == hashlib.sha256(b"abc").hexdigest()
    assert len(list((tmp_path / "cache" / "llmserve" / "digests").iterdir())) == 1


@pytest.fixture()
def tiny_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def _float_gguf(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()


def test_q4_1_parts_are_the_gguf_packages_dequantization() -> None:
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    values = np.random.default_rng(1).standard_normal((48, 96)).astype(np.float32)
    raw = quantize(values, GGMLQuantizationType.Q4_1)
    codes, d, m = split_q4_1(raw, 48, 96)
    assert codes.max() <= 15 and d.shape == m.shape == (48, 3)
    want = dequantize(raw, GGMLQuantizationType.Q4_1)
    assert np.array_equal(dequantize_q4_1(codes, d, m), want)


def test_gguf_q4_1_linears_become_int4_and_are_cached(tiny_gguf: Path) -> None:
    said: list[str] = []
    first = cpu_weights.compact_model(tiny_gguf, lambda: _float_gguf(tiny_gguf), said.append)
    assert any("first start only" in s for s in said)
    assert sum(isinstance(m, Int4WeightOnlyLinear) for m in first.modules()) == 14
    assert isinstance(first.lm_head, Int8WeightOnlyLinear)  # the tied Q8_0 embedding
    second = cpu_weights.compact_model(
        tiny_gguf, lambda: pytest.fail("the cache was not used"), lambda _s: None
    )
    assert sum(isinstance(m, Int4WeightOnlyLinear) for m in second.modules()) == 14
    prompt = (1, 17, 30, 40, 42)
    tokens_a, logits_a = _greedy(first, 12, prompt)
    tokens_b, logits_b = _greedy(second, 12, prompt)
    assert tokens_a == tokens_b
    assert torch.equal(logits_a, logits_b)


def test_int4_is_within_tolerance_of_the_files_float_weights(tiny_gguf: Path) -> None:
    """Stated tolerance (the file's own 4-bit codes; d and m + 8 d rounded to bfloat16, bf16
    activations into every matmul, the lm_head int8), along the float model's 16 greedy
    tokens: every logit within 5 % of the logits' range, the same top-1 at >= 12 of 16."""
    reference = _float_gguf(tiny_gguf)
    prompt = (1, 17, 30, 40, 42)
    tokens_f, logits_f = _greedy(reference, 16, prompt)
    quantized = cpu_weights.compact_model(
        tiny_gguf, lambda: _float_gguf(tiny_gguf), lambda _s: None
    )
    with torch.inference_mode():
        ids = torch.tensor([[*prompt, *tokens_f]])
        logits_q = quantized(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    spread = (logits_f.max() - logits_f.min()).item()
    error = (logits_q - logits_f).abs().max().item()
    assert error <= 0.05 * spread, f"{error} of {spread}"  # measured: 1.0 % (0.15 of 15.5)
    agree = sum(q == f for q, f in zip(logits_q.argmax(-1).tolist(), tokens_f, strict=True))
    assert agree >= 12, f"top-1 agreement {agree}/16"


def test_an_entry_of_another_format_is_converted_again(tiny_gguf: Path) -> None:
    import json

    entry = cpu_weights.entry_dir(cpu_weights.source_digest(tiny_gguf))
    assert f"-v{cpu_weights.FORMAT_VERSION}-torch" in entry.name
    cpu_weights.compact_model(tiny_gguf, lambda: _float_gguf(tiny_gguf), lambda _s: None)
    manifest = entry / cpu_weights.MANIFEST_FILE
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 1}))
    said: list[str] = []
    cpu_weights.compact_model(tiny_gguf, lambda: _float_gguf(tiny_gguf), said.append)
    assert any("first start only" in s for s in said)


@pytest.mark.parametrize("source", ["tiny_gguf", "float_dir"])
def test_a_cached_llama_is_the_lean_model_with_transformers_logits(
    source: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached Llama loads as cpu_llama's model (first start too, reloaded from the entry), and
    its greedy tokens and logits equal transformers' Llama built from the same entry."""
    from llmserve import cpu_llama

    path: Path = request.getfixturevalue(source)
    build = (lambda: _float_gguf(path)) if source == "tiny_gguf" else (lambda: _float(path))
    first = cpu_weights.compact_model(path, build, lambda _s: None)
    assert isinstance(first, cpu_llama.LeanLlamaForCausalLM)
    entry = cpu_weights.entry_dir(cpu_weights.source_digest(path))
    lean = cpu_weights.load_entry(entry)
    assert isinstance(lean, cpu_llama.LeanLlamaForCausalLM)
    monkeypatch.setattr(cpu_llama, "unsupported_reason", lambda _config: "forced")
    theirs = cpu_weights.load_entry(entry)
    assert type(theirs).__name__ == "LlamaForCausalLM"
    assert {n: type(m).__name__ for n, m in lean.named_modules() if "proj" in n or "head" in n} == {
        n: type(m).__name__ for n, m in theirs.named_modules() if "proj" in n or "head" in n
    }
    tokens_a, logits_a = _greedy(lean, 12, (1, 17, 30, 40, 42))
    tokens_b, logits_b = _greedy(theirs, 12, (1, 17, 30, 40, 42))
    assert tokens_a == tokens_b
    assert torch.equal(logits_a, logits_b)


def test_the_int8_shell_is_what_quantizing_a_meta_linear_builds() -> None:
    mine = Int8WeightOnlyLinear.empty(96, 48, False)
    with torch.device("meta"):
        theirs = Int8WeightOnlyLinear(torch.nn.Linear(96, 48, bias=False))
    assert type(mine) is type(theirs)
    assert vars(mine).keys() == vars(theirs).keys()
    described = [
        {n: (t.shape, t.dtype, t.device) for n, t in m.state_dict(keep_vars=True).items()}
        for m in (mine, theirs)
    ]
    assert described[0] == described[1]
    assert (mine.in_features, mine.out_features, mine.bias, mine.use_compile) == (
        theirs.in_features,
        theirs.out_features,
        theirs.bias,
        theirs.use_compile,
    )


def test_a_second_start_imports_no_transformers_model_code(tiny_gguf: Path) -> None:
    """What a second start of a cached GGUF imports, in a fresh interpreter: not transformers'
    model code (nor the model scan under transformers.models), not torch._dynamo, sympy or
    torch.distributed.tensor, which it would pull in (seconds of a start)."""
    import os
    import subprocess
    import sys

    from llmserve.models import bundled_smollm2_gguf, load_model

    tokenizer = str(bundled_smollm2_gguf())  # the tiny file's vocabulary makes no tokenizer
    load_model(str(tiny_gguf), "cpu", tokenizer_source=tokenizer)  # converts and caches both
    heavy = [
        "transformers.models",
        "transformers.modeling_utils",
        "transformers.masking_utils",
        "torch._dynamo",
        "torch.distributed.tensor",
        "sympy",
    ]
    script = (
        "import sys, llmserve.server\n"
        "from llmserve.models import load_model\n"
        f"loaded = load_model({str(tiny_gguf)!r}, 'cpu', tokenizer_source={tokenizer!r})\n"
        "print(type(loaded.model).__name__)\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    image = Path(cpu_weights.__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(image)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    name, imported = done.stdout.strip().splitlines()[-2:]
    assert name == "LeanLlamaForCausalLM"
    assert imported == "[]", f"imported {imported}"
