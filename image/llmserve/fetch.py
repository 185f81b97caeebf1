"""`llmserve fetch`: put one pinned model revision into a directory, verified, exactly once.

The stack's fetch Job runs this against the UFS (NFS) volume before any server starts, so it
must be safe to re-run: a finished directory carries a completion marker and a re-run with the same
repo and revision exits 0 at once, without touching the network. An interrupted run keeps every
file it had finished (huggingface_hub's per-file metadata) and the next run fetches only the rest;
a file cut off mid-transfer is retried with HTTP Range inside the run, but huggingface_hub 2.4
deliberately does not reuse partial files across processes (unsafe on NFS), so a killed run
restarts that one file. A branch or tag (only with --allow-unpinned) is resolved once; the
marker records the commit and re-runs keep it.

Exit codes: 0 done (or already done), 2 bad arguments, 3 repo/revision/file not found,
4 authentication refused, 5 verification failed, 6 network or server error, 7 disk too small.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import disable_progress_bars, filter_repo_objects, validate_repo_id

from llmserve import cliargs

log = logging.getLogger("llmserve.fetch")

MARKER_NAME = ".llm-uk8s-complete.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
# Weights, configs, tokenizers, chat templates (transformers 5 saves them as *.jinja) and the
# remote code ChatGLM-family checkpoints need; *.bin only when the revision has no safetensors
# (see choose_files).
DEFAULT_ALLOW_PATTERNS = (
    "*.safetensors",
    "*.json",
    "*.jinja",
    "*.py",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "tokenizer*",
)
PICKLE_WEIGHTS = "*.bin"
HASH_CHUNK = 8 * 1024 * 1024

EXIT_OK, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_VERIFY, EXIT_NETWORK, EXIT_DISK = (
    0,
    2,
    3,
    4,
    5,
    6,
    7,
)


class FetchError(Exception):
    """A failure with the exit code the Job should end with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ExpectedFile:
    """What the hub says one file is: the yardstick for verification."""

    path: str
    size: int
    lfs_sha256: str | None  # LFS files: sha256 of the content
    git_sha1: str  # every file: git blob id (for LFS files, the pointer's)


@dataclass(frozen=True)
class FetchRequest:
    repo_id: str
    revision: str
    dest: Path
    endpoint: str
    token: str | None
    allow_patterns: tuple[str, ...] | None  # None: the defaults, with the *.bin rule
    allow_unpinned: bool
    max_workers: int
    recheck: bool
    # How messages name the destination and the token: the Job's flags by default; `serve`
    # (model_source.py) fetches into its cache with a token from HF_TOKEN only.
    dest_label: str = "--dest"
    token_hint: str = "set --token-file or HF_TOKEN"
    warn_unpinned: bool = True  # the Job's --allow-unpinned is an exception worth a warning


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = cliargs.ArgumentParser(
        prog="llmserve fetch",
        description="Download one pinned revision of a Hugging Face model repo into a directory, "
        "verify every file against the hub's checksums and write a completion marker.",
    )
    p.add_argument(
        "--repo-id",
        default=env("LLMSERVE_FETCH_REPO_ID"),
        help="ORG/NAME (env LLMSERVE_FETCH_REPO_ID)",
    )
    p.add_argument(
        "--revision",
        default=env("LLMSERVE_FETCH_REVISION"),
        help="40-hex commit sha (env LLMSERVE_FETCH_REVISION); a branch or tag needs "
        "--allow-unpinned",
    )
    p.add_argument(
        "--dest",
        default=env("LLMSERVE_FETCH_DEST"),
        help="target directory (env LLMSERVE_FETCH_DEST)",
    )
    p.add_argument(
        "--endpoint",
        default=env("HF_ENDPOINT") or DEFAULT_ENDPOINT,
        help=f"hub or mirror base URL (env HF_ENDPOINT, default {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--token-file",
        default=env("LLMSERVE_FETCH_TOKEN_FILE"),
        help="file holding a hub token (env LLMSERVE_FETCH_TOKEN_FILE); else env HF_TOKEN",
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only files matching these globs (repeatable); default: safetensors, "
        "json, tokenizer files, *.py, *.txt, and *.bin only if there are no safetensors",
    )
    p.add_argument(
        "--allow-unpinned",
        action="store_true",
        default=env("LLMSERVE_FETCH_ALLOW_UNPINNED", "") in ("1", "true", "yes"),
        help="accept a branch or tag as --revision (the resolved commit is recorded)",
    )
    p.add_argument("--max-workers", type=int, default=4, help="parallel file downloads (1-32)")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="re-hash every file even when the completion marker says done (offline)",
    )
    return p


