"""The served host path's cost on the CPU: served output tok/s against the in-process engine on
the same model and shapes, event-loop CPU and Python calls per streamed chunk, for one or more
checkouts side by side in one run (so a regression between commits shows on a noisy machine).

    python bench/host_path.py --image /tmp/old/image --image image --label old --label new \
        --concurrency 128 --requests 256 --prompt-tokens 16 --output-tokens 64 --rounds 2

Per image and round, in fresh processes:
  served  `llmserve serve` with that image on PYTHONPATH, streamed by a small raw-socket client
          (it costs the shared cores far less than httpx), then the same load again under
          cProfile on the event-loop thread only (started and stopped by signals around the
          load), for calls per chunk and where they go;
  engine  `build_backend` from the same LLMSERVE_* settings, requests submitted straight to the
          engine on one event loop (no HTTP, no JSON): the in-process ceiling;
  output  where the image has llmserve/output.py (after 370911c): the engine thread's per-row
          host work alone, OutputStage.accept + flush for --concurrency rows, CPU per step.
The server's CPU time is read from /proc: its event-loop (main) thread apart from all other
threads (the engine's, torch's, the tokenizer's). "served / engine" is the issue-15 ratio.
Images must provide `llmserve.settings.load_settings`, `llmserve.server.build_backend` and
`llmserve.cli.main` (370911c and later do)."""

from __future__ import annotations

import argparse
import asyncio
import json
import marshal
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READY_DEADLINE_S = 300
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- child processes
def _settings_env(args: argparse.Namespace, image: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    env.update(
        {
            "PYTHONPATH": str(Path(image).resolve()),
            "OMP_NUM_THREADS": str(args.threads),
            "LLMSERVE_MODEL": args.model,
            "LLMSERVE_DEVICE": "cpu",
            "LLMSERVE_DTYPE": "float32",
            "LLMSERVE_HOST": "127.0.0.1",
            "LLMSERVE_PORT": str(port),
            "LLMSERVE_MAX_BATCH": str(max(args.concurrency, 1)),
            "LLMSERVE_MAX_QUEUE": str(args.requests + 64),
            "LLMSERVE_LOG_LEVEL": "warning",
        }
    )
    return env


def child_engine(args: argparse.Namespace) -> None:
    """In-process: the engine as `llmserve serve` builds it, fed on one event loop."""
    try:
        from llmserve.engine_api import SamplingParams
    except ImportError:  # 370911c named the module engine.py
        from llmserve.engine import SamplingParams  # type: ignore[no-redef]
    from llmserve.server import build_backend
    from llmserve.settings import load_settings

    backend = build_backend(load_settings(None))
    engine = backend.engine
    params = SamplingParams(
        max_tokens=args.output_tokens,
        temperature=0.0,
        ignore_eos=True,
        min_tokens=args.output_tokens,
    )
    vocab = min(backend.vocab_size, len(backend.tokenizer))

    def prompt(i: int) -> list[int]:
        return [10 + (i * 7919 + j * 104729) % (vocab - 10) for j in range(args.prompt_tokens)]

    async def load() -> dict[str, float]:
        gate = asyncio.Semaphore(args.concurrency)
        deltas = 0

        async def one(i: int) -> int:
            nonlocal deltas
            async with gate:
                tokens = 0
                async for delta in engine.submit(prompt(i), params):
                    deltas += 1
                    tokens = delta.completion_tokens
                return tokens

        cpu0, t0 = time.process_time(), time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(i) for i in range(args.requests))))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return {"tokens": tokens, "wall_s": wall, "deltas": deltas, "cpu_s": cpu}

    asyncio.run(load())  # a warm-up wave at the same concurrency, not recorded
    result = asyncio.run(load())
    engine.stop()
    print("RESULT " + json.dumps(result), flush=True)


def child_output(args: argparse.Namespace) -> None:
    """The engine thread's per-row host work alone: OutputStage.accept + flush (stop rules,
    detokenizing, Deltas, delivery) for --concurrency rows, thread CPU per step."""
    from llmserve.engine_api import RequestStream, SamplingParams
    from llmserve.models import load_model
    from llmserve.output import OutputStage
    from llmserve.sampling import Choice
    from llmserve.sequence import Sequence

    loaded = load_model("random:tiny", "cpu", "float32")
    stage = OutputStage(loaded.tokenizer, eos_token_ids=loaded.eos_token_ids, max_model_len=4096)
    loop = asyncio.new_event_loop()
    params = SamplingParams(max_tokens=4096, temperature=0.0, ignore_eos=True)
    seqs = [
        Sequence(
            request_id=str(i),
            prompt_ids=[1] * args.prompt_tokens,
            params=params,
            detok=stage.detokenizer(()),
            stream=RequestStream(args.prompt_tokens, lambda _: None, loop),
        )
        for i in range(args.concurrency)
    ]
    times = []
    for step in range(args.output_tokens):
        choices = [Choice(100 + (i * 7919 + step * 104729) % 40000) for i in range(len(seqs))]
        t0 = time.thread_time()
        stage.accept(seqs, choices)
        stage.flush()
        times.append(time.thread_time() - t0)
        loop.run_until_complete(asyncio.sleep(0))  # deliver (untimed; nobody reads them)
    result = {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}
    print("RESULT " + json.dumps(result), flush=True)


