"""The stack and the image agree across the process boundary.

The stack writes the server's settings as LLMSERVE_* environment variables (InferenceService,
`server_env`) and the fetch Job's work as `llmserve fetch` flags (ModelFetch, `fetch_command`);
the image parses both (image/llmserve/settings.py `load_settings`, image/llmserve/fetch.py
`parse_request`). Both sides are only strings, so these tests feed what the stack renders, for
every stack and for the branches no stack takes, into the image's own parsers: every variable
the stack sets must be one the image reads, every flag one it accepts, each value must parse to
what the stack meant, and what a pod cannot do without must be set. A rename or a new setting on
either side fails here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from llmserve import cli, fetch, settings

from components.k8s.conventions import is_commit_sha
from components.k8s.inference import (
    API_KEY_DIR,
    API_KEY_FILE_KEY,
    COMPILE_CACHE_SUBPATH,
    MODEL_MOUNT,
    PORT,
    InferenceServiceArgs,
    server_env,
    termination_grace_s,
)
from components.k8s.model_fetch import VOLUME_MOUNT_IN_JOB, ModelFetchArgs, fetch_command
from components.stack.config import StackConfig, parse
from tests.stack.stack_values import STACKS, planned, raw_values
from tools.mock_runtime import Plan

# Variables the stack sets for libraries inside the image, not for llmserve: a writable home on
# a read-only root filesystem, and huggingface_hub's own switches.
NOT_SERVER_SETTINGS = {"HOME", "HF_HOME", "HF_HUB_OFFLINE"}
NOT_FETCH_SETTINGS = {"HOME", "HF_HOME", "HF_HUB_DISABLE_TELEMETRY"}
# Settings whose image default is wrong in a pod: the default host (127.0.0.1) is unreachable
# from the Service, the port must be the containerPort the probes and Service name, without a
# key the server admits anyone, and the device is what the stack requested GPUs for.
REQUIRED_IN_A_POD = {
    "LLMSERVE_HOST",
    "LLMSERVE_PORT",
    "LLMSERVE_API_KEY_FILE",
    "LLMSERVE_MODEL_NAME",
    "LLMSERVE_DEVICE",
}
API_KEY = "k" * 48
HUB_TOKEN = "hf_contract_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Recording(dict[str, str]):
    """An environment that remembers every name it was asked about."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def _load(env: Mapping[str, str], tmp_path: Path) -> settings.Settings:
    """The image's loader over the stack's env, with the mounted key file stood in for."""
    assert env["LLMSERVE_API_KEY_FILE"] == f"{API_KEY_DIR}/{API_KEY_FILE_KEY}"
    key_file = tmp_path / API_KEY_FILE_KEY
    key_file.write_text(API_KEY + "\n", encoding="utf-8")
    return settings.load_settings(args=None, env={**env, "LLMSERVE_API_KEY_FILE": str(key_file)})


def _container(plan: Plan, type_: str) -> dict[str, Any]:
    (resource,) = plan.by_type(type_)
    return resource.manifest()["spec"]["template"]["spec"]["containers"][0]


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    entries = container.get("env", [])
    assert all(set(e) == {"name", "value"} for e in entries), "env by value only"
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"a variable set twice: {names}"
    return {e["name"]: e["value"] for e in entries}


def _exact_flags(argv: list[str]) -> None:
    """Every flag is one `llmserve fetch` declares, spelt out: argparse would also take an
    abbreviation (`--repo` for `--repo-id`) that a new flag could make ambiguous."""
    declared = {s for a in fetch.build_parser()._actions for s in a.option_strings}
    used = {word.split("=", 1)[0] for word in argv if word.startswith("--")}
    assert used <= declared, used - declared


def _under(mount: str, path: str) -> PurePosixPath:
    return PurePosixPath(path).relative_to(mount)


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[StackConfig, Plan]]:
    name = request.param
    yield parse(raw_values(name), name), planned(name)


