"""Quantized weights on the GPU: what works, single-stream decode speed, and quality against bf16.

    python bench/gpu_quant.py --out quant.json [--phases probe,layers,model] [--compiled]

In-process, no HTTP, no tokenizer. Phases (each written to --out as it finishes; one failing part
is recorded, not fatal):
- probe: torch / GPU / compute capability; whether torchao imports; whether
  torch._weight_int8pack_mm and torch._scaled_mm (row-wise and per-tensor scales) run on CUDA.
- layers: median time (CUDA events) of one Linear of ChatGLM2-6B's shapes at 1 and 64 rows, bf16
  against each int8 / FP8 kernel path, with the weight bandwidth it reaches.
- model: random:chatglm2-6b in bf16 (seeded), copies quantized to int8 and fp8
  (llmserve.quantization). For each: the graphed one-row decode step (GraphedDecoder, as served,
  uncompiled; with --compiled also the torch.compile'd step), its tok/s, the weights' GPU bytes,
  and quality against bf16 on the same weights: logit error over a 128-token prompt plus bf16's
  256 greedy tokens (teacher-forced), top-1 agreement at those 256 positions, and free-running
  greedy agreement over 256 tokens.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image"))

from llmserve import quantization as q

PROMPT, GENERATE = 128, 256
MODES = ("none", "int8", "fp8")
LAYER_SHAPES = {
    "qkv_q": (4096, 4096),
    "gate_up": (27392, 4096),
    "down": (4096, 13696),
    "lm_head": (65024, 4096),
}


def median_ms(fn: Callable[[], object], steps: int = 50, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 4)


def guarded(results: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
        results[key] = value
        return value
    except Exception as err:  # one failing part must not hide the others
        results[key + "_error"] = f"{type(err).__name__}: {str(err)[:400]}"
        traceback.print_exc()
        return None


def probe(results: dict[str, Any]) -> None:
    dev = torch.device("cuda")
    results["torch"] = torch.__version__
    results["gpu"] = torch.cuda.get_device_name(0)
    results["capability"] = list(torch.cuda.get_device_capability(0))
    try:
        import torchao

        results["torchao"] = getattr(torchao, "__version__", "?")
    except Exception as err:
        results["torchao"] = f"absent ({type(err).__name__}: {str(err)[:120]})"
    x = torch.randn(4, 4096, device=dev, dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    ref = x.float() @ w.float().t()

    def rel(y: torch.Tensor) -> float:
        return round(float((y.float() - ref).norm() / ref.norm()), 5)

    def int8pack() -> float:
        wq, s = q.quantize_int8(w)
        return rel(torch._weight_int8pack_mm(x, wq, s.to(torch.bfloat16)))

    def scaled(rowwise: bool) -> float:
        wq, s = q.quantize_fp8(w)
        xs = x.abs().amax(1, keepdim=True).float() / q.FP8_MAX
        if rowwise:
            xq = (x.float() / xs).to(q.FP8_DTYPE)
            y = torch._scaled_mm(
                xq, wq.t(), scale_a=xs, scale_b=s[None, :].contiguous(), out_dtype=torch.bfloat16
            )
        else:
            st = w.abs().max().float() / q.FP8_MAX
            wt = (w.float() / st).to(q.FP8_DTYPE)
            xt = xs.max()
            y = torch._scaled_mm(
                (x.float() / xt).to(q.FP8_DTYPE),
                wt.t(),
                scale_a=xt,
                scale_b=st,
                out_dtype=torch.bfloat16,
            )
        return rel(y)

    guarded(results, "weight_int8pack_mm_cuda_rel_err", int8pack)
    guarded(results, "scaled_mm_rowwise_rel_err", lambda: scaled(True))
    guarded(results, "scaled_mm_tensorwise_rel_err", lambda: scaled(False))


def layer_bench(results: dict[str, Any]) -> None:
    dev = torch.device("cuda")
    out: dict[str, Any] = {}
    results["layers"] = out
    for name, (n, k) in LAYER_SHAPES.items():
        linear = torch.nn.Linear(k, n, bias=False, device=dev, dtype=torch.bfloat16)
        int8 = q.Int8WeightOnlyLinear(linear)
        fp8 = q.Fp8Linear(linear)
        fp8_compiled = torch.compile(fp8, dynamic=True)
        variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "bf16": linear,
            "int8_compiled": int8,
            "int8_eager_formula": lambda x, m=int8: q._int8_linear(x, m.weight, m.scale),
            "int8pack_mm": lambda x, m=int8: torch._weight_int8pack_mm(x, m.weight, m.scale),
            "fp8_scaled_mm_eager": fp8,
            "fp8_scaled_mm_compiled": fp8_compiled,
        }
        try:
            import torchao.quantization as tq

            ao = copy.deepcopy(linear)
            tq.quantize_(ao, tq.Int8WeightOnlyConfig())
            variants["torchao_int8wo_compiled"] = torch.compile(
                ao, dynamic=True, options={"coordinate_descent_tuning": True}
            )
        except Exception as err:
            out["torchao_error"] = f"{type(err).__name__}: {str(err)[:200]}"
        for rows in (1, 64):
            x = torch.randn(rows, k, device=dev, dtype=torch.bfloat16)
            ref = linear(x).float()
            for label, fn in variants.items():
                key = f"{name}_m{rows}_{label}"
                with torch.inference_mode():
                    ms = guarded(out, key + "_ms", lambda f=fn, x=x: median_ms(lambda: f(x)))
                    if ms is not None:
                        y = fn(x).float()
                        out[key + "_rel_err"] = round(float((y - ref).norm() / ref.norm()), 5)
                        bytes_w = n * k * (2 if label == "bf16" else 1)
                        out[key + "_weight_GBps"] = round(bytes_w / (ms * 1e-3) / 1e9, 1)
        del linear, int8, fp8, variants
        torch.cuda.empty_cache()
        print("layers", name, flush=True)


def graph_ms(fn: Callable[[], object], calls: int = 20) -> float:
    """Kernel time of fn with no host overhead: `calls` calls captured in one CUDA graph."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return round(median_ms(graph.replay, 20, warmup=3) / calls, 4)


