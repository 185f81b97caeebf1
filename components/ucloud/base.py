"""What every UCloud dynamic provider shares: credentials, timings, check/diff/read/delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pulumi.dynamic import (
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components.ucloud.api import UCloudApi
from components.ucloud.credentials import CONFIG_KEYS, resolve_credentials
from components.ucloud.errors import (
    ResourceFailedError,
    StillReleasingError,
    is_not_found,
    is_still_releasing,
)
from components.ucloud.retry import RetryPolicy
from components.ucloud.validation import Checker, as_int
from components.ucloud.waiting import GONE, Observation, WaitPolicy, wait_for_state

# The state most Describe* actions report (or that "listed" stands for) once usable.
AVAILABLE = "Available"
# How long a delete is tried again while UCloud is still releasing what used the resource:
# 10 minutes, as terraform-provider-ucloud ucloud/resource_ucloud_subnet.go:193 does for
# DeleteSubnet's RetCode 4411. The 10 s between tries is our choice (TF backs off on its own).
RELEASE_TIMEOUT_S = 600.0
RELEASE_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Timings:
    """Retry and wait settings; tests shrink them to milliseconds.

    release: how long a delete is sent again while UCloud answers that the resource's
    dependents are still being released (errors.STILL_RELEASING_RET_CODES).
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ready: WaitPolicy = field(default_factory=WaitPolicy)
    gone: WaitPolicy = field(default_factory=WaitPolicy)
    release: WaitPolicy = field(
        default_factory=lambda: WaitPolicy(timeout=RELEASE_TIMEOUT_S, interval=RELEASE_INTERVAL_S)
    )


@dataclass
class Live:
    """A resource as UCloud describes it: its state and the outputs read from it."""

    state: str
    outputs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


