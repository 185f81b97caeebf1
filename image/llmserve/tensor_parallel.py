"""Tensor parallel (LLMSERVE_TENSOR_PARALLEL=N): one model's layers split over N GPUs of one host,
for models that do not fit one card.

Rank 0 is the server: it runs the HTTP app, the engine and the sampling, and starts ranks 1..N-1
itself (`python -m llmserve.tp_worker`, one process per GPU, rank r on cuda:r). Every rank loads
the model the same way, shards it with transformers' own tensor-parallel plan for the
architecture (`base_model_tp_plan`: attention heads and MLP columns split, one all-reduce after
the attention output and one after the MLP; embeddings split by vocabulary, the output layer's
logits gathered), and builds the same engine; rank 0's runner calls are then replayed on the
others (tp_mirror.py). Collectives go through torch.distributed: NCCL on CUDA, gloo on the CPU
(which the tests use); the control messages always through gloo.

Failure: a rank that dies takes its shards with it, and rank 0 would wait in the next collective
forever, so rank 0 watches its workers and exits at once with the rank and exit code in the log
(Kubernetes restarts the pod). Workers read their stdin, a pipe from rank 0: when rank 0 is gone
it closes and they exit too. On a normal exit (after SIGTERM's drain) rank 0 tells the workers
to stop and waits for them.

Loading: each rank reads the whole model into host memory (the architecture's own loader: HF
directory, GGUF or ChatGLM checkpoint), keeps its shards and moves them to its GPU. So a host
needs N times the model's size in RAM while loading, and only its shard per GPU. Random presets
(benchmarks) are built whole on each GPU, then split."""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import AutoConfig

from llmserve.chatglm import glm_config_from_chatglm, is_chatglm_checkpoint
from llmserve.models import LoadedModel, load_model, pick_device, pick_dtype
from llmserve.presets import PRESETS
from llmserve.settings import TENSOR_PARALLEL_SIZES, Settings, SettingsError
from llmserve.tp_mirror import Call, MirroredRunner, Stop, WorkerFailedError, serve_calls

log = logging.getLogger("llmserve.tensor_parallel")

# Control messages wait as long as the server is idle; the model's collectives wait for the
# slowest rank's compilation and graph capture at start-up. Death is noticed by the watchdog,
# not by these timeouts.
CONTROL_TIMEOUT = timedelta(days=365)
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
SHUTDOWN_WAIT_S = 30.0

_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What rank 0 hands a worker on its stdin."""

    settings: Settings
    rank: int
    world_size: int
    port: int


def check_world_size(settings: Settings) -> torch.device:
    """The device rank 0 runs on; raises SettingsError for a size the host cannot give."""
    size = settings.tensor_parallel
    device = pick_device(settings.device)
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if size > visible:
            allowed = ", ".join(str(s) for s in TENSOR_PARALLEL_SIZES if s <= visible)
            raise SettingsError(
                f"LLMSERVE_TENSOR_PARALLEL={size} needs {size} GPUs but {visible} are visible "
                f"(CUDA_VISIBLE_DEVICES / the pod's nvidia.com/gpu); allowed here: {allowed}"
            )
        return torch.device("cuda", 0)
    return device


def check_heads(config: Any, size: int) -> None:
    """Each rank takes whole attention heads (and whole key/value heads)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    if heads % size or kv_heads % size:
        allowed = ", ".join(
            str(s) for s in TENSOR_PARALLEL_SIZES if heads % s == 0 and kv_heads % s == 0
        )
        raise SettingsError(
            f"LLMSERVE_TENSOR_PARALLEL={size} does not divide this model's {heads} attention "
            f"heads and {kv_heads} key/value heads; allowed for this model: {allowed}"
        )


def config_before_loading(spec: str | None) -> Any:
    """The model's config where it can be read without the weights (a random preset, an HF or
    ChatGLM directory); None otherwise (GGUF, or something load_model will refuse anyway)."""
    try:
        if spec is not None and spec.startswith("random:"):
            entry = PRESETS.get(spec.removeprefix("random:"))
            return entry()[1] if entry is not None else None
        path = Path(spec) if spec is not None else None
        if path is None or not (path / "config.json").is_file():
            return None
        if is_chatglm_checkpoint(path):
            return glm_config_from_chatglm(json.loads((path / "config.json").read_text()))
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError):  # load_model says what is wrong, with its own message
        return None


