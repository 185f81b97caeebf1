"""Run a Pulumi program under the SDK's mock runtime and record every resource it registers.

Why: there is no Pulumi CLI (and no cloud) where this project is developed and reviewed. The same
recording powers `make plan` (review a change without credentials) and the tests. The SDK's mocks
only see a resource's inputs, so this harness also records what the engine would see from the
raw registration request: protection, dependencies, timeouts, secret markers.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

# Signatures the Pulumi wire protocol uses for special values (pulumi/runtime/rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_REF_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_MASK = "[secret]"
UNKNOWN_MASK = "[unknown]"

# Inputs that are the engine's business, not the user's: the pickled dynamic provider is huge and
# changes with every code edit.
_HIDDEN_INPUTS = {"__provider"}

OutputFactory = Callable[[pulumi_mocks.MockResourceArgs], Mapping[str, Any]]


@dataclass
class RecordedResource:
    """One registration as the engine would receive it."""

    urn: str
    type: str
    name: str
    parent: str | None
    provider: str | None
    custom: bool
    inputs: dict[str, Any]
    raw_inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    protect: bool = False
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    secret_inputs: list[str] = field(default_factory=list)

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.custom and self.type.startswith("kubernetes:") and "apiVersion" in self.raw_inputs
        )

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object this resource applies (secrets masked)."""
        if not self.is_kubernetes_object:
            raise ValueError(f"{self.urn} is not a Kubernetes object")
        manifest = _ints_as_ints(self.inputs)
        metadata = manifest.setdefault("metadata", {})
        if "name" not in metadata and "generateName" not in metadata:
            # pulumi-kubernetes auto-names such objects "<resource name>-<random suffix>" at apply
            # time; a stable stand-in keeps the plan reviewable and the schema check meaningful.
            metadata["name"] = mock_id(self.type, self.name)
        return manifest

    def depends_on(self, other: RecordedResource) -> bool:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps.update(urns)
        return other.urn in deps


@dataclass
class Plan:
    """Everything a program declared, in registration order, plus its stack outputs."""

    resources: list[RecordedResource]
    outputs: dict[str, Any]
    secret_outputs: list[str]

    def by_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_type_suffix(self, suffix: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type.endswith(suffix)]

    def one(self, type_token: str) -> RecordedResource:
        found = self.by_type(type_token) or self.by_type_suffix(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, found {[r.urn for r in found]}")
        return found[0]

    def get(self, urn: str) -> RecordedResource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: RecordedResource) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    def provider_of(self, resource: RecordedResource) -> RecordedResource | None:
        """The provider resource a custom resource was registered with (None = default)."""
        if not resource.provider:
            return None
        return self.get(resource.provider.rsplit("::", 1)[0])

    def manifests(self) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.resources if r.is_kubernetes_object]


def _decode(value: Any, *, mask: bool) -> tuple[Any, bool]:
    """Turn a wire-format value into plain data; report whether a secret was inside."""
    if isinstance(value, dict):
        sig = value.get(_SIG_KEY)
        if sig == _SECRET_SIG:
            inner, _ = _decode(value.get("value"), mask=mask)
            return (SECRET_MASK if mask else inner), True
        if sig == _RESOURCE_REF_SIG:
            return value.get("urn"), False
        if sig is not None:  # assets, archives, output values: keep their payload
            inner, secret = _decode(value.get("value", value), mask=mask)
            return inner, secret or bool(value.get("secret"))
        decoded: dict[str, Any] = {}
        any_secret = False
        for k, v in value.items():
            decoded[k], secret = _decode(v, mask=mask)
            any_secret = any_secret or secret
        return decoded, any_secret
    if isinstance(value, list):
        items = [_decode(v, mask=mask) for v in value]
        return [i for i, _ in items], any(s for _, s in items)
    if value == _UNKNOWN:
        return UNKNOWN_MASK, False
    return value, False


def _ints_as_ints(value: Any) -> Any:
    """The wire protocol carries every number as a float; manifests want 8080, not 8080.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints_as_ints(v) for v in value]
    return value


def mock_id(type_token: str, name: str) -> str:
    """A stable stand-in for a cloud id or an auto-generated name."""
    digest = hashlib.sha256(f"{type_token}/{name}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"


class DeterministicMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs, plus per-type computed values; same program, same answer."""

    def __init__(self, factories: Mapping[str, OutputFactory] | None = None) -> None:
        self._factories = dict(factories or {})

    def _factory_for(self, type_token: str) -> OutputFactory | None:
        if type_token in self._factories:
            return self._factories[type_token]
        for key, factory in self._factories.items():
            if key.startswith("*") and type_token.endswith(key[1:]):
                return factory
        return None

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        outputs = {k: v for k, v in args.inputs.items() if k not in _HIDDEN_INPUTS}
        if args.custom and args.typ.startswith("kubernetes:") and "apiVersion" in outputs:
            # pulumi-kubernetes names an unnamed object "<resource name>-<suffix>" and returns it.
            metadata = dict(outputs.get("metadata") or {})
            metadata.setdefault("name", mock_id(args.typ, args.name))
            outputs["metadata"] = metadata
        factory = self._factory_for(args.typ)
        if factory is not None:
            outputs.update(factory(args))
        if not args.custom:
            return None, outputs
        return mock_id(args.typ, args.name), outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None


