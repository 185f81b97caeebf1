"""llmserve.compile_cache: the cache directory is keyed by model, torch, Triton and GPU; torch's
cache variables point at it; published artifacts round-trip through the volume atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from llmserve import compile_cache as cc
from llmserve import server
from llmserve.settings import Settings, SettingsError, load_settings

KEY = cc.CacheKey("glm-4-9b:0123", "2.11.0+cu130", "3.6.0", "NVIDIA H200 sm90")


def _with(**changes: str) -> cc.CacheKey:
    fields = dict(
        model=KEY.model,
        torch_version=KEY.torch_version,
        triton_version=KEY.triton_version,
        gpu=KEY.gpu,
        extra=KEY.extra,
    )
    fields.update(changes)
    return cc.CacheKey(**fields)


def test_same_inputs_same_directory() -> None:
    assert _with().directory_name() == KEY.directory_name()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "glm-4-9b:4567"},
        {"torch_version": "2.13.0+cu126"},
        {"triton_version": "3.7.0"},
        {"gpu": "NVIDIA L20 sm89"},
        {"extra": "int8"},
    ],
)
def test_each_field_changes_the_directory(change: dict[str, str]) -> None:
    assert _with(**change).directory_name() != KEY.directory_name()


def test_directory_name_is_one_safe_path_component() -> None:
    name = _with(model="/app/models/glm 4:abc", gpu="NVIDIA GeForce RTX 4090 sm89").directory_name()
    assert "/" not in name and " " not in name and name.startswith("glm-4-abc-NVIDIA")


def test_model_identity_follows_config_contents(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    first = cc.model_identity(str(tmp_path))
    (tmp_path / "config.json").write_text('{"hidden_size": 128}')
    assert cc.model_identity(str(tmp_path)) != first
    assert cc.model_identity("random:tiny") == "random:tiny"


def test_cache_key_on_cpu_names_this_torch() -> None:
    key = cc.cache_key("random:tiny", torch.device("cpu"), extra="int8")
    assert key.torch_version == torch.__version__ and key.gpu == "cpu" and key.extra == "int8"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cc.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_configure_points_torch_caches_at_the_local_key_directory(
    tmp_path: Path, clean_env: None
) -> None:
    local = cc.configure(None, KEY, tmp_path / "local")
    assert local == tmp_path / "local" / KEY.directory_name() and local.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(local / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(local / "triton")
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    from torch._inductor.runtime.cache_dir_utils import cache_dir, triton_cache_dir

    assert cache_dir() == str(local / "inductor")  # torch's own reader agrees
    assert triton_cache_dir(0) == str(local / "triton")


def test_publish_then_configure_loads_the_artifacts(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[bytes] = []
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"artifacts", None))
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", loaded.append)
    volume = tmp_path / "volume"
    published = cc.publish(volume, KEY)
    assert published == volume / KEY.directory_name() / cc.ARTIFACT_NAME
    assert published.read_bytes() == b"artifacts"
    assert [p.name for p in published.parent.iterdir()] == [cc.ARTIFACT_NAME]  # no temp left
    cc.configure(volume, KEY, tmp_path / "local")
    assert loaded == [b"artifacts"]
    cc.configure(volume, _with(gpu="NVIDIA L20 sm89"), tmp_path / "local")
    assert loaded == [b"artifacts"]  # another GPU's pod finds nothing to load


def test_publish_with_nothing_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: None)
    assert cc.publish(tmp_path, KEY) is None and not any(tmp_path.iterdir())


# One pod's compilation as a fresh process sees it: configure, compile a tiny function with
# Inductor on the CPU, publish; it reports Inductor's FX-graph cache hits and misses.
CHILD = """
import json, sys
from pathlib import Path
import torch
from torch._dynamo.utils import counters
from llmserve import compile_cache as cc
volume, local, gpu = sys.argv[1:4]
key = cc.CacheKey("tiny-model:0123", torch.__version__, "none", gpu)
cc.configure(Path(volume), key, Path(local))
step = torch.compile(lambda x: torch.sin(x) * 2 + x.cos(), dynamic=False)
out = step(torch.arange(8.0))
published = cc.publish(Path(volume), key)
print(json.dumps({
    "hits": counters["inductor"]["fxgraph_cache_hit"],
    "misses": counters["inductor"]["fxgraph_cache_miss"],
    "published": str(published),
    "out": out.tolist(),
}))
"""


def _start_pod(volume: Path, local: Path, gpu: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in cc.ENV_VARS}
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # no worker pool on the shared test machine
    env["TORCHINDUCTOR_VEC_ISA_OK"] = "0"  # no g++ probe of each SIMD ISA: scalar C++ kernels
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "image")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(volume), str(local), gpu],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(pod: subprocess.Popen[str]) -> dict[str, object]:
    stdout, stderr = pod.communicate(timeout=280)
    assert pod.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_a_second_pod_loads_the_published_compilation_and_another_key_does_not(
    tmp_path: Path,
) -> None:
    """Each pod has a fresh local directory, so its only source of cache hits is the volume."""
    volume = tmp_path / "volume"
    first = _result(_start_pod(volume, tmp_path / "pod1", "cpu"))
    assert first["misses"] >= 1 and first["hits"] == 0
    assert Path(str(first["published"])).is_file()
    same_key = _start_pod(volume, tmp_path / "pod2", "cpu")
    other_gpu = _start_pod(volume, tmp_path / "pod3", "NVIDIA L20 sm89")
    second, third = _result(same_key), _result(other_gpu)
    assert second["hits"] >= 1 and second["misses"] == 0
    assert second["out"] == first["out"]
    assert third["hits"] == 0 and third["misses"] >= 1


def test_the_setting_needs_an_absolute_directory(tmp_path: Path) -> None:
    name = "LLMSERVE_COMPILE_CACHE_DIR"
    assert load_settings(env={}).compile_cache_dir is None
    assert load_settings(env={name: str(tmp_path / "new")}).compile_cache_dir == str(
        tmp_path / "new"
    )
    a_file = tmp_path / "file"
    a_file.write_text("")
    for bad in ("relative/dir", str(a_file)):
        with pytest.raises(SettingsError, match=f"{name}=.*allowed: an absolute path"):
            load_settings(env={name: bad})


def test_build_backend_configures_before_the_warm_up_and_publishes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        server.compile_cache,
        "configure",
        lambda volume, key, local: calls.append(("configure", (volume, key, local))),
    )
    monkeypatch.setattr(
        server.compile_cache,
        "publish",
        lambda volume, key: calls.append(("publish", (volume, key))),
    )
    start = server.ContinuousBatchingEngine.start
    monkeypatch.setattr(
        server.ContinuousBatchingEngine,
        "start",
        lambda engine: (calls.append(("warm-up", None)), start(engine))[1],
    )
    volume = tmp_path / "volume"
    settings = Settings(model="random:tiny", device="cpu", compile_cache_dir=str(volume))
    backend = server.build_backend(settings)
    backend.engine.stop()
    # The key's extra: dtype, quantization, tensor-parallel size.
    key = cc.cache_key("random:tiny", torch.device("cpu"), extra=f"{torch.float32}:none:tp1")
    assert calls == [
        ("configure", (volume, key, cc.LOCAL_ROOT)),
        ("warm-up", None),
        ("publish", (volume, key)),
    ]
    calls.clear()
    server.build_backend(Settings(model="random:tiny", device="cpu")).engine.stop()
    assert calls == [("warm-up", None)]  # unset: torch's own cache, nothing published
