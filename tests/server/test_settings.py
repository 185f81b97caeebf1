"""Settings: every bad value names the variable, the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from llmserve.server import build_backend
from llmserve.settings import Settings, SettingsError, load_settings

from tests.llm_server import IMAGE_DIR, free_port


def test_defaults_without_environment() -> None:
    settings = load_settings(env={})
    assert (settings.host, settings.port, settings.model, settings.api_key) == (
        "127.0.0.1",
        7861,
        None,
        None,
    )
    assert (settings.device, settings.dtype) == ("auto", "auto")


def test_environment_is_read_and_parsed() -> None:
    settings = load_settings(
        env={
            "LLMSERVE_PORT": "9000",
            "LLMSERVE_MAX_BATCH": "8",
            "LLMSERVE_DTYPE": "BFloat16",
            "LLMSERVE_MODEL": "random:tiny",
            "LLMSERVE_DRAIN_SECONDS": "2.5",
            "LLMSERVE_API_KEY": " k ",
        }
    )
    assert (settings.port, settings.max_batch, settings.dtype) == (9000, 8, "bfloat16")
    assert (settings.model, settings.drain_seconds, settings.api_key) == ("random:tiny", 2.5, "k")


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"LLMSERVE_PORT": "http"}, ["LLMSERVE_PORT", "'http'", "1..65535"]),
        ({"LLMSERVE_PORT": "70000"}, ["LLMSERVE_PORT", "70000", "1..65535"]),
        ({"LLMSERVE_MAX_BATCH": "0"}, ["LLMSERVE_MAX_BATCH", "0", "1..4096"]),
        ({"LLMSERVE_DEVICE": "tpu"}, ["LLMSERVE_DEVICE", "'tpu'", "auto, cuda, cpu"]),
        (
            {"LLMSERVE_DTYPE": "fp8"},
            ["LLMSERVE_DTYPE", "'fp8'", "auto, bfloat16, float16, float32"],
        ),
        ({"LLMSERVE_DRAIN_SECONDS": "-1"}, ["LLMSERVE_DRAIN_SECONDS", "-1", "0"]),
        ({"LLMSERVE_MODEL": "  "}, ["LLMSERVE_MODEL", "empty"]),
        (
            {"LLMSERVE_API_KEY": "a", "LLMSERVE_API_KEY_FILE": "/k"},
            ["LLMSERVE_API_KEY", "LLMSERVE_API_KEY_FILE", "at most one"],
        ),
        (
            {"LLMSERVE_API_KEY_FILE": "/does/not/exist"},
            ["LLMSERVE_API_KEY_FILE", "/does/not/exist"],
        ),
        ({"LLMSERVE_COMPILE": "max"}, ["LLMSERVE_COMPILE", "'max'", "auto, on, off"]),
    ],
)
def test_bad_values_are_named(env: dict[str, str], needles: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env=env)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"LLMSERVE_CUDA_GRAPHS": "on"}, ["LLMSERVE_CUDA_GRAPHS=on", "CPU", "auto or off"]),
        ({"LLMSERVE_COMPILE": "on"}, ["LLMSERVE_COMPILE=on", "CUDA graphs are off", "auto or off"]),
    ],
)
def test_gpu_only_settings_are_refused_on_the_cpu(env: dict[str, str], needles: list[str]) -> None:
    settings = load_settings(env={"LLMSERVE_MODEL": "random:tiny", "LLMSERVE_DEVICE": "cpu", **env})
    with pytest.raises(SettingsError) as err:
        build_backend(settings)
    for needle in needles:
        assert needle in str(err.value)


def test_gpu_only_settings_are_refused_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 6B model takes minutes to load; a contradiction in the settings must not wait for it.
    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr("llmserve.server.load_model", must_not_load)
    settings = load_settings(
        env={
            "LLMSERVE_MODEL": "random:tiny",
            "LLMSERVE_DEVICE": "cpu",
            "LLMSERVE_CUDA_GRAPHS": "on",
        }
    )
    with pytest.raises(SettingsError, match="LLMSERVE_CUDA_GRAPHS=on"):
        build_backend(settings)


def test_compile_defaults_to_following_cuda_graphs() -> None:
    assert load_settings(env={}).compile == "auto"


def test_key_file_is_read(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    assert load_settings(env={"LLMSERVE_API_KEY_FILE": str(key)}).api_key == "sk-from-file"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmserve", *args],
        cwd=IMAGE_DIR,
        text=True,
        capture_output=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(IMAGE_DIR), **(env or {})},
    )


def test_cli_flag_beats_environment_and_bad_flag_exits_2() -> None:
    result = run_cli("serve", "--port", "nope", env={"LLMSERVE_PORT": "8000"})
    assert result.returncode == 2
    assert "--port='nope'" in result.stderr and "1..65535" in result.stderr


def test_cli_unknown_model_preset_exits_1_with_the_allowed_ones() -> None:
    result = run_cli(
        "serve", "--model", "random:huge", "--port", str(free_port()), "--device", "cpu"
    )
    assert result.returncode == 1
    assert "random:huge" in result.stderr and "random:tiny" in result.stderr


@pytest.mark.parametrize("command", ["fetch", "bench"])
def test_fetch_and_bench_dispatch_to_their_modules(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"llmserve {command}" in result.stdout or "usage" in result.stdout.lower()


def test_quantized_weights_with_tensor_parallel_are_refused_before_any_rank_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_launch(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor-parallel rank was started before the settings were checked")

    monkeypatch.setattr("llmserve.tensor_parallel.launch", must_not_launch)
    settings = Settings(model="random:tiny", device="cpu", tensor_parallel=2, quantization="int8")
    with pytest.raises(SettingsError, match=r"LLMSERVE_TENSOR_PARALLEL=2.*allowed: none"):
        build_backend(settings)