def _mark_secret_outputs(response: Any, names: Any) -> None:
    """Do what the engine does with `additional_secret_outputs` (the SDK's mocks do not)."""
    if not names:
        return
    state = json_format.MessageToDict(response.object, preserving_proto_field_name=True)
    for name in names:
        if name in state and not (
            isinstance(state[name], dict) and state[name].get(_SIG_KEY) == _SECRET_SIG
        ):
            state[name] = {_SIG_KEY: _SECRET_SIG, "value": state[name]}
    response.object.Clear()
    json_format.ParseDict(state, response.object)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, keeping the whole registration request of each resource."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        _mark_secret_outputs(response, request.additionalSecretOutputs)
        wire = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        # Per key, so one pass both masks the inputs and tells which of them hold a secret.
        masked: dict[str, Any] = {}
        secret_inputs: list[str] = []
        for key, value in wire.items():
            masked[key], secret = _decode(value, mask=True)
            if secret:
                secret_inputs.append(key)
        raw, _ = _decode(wire, mask=False)
        out_wire = json_format.MessageToDict(response.object, preserving_proto_field_name=True)
        outputs, _ = _decode(out_wire, mask=True)
        for hidden in _HIDDEN_INPUTS:
            masked.pop(hidden, None)
            raw.pop(hidden, None)
        timeouts = request.customTimeouts
        self.recorded.append(
            RecordedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                provider=request.provider or None,
                custom=bool(request.custom),
                inputs=masked,
                raw_inputs=raw,
                outputs=outputs,
                id=response.id or None,
                protect=bool(request.protect),
                # The SDK gathers dependencies in sets: sorted, a recording (and a written plan)
                # is the same on every run.
                dependencies=sorted(request.dependencies),
                property_dependencies={
                    k: sorted(v.urns) for k, v in request.propertyDependencies.items()
                },
                custom_timeouts={
                    k: getattr(timeouts, k)
                    for k in ("create", "update", "delete")
                    if getattr(timeouts, k)
                },
                secret_inputs=secret_inputs,
            )
        )
        return response


async def _resolve_outputs(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    secret: list[str] = []
    for name, value in raw.items():
        out = pulumi.Output.from_input(value)
        resolved = await out.future(with_unknowns=True)
        if await out.is_secret():
            secret.append(name)
        values[name] = resolved
    return values, secret


def run_program(
    program: Callable[[], None],
    *,
    project: str = "llm-uk8s",
    stack: str = "dev",
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
    outputs: Mapping[str, OutputFactory] | None = None,
    preview: bool = False,
) -> Plan:
    """Run `program` as `pulumi up` would, against mocks, in a fresh event loop.

    `config` uses the CLI's wire form: "project:key" -> string (objects and lists JSON-encoded).
    `outputs` maps a type token (or "*suffix") to a function computing extra mocked outputs.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The mock monitor answers in executor threads, and each needs an event loop of its own; make
    # them here so they can be closed here (left to the garbage collector they fail noisily).
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    loop.set_default_executor(ThreadPoolExecutor(initializer=give_thread_a_loop))
    try:
        # set_mocks keeps an existing root stack, and with it the previous run's exports: a run
        # must start from no stack, as `pulumi up` does.
        pulumi.runtime.settings.reset_options(project=project, stack=stack, preview=preview)
        pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys or []))
        mocks = DeterministicMocks(outputs)
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=preview, monitor=monitor
        )
        _sync_await(run_pulumi_func(program))
        root = pulumi.runtime.get_root_resource()
        exported = dict(getattr(root, "outputs", {}) or {})
        values, secret = _sync_await(_resolve_outputs(exported))
        return Plan(
            resources=monitor.recorded, outputs=_ints_as_ints(values), secret_outputs=secret
        )
    finally:
        pulumi.runtime.set_all_config({}, [])
        # Leave no mock monitor behind: code that asks whether it runs under mocks (preflight's
        # under_mocks) must not see the last run's monitor once the run is over.
        pulumi.runtime.settings.reset_options()
        loop.run_until_complete(loop.shutdown_default_executor())
        for thread_loop in thread_loops:
            thread_loop.close()
        asyncio.set_event_loop(None)
        loop.close()