def child_serve(args: argparse.Namespace) -> None:
    """`llmserve serve`, with cProfile on the event-loop thread between SIGUSR1 and SIGUSR2."""
    import cProfile

    profile: list[cProfile.Profile] = []

    def start(*_: Any) -> None:
        profile.append(cProfile.Profile())
        profile[-1].enable()

    def stop(*_: Any) -> None:
        profile[-1].disable()
        profile[-1].create_stats()
        with open(args.profile_out + ".tmp", "wb") as f:
            marshal.dump(profile[-1].stats, f)  # type: ignore[attr-defined]
        os.replace(args.profile_out + ".tmp", args.profile_out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from llmserve.cli import main

    sys.exit(main(["serve"]))


# ----------------------------------------------------------------------------- the client
def _dechunk(raw: bytes) -> bytes:
    out, at = [], 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[end + 2 : end + 2 + size])
        at = end + 2 + size + 2


async def _stream(port: int, path: str, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body)
    raw = await reader.read()  # until the server closes: parsed once the load is over
    writer.close()
    return raw


def _parse(raw: bytes) -> tuple[int, int, int]:
    """(data events before [DONE], completion tokens from usage, prompt tokens)."""
    header, _, payload = raw.partition(b"\r\n\r\n")
    if not header.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"request failed: {raw[:300]!r}")
    if b"transfer-encoding: chunked" in header.lower():
        payload = _dechunk(payload)
    events = [e for e in payload.split(b"\n\n") if e.startswith(b"data: ")]
    if events[-1] != b"data: [DONE]":
        raise RuntimeError(f"stream did not end with [DONE]: {events[-1][:200]!r}")
    usage = json.loads(events[-2][6:])["usage"]
    return len(events) - 1, usage["completion_tokens"], usage["prompt_tokens"]


def _body(args: argparse.Namespace, words: int, i: int) -> bytes:
    text = " ".join(f"w{(i * 31 + j) % 997}" for j in range(max(1, words)))
    body: dict[str, Any] = {
        "stream": True,
        "max_tokens": args.output_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "min_tokens": args.output_tokens,
        "stream_options": {"include_usage": True},
    }
    if args.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return json.dumps(body).encode()


