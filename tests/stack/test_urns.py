"""Every stack's resources keep their URNs and type tokens.

Why: a URN is a resource's identity in the state. A changed type token, parent or name gives the
resource a new URN, and `pulumi up` then creates the new one and deletes the old: a live UK8S
cluster or the UFS volume with the weights would be replaced. Moving or renaming Python code must
never do that, so each stack's (URN, type) pairs are checked in under tests/stack/urns/ and any
change fails here. A deliberate change (a new resource, a removed one) updates the file in the
same commit, with `aliases` for anything that moved: regenerate with
`.venv/bin/python -m tests.stack.test_urns` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stack.stack_values import STACKS, planned

PINNED = Path(__file__).with_name("urns")


def urns_and_types(stack: str) -> list[list[str]]:
    """The stack's (URN, type) pairs, sorted, as the program registers them under mocks."""
    return sorted([r.urn, r.type] for r in planned(stack).resources)


def pinned(stack: str) -> list[list[str]]:
    return json.loads((PINNED / f"{stack}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("stack", STACKS)
def test_urns_and_types_match_the_pinned_set(stack: str) -> None:
    now, before = urns_and_types(stack), pinned(stack)
    added = [pair for pair in now if pair not in before]
    removed = [pair for pair in before if pair not in now]
    assert not added and not removed, (
        f"{stack}: URNs changed (a replaced resource on `pulumi up`);\n"
        f"new: {json.dumps(added, indent=1)}\ngone: {json.dumps(removed, indent=1)}"
    )


def test_every_stack_has_a_pinned_set() -> None:
    assert sorted(p.stem for p in PINNED.glob("*.json")) == sorted(STACKS)


def write() -> None:
    for stack in STACKS:
        lines = ",\n".join(f" {json.dumps(pair)}" for pair in urns_and_types(stack))
        text = f"[\n{lines}\n]\n"  # one pair a line: a changed URN is a one-line diff
        (PINNED / f"{stack}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write()
