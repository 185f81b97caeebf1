"""bench/gpu_serve.sh dry-run on CPU: the same script the GPU call runs, with a tiny model and
small levels, so a change in the server or the CLI cannot silently break the one device run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.llm_server import REPO_ROOT, free_port


def test_cpu_dry_run_writes_every_result(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "BENCH_PYTHON": sys.executable,
        "BENCH_INSTALL_WHEELS": "0",
        "BENCH_MODEL": "random:tiny",
        "BENCH_DEVICE": "cpu",
        "BENCH_DTYPE": "float32",
        "BENCH_LEVELS": "1:2:20 3:6:20",
        "BENCH_PROMPT_TOKENS": "40",
        "BENCH_OUTPUT_TOKENS": "6",
        "BENCH_ANCHOR_PATHS": "",
        "BENCH_BUDGET_S": "240",
        "BENCH_PORT": str(free_port()),
    }
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "gpu_serve.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for concurrency, requests in ((1, 2), (3, 6)):
        summary = json.loads((out / f"bench_c{concurrency}.json").read_text())
        assert summary["completed"] == requests and summary["failed"] == 0
        assert summary["total_output_tokens"] == requests * 6
        assert summary["config"]["concurrency"] == concurrency
    table = (out / "summary.md").read_text()
    assert "| 1 | 2 |" in table and "| 3 | 6 |" in table
    assert "server ready" in (out / "gpu_serve.log").read_text()
    assert (out / "server.log").exists()
    assert len(list(out.iterdir())) <= 8  # what one device call can bring back