def static_compiled(fn: Callable[..., torch.Tensor], tag: str) -> Callable[..., torch.Tensor]:
    """torch.compile(fn) with static shapes and coordinate descent tuning, in a code object of
    its own (Dynamo's recompile limit counts per code object, not per wrapper)."""
    import types

    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    clone = types.FunctionType(code, fn.__globals__, f"{fn.__name__}_{tag}")
    return torch.compile(clone, dynamic=False, options={"coordinate_descent_tuning": True})


def graph_layer_bench(results: dict[str, Any]) -> None:
    dev = torch.device("cuda")
    out: dict[str, Any] = {}
    results["graph_layers"] = out
    for name, (n, k) in LAYER_SHAPES.items():
        linear = torch.nn.Linear(k, n, bias=False, device=dev, dtype=torch.bfloat16)
        int8 = q.Int8WeightOnlyLinear(linear)
        fp8 = q.Fp8Linear(linear)
        w8, s8 = q.quantize_fp8(linear.weight)
        s8 = s8.to(torch.bfloat16)
        int8_static = static_compiled(q._int8_linear, f"i{n}x{k}")
        fp8wo_static = static_compiled(q._int8_linear, f"f{n}x{k}")
        variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "bf16": linear,
            "int8_module": int8,
            "int8_static_cdt": lambda x, m=int8, f=int8_static: f(x, m.weight, m.scale),
            "fp8_scaled_mm": fp8,
            "fp8_weight_only_static_cdt": lambda x, f=fp8wo_static, w=w8, s=s8: f(x, w, s),
        }
        try:
            import torchao.quantization as tq

            ao = copy.deepcopy(linear)
            tq.quantize_(ao, tq.Int8WeightOnlyConfig())
            variants["torchao_int8wo_cdt"] = torch.compile(
                ao, dynamic=False, options={"coordinate_descent_tuning": True}
            )
        except Exception as err:
            out["torchao_error"] = f"{type(err).__name__}: {str(err)[:200]}"
        for rows in (1, 64):
            x = torch.randn(rows, k, device=dev, dtype=torch.bfloat16)
            for label, fn in variants.items():
                key = f"{name}_m{rows}_{label}"
                with torch.inference_mode():
                    ms = guarded(out, key + "_ms", lambda f=fn, x=x: graph_ms(lambda: f(x)))
                if ms:
                    bytes_w = n * k * (2 if label == "bf16" else 1)
                    out[key + "_weight_GBps"] = round(bytes_w / (ms * 1e-3) / 1e9, 1)
        del linear, int8, fp8, variants
        torch.cuda.empty_cache()
        print(
            "graph layers", name, {k: v for k, v in out.items() if k.startswith(name)}, flush=True
        )
        yield_results(results)


