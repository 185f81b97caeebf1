"""`llmserve bench` and the server work inside the image: every third-party module that
image/llmserve imports is a pinned line of image/requirements.txt (torch excepted: the base
image or the Makefile installs its build)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

from tests.llm_server import IMAGE_DIR

# torch: the base image or the Makefile's CPU wheel; triton comes with torch's CUDA builds
INSTALLED_SEPARATELY = {"torch", "triton"}


def _imported_top_level_modules() -> dict[str, str]:
    """module -> a file importing it, for every absolute import under image/llmserve."""
    found: dict[str, str] = {}
    for path in sorted((IMAGE_DIR / "llmserve").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path.name)
    return found


def _pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_every_third_party_import_is_pinned_in_the_image_requirements() -> None:
    distributions = packages_distributions()
    pins = _pinned()
    missing = []
    for module, where in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "llmserve":
            continue
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
        if names & INSTALLED_SEPARATELY:
            continue
        if not names & set(pins):
            missing.append(f"{module} (imported in {where}; distribution {sorted(names)})")
    assert not missing, "not pinned in image/requirements.txt: " + ", ".join(missing)


def test_bench_needs_are_pinned() -> None:
    assert {"httpx", "numpy", "jinja2"} <= set(_pinned())