def shard_model(model: Any, size: int, device: torch.device) -> Any:
    """Split `model` (whole and the same on every rank, on the CPU or this rank's GPU) with its
    architecture's tensor-parallel plan and move this rank's part to `device`."""
    from torch.distributed.device_mesh import init_device_mesh
    from transformers.distributed import DistributedConfig
    from transformers.distributed.tensor_parallel import apply_tensor_parallelism

    check_heads(model.config, size)
    if not getattr(model.config, "base_model_tp_plan", None):
        raise SettingsError(
            f"LLMSERVE_TENSOR_PARALLEL={size}: {type(model).__name__} has no tensor-parallel "
            "plan in transformers; allowed: 1 for this model"
        )
    not_linear = [
        name
        for name, module in model.named_modules()
        if name.endswith(("_proj", "lm_head")) and not isinstance(module, torch.nn.Linear)
    ]
    if not_linear:
        raise SettingsError(
            f"LLMSERVE_TENSOR_PARALLEL={size} splits plain Linear layers, but {not_linear[0]} is "
            f"a {type(model.get_submodule(not_linear[0])).__name__} (quantized weights); "
            "allowed: unquantized weights with tensor parallel"
        )
    mesh = init_device_mesh(device.type, (size,))
    config = DistributedConfig(tp_size=size, tp_plan=_packed_mlp_rules(model.tp_plan))
    plan, _ep_plan, _fsdp_plan = model._resolve_parallel_plans(config)
    apply_tensor_parallelism(model, mesh, plan)
    return model.to(device).eval()


# transformers' plan for a fused gate/up projection split by `chunk` (GLM) gathers the whole
# projection on every rank and splits the down projection's input again: an all-gather per layer
# more than needed. Its packed styles shard the gate half and the up half each, so `chunk` yields
# this rank's halves and the down projection's all-reduce is the layer's only collective.
_PACKED_MLP = {
    "mlp.gate_up_proj": ("colwise_gather_output", "packed_colwise"),
    "mlp.down_proj": ("rowwise_split_input", "rowwise"),
}


def _packed_mlp_rules(plan: dict[str, str]) -> dict[str, str] | None:
    """Overrides for the plan (None: keep it; an empty dict would clear it)."""
    rules = {
        name: packed
        for name, style in plan.items()
        for suffix, (gathered, packed) in _PACKED_MLP.items()
        if name.endswith(suffix) and style == gathered
    }
    suffixes = {suffix for name in rules for suffix in _PACKED_MLP if name.endswith(suffix)}
    return rules if suffixes == set(_PACKED_MLP) else None