def compiled_step(results: dict[str, Any], mode: str) -> None:
    """The served configuration: the one-row step torch.compile'd, then graphed."""
    import torch._inductor.config as inductor_config
    from llmserve.graphs import GraphedDecoder
    from llmserve.presets import build_random_model

    dev = torch.device("cuda")
    model = build_random_model("chatglm2-6b", dev, torch.bfloat16)
    q.quantize_model(model, mode)
    prompt = torch.randint(10, 60000, (1, PROMPT), generator=torch.Generator().manual_seed(1)).to(
        dev
    )
    res: dict[str, Any] = {
        "options": q.compile_options(mode),
        "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }
    results[f"compiled_{mode}"] = res
    with torch.inference_mode(), inductor_config.patch(q.compile_options(mode)):
        decoder = GraphedDecoder(
            model, max_rows=1, max_len=1024, pad_token_id=0, use_cuda_graphs=True, compile_step=True
        )
        res.update(step_timing(model, decoder, prompt))
        res["still_compiled"] = decoder.compiled()
    print(f"compiled {mode}", json.dumps(res), flush=True)


def _prefill(model: Any, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
    from llmserve.kvcache import BatchCache
    from transformers import DynamicCache

    mask = torch.ones_like(ids)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
    batch = BatchCache()
    batch.append(cache, mask)
    return batch, out.logits[0, -1]


def greedy(model: Any, decoder: Any, prompt: torch.Tensor, steps: int) -> list[int]:
    batch, logits = _prefill(model, prompt)
    tokens = [int(logits.argmax())]
    for i in range(steps - 1):
        logits = decoder.decode(batch, [tokens[-1]], [PROMPT + i])
        tokens.append(int(logits.reshape(-1, logits.shape[-1])[0].argmax()))
    return tokens


def step_timing(model: Any, decoder: Any, prompt: torch.Tensor) -> dict[str, float]:
    batch, logits = _prefill(model, prompt)
    token = int(logits.argmax())
    t0 = time.perf_counter()
    decoder.decode(batch, [token], [PROMPT])
    torch.cuda.synchronize()
    out = {"first_step_incl_capture_s": round(time.perf_counter() - t0, 2)}
    position = [PROMPT + 1]

    def step() -> None:
        decoder.decode(batch, [token], [position[0]])
        position[0] += 1

    out["decode_ms"] = median_ms(step, 100, warmup=3)
    graph = next(iter(decoder._graphs.values()))[0]
    out["replay_only_ms"] = median_ms(graph.replay, 100)
    out["tok_s_from_decode_ms"] = round(1000 / out["decode_ms"], 1)
    return out


def model_bench(results: dict[str, Any], compiled: bool, modes: tuple[str, ...]) -> None:
    from llmserve.graphs import GraphedDecoder
    from llmserve.presets import build_random_model

    dev = torch.device("cuda")
    t0 = time.perf_counter()
    base = build_random_model("chatglm2-6b", dev, torch.bfloat16)
    results["build_s"] = round(time.perf_counter() - t0, 1)
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(10, 60000, (1, PROMPT), generator=generator).to(dev)
    reference: dict[str, Any] = {}
    for mode in modes:
        res: dict[str, Any] = {}
        results[f"model_{mode}"] = res
        try:
            if mode == "none":
                model = base
            else:
                t0 = time.perf_counter()
                model = copy.deepcopy(base)
                res["linear_layers"] = q.quantize_model(model, mode)
                torch.cuda.synchronize()
                res["quantize_s"] = round(time.perf_counter() - t0, 1)
            res["weight_GB"] = round(q.weight_bytes(model) / 1e9, 2)
            with torch.inference_mode():
                decoder = GraphedDecoder(
                    model, max_rows=1, max_len=1024, pad_token_id=0, use_cuda_graphs=True
                )
                tokens = greedy(model, decoder, prompt, GENERATE)
                res["graphed"] = step_timing(model, decoder, prompt)
                full = torch.cat(
                    [prompt, torch.tensor([reference.get("tokens", tokens)], device=dev)], dim=1
                )
                logits = model(input_ids=full).logits[0, PROMPT - 1 : -1].float()
                teacher = logits.argmax(-1).tolist()
                if mode == "none":
                    reference.update(tokens=tokens, logits=logits)
                    exact = copy.deepcopy(model).float()
                    reference["fp32"] = exact(input_ids=full).logits[0, PROMPT - 1 : -1].float()
                    del exact
                    torch.cuda.empty_cache()
                    # bf16's own prefill kernels against its graphed decode: the noise floor
                    fp32 = reference["fp32"]
                    res["logit_rel_l2_err_vs_fp32"] = round(
                        float((logits - fp32).norm() / fp32.norm()), 5
                    )
                    res["teacher_forced_top1_agree_vs_fp32"] = round(
                        float((logits.argmax(-1) == fp32.argmax(-1)).float().mean()), 4
                    )
                    res["prefill_vs_decode_top1"] = round(
                        sum(a == b for a, b in zip(teacher, tokens, strict=True)) / GENERATE, 4
                    )
                else:
                    ref_logits, ref_tokens = reference["logits"], reference["tokens"]
                    res["logit_rel_l2_err"] = round(
                        float((logits - ref_logits).norm() / ref_logits.norm()), 5
                    )
                    res["logit_max_abs_err"] = round(float((logits - ref_logits).abs().max()), 4)
                    res["logit_ref_std"] = round(float(ref_logits.std()), 4)
                    fp32 = reference["fp32"]
                    res["logit_rel_l2_err_vs_fp32"] = round(
                        float((logits - fp32).norm() / fp32.norm()), 5
                    )
                    res["teacher_forced_top1_agree_vs_fp32"] = round(
                        float((logits.argmax(-1) == fp32.argmax(-1)).float().mean()), 4
                    )
                    res["teacher_forced_top1_agree"] = round(
                        sum(a == b for a, b in zip(teacher, ref_tokens, strict=True)) / GENERATE, 4
                    )
                    same = sum(a == b for a, b in zip(tokens, ref_tokens, strict=True))
                    res["greedy_agree"] = round(same / GENERATE, 4)
                    pairs = enumerate(zip(tokens, ref_tokens, strict=True))
                    res["greedy_first_diff"] = next((i for i, (a, b) in pairs if a != b), GENERATE)
                del decoder
                torch.cuda.empty_cache()
                if compiled:
                    opts = q.compile_options(mode)
                    import torch._inductor.config as inductor_config

                    with inductor_config.patch(opts):
                        cdec = GraphedDecoder(
                            model,
                            max_rows=1,
                            max_len=1024,
                            pad_token_id=0,
                            use_cuda_graphs=True,
                            compile_step=True,
                        )
                        res["compiled"] = step_timing(model, cdec, prompt)
                        res["compiled"]["still_compiled"] = cdec.compiled()
                    del cdec
                    torch._dynamo.reset()
                    torch.cuda.empty_cache()
        except Exception as err:
            res["error"] = f"{type(err).__name__}: {str(err)[:400]}"
            traceback.print_exc()
        if mode != "none":
            del model
            torch.cuda.empty_cache()
        print(f"model {mode}", json.dumps(res), flush=True)
        yield_results(results)


_OUT: Path | None = None


def yield_results(results: dict[str, Any]) -> None:
    if _OUT is not None:
        _OUT.write_text(json.dumps(results, indent=1))


def main() -> None:
    global _OUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phases", default="probe,layers,model")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also time the torch.compile'd step (a compilation per mode)",
    )
    args = parser.parse_args()
    _OUT = args.out
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    phases = args.phases.split(",")
    if "probe" in phases:
        guarded(results, "probe_done", lambda: probe(results) or True)
        yield_results(results)
        print("probe", json.dumps(results), flush=True)
    if "layers" in phases:
        guarded(results, "layers_done", lambda: layer_bench(results) or True)
        yield_results(results)
    if "graph_layers" in phases:
        guarded(results, "graph_layers_done", lambda: graph_layer_bench(results) or True)
        yield_results(results)
    for phase in phases:
        if phase.startswith("compiled:"):
            mode = phase.split(":", 1)[1]
            guarded(
                results, f"compiled_{mode}_done", lambda m=mode: compiled_step(results, m) or True
            )
            yield_results(results)
    if "model" in phases:
        guarded(
            results,
            "model_done",
            lambda: model_bench(results, args.compiled, tuple(args.modes.split(","))) or True,
        )
        yield_results(results)
    summary = {k: v for k, v in results.items() if k not in ("layers", "graph_layers")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
