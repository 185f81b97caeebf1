"""`llmserve fetch` against a fake Hub on 127.0.0.1; real huggingface_hub client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub._local_folder import read_download_metadata
from llmserve import fetch

from tests.image.fake_hub import FakeHub, FakeRepo
from tests.llm_server import IMAGE_DIR

REPO = "acme/tiny-chat"


def repo_files() -> dict[str, bytes]:
    # Sizes and contents differ per run of the generator, never hard-coded in assertions.
    return {
        "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}).encode(),
        "tokenizer.json": json.dumps({"vocab": {f"t{i}": i for i in range(200)}}).encode(),
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        "model-00001-of-00002.safetensors": os.urandom(300_000),
        "model-00002-of-00002.safetensors": os.urandom(200_000),
        "pytorch_model.bin": os.urandom(1000),  # skipped: safetensors exist
        "README.md": b"# not a model file\n",  # skipped: not in the default patterns
        "sub/extra.json": b"{}",
    }


WANTED = {
    "config.json",
    "chat_template.jinja",
    "tokenizer.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "sub/extra.json",
}


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo(REPO, repo_files(), branches={"v1.0": "0" * 40})


@pytest.fixture
def hub(repo: FakeRepo) -> Iterator[FakeHub]:
    private = FakeRepo("acme/private", {"config.json": b"{}"}, token="hf_secret_token")
    with FakeHub([repo, private]) as h:
        yield h


def run_fetch(hub: FakeHub, dest: Path, revision: str, *extra: str) -> int:
    return fetch.main(
        [
            "--repo-id",
            REPO,
            "--revision",
            revision,
            "--dest",
            str(dest),
            "--endpoint",
            hub.url,
            *extra,
        ]
    )


def test_fresh_download_is_verified_and_marked(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path
) -> None:
    dest = tmp_path / "model"
    assert run_fetch(hub, dest, repo.commit) == 0
    for name in WANTED:
        assert (dest / name).read_bytes() == repo.files[name]
    assert not (dest / "pytorch_model.bin").exists()
    assert not (dest / "README.md").exists()
    marker = json.loads((dest / fetch.MARKER_NAME).read_text())
    assert marker["repo_id"] == REPO and marker["commit"] == repo.commit
    assert {f["path"] for f in marker["files"]} == WANTED
    sizes = {f["path"]: f["size"] for f in marker["files"]}
    assert sizes == {n: len(repo.files[n]) for n in WANTED}


def test_rerun_with_marker_needs_no_network(hub: FakeHub, repo: FakeRepo, tmp_path: Path) -> None:
    dest = tmp_path / "model"
    assert run_fetch(hub, dest, repo.commit) == 0
    seen = len(hub.requests)
    assert run_fetch(hub, dest, repo.commit) == 0
    assert len(hub.requests) == seen
    # an unreachable endpoint proves it: nothing listens on port 9
    assert (
        fetch.main(
            [
                "--repo-id",
                REPO,
                "--revision",
                repo.commit,
                "--dest",
                str(dest),
                "--endpoint",
                "http://127.0.0.1:9",
            ]
        )
        == 0
    )


def test_bin_weights_are_fetched_when_no_safetensors(tmp_path: Path) -> None:
    old = FakeRepo("acme/old", {"config.json": b"{}", "pytorch_model.bin": os.urandom(5000)})
    with FakeHub([old]) as h:
        code = fetch.main(
            [
                "--repo-id",
                "acme/old",
                "--revision",
                old.commit,
                "--dest",
                str(tmp_path),
                "--endpoint",
                h.url,
            ]
        )
    assert code == 0
    assert (tmp_path / "pytorch_model.bin").read_bytes() == old.files["pytorch_model.bin"]


def test_cut_connection_is_resumed_with_range(hub: FakeHub, repo: FakeRepo, tmp_path: Path) -> None:
    big = "model-00001-of-00002.safetensors"
    hub.faults.cut_after[big] = 100_000
    assert run_fetch(hub, tmp_path, repo.commit) == 0
    assert (tmp_path / big).read_bytes() == repo.files[big]
    assert hub.gets()[big] == 2  # the cut one, then the Range continuation


def test_killed_run_then_rerun_completes_without_refetching(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path
) -> None:
    stalled = "model-00002-of-00002.safetensors"
    hub.faults.stall.add(stalled)
    env = {**os.environ, "PYTHONPATH": str(IMAGE_DIR)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmserve.fetch",
            "--repo-id",
            REPO,
            "--revision",
            repo.commit,
            "--dest",
            str(tmp_path),
            "--endpoint",
            hub.url,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    others = WANTED - {stalled}
    deadline = time.monotonic() + 60
    # Kill only once the library itself would call each other file finished (its metadata is
    # complete and matches the file), whatever the machine's speed: no fixed sleep.
    while not all(read_download_metadata(tmp_path, n) for n in others) or hub.gets()[stalled] == 0:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the first run never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / fetch.MARKER_NAME).exists()
    hub.faults.stall.clear()
    hub.faults.release.set()

    assert run_fetch(hub, tmp_path, repo.commit) == 0
    gets = hub.gets()
    assert all(gets[n] == 1 for n in others), gets  # finished files were kept
    assert gets[stalled] == 2
    assert (tmp_path / stalled).read_bytes() == repo.files[stalled]
    assert not list((tmp_path / ".cache").rglob("*.incomplete"))


def test_endpoint_serving_corrupt_bytes_fails_verification(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "model-00002-of-00002.safetensors"
    hub.faults.corrupt.add(bad)
    assert run_fetch(hub, tmp_path, repo.commit) == fetch.EXIT_VERIFY
    assert not (tmp_path / fetch.MARKER_NAME).exists()
    assert bad in caplog.text and "sha256" in caplog.text


def test_locally_corrupted_file_is_detected_and_refetched(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path
) -> None:
    name = "config.json"
    assert run_fetch(hub, tmp_path, repo.commit) == 0
    target = tmp_path / name
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01  # same size: only a hash can see it
    target.write_bytes(bytes(data))
    assert run_fetch(hub, tmp_path, repo.commit, "--recheck") == fetch.EXIT_VERIFY
    assert not (tmp_path / fetch.MARKER_NAME).exists()
    assert run_fetch(hub, tmp_path, repo.commit) == 0
    assert target.read_bytes() == repo.files[name]


def test_branch_needs_allow_unpinned_and_records_commit(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_fetch(hub, tmp_path, "main") == fetch.EXIT_USAGE
    assert "--revision 'main'" in caplog.text and "--allow-unpinned" in caplog.text
    assert run_fetch(hub, tmp_path, "main", "--allow-unpinned") == 0
    assert json.loads((tmp_path / fetch.MARKER_NAME).read_text())["commit"] == repo.commit


@pytest.mark.parametrize(
    ("repo_id", "revision", "extra", "code", "words"),
    [
        (REPO, "f" * 40, [], fetch.EXIT_NOT_FOUND, ["revision", "f" * 40]),
        (REPO, "nope", ["--allow-unpinned"], fetch.EXIT_NOT_FOUND, ["revision 'nope'"]),
        (
            "acme/missing",
            "main",
            ["--allow-unpinned"],
            fetch.EXIT_AUTH,
            ["acme/missing", "no token"],
        ),
        ("acme/private", "main", ["--allow-unpinned"], fetch.EXIT_AUTH, ["401", "no token"]),
        ("not a repo", "main", [], fetch.EXIT_USAGE, ["--repo-id", "not a repo"]),
        (
            REPO,
            "main",
            ["--allow-unpinned", "--max-workers", "0"],
            fetch.EXIT_USAGE,
            ["--max-workers", "1..32"],
        ),
    ],
)
def test_bad_requests_give_clear_errors(
    hub: FakeHub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    repo_id: str,
    revision: str,
    extra: list[str],
    code: int,
    words: list[str],
) -> None:
    got = fetch.main(
        [
            "--repo-id",
            repo_id,
            "--revision",
            revision,
            "--dest",
            str(tmp_path),
            "--endpoint",
            hub.url,
            *extra,
        ]
    )
    assert got == code
    for word in words:
        assert word in caplog.text


def test_private_repo_with_token_file(
    hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    args = [
        "--repo-id",
        "acme/private",
        "--revision",
        "main",
        "--allow-unpinned",
        "--dest",
        str(tmp_path / "m"),
        "--endpoint",
        hub.url,
        "--token-file",
        str(token_file),
    ]
    token_file.write_text("wrong\n")
    assert fetch.main(args) == fetch.EXIT_AUTH
    assert "a token was sent" in caplog.text
    token_file.write_text("hf_secret_token\n")
    assert fetch.main(args) == 0
    assert (tmp_path / "m" / "config.json").read_bytes() == b"{}"
    assert "hf_secret_token" not in caplog.text


def test_settings_come_from_env(
    hub: FakeHub, repo: FakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSERVE_FETCH_REPO_ID", REPO)
    monkeypatch.setenv("LLMSERVE_FETCH_REVISION", repo.commit)
    monkeypatch.setenv("LLMSERVE_FETCH_DEST", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert fetch.main([]) == 0
    assert (tmp_path / fetch.MARKER_NAME).is_file()


def test_missing_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for var in ("LLMSERVE_FETCH_REPO_ID", "LLMSERVE_FETCH_REVISION", "LLMSERVE_FETCH_DEST"):
        monkeypatch.delenv(var, raising=False)
    assert fetch.main(["--repo-id", REPO]) == fetch.EXIT_USAGE
    assert "--revision" in caplog.text and "--dest" in caplog.text


def test_cli_dispatches_fetch(hub: FakeHub, repo: FakeRepo, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(IMAGE_DIR)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmserve",
            "fetch",
            "--repo-id",
            REPO,
            "--revision",
            repo.commit,
            "--dest",
            str(tmp_path),
            "--endpoint",
            hub.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"complete: {len(WANTED)} files verified" in result.stderr
    assert (tmp_path / fetch.MARKER_NAME).is_file()


def test_too_little_disk_is_refused_before_downloading(
    hub: FakeHub,
    repo: FakeRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = fetch.shutil.disk_usage
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert run_fetch(hub, tmp_path, repo.commit) == fetch.EXIT_DISK
    assert "--dest" in caplog.text and "bytes free" in caplog.text
    assert hub.gets() == {}