async def _load(args: argparse.Namespace, port: int, words: int, requests: int) -> dict[str, Any]:
    path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
    gate = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> bytes:
        async with gate:
            return await _stream(port, path, _body(args, words, i))

    cpu0, t0 = time.process_time(), time.perf_counter()
    raws = await asyncio.gather(*(one(i) for i in range(requests)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    parsed = [_parse(r) for r in raws]
    return {
        "wall_s": wall,
        "tokens": sum(p[1] for p in parsed),
        "chunks": sum(p[0] for p in parsed),
        "prompt_tokens": statistics.mean(p[2] for p in parsed),
        "client_cpu_s": cpu,
    }


# ----------------------------------------------------------------------------- measuring
def _cpu_s(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def _words_for(args: argparse.Namespace, port: int) -> int:
    """Words per prompt so the served prompt (chat template included) is --prompt-tokens long."""
    probe = argparse.Namespace(**{**vars(args), "concurrency": 1, "output_tokens": 1})
    one_word = asyncio.run(_load(probe, port, 1, 1))["prompt_tokens"]
    return max(1, args.prompt_tokens - int(one_word) + 1)


def _profile_summary(path: str, chunks: int, top: int) -> dict[str, Any]:
    with open(path, "rb") as f:
        stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = marshal.load(f)
    total = sum(v[1] for v in stats.values())
    python = sum(v[1] for k, v in stats.items() if k[0] != "~")
    rows = sorted(stats.items(), key=lambda kv: kv[1][1], reverse=True)[:top]

    def name(key: tuple[str, int, str]) -> str:
        return key[2] if key[0] == "~" else f"{Path(key[0]).name}:{key[1]}({key[2]})"

    return {
        "calls_per_chunk": round(total / chunks, 1),
        "python_calls_per_chunk": round(python / chunks, 1),
        "top_calls_per_chunk": {name(k): round(v[1] / chunks, 2) for k, v in rows},
    }


def run_engine(args: argparse.Namespace, image: str, prompt_tokens: int) -> dict[str, Any]:
    env = _settings_env(args, image, _free_port())
    cmd = [
        sys.executable,
        __file__,
        "_engine",
        *("--concurrency", str(args.concurrency), "--requests", str(args.requests)),
        *("--prompt-tokens", str(prompt_tokens), "--output-tokens", str(args.output_tokens)),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"engine run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    r = json.loads(lines[0][7:])
    return {
        "output_tok_s": round(r["tokens"] / r["wall_s"], 1),
        "cpu_us_per_token": round(r["cpu_s"] / r["tokens"] * 1e6, 1),
        "deltas_per_token": round(r["deltas"] / r["tokens"], 3),
        "wall_s": round(r["wall_s"], 2),
    }


def run_output_stage(args: argparse.Namespace, image: str) -> dict[str, Any] | None:
    """OutputStage per step, where the image has one (after 370911c); None otherwise."""
    if not (Path(image) / "llmserve" / "output.py").exists():
        return None
    env = _settings_env(args, image, 0)
    cmd = [sys.executable, __file__, "_output", "--concurrency", str(args.concurrency)]
    cmd += ["--prompt-tokens", str(args.prompt_tokens), "--output-tokens", "200"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"output stage run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return {k: round(v, 3) for k, v in json.loads(lines[0][7:]).items()}


def run_served(args: argparse.Namespace, image: str, log: Path) -> dict[str, Any]:
    port = _free_port()
    env = _settings_env(args, image, port)
    profile_out = tempfile.mktemp(prefix="host_path_profile_")
    cmd = [sys.executable, __file__, "_serve", "--profile-out", profile_out]
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port)
        words = _words_for(args, port)
        asyncio.run(_load(args, port, words, min(args.requests, args.concurrency)))  # warm-up
        main0, all0 = _cpu_s(proc.pid, proc.pid), _cpu_s(proc.pid)
        load = asyncio.run(_load(args, port, words, args.requests))
        main1, all1 = _cpu_s(proc.pid, proc.pid), _cpu_s(proc.pid)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)  # the handler runs between bytecodes of the idle loop
        profiled = asyncio.run(_load(args, port, words, args.profile_requests))
        proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while not os.path.exists(profile_out) and time.monotonic() < deadline:
            time.sleep(0.1)
        calls = _profile_summary(profile_out, profiled["chunks"], args.top)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.path.exists(profile_out):
            os.unlink(profile_out)
    tokens = load["tokens"]
    loop_s, other_s = main1 - main0, (all1 - all0) - (main1 - main0)
    return {
        "output_tok_s": round(tokens / load["wall_s"], 1),
        "prompt_tokens": load["prompt_tokens"],
        "chunks_per_token": round(load["chunks"] / tokens, 3),
        "loop_cpu_us_per_chunk": round(loop_s / load["chunks"] * 1e6, 1),
        "other_threads_cpu_us_per_token": round(other_s / tokens * 1e6, 1),
        "client_cpu_us_per_chunk": round(load["client_cpu_s"] / load["chunks"] * 1e6, 1),
        "wall_s": round(load["wall_s"], 2),
        **calls,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        child = argparse.ArgumentParser()
        child.add_argument("mode")
        for flag in ("--concurrency", "--requests", "--prompt-tokens", "--output-tokens"):
            child.add_argument(flag, type=int, default=0)
        child.add_argument("--profile-out", default="")
        cargs = child.parse_args()
        CHILDREN[cargs.mode](cargs)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", action="append", required=True, help="an image/ dir (repeatable)")
    p.add_argument("--label", action="append", help="a name per --image (default: the path)")
    p.add_argument("--model", default="random:tiny")
    p.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--profile-requests", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--top", type=int, default=25, help="functions listed by calls per chunk")
    p.add_argument("--json", type=Path, help="write every round's numbers here")
    args = p.parse_args()
    labels = args.label or args.image
    if len(labels) != len(args.image):
        p.error("give one --label per --image, or none")
    log = Path(tempfile.gettempdir()) / "host_path_server.log"
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for round_ in range(args.rounds):
        for label, image in zip(labels, args.image, strict=True):
            served = run_served(args, image, log)
            engine = run_engine(args, image, round(served["prompt_tokens"]))
            row = {
                "served": served,
                "engine": engine,
                "output_stage_per_step": run_output_stage(args, image),
                "served_over_engine": round(served["output_tok_s"] / engine["output_tok_s"], 3),
            }
            results[label].append(row)
            print(f"round {round_ + 1} {label}: " + json.dumps(row), flush=True)
    print()
    print(
        "| image | served tok/s | engine tok/s | served/engine | loop CPU us/chunk "
        "| calls/chunk | Python calls/chunk | engine-side CPU us/token "
        f"| OutputStage ms per {args.concurrency}-row step (median / min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        for row in rows:
            s, e, o = row["served"], row["engine"], row["output_stage_per_step"]
            stage = "-" if o is None else f"{o['median_ms']} / {o['min_ms']}"
            print(
                f"| {label} | {s['output_tok_s']} | {e['output_tok_s']} | "
                f"{row['served_over_engine']} | {s['loop_cpu_us_per_chunk']} | "
                f"{s['calls_per_chunk']} | {s['python_calls_per_chunk']} | "
                f"{s['other_threads_cpu_us_per_token']} | {stage} |"
            )
    if args.json:
        meta = {k: str(v) for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"config": meta, "results": results}, indent=1))


CHILDREN = {"_engine": child_engine, "_serve": child_serve, "_output": child_output}

if __name__ == "__main__":
    main()