class UCloudProvider(ResourceProvider):
    """Base for the UCloud providers. Subclasses describe, create and update one kind."""

    kind: ClassVar[str] = "resource"
    # Inputs and their defaults, in the order check() reports them.
    defaults: ClassVar[Mapping[str, Any]] = {}
    # Inputs UCloud can change in place; every other input change replaces.
    updatable: ClassVar[frozenset[str]] = frozenset()
    # Inputs that are whole numbers (Pulumi may send them as floats).
    integer_fields: ClassVar[frozenset[str]] = frozenset()
    default_timings: ClassVar[Timings] = Timings()
    ready_states: ClassVar[frozenset[str]] = frozenset({AVAILABLE})
    failed_states: ClassVar[frozenset[str]] = frozenset()
    # States that end a wait for deletion with an error instead of waiting on.
    delete_failed_states: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, timings: Timings | None = None) -> None:
        super().__init__()
        self.timings = timings or self.default_timings
        self._config: dict[str, Any] = {}

    # ---- plumbing ---------------------------------------------------------
    def configure(self, req: ConfigureRequest) -> None:
        """Keep only the ucloud:* keys of the stack config (Pulumi calls this after unpickling)."""
        self._config = {key: req.config.get(key) for key in CONFIG_KEYS}

    def api(self, props: Mapping[str, Any]) -> UCloudApi:
        credentials = resolve_credentials(self._config)
        return UCloudApi(
            credentials=credentials,
            region=str(props["region"]),
            project_id=props.get("project_id") or credentials.default_project_id,
            retry=self.timings.retry,
        )

    # ---- what subclasses provide ------------------------------------------
    def validate(self, checker: Checker, olds: Mapping[str, Any]) -> None:
        """Add failures for bad inputs."""

    def describe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        """The live resource, or None when UCloud no longer has it (one try; see `live`)."""
        raise NotImplementedError

    def remove(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        """Ask UCloud to delete the resource."""
        raise NotImplementedError

    def find(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str | None:
        """The id of a resource an earlier, interrupted create already made, if any."""
        return None

    def create_once(self, api: UCloudApi, inputs: Mapping[str, Any]) -> str:
        """Send the create action once and return the new id."""
        raise NotImplementedError

    def apply_update(
        self, api: UCloudApi, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> None:
        """Change in place the inputs listed in `updatable`."""

    def on_create_failed(
        self, api: UCloudApi, id_: str, inputs: Mapping[str, Any], failure: ResourceFailedError
    ) -> None:
        """Clean up after a create whose resource reached a failed state (then re-raised)."""

    def outputs_from(
        self, api: UCloudApi, id_: str, inputs: Mapping[str, Any], observed: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create's and update's outputs: the inputs plus what UCloud reported."""
        return {**inputs, **observed}

    # ---- Pulumi's provider interface ----------------------------------------
    def normalize(self, news: Mapping[str, Any]) -> dict[str, Any]:
        inputs = {key: news.get(key, default) for key, default in self.defaults.items()}
        inputs.update({k: v for k, v in news.items() if k not in inputs})
        for key, value in inputs.items():
            if value is None and key in self.defaults:
                inputs[key] = self.defaults[key]
        for key in self.integer_fields:
            inputs[key] = as_int(inputs.get(key))
        return inputs

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = self.normalize(news)
        checker = Checker(inputs)
        checker.text("region")
        self.validate(checker, _olds or {})
        return CheckResult(inputs, checker.failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        new_inputs = self.normalize(news)
        changed = [
            key
            for key in self.defaults
            if as_int(olds.get(key, self.defaults[key])) != new_inputs.get(key)
        ]
        replaces = [key for key in changed if key not in self.updatable]
        # Delete first: replacements reuse names and CIDRs, and the crash-safe lookup
        # by name must never adopt the resource that is about to be deleted.
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[key for key in self.defaults if key not in changed],
            delete_before_replace=True,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.normalize(props)
        api = self.api(inputs)
        # Look before each try: a create that failed on the wire may still have happened.
        id_ = api.retry.run(lambda: self.find(api, inputs) or self.create_once(api, inputs))
        try:
            ready = self.wait_ready(api, id_, inputs)
        except ResourceFailedError as failure:
            self.on_create_failed(api, id_, inputs, failure)
            raise
        return CreateResult(id_, self.outputs_from(api, id_, inputs, ready.outputs))

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        inputs = self.normalize(_news)
        api = self.api(inputs)
        self.apply_update(api, _id, _olds, inputs)
        return UpdateResult(self.outputs_now(api, _id, inputs))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self.live(self.api(props), id_, props)
        if live is None:
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs={**props, **live.outputs})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        api = self.api(props)
        if self.live(api, id_, props) is None:
            return
        self.remove_when_released(api, id_, props)
        self.wait_gone(api, id_, props)

    # ---- helpers for subclasses -----------------------------------------------
    def remove_when_released(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        """`remove`, retried on transient errors, and sent again while UCloud answers that it
        is still releasing what used the resource, until `timings.release` runs out."""
        policy = self.timings.release
        deadline = policy.clock() + policy.timeout
        while True:
            try:
                api.retry.run(lambda: self.remove(api, id_, props))
                return
            except Exception as error:
                if is_not_found(error):
                    return
                if not is_still_releasing(error):
                    raise
                if policy.clock() + policy.interval > deadline:
                    raise StillReleasingError(self.kind, id_, policy.timeout, error) from error
                policy.sleep(policy.interval)

    def live(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Live | None:
        """`describe` retried on transient errors, so that one 5000 answer during a long
        wait (or a read, or a delete) does not abort the whole `pulumi up`."""
        return api.retry.run(lambda: self.describe(api, id_, props))

    def observe(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Observation:
        live = self.live(api, id_, props)
        if live is None:
            return Observation(GONE)
        return Observation(live.state, live.detail, live.outputs)

    def wait_ready(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> Observation:
        """The first ready poll, outputs included (create builds its outputs from it)."""
        return wait_for_state(
            self.timings.ready,
            self.kind,
            id_,
            lambda: self.observe(api, id_, props),
            ready=self.ready_states,
            failed=self.failed_states,
        )

    def wait_gone(self, api: UCloudApi, id_: str, props: Mapping[str, Any]) -> None:
        wait_for_state(
            self.timings.gone,
            self.kind,
            id_,
            lambda: self.observe(api, id_, props),
            ready={GONE},
            failed=self.delete_failed_states,
        )

    def outputs_now(self, api: UCloudApi, id_: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Describe the resource now and build the outputs from it (after an update)."""
        live = self.live(api, id_, inputs)
        return self.outputs_from(api, id_, inputs, live.outputs if live else {})
