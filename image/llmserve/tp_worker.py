"""A tensor-parallel worker: rank r of LLMSERVE_TENSOR_PARALLEL, started by the server (rank 0)
with `python -m llmserve.tp_worker` and its WorkerSpec pickled on stdin.

It builds its backend exactly as the server does (same settings, same code: its own shard of the
model and its own engine, never started) and then replays rank 0's runner calls until told to
stop. It ignores SIGINT and SIGTERM, which are rank 0's to act on (a terminal's Ctrl-C reaches
the whole process group, and the drain needs every rank), and exits when its stdin closes:
rank 0 is gone and nobody will ever send it another step."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import traceback

from llmserve.server import build_backend
from llmserve.tensor_parallel import WorkerSpec, become_worker


def _exit_when_orphaned() -> None:
    sys.stdin.buffer.read()  # returns at end of file: rank 0 closed the pipe or died
    os._exit(1)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = pickle.load(sys.stdin.buffer)
    if not isinstance(spec, WorkerSpec):
        raise SystemExit(f"llmserve.tp_worker: stdin held {type(spec).__name__}, not a WorkerSpec")
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s tp-rank-{spec.rank} %(name)s: %(message)s"
    )
    threading.Thread(target=_exit_when_orphaned, name="llmserve-tp-orphan", daemon=True).start()
    try:
        become_worker(spec)
        build_backend(spec.settings)  # serves rank 0's calls; exits the process when told to stop
        message = "the backend returned without serving rank 0"
    except BaseException:  # its reason goes to the log, then rank 0 sees this rank exit
        message = traceback.format_exc()
    # os._exit: the interpreter's shutdown would wait on the stdin reader thread.
    sys.stderr.write(f"llmserve.tp_worker rank {spec.rank}: {message}\n")
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    main()