@pytest.fixture
def clean_fetch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`llmserve fetch` takes defaults from LLMSERVE_FETCH_*, HF_ENDPOINT and HF_TOKEN: only the
    Job's own command may count."""
    import os

    for name in list(os.environ):
        if name.startswith("LLMSERVE_FETCH_") or name in ("HF_ENDPOINT", "HF_TOKEN"):
            monkeypatch.delenv(name)


# ---- the server's settings ------------------------------------------------------------------


def test_env_names_are_what_the_loader_reads() -> None:
    env = _Recording({})
    settings.load_settings(args=None, env=env)
    assert env.asked == set(settings.ENV_NAMES)


def test_every_variable_the_stack_sets_is_a_server_setting(stack, tmp_path: Path) -> None:
    _cfg, plan = stack
    env = _env(_container(plan, "kubernetes:apps/v1:Deployment"))
    llmserve = {n for n in env if n not in NOT_SERVER_SETTINGS}
    assert llmserve <= set(settings.ENV_NAMES), llmserve - set(settings.ENV_NAMES)
    assert set(env) - llmserve == NOT_SERVER_SETTINGS
    assert set(env) >= REQUIRED_IN_A_POD, REQUIRED_IN_A_POD - set(env)


def test_the_server_reads_what_the_stack_meant(stack, tmp_path: Path) -> None:
    cfg, plan = stack
    container = _container(plan, "kubernetes:apps/v1:Deployment")
    got = _load(_env(container), tmp_path)
    assert got.api_key == API_KEY
    assert got.host == "0.0.0.0"
    assert got.port == PORT == container["ports"][0]["containerPort"]
    assert got.model_name == cfg.model_name
    assert got.max_batch == cfg.max_batch
    assert got.max_model_len == cfg.max_model_len
    assert got.device == ("cuda" if cfg.gpus_per_replica else "cpu")
    assert got.dtype == "auto"
    assert got.quantization == cfg.quantization
    grace = plan.one("kubernetes:apps/v1:Deployment").manifest()["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert grace == termination_grace_s(int(got.drain_seconds))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[API_KEY_DIR]["name"] == "api-key"
    assert mounts[MODEL_MOUNT] == {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}
    # GPU pods: the compile cache the server is told about is a writable directory of the
    # model volume (CPU pods compile nothing and get neither).
    cache = _env(container).get("LLMSERVE_COMPILE_CACHE_DIR")
    if cfg.gpus_per_replica:
        assert mounts[cache] == {
            "name": "models",
            "mountPath": cache,
            "subPath": COMPILE_CACHE_SUBPATH,
        }
    else:
        assert cache is None and len(mounts) == 4
    if cfg.model_source == "bundled":
        assert got.model is None  # the image's own model
    else:
        assert got.model == f"{MODEL_MOUNT}/{cfg.model_name}/{cfg.model_revision}"


@pytest.mark.parametrize("gpus", [0, 1, 2])
@pytest.mark.parametrize("model_dir", [None, f"{MODEL_MOUNT}/m/{COMMIT}"])
@pytest.mark.parametrize("max_model_len", [None, 4096])
def test_server_env_branches_parse(
    gpus: int, model_dir: str | None, max_model_len: int | None, tmp_path: Path
) -> None:
    args = InferenceServiceArgs(
        namespace="ns",
        image="registry/llmserve:1.0",
        model_claim_name="claim",
        served_model_name="m",
        model_dir=model_dir,
        gpus_per_replica=gpus,
        gpu_node_selector={"gpu": "true"} if gpus else {},
        max_batch=7,
        max_model_len=max_model_len,
        dtype="float16",
        quantization="int8" if gpus else "none",
        drain_seconds=12,
    )
    env = {e["name"]: e["value"] for e in server_env(args)}
    assert set(env) - NOT_SERVER_SETTINGS <= set(settings.ENV_NAMES)
    got = _load(env, tmp_path)
    assert (got.model, got.max_model_len, got.max_batch) == (model_dir, max_model_len, 7)
    assert (got.device, got.dtype, got.drain_seconds) == ("cuda" if gpus else "cpu", "float16", 12)
    assert got.quantization == args.quantization


def test_the_stack_offers_the_quantizations_the_server_has() -> None:
    from llmserve import quantization

    from components.k8s.inference import QUANTIZATIONS
    from components.stack import capacity

    assert QUANTIZATIONS == quantization.MODES
    for mode in QUANTIZATIONS:
        settings.load_settings(args=None, env={"LLMSERVE_QUANTIZATION": mode})
    quantized = {m: b for m, b in quantization.WEIGHT_BYTES_PER_PARAM.items() if m != "none"}
    assert quantized == capacity.QUANTIZED_BYTES_PER_PARAM


# ---- the fetch Job ----------------------------------------------------------------------------


def test_the_job_runs_a_command_the_image_has() -> None:
    assert cli.build_parser().parse_args(["fetch"]).command == "fetch"


def test_the_fetch_job_asks_for_what_the_server_reads(stack, clean_fetch_env) -> None:
    cfg, plan = stack
    if cfg.model_source == "bundled":
        assert plan.by_type("kubernetes:batch/v1:Job") == []
        return
    job = _container(plan, "kubernetes:batch/v1:Job")
    env = _env(job)
    assert set(env) <= NOT_FETCH_SETTINGS, "the Job passes its work as flags"
    command = job["command"]
    assert command[:2] == ["llmserve", "fetch"]
    _exact_flags(command[2:])
    request = fetch.parse_request(command[2:])
    assert request.repo_id == cfg.model_repo_id
    assert request.revision == cfg.model_revision
    assert request.allow_unpinned == (not is_commit_sha(cfg.model_revision))
    assert request.endpoint == (cfg.hub_endpoint or fetch.DEFAULT_ENDPOINT).rstrip("/")
    assert request.token is None  # no hubToken in the planned stacks
    # The Job writes the directory the server reads, each under its own mount of one claim.
    server = _container(plan, "kubernetes:apps/v1:Deployment")
    job_mounts = {m["name"]: m["mountPath"] for m in job["volumeMounts"]}
    server_model = _env(server)["LLMSERVE_MODEL"]
    assert job_mounts["models"] == VOLUME_MOUNT_IN_JOB
    assert _under(VOLUME_MOUNT_IN_JOB, str(request.dest)) == _under(MODEL_MOUNT, server_model)


@pytest.mark.parametrize(
    ("revision", "endpoint"), [(COMMIT, None), ("v1.0", "https://hf-mirror.example/")]
)
def test_fetch_command_branches_parse(
    revision: str, endpoint: str | None, tmp_path: Path, clean_fetch_env
) -> None:
    args = ModelFetchArgs(
        namespace="ns",
        model_name="m",
        nfs_server="10.0.0.5",
        repo_id="org/m",
        revision=revision,
        hub_endpoint=endpoint,
        hub_token="secret",
        fetch_image="registry/llmserve:1.0",
    )
    argv = fetch_command(args)[2:]
    _exact_flags(argv)
    token_flag = argv.index("--token-file") + 1
    assert argv[token_flag].startswith("/var/run/secrets/")  # the mounted Secret
    token_file = tmp_path / "token"
    token_file.write_text(HUB_TOKEN, encoding="utf-8")
    argv[token_flag] = str(token_file)
    request = fetch.parse_request(argv)
    assert (request.repo_id, request.revision, request.token) == ("org/m", revision, HUB_TOKEN)
    assert request.dest == Path(f"{VOLUME_MOUNT_IN_JOB}/m/{revision}")
    assert request.endpoint == (endpoint or fetch.DEFAULT_ENDPOINT).rstrip("/")
    assert request.allow_unpinned == (revision != COMMIT)