class TensorParallel:
    """This process's place in the tensor-parallel group: rank 0 (the server) or a worker."""

    def __init__(self, settings: Settings, rank: int, device: torch.device) -> None:
        self.settings = settings
        self.size = settings.tensor_parallel
        self.rank = rank
        self.device = device
        self.workers: list[subprocess.Popen[bytes]] = []
        self.control: Any = None  # the gloo group for control messages
        self.runner: MirroredRunner | None = None
        self._stopping = False
        self._failure: str | None = None
        # What rank 0 does when a worker dies while serving: the server's default exits.
        self.on_worker_death: Callable[[str], None] = _exit_now

    # ------------------------------------------------------------------ process group
    def join(self, port: int) -> None:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=self.rank,
            world_size=self.size,
            timeout=COLLECTIVE_TIMEOUT,
        )
        self.control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)

    def send(self, message: Call | Stop) -> None:
        # Pickled here, so an argument that cannot travel fails as itself, not as a dead peer.
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            dist.broadcast_object_list([payload], src=0, group=self.control)
        except Exception as err:  # gloo reports a closed peer as a plain RuntimeError
            raise WorkerFailedError(f"a tensor-parallel worker cannot be reached: {err}") from err

    def receive(self) -> Call | Stop:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        message = pickle.loads(box[0])
        if not isinstance(message, Call | Stop):
            raise TypeError(f"rank 0 sent a {type(message).__name__}, not a Call or Stop")
        return message

    # ------------------------------------------------------------------ model and engine
    def load_model(
        self,
        spec: str | None,
        device_setting: str = "auto",
        dtype_setting: str = "auto",
        name: str | None = None,
        tokenizer_source: str | None = None,
        cpu_weights: str = "auto",
        report: Callable[[str], None] | None = None,
        quantization: str = "none",
    ) -> LoadedModel:
        """`models.load_model`'s signature: the whole model in host memory, then this rank's
        shard on this rank's device. Float weights (the CPU's int8 Linears do not split).
        Random presets are built on the rank's own device, as at LLMSERVE_TENSOR_PARALLEL=1:
        the same seed on the same device gives the same weights, so TP=1 and TP=N compare."""
        del quantization  # always "none": build_backend refuses quantized weights at TP > 1
        early = config_before_loading(spec)
        if early is not None:  # refuse a size that splits a head before minutes of loading
            check_heads(early, self.size)
        dtype = pick_dtype(dtype_setting, self.device)
        random_preset = spec is not None and spec.startswith("random:")
        loaded = load_model(
            spec,
            self.device.type if random_preset else "cpu",
            _DTYPE_NAMES[dtype],
            name,
            tokenizer_source,
            cpu_weights="float",
            report=report if self.rank == 0 else None,
        )
        if report is not None and self.rank == 0:
            report(f"splitting the model over {self.size} ranks")
        model = shard_model(loaded.model, self.size, self.device)
        return dataclasses.replace(loaded, model=model, device=self.device, dtype=dtype)

    def attach(self, engine: Any) -> None:
        """Rank 0: the engine's runner calls go to every rank from now on (call before
        engine.start(), whose warm-up they must share). A worker: serve rank 0's calls on this
        engine's runner until rank 0 stops, then exit the process."""
        _agree_on_graph_rows(engine.runner, self.control)
        if self.rank == 0:
            self.runner = MirroredRunner(engine.runner, self.send, self._check_alive)
            engine.runner = self.runner
            return
        serve_calls(engine.runner, self.receive, self.device)
        dist.destroy_process_group()
        # Straight out: the thread that watches stdin for rank 0's death is still reading it,
        # and the interpreter's shutdown would wait on that read.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    # ------------------------------------------------------------------ workers (rank 0)
    def start_workers(self, port: int) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        for rank in range(1, self.size):
            process = subprocess.Popen(
                [sys.executable, "-m", "llmserve.tp_worker"], stdin=subprocess.PIPE, env=env
            )
            assert process.stdin is not None
            process.stdin.write(pickle.dumps(WorkerSpec(self.settings, rank, self.size, port)))
            process.stdin.flush()  # kept open: its end of file tells the worker we are gone
            self.workers.append(process)
            threading.Thread(
                target=self._watch,
                args=(rank, process),
                name=f"llmserve-tp-watch-{rank}",
                daemon=True,
            ).start()

    def _watch(self, rank: int, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if self._stopping:
            return
        self._failure = (
            f"tensor-parallel rank {rank} (pid {process.pid}) exited with code {code} (its "
            "log says why); the model's other shards cannot run without it"
        )
        log.error("%s", self._failure)
        self.on_worker_death(self._failure)

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise WorkerFailedError(self._failure)

    def shutdown(self) -> None:
        """Tell the workers to stop and wait for them; kill any that do not (and all of them
        when the server exits before its engine had them serving)."""
        if self._stopping or self.rank != 0:
            return
        self._stopping = True
        runner = self.runner
        if (
            runner is not None
            and self._failure is None
            and runner.lock.acquire(timeout=SHUTDOWN_WAIT_S)
        ):
            try:
                self.send(Stop())
            except WorkerFailedError as err:
                log.warning("could not tell the tensor-parallel workers to stop: %s", err)
            finally:
                # A step after this (an engine still running at exit) fails at once instead of
                # waiting for ranks that are gone.
                self._failure = "the tensor-parallel group has shut down"
                runner.lock.release()
        for process in self.workers:
            try:
                process.wait(timeout=SHUTDOWN_WAIT_S if runner is not None else 0)
            except subprocess.TimeoutExpired:
                log.warning("tensor-parallel worker pid %d did not stop; killing it", process.pid)
                process.kill()
                process.wait()
        if dist.is_initialized():
            dist.destroy_process_group()


def _agree_on_graph_rows(runner: Any, group: Any) -> None:
    """The graphed decoder sizes its buffers from each GPU's free memory; every rank must take
    the same path for every step (a graphed step pads the batch, so its collectives have other
    shapes than an eager one), so all take the smallest."""
    graphed = getattr(runner, "graphed", None)
    if graphed is None or not hasattr(graphed, "max_rows"):
        return
    rows = torch.tensor([graphed.max_rows])
    dist.all_reduce(rows, op=dist.ReduceOp.MIN, group=group)
    graphed.max_rows = int(rows.item())


def _exit_now(message: str) -> None:
    """A worker died: its shards are gone and rank 0 may be blocked in a collective that will
    never complete, so no drain is possible. The other workers go down with us."""
    sys.stderr.write(f"llmserve: {message}; exiting\n")
    sys.stderr.flush()
    os._exit(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_this_worker: TensorParallel | None = None  # set by tp_worker.main in a worker process


def launch(settings: Settings) -> TensorParallel | None:
    """None at LLMSERVE_TENSOR_PARALLEL=1. On rank 0 (the server) starts ranks 1..N-1 and joins
    the group with them; inside a worker, that worker's place in the group."""
    if _this_worker is not None:
        return _this_worker
    if settings.tensor_parallel == 1:
        return None
    device = check_world_size(settings)
    group = TensorParallel(settings, 0, device)
    port = _free_port()
    atexit.register(group.shutdown)
    group.start_workers(port)
    group.join(port)
    return group


def become_worker(spec: WorkerSpec) -> TensorParallel:
    """Called in a worker process before it builds its backend like rank 0 does."""
    global _this_worker
    device = pick_device(spec.settings.device)
    if device.type == "cuda":
        device = torch.device("cuda", spec.rank)
    _this_worker = TensorParallel(spec.settings, spec.rank, device)
    _this_worker.join(spec.port)
    return _this_worker
