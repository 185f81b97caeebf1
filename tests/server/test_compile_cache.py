"""llmserve.compile_cache: the cache directory is keyed by model, torch, Triton and GPU; torch's
cache variables point at it; published artifacts round-trip through the volume atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from llmserve import compile_cache as cc

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
