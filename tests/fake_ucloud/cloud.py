"""The fake cloud's state: resources, their state machines, and the knobs tests turn."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fake_ucloud.protocol import Missing


@dataclass
class Lifecycle:
    """A state machine that moves one step per poll: pending states, then the target."""

    state: str
    target: str | None  # None: never settles (to test timeouts)
    polls_left: int
    detail: str = ""

    def poll(self) -> None:
        if self.target is None:
            return
        if self.polls_left > 0:
            self.polls_left -= 1
        if self.polls_left == 0:
            self.state = self.target

    def move(self, state: str, target: str | None, polls: int, detail: str = "") -> None:
        self.state, self.target, self.polls_left, self.detail = state, target, polls, detail


GONE = "<gone>"


@dataclass
class Record:
    """One fake resource: its API fields and its lifecycle."""

    id: str
    fields: dict[str, Any]
    life: Lifecycle
    parent: str = ""


@dataclass
class Outcome:
    """What the next cluster or node creation turns into."""

    target: str | None
    detail: str = ""


@dataclass
class FakeCloud:
    """All resources of the fake account, by kind and id."""

    ready_after_polls: int = 2
    gone_after_polls: int = 1
    # After something that used a subnet goes (NAT gateway, mount point), this many
    # DeleteSubnet tries answer 4411 while UCloud "releases" it (TF resource_ucloud_subnet.go:208).
    release_tries: int = 0
    # GetProjectList's answer: (ProjectId, IsDefault).
    projects: list[tuple[str, bool]] = field(
        default_factory=lambda: [("org-fake-default", True), ("org-fake-other", False)]
    )
    # GetUK8SVersions' answer; None: uk8s_api.K8S_VERSIONS (tests narrow it to refuse a version).
    k8s_versions: tuple[str, ...] | None = None
    # GPU types no DescribeUK8SImage image supports (tests add one to see "no node image").
    gpu_types_without_node_image: set[str] = field(default_factory=set)
    resources: dict[str, dict[str, Record]] = field(default_factory=dict)
    next_outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):08x}"

    def kind(self, kind: str) -> dict[str, Record]:
        return self.resources.setdefault(kind, {})

    def outcome(self, kind: str, ready_state: str) -> Outcome:
        queue = self.next_outcomes.get(kind) or []
        return queue.pop(0) if queue else Outcome(ready_state)

    def add(
        self,
        kind: str,
        prefix: str,
        fields: dict[str, Any],
        pending: str,
        ready: str,
        parent: str = "",
    ) -> Record:
        outcome = self.outcome(kind, ready)
        record = Record(
            id=self.new_id(prefix),
            fields={**fields, "CreateTime": int(time.time())},
            life=Lifecycle(pending, outcome.target, self.ready_after_polls, outcome.detail),
            parent=parent,
        )
        self.kind(kind)[record.id] = record
        return record

    def get(self, kind: str, id_: str, label: str) -> Record:
        record = self.kind(kind).get(id_)
        if record is None:
            raise Missing(label, id_)
        return record

    def releasing(self, subnet_ids: list[str]) -> None:
        """Something that used these subnets is gone: UCloud takes a while to release them."""
        for subnet_id in subnet_ids:
            subnet = self.kind("subnet").get(subnet_id)
            if subnet is not None:
                subnet.fields["_releasing"] = self.release_tries

    def poll(self, kind: str) -> list[Record]:
        """Advance every record of a kind by one step and drop those that are gone."""
        records = self.kind(kind)
        for record in list(records.values()):
            record.life.poll()
            if record.life.state == GONE:
                del records[record.id]
                self.releasing(list(record.fields.get("SubnetIds") or []))
        return list(records.values())

    def start_delete(self, record: Record, deleting_state: str) -> None:
        """Start deleting (again is a no-op): listed as deleting_state, gone a poll later."""
        if record.life.state != deleting_state:
            record.life.move(deleting_state, GONE, self.gone_after_polls)


Handler = Callable[[FakeCloud, dict[str, Any]], dict[str, Any]]


def page(items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    offset = int(params.get("Offset") or 0)
    limit = int(params.get("Limit") or 20)
    return items[offset : offset + limit]