def parse_request(argv: Sequence[str] | None) -> FetchRequest:
    """Turn argv + env into a validated request; every refusal names the field and the value."""
    args = build_parser().parse_args(argv)
    missing = [
        flag
        for flag, value in (
            ("--repo-id", args.repo_id),
            ("--revision", args.revision),
            ("--dest", args.dest),
        )
        if not value
    ]
    if missing:
        raise FetchError(
            f"missing required setting(s): {', '.join(missing)} (or their "
            "LLMSERVE_FETCH_* environment variables)",
            EXIT_USAGE,
        )
    try:
        validate_repo_id(args.repo_id)
    except HFValidationError as e:
        raise FetchError(
            f"--repo-id {args.repo_id!r} is not a valid ORG/NAME repo id: {e}", EXIT_USAGE
        ) from e
    if "/" not in args.repo_id:
        raise FetchError(f"--repo-id {args.repo_id!r} must be ORG/NAME", EXIT_USAGE)
    if not COMMIT_SHA.fullmatch(args.revision) and not args.allow_unpinned:
        raise FetchError(
            f"--revision {args.revision!r} is not a 40-hex commit sha; a branch or tag can move "
            "under a running deployment. Pin a commit, or pass --allow-unpinned "
            "(LLMSERVE_FETCH_ALLOW_UNPINNED=1) to accept it",
            EXIT_USAGE,
        )
    if not args.endpoint.startswith(("http://", "https://")):
        raise FetchError(
            f"--endpoint {args.endpoint!r} must be an http:// or https:// URL", EXIT_USAGE
        )
    if not 1 <= args.max_workers <= 32:
        raise FetchError(
            f"--max-workers {args.max_workers} is out of range; allowed 1..32", EXIT_USAGE
        )
    return FetchRequest(
        repo_id=args.repo_id,
        revision=args.revision,
        dest=Path(args.dest),
        endpoint=args.endpoint.rstrip("/"),
        token=read_token(args.token_file),
        allow_patterns=tuple(args.include) if args.include else None,
        allow_unpinned=args.allow_unpinned,
        max_workers=args.max_workers,
        recheck=args.recheck,
    )


