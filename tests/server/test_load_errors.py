"""A model load that fails for an expected reason (a contradiction in the settings, a model the
server cannot use) ends the server with that reason on one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.llm_server import IMAGE_DIR, free_port


def test_an_expected_load_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    env.update(
        {
            "LLMSERVE_MODEL": "random:tiny",
            "LLMSERVE_DEVICE": "cpu",
            "LLMSERVE_CUDA_GRAPHS": "on",  # refused on the CPU by build_backend, in the load thread
            "LLMSERVE_PORT": str(free_port()),
            "PYTHONPATH": str(IMAGE_DIR),
            "OMP_NUM_THREADS": "1",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "llmserve", "serve"],
        cwd=IMAGE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    reasons = [line for line in output.splitlines() if "LLMSERVE_CUDA_GRAPHS=on" in line]
    assert len(reasons) == 1, output
    assert "model load failed" in reasons[0] and "auto or off" in reasons[0]
