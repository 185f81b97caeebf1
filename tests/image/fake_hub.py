"""A Hub-compatible HTTP server on 127.0.0.1 serving the calls huggingface_hub 2.4.0 makes.

Read from its source: `model_info` (GET /api/models/{repo}/revision/{rev}), `list_repo_tree`
(GET /api/models/{repo}/tree/{rev}?recursive=..), and per file HEAD + GET on
/{repo}/resolve/{rev}/{path} with X-Repo-Commit, ETag / X-Linked-Etag / X-Linked-Size and Range.
Errors carry X-Error-Code the way the hub does, so the library raises its own typed errors.
Faults (cut connections, corrupt bytes, stalls) are switched on per file by the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    token: str | None = None  # private repo: this bearer token is required
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    branches: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.branches.setdefault("main", self.commit)

    def resolve(self, rev: str) -> str | None:
        return rev if rev == self.commit else self.branches.get(rev)

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def tree_entry(self, path: str) -> dict:
        data = self.files[path]
        entry: dict = {"type": "file", "path": path, "size": len(data)}
        if self.is_lfs(path):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                f"size {len(data)}\n".encode()
            )
            entry["oid"] = git_blob_sha1(pointer)
            entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
        else:
            entry["oid"] = git_blob_sha1(data)
        return entry


@dataclass
class Faults:
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, then cut (once)
    corrupt: set[str] = field(default_factory=set)  # path -> serve same-size wrong bytes
    stall: set[str] = field(default_factory=set)  # path -> send a little, then hang until release
    release: threading.Event = field(default_factory=threading.Event)


class FakeHub:
    """Start with `with FakeHub(repos) as hub:`; `hub.url` is the endpoint."""

    def __init__(self, repos: list[FakeRepo]) -> None:
        self.repos = {r.repo_id: r for r in repos}
        self.faults = Faults()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.faults.release.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> Counter[str]:
        """Body downloads per file path."""
        with self.lock:
            return Counter(p for m, p in self.requests if m == "GET-file")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.route(head=False)

            def do_HEAD(self) -> None:
                self.route(head=True)

            def route(self, head: bool) -> None:
                path = urlsplit(self.path).path
                api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if api:
                    repo_id, kind, rev = api.group(1), api.group(2), unquote(api.group(3))
                    repo, commit = self.authorize(repo_id, rev)
                    if repo and commit:
                        with hub.lock:
                            hub.requests.append(("API-" + kind, repo_id))
                        self.api(repo, commit, kind)
                elif resolve:
                    repo_id, rev, file = (
                        resolve.group(1),
                        unquote(resolve.group(2)),
                        unquote(resolve.group(3)),
                    )
                    repo, commit = self.authorize(repo_id, rev)
                    if repo and commit:
                        self.serve_file(repo, commit, file, head)
                else:
                    self.error(404, "RepoNotFound", "unknown route")

            def authorize(self, repo_id: str, rev: str) -> tuple[FakeRepo | None, str | None]:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self.error(
                        401 if not self.headers.get("authorization") else 404,
                        "RepoNotFound",
                        "Repository not found",
                    )
                    return None, None
                if repo.token is not None:
                    sent = self.headers.get("authorization")
                    if sent is None:
                        self.error(401, "RepoNotFound", "Repository not found")
                        return None, None
                    if sent != f"Bearer {repo.token}":
                        self.error(401, None, "Invalid credentials in Authorization header")
                        return None, None
                commit = repo.resolve(rev)
                if commit is None:
                    self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return repo, commit

            def api(self, repo: FakeRepo, commit: str, kind: str) -> None:
                if kind == "revision":
                    body = {
                        "id": repo.repo_id,
                        "sha": commit,
                        "siblings": [{"rfilename": p} for p in repo.files],
                    }
                else:
                    dirs = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
                    body = [
                        {"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in dirs
                    ] + [repo.tree_entry(p) for p in sorted(repo.files)]
                self.send_json(200, body)

            def serve_file(self, repo: FakeRepo, commit: str, file: str, head: bool) -> None:
                if file not in repo.files:
                    self.error(404, "EntryNotFound", f"{file} does not exist")
                    return
                data = repo.files[file]
                if file in hub.faults.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                entry = repo.tree_entry(file)
                start = 0
                rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if rng and not head:
                    start = int(rng.group(1))
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{entry["oid"]}"')
                if "lfs" in entry:
                    self.send_header("X-Linked-Etag", f'"{entry["lfs"]["oid"]}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if head:
                    return
                with hub.lock:
                    hub.requests.append(("GET-file", file))
                    cut = hub.faults.cut_after.pop(file, None)
                body = data[start:]
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-body: the client sees a broken transfer
                    return
                if file in hub.faults.stall:
                    self.wfile.write(body[:16])
                    self.wfile.flush()
                    hub.faults.release.wait(timeout=60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def error(self, status: int, code: str | None, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def send_json(self, status: int, body: object) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