def read_token(token_file: str | None) -> str | None:
    """A mounted Secret file wins over HF_TOKEN; the token itself is never logged."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise FetchError(
                f"--token-file {token_file!r} cannot be read: {e.strerror}", EXIT_USAGE
            ) from e
        if not token:
            raise FetchError(f"--token-file {token_file!r} is empty", EXIT_USAGE)
        return token
    return os.environ.get("HF_TOKEN") or None


def read_marker(dest: Path) -> dict | None:
    try:
        return json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def marker_matches(marker: dict | None, req: FetchRequest) -> bool:
    """Same repo, revision and file selection, and every file still there at its recorded size."""
    if not marker or marker.get("repo_id") != req.repo_id:
        return False
    if req.revision not in (marker.get("revision"), marker.get("commit")):
        return False
    if marker.get("include") != (list(req.allow_patterns) if req.allow_patterns else None):
        return False
    files = marker.get("files") or []
    return bool(files) and all(
        (req.dest / f["path"]).is_file() and (req.dest / f["path"]).stat().st_size == f["size"]
        for f in files
    )


def choose_files(
    entries: list[ExpectedFile], patterns: tuple[str, ...] | None
) -> list[ExpectedFile]:
    """Default selection skips pickle *.bin weights whenever safetensors exist (safer, smaller)."""
    if patterns is None:
        has_safetensors = any(e.path.endswith(".safetensors") for e in entries)
        patterns = DEFAULT_ALLOW_PATTERNS + (() if has_safetensors else (PICKLE_WEIGHTS,))
    by_path = {e.path: e for e in entries}
    chosen = filter_repo_objects(list(by_path), allow_patterns=list(patterns))
    return [by_path[p] for p in sorted(chosen)]


def hash_file(path: Path) -> tuple[str, str]:
    """sha256 and git blob sha1 in one read (the hub gives one or the other per file)."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(f"blob {size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def verify_file(dest: Path, expected: ExpectedFile) -> tuple[str | None, str]:
    """Return (problem or None, sha256 on disk)."""
    path = dest / expected.path
    if not path.is_file():
        return f"{expected.path}: missing", ""
    size = path.stat().st_size
    if size != expected.size:
        return f"{expected.path}: size {size} on disk, hub says {expected.size}", ""
    sha256, git_sha1 = hash_file(path)
    if expected.lfs_sha256 is not None and sha256 != expected.lfs_sha256:
        return f"{expected.path}: sha256 {sha256} on disk, hub says {expected.lfs_sha256}", sha256
    if expected.lfs_sha256 is None and git_sha1 != expected.git_sha1:
        return f"{expected.path}: git sha1 {git_sha1} on disk, hub says {expected.git_sha1}", sha256
    return None, sha256


def forget_local_copy(dest: Path, path: str) -> None:
    """Drop a bad file and the hub library's note that it is current, so it is fetched again."""
    (dest / path).unlink(missing_ok=True)
    (dest / ".cache" / "huggingface" / "download" / f"{path}.metadata").unlink(missing_ok=True)


def remove_stale_partials(dest: Path) -> None:
    """A killed run leaves uniquely named *.incomplete files the library never reuses."""
    download_dir = dest / ".cache" / "huggingface" / "download"
    if download_dir.is_dir():
        for partial in download_dir.rglob("*.incomplete"):
            partial.unlink(missing_ok=True)


class Fetcher:
    """One fetch of one revision; methods are the steps, in order."""

    def __init__(self, req: FetchRequest) -> None:
        self.req = req
        self.api = HfApi(endpoint=req.endpoint, token=self._token_arg())

    def _token_arg(self) -> str | bool:
        # False stops huggingface_hub from silently using a token stored on the machine.
        return self.req.token or False

    def resolve(self) -> tuple[str, list[ExpectedFile]]:
        info = self.api.model_info(self.req.repo_id, revision=self.req.revision)
        if not info.sha:
            raise FetchError(
                f"{self.req.endpoint} returned no commit for revision "
                f"{self.req.revision!r}; is it a Hub-compatible endpoint?",
                EXIT_NETWORK,
            )
        entries = [
            ExpectedFile(
                path=f.path,
                size=f.size,
                git_sha1=f.blob_id,
                lfs_sha256=f.lfs.sha256 if f.lfs else None,
            )
            for f in self.api.list_repo_tree(self.req.repo_id, revision=info.sha, recursive=True)
            if isinstance(f, RepoFile)
        ]
        return info.sha, entries

    def download(self, commit: str, files: list[ExpectedFile]) -> None:
        def one(f: ExpectedFile) -> None:
            hf_hub_download(
                self.req.repo_id,
                f.path,
                revision=commit,
                local_dir=self.req.dest,
                endpoint=self.req.endpoint,
                token=self._token_arg(),
            )
            log.info("have %s (%d bytes)", f.path, f.size)

        pool = ThreadPoolExecutor(max_workers=self.req.max_workers)
        try:
            for _ in pool.map(one, files):
                pass
        except BaseException:
            # Ctrl-C or a failed file: queued files are dropped, not waited for (a `with` block
            # would wait for them all); the caller decides whether to wait for running ones.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def verify_or_refetch(self, commit: str, files: list[ExpectedFile]) -> dict[str, str]:
        """A file that fails verification is fetched once more; failing twice is fatal."""
        digests: dict[str, str] = {}
        bad: list[ExpectedFile] = []
        for f in files:
            problem, sha256 = verify_file(self.req.dest, f)
            if problem:
                log.warning("verification failed, fetching again: %s", problem)
                forget_local_copy(self.req.dest, f.path)
                bad.append(f)
            else:
                digests[f.path] = sha256
        if bad:
            self.download(commit, bad)
            problems = []
            for f in bad:
                problem, sha256 = verify_file(self.req.dest, f)
                if problem:
                    problems.append(problem)
                digests[f.path] = sha256
            if problems:
                raise FetchError(
                    "verification failed after a fresh download (the endpoint "
                    "serves content that does not match its own checksums): " + "; ".join(problems),
                    EXIT_VERIFY,
                )
        return digests

    def write_marker(self, commit: str, files: list[ExpectedFile], digests: dict[str, str]) -> None:
        marker = {
            "repo_id": self.req.repo_id,
            "revision": self.req.revision,
            "commit": commit,
            "endpoint": self.req.endpoint,
            "include": list(self.req.allow_patterns) if self.req.allow_patterns else None,
            "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": [{**asdict(f), "sha256": digests[f.path]} for f in files],
        }
        tmp = self.req.dest / (MARKER_NAME + ".tmp")
        tmp.write_text(json.dumps(marker, indent=1), encoding="utf-8")
        os.replace(tmp, self.req.dest / MARKER_NAME)  # atomic: a marker is whole or absent

    def run(self, on_start: Callable[[list[ExpectedFile]], None] | None = None) -> None:
        """`on_start` hears which files will be downloaded, once the hub has answered."""
        marker = read_marker(self.req.dest)
        # One marker_matches call: it stats every file, which is slow on NFS.
        if marker is not None and marker_matches(marker, self.req):
            if self.req.recheck:
                self.recheck_offline(marker)
            else:
                log.info(
                    "%s@%s already complete in %s (marker %s); nothing to do",
                    self.req.repo_id,
                    self.req.revision,
                    self.req.dest,
                    MARKER_NAME,
                )
            return
        self.req.dest.mkdir(parents=True, exist_ok=True)
        (self.req.dest / MARKER_NAME).unlink(missing_ok=True)  # stale marker = incomplete dir
        commit, entries = self.resolve()
        if self.req.revision != commit:
            log.log(
                logging.WARNING if self.req.warn_unpinned else logging.INFO,
                "revision %r is not pinned; it resolved to commit %s (recorded in %s)",
                self.req.revision,
                commit,
                MARKER_NAME,
            )
        files = choose_files(entries, self.req.allow_patterns)
        if not files:
            raise FetchError(
                f"no file of {self.req.repo_id}@{commit} matches "
                f"{list(self.req.allow_patterns or DEFAULT_ALLOW_PATTERNS)}; "
                f"the repo has: {[e.path for e in entries][:20]}",
                EXIT_NOT_FOUND,
            )
        remove_stale_partials(self.req.dest)  # first: a killed run's leftovers are not "used"
        self.check_disk_space(files)
        log.info(
            "fetching %d files (%d bytes) of %s@%s from %s",
            len(files),
            sum(f.size for f in files),
            self.req.repo_id,
            commit,
            self.req.endpoint,
        )
        if on_start is not None:
            on_start(files)
        self.download(commit, files)
        digests = self.verify_or_refetch(commit, files)
        self.write_marker(commit, files, digests)
        log.info(
            "complete: %d files verified, marker written to %s",
            len(files),
            self.req.dest / MARKER_NAME,
        )

    def recheck_offline(self, marker: dict) -> None:
        problems = []
        for f in marker["files"]:
            expected = ExpectedFile(
                path=f["path"], size=f["size"], git_sha1=f["git_sha1"], lfs_sha256=f["lfs_sha256"]
            )
            problem, _ = verify_file(self.req.dest, expected)
            if problem:
                problems.append(problem)
        if problems:
            (self.req.dest / MARKER_NAME).unlink(missing_ok=True)
            raise FetchError(
                "recheck failed, marker removed so the next run fetches again: "
                + "; ".join(problems),
                EXIT_VERIFY,
            )
        log.info("recheck: %d files match %s", len(marker["files"]), MARKER_NAME)

    def check_disk_space(self, files: list[ExpectedFile]) -> None:
        have = {f.path: (self.req.dest / f.path) for f in files}
        needed = sum(f.size for f in files if not have[f.path].is_file())
        free = shutil.disk_usage(self.req.dest).free
        if needed > free:
            raise FetchError(
                f"{self.req.dest_label} {str(self.req.dest)!r} has {free} bytes free, the "
                f"files still missing need {needed}",
                EXIT_DISK,
            )


def explain_hub_error(e: Exception, req: FetchRequest) -> FetchError:
    """Map huggingface_hub's exceptions to one clear line and an exit code."""
    where = f"{req.repo_id}@{req.revision} at {req.endpoint}"
    token_hint = "a token was sent" if req.token else f"no token was sent ({req.token_hint})"
    status = (
        e.response.status_code if isinstance(e, HfHubHTTPError) and e.response is not None else None
    )
    if status in (401, 403):
        return FetchError(
            f"authentication refused (HTTP {status}) for {where}: the repo is "
            f"private or gated, or does not exist; {token_hint}",
            EXIT_AUTH,
        )
    if isinstance(e, GatedRepoError):
        return FetchError(f"{where} is gated: accept its terms on the hub; {token_hint}", EXIT_AUTH)
    if isinstance(e, RevisionNotFoundError):
        return FetchError(
            f"revision {req.revision!r} does not exist in {req.repo_id} at {req.endpoint}",
            EXIT_NOT_FOUND,
        )
    if isinstance(e, RemoteEntryNotFoundError):
        return FetchError(f"a listed file vanished from {where}: {e}", EXIT_NOT_FOUND)
    if isinstance(e, RepositoryNotFoundError):
        return FetchError(f"repository {req.repo_id!r} not found at {req.endpoint}", EXIT_NOT_FOUND)
    if isinstance(e, HfHubHTTPError):
        return FetchError(f"hub error for {where}: {str(e).splitlines()[0]}", EXIT_NETWORK)
    return FetchError(
        f"cannot reach {req.endpoint} for {req.repo_id}: {type(e).__name__}: {e}", EXIT_NETWORK
    )


def run(req: FetchRequest, on_start: Callable[[list[ExpectedFile]], None] | None = None) -> None:
    """Run one request; every failure is a FetchError with one clear line and its exit code."""
    try:
        Fetcher(req).run(on_start)
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as e:
        if isinstance(e, FileNotFoundError | PermissionError) and not isinstance(e, HfHubHTTPError):
            raise FetchError(f"{req.dest_label} {str(req.dest)!r}: {e}", EXIT_USAGE) from e
        raise explain_hub_error(e, req) from e


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s fetch %(levelname)s %(message)s", stream=sys.stderr
    )
    disable_progress_bars()  # Job logs are not a terminal: one line per file instead
    try:
        run(parse_request(argv))
    except FetchError as e:
        log.error("%s", e)
        return e.exit_code
    except SystemExit as e:  # argparse: --help is 0, a usage error is 2
        return int(e.code or 0)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
