"""What LLMSERVE_MODEL names, decided before anything loads, so a bad value is one clear line.

The rules, in order:
1. unset: the bundled SmolLM2 GGUF (models.py finds it);
2. `random:<preset>`: random weights of a known shape (presets.py);
3. an existing path always wins: a .gguf file or a directory with config.json;
4. `ORG/NAME` or `ORG/NAME@REVISION` that is not a path: a Hugging Face hub model, fetched once
   by fetch.py (verified against the hub's checksums, resumable) into
   `~/.cache/llmserve/hub/ORG--NAME/REVISION` and served from there. A finished copy carries
   fetch.py's completion marker, so later starts use it without the network (and HF_HUB_OFFLINE
   changes nothing for them); a branch such as `main` is resolved once and kept, like a pinned
   commit, until that directory is deleted. HF_ENDPOINT and HF_TOKEN are honoured.

In the cluster LLMSERVE_MODEL is a path on the UFS volume (rule 3): no network is involved.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import disable_progress_bars, validate_repo_id

from llmserve import fetch

log = logging.getLogger("llmserve.model_source")

ALLOWED = (
    "allowed: a .gguf file, a Hugging Face model directory, random:<preset>, "
    "or a hub id ORG/NAME[@REVISION]"
)
# A hub id is ORG/NAME with an optional @REVISION (branch, tag or commit); names that end like a
# weights file are paths someone mistyped, never hub ids.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w][\w./-]*))?")
FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".json", ".pt", ".pth")
DEFAULT_REVISION = "main"
HUB_WORKERS = 4
HUB_HTTP_LOGGER = "httpx2"  # huggingface_hub 2.4's HTTP client


class ModelSourceError(ValueError):
    """LLMSERVE_MODEL names nothing that can be served; the message says why and what would."""


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    revision: str

    @property
    def spelled(self) -> str:
        return f"{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class ModelSource:
    """What load_model gets: a local spec (None, random:<preset> or a path), and the name to
    serve when LLMSERVE_MODEL_NAME is unset (the hub id; a cache path's last part is a revision)."""

    spec: str | None
    served_name: str | None = None


def parse_hub_id(spec: str) -> HubModel | None:
    """`ORG/NAME[@REVISION]` when the text can be one; None when it can only be a path."""
    match = HUB_ID.fullmatch(spec)
    if match is None or spec.lower().endswith(FILE_SUFFIXES):
        return None
    try:
        validate_repo_id(match["repo"])
    except HFValidationError:
        return None
    revision = match["revision"] or DEFAULT_REVISION
    if ".." in revision or revision.endswith("/"):
        return None
    return HubModel(match["repo"], revision)


def hub_cache_dir(model: HubModel) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    org, name = model.repo_id.split("/")
    return Path(base) / "llmserve" / "hub" / f"{org}--{name}" / model.revision.replace("/", "--")


def resolve(spec: str | None, report: Callable[[str], None] = log.info) -> ModelSource:
    """Check LLMSERVE_MODEL and, for a hub id, fetch it; raises ModelSourceError."""
    if spec is None:
        return ModelSource(None)
    if spec.startswith("random:"):
        _check_preset(spec)
        return ModelSource(spec)
    path = Path(spec).expanduser()
    if path.exists():
        _check_local(spec, path)
        return ModelSource(str(path))
    hub_model = parse_hub_id(spec)
    if hub_model is None:
        raise ModelSourceError(f"LLMSERVE_MODEL={spec!r} does not exist; {ALLOWED}")
    dest = fetch_hub_model(spec, hub_model, report)
    if not (dest / "config.json").is_file():
        raise ModelSourceError(
            f"LLMSERVE_MODEL={spec!r}: the hub repo has no config.json, so it is not a "
            f"transformers model (GGUF-only repos are not fetched); {ALLOWED}"
        )
    return ModelSource(str(dest), hub_model.repo_id)


def _check_preset(spec: str) -> None:
    from llmserve.presets import PRESETS  # torch: only for random models

    if spec.removeprefix("random:") not in PRESETS:
        raise ModelSourceError(
            f"LLMSERVE_MODEL={spec!r} names an unknown preset; allowed: "
            + ", ".join(f"random:{name}" for name in PRESETS)
        )


def _check_local(spec: str, path: Path) -> None:
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ModelSourceError(f"LLMSERVE_MODEL={spec!r} is a file but not .gguf; {ALLOWED}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelSourceError(
            f"LLMSERVE_MODEL={spec!r} is a directory without config.json; {ALLOWED}"
        )


def hub_request(model: HubModel, dest: Path) -> fetch.FetchRequest:
    return fetch.FetchRequest(
        repo_id=model.repo_id,
        revision=model.revision,
        dest=dest,
        endpoint=(os.environ.get("HF_ENDPOINT") or fetch.DEFAULT_ENDPOINT).rstrip("/"),
        token=fetch.read_token(None),
        allow_patterns=None,
        allow_unpinned=True,  # a local `make serve` of `ORG/NAME` means its main branch
        max_workers=HUB_WORKERS,
        recheck=False,
        dest_label="the model cache",
        token_hint="set HF_TOKEN",
        warn_unpinned=False,  # `ORG/NAME` meaning its main branch is the normal case here
    )


def fetch_hub_model(spec: str, model: HubModel, report: Callable[[str], None]) -> Path:
    dest = hub_cache_dir(model)
    req = hub_request(model, dest)
    marker = fetch.read_marker(dest)
    if fetch.marker_matches(marker, req):
        report(f"using {model.spelled} from the cache: {dest}")
        return dest
    if hub_constants.HF_HUB_OFFLINE:
        raise ModelSourceError(
            f"LLMSERVE_MODEL={spec!r} is not in the cache ({dest}) and HF_HUB_OFFLINE is set; "
            "allowed: unset HF_HUB_OFFLINE for one start to download it, or a local path"
        )
    if not sys.stderr.isatty():
        disable_progress_bars()  # a log file gets fetch.py's line per file, not redrawn bars
    logging.getLogger(HUB_HTTP_LOGGER).setLevel(logging.WARNING)  # not a line per request

    def announce(files: list[fetch.ExpectedFile]) -> None:
        size_mb = sum(f.size for f in files) / 1e6
        report(
            f"downloading {model.spelled} ({len(files)} files, {size_mb:.1f} MB) from "
            f"{req.endpoint} into {dest} (first start only)"
        )

    try:
        fetch.run(req, announce)
    except fetch.FetchError as err:
        raise ModelSourceError(
            f"LLMSERVE_MODEL={spec!r} is not a local path, and fetching it from the hub "
            f"failed: {err}"
        ) from None
    return dest
