"""What LLMSERVE_MODEL names: paths win, then presets, then hub ids fetched from a fake hub into
the cache and reused from it without the network."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants
from llmserve import fetch, model_source
from llmserve.model_source import HubModel, ModelSourceError, parse_hub_id, resolve

from tests.image.fake_hub import FakeHub, FakeRepo
from tests.llm_server import IMAGE_DIR, free_port

REPO = "acme/tiny-chat"
GGUF_ONLY = "acme/gguf-only"
NO_CONFIG = "acme/tokenizer-only"
PRIVATE = "acme/gated"


def chat_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "tokenizer.json": b"{}",
        "model.safetensors": os.urandom(50_000),
    }


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo(REPO, chat_files(), branches={"v1.0": "a" * 40})


@pytest.fixture
def hub(repo: FakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    repos = [
        repo,
        FakeRepo(GGUF_ONLY, {"model.Q4_0.gguf": os.urandom(1000)}),
        FakeRepo(NO_CONFIG, {"tokenizer.json": b"{}"}),
        FakeRepo(PRIVATE, chat_files(), token="hf_right"),
    ]
    with FakeHub(repos) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        yield h


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("acme/tiny-chat", HubModel("acme/tiny-chat", "main")),
        ("acme/tiny-chat@v1.0", HubModel("acme/tiny-chat", "v1.0")),
        ("Org.X/name_1@refs/pr/3", HubModel("Org.X/name_1", "refs/pr/3")),
        ("acme/tiny-chat@" + "f" * 40, HubModel("acme/tiny-chat", "f" * 40)),
        ("/models/chat", None),
        ("./acme/tiny-chat", None),
        ("~/acme", None),
        ("acme/model.gguf", None),
        ("acme/weights.safetensors", None),
        ("a/b/c", None),
        ("acme/tiny--chat", None),  # the hub refuses '--' in names
        ("acme/tiny-chat@../x", None),
        ("acme", None),
    ],
)
def test_what_counts_as_a_hub_id(spec: str, expected: HubModel | None) -> None:
    assert parse_hub_id(spec) == expected


def test_an_existing_path_wins_over_a_hub_id(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "acme" / "tiny-chat"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve(REPO) == model_source.ModelSource(REPO, None)
    assert hub.requests == []


def test_a_hub_id_is_fetched_into_the_cache_and_served_by_its_id(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[str] = []
    with caplog.at_level(logging.INFO):
        source = resolve(REPO, reports.append)
    # `main` is the normal case here, not worth a warning; and no line per HTTP request
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "HTTP Request" not in caplog.text and "have model.safetensors" in caplog.text
    dest = tmp_path / "cache" / "llmserve" / "hub" / "acme--tiny-chat" / "main"
    assert source == model_source.ModelSource(str(dest), REPO)
    for name, data in repo.files.items():
        assert (dest / name).read_bytes() == data
    assert fetch.read_marker(dest)["commit"] == repo.commit
    size_mb = sum(len(data) for data in repo.files.values()) / 1e6
    assert reports == [
        f"downloading {REPO}@main ({len(repo.files)} files, {size_mb:.1f} MB) from {hub.url} "
        f"into {dest} (first start only)"
    ]


def test_a_cached_download_is_reused_without_the_network(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = resolve(REPO)
    seen = len(hub.requests)
    assert resolve(REPO) == first
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert resolve(REPO) == first
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    reports: list[str] = []
    assert resolve(REPO, reports.append) == first
    assert len(hub.requests) == seen
    assert reports == [f"using {REPO}@main from the cache: {first.spec}"]


def test_revisions_are_cached_apart(hub: FakeHub, repo: FakeRepo, tmp_path: Path) -> None:
    repo.branches["v1.0"] = repo.commit
    main = resolve(REPO)
    tagged = resolve(f"{REPO}@v1.0")
    pinned = resolve(f"{REPO}@{repo.commit}")
    assert len({main.spec, tagged.spec, pinned.spec}) == 3
    assert Path(str(pinned.spec)).name == repo.commit
    assert tagged.served_name == REPO


def test_offline_without_a_cached_copy_says_so(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE") as err:
        resolve(REPO)
    assert f"LLMSERVE_MODEL={REPO!r} is not in the cache" in str(err.value)
    assert hub.requests == []


@pytest.mark.parametrize(
    ("spec", "token", "words"),
    [
        ("acme/missing", None, ["'acme/missing'", "does not exist", "set HF_TOKEN"]),
        (PRIVATE, None, ["private or gated", "no token was sent (set HF_TOKEN)"]),
        (PRIVATE, "hf_wrong", ["a token was sent"]),
        (f"{REPO}@nope", None, ["revision 'nope' does not exist"]),
        (GGUF_ONLY, None, ["no file of acme/gguf-only", "the repo has: ['model.Q4_0.gguf']"]),
        (NO_CONFIG, None, ["no config.json", "not a transformers model"]),
    ],
)
def test_hub_failures_are_one_clear_line(
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    token: str | None,
    words: list[str],
) -> None:
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    for _attempt in ("fresh", "again, after whatever the first attempt cached"):
        with pytest.raises(ModelSourceError) as err:
            resolve(spec)
        message = str(err.value)
        assert message.startswith(f"LLMSERVE_MODEL={spec!r}") and "\n" not in message
        for word in words:
            assert word in message
        assert "hf_wrong" not in message


def test_a_private_repo_is_fetched_with_hf_token(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert Path(str(resolve(PRIVATE).spec), "config.json").is_file()


def test_no_network_is_one_clear_line(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    reports: list[str] = []
    with pytest.raises(ModelSourceError, match=r"cannot reach http://127\.0\.0\.1:9 for acme"):
        resolve(REPO, reports.append)
    assert reports == []  # no "downloading" line before the one error line


def test_local_specs_are_checked_before_loading(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path / "notes.txt"): "is a file but not .gguf",
        str(tmp_path / "empty"): "is a directory without config.json",
        "random:huge": "unknown preset; allowed: random:tiny",
    }
    for spec, words in cases.items():
        with pytest.raises(ModelSourceError) as err:
            resolve(spec)
        assert str(err.value).startswith(f"LLMSERVE_MODEL={spec!r}")
        assert words in str(err.value)
    assert resolve(str(tmp_path / "m.gguf")).spec == str(tmp_path / "m.gguf")
    assert resolve("random:tiny") == model_source.ModelSource("random:tiny")
    assert resolve(None) == model_source.ModelSource(None)


def test_ctrl_c_during_a_download_ends_at_once_without_a_traceback(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path
) -> None:
    hub.faults.stall.add("model.safetensors")  # hangs mid-file until the hub is closed
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVE_")}
    env.update(PYTHONPATH=str(IMAGE_DIR), HF_ENDPOINT=hub.url, XDG_CACHE_HOME=str(tmp_path))
    output = tmp_path / "serve.log"
    with output.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmserve",
                "serve",
                "--port",
                str(free_port()),
                "--model",
                REPO,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    config = tmp_path / "llmserve" / "hub" / "acme--tiny-chat" / "main" / "config.json"
    try:
        while hub.gets()["model.safetensors"] == 0 or not config.is_file():
            assert server.poll() is None, output.read_text()
            time.sleep(0.05)
        server.send_signal(signal.SIGINT)
        # The stalled file never finishes while the hub is open: exiting means not waiting.
        assert server.wait(timeout=30) == 130
    finally:
        if server.poll() is None:
            server.kill()
    log = output.read_text()
    assert "Traceback" not in log and "interrupted before the server started" in log
    assert config.is_file()  # kept for the next start
