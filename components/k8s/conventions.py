"""Small pure helpers shared by the Kubernetes components (model store, GPU drivers, inference).

Why a separate module: Pulumi's mocks see resource inputs but not resource options, and the
components' rules (labels, GPU scheduling, security contexts, timeouts, input checks) are easier
to trust when each one is a plain function with its own unit test.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pulumi

from components.errors import ConfigError

PART_OF = "llm-uk8s"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TAINT_KEY = GPU_RESOURCE

# The inference image runs as this user (see image/Dockerfile); files it must read or write on the
# model volume belong to it.
IMAGE_UID = 10001

# One source for these rules: the stack config (components/stack/config.py) checks with the same
# ones.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A revision is pinned when it cannot move under a running deployment: a commit, or a release tag
# (hubs treat v1.0-style tags as immutable releases; branches such as main move).
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
RELEASE_TAG = re.compile(r"^v\d+(\.\d+)*$")
_IMAGE_REFERENCE = re.compile(
    r"^[a-z0-9][-a-z0-9._/:]*[a-z0-9](:[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?"
    r"(@sha256:[0-9a-f]{64})?$"
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
_MODEL_DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def bad_value(field: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"{field}: invalid value {value!r}; allowed: {allowed}")


# ---------------------------------------------------------------------------------------------
# input checks


def require_choice(field: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise bad_value(field, value, " | ".join(allowed))
    return value


def require_quantity(field: str, value: str) -> str:
    """Kubernetes quantities ("500m", "16Gi", "4"); a typo here would fail late, on the cluster."""
    if not isinstance(value, str) or not QUANTITY.match(value):
        raise bad_value(field, value, 'a Kubernetes quantity such as "500m", "4", "16Gi"')
    return value


def require_positive_int(
    field: str, value: int, *, minimum: int = 1, maximum: int | None = None
) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise bad_value(field, value, f"an integer {minimum}{upper}")
    return value


def require_dns_label(field: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise bad_value(field, value, "a DNS label: lower-case letters, digits and '-', at most 63")
    return value


def require_model_dir_name(field: str, value: str) -> str:
    """The model's directory on the shared volume: one path segment, no traversal."""
    if not isinstance(value, str) or not _MODEL_DIR_NAME.match(value) or value in (".", ".."):
        raise bad_value(field, value, "one path segment of letters, digits, '.', '_' and '-'")
    return value


def pinned_image_problem(image: object) -> str | None:
    """What a pinned image reference must look like, or None when `image` is one.

    Why: ':latest' or no tag makes rollouts unrepeatable. Shared by the components' checks and
    the stack config's, so both refuse the same references with the same words."""
    if not isinstance(image, str) or not image or not _IMAGE_REFERENCE.match(image):
        return 'an image reference such as "registry/name:1.2.3" (lower-case repository)'
    if "@" in image:
        return None  # the reference pattern already demands sha256:<64 hex digits>
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "an image with an explicit tag or digest (not untagged)"
    if last.rsplit(":", 1)[1] == "latest":
        return "an image with an exact version tag or digest (not ':latest')"
    return None


def require_pinned_image(field: str, image: str) -> str:
    problem = pinned_image_problem(image)
    if problem is not None:
        raise bad_value(field, image, problem)
    return image


def is_commit_sha(revision: str) -> bool:
    return bool(COMMIT_SHA.match(revision))


def is_pinned_revision(revision: str) -> bool:
    """A commit sha or a release tag (see RELEASE_TAG)."""
    return bool(COMMIT_SHA.match(revision) or RELEASE_TAG.match(revision))


def strip_nfs_export(value: str) -> str:
    """UFS reports a mount point as "10.0.0.5:/"; the PersistentVolume wants only the server."""
    if not isinstance(value, str):
        raise bad_value(
            "nfs_server", value, "an IP address or host name, optionally ending in ':/'"
        )
    server = value.strip()
    if server.endswith(":/"):
        server = server[:-2]
    server = server.rstrip(":")
    try:
        ipaddress.ip_address(server)
        return server
    except ValueError:
        pass
    if not _HOSTNAME.match(server):
        raise bad_value(
            "nfs_server", value, "an IP address or host name, optionally ending in ':/'"
        )
    return server


def require_cidrs(field: str, cidrs: Iterable[str]) -> list[str]:
    out: list[str] = []
    for cidr in cidrs:
        try:
            out.append(str(ipaddress.ip_network(cidr, strict=False)))
        except (ValueError, TypeError):
            raise bad_value(field, cidr, 'CIDR blocks such as "10.0.0.0/8"') from None
    return out


# ---------------------------------------------------------------------------------------------
# conventions


def app_labels(app: str, component: str) -> dict[str, str]:
    """Selector labels: stable for the life of the workload (selectors are immutable)."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component}


def workload_labels(app: str, component: str) -> dict[str, str]:
    """The labels a pod template has carried since the first release: selector labels plus
    part-of and managed-by. Templates keep exactly these where a template change would replace
    the object (a Job's template is immutable: pulumi-kubernetes replaces the Job)."""
    return {
        **app_labels(app, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def object_labels(app: str, component: str, *, instance: str, version: str) -> dict[str, str]:
    """Every object's labels: the recommended app.kubernetes.io set (name, component, part-of,
    managed-by, instance, version). `instance` names the installation (the stack),
    `version` the version of what the object runs (an image tag, a chart version)."""
    return {
        **workload_labels(app, component),
        "app.kubernetes.io/instance": require_label_value("instance", instance),
        "app.kubernetes.io/version": require_label_value("version", version),
    }


def require_label_value(field: str, value: str) -> str:
    """A Kubernetes label value: at most 63 characters, alphanumerics with '-', '_' or '.'
    inside (apimachinery validation.IsValidLabelValue)."""
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        raise bad_value(
            field,
            value,
            "a label value: up to 63 letters, digits, '-', '_', '.' (ends alphanumeric)",
        )
    return value


def image_version(image: str) -> str:
    """The version label of what an image runs: its tag, or the first 12 hex digits of its
    digest ("sha256-0123456789ab"), cut to a valid label value."""
    if "@sha256:" in image:
        return "sha256-" + image.rsplit("@sha256:", 1)[1][:12]
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "untagged"
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", tag[:63]) or "untagged"


def gpu_tolerations(taint_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Tolerate every GPU taint whatever its value or effect (UK8S and kind use different
    values); a node with two taints admits only pods that tolerate both."""
    return [{"key": key, "operator": "Exists"} for key in dict.fromkeys(taint_keys)]


def gpu_placement(selector: Mapping[str, str], taint_keys: Sequence[str]) -> dict[str, Any]:
    """Where a GPU pod may run: only on GPU nodes, tolerating all their taints."""
    return {"nodeSelector": dict(selector), "tolerations": gpu_tolerations(taint_keys)}


def require_taint_keys(field: str, keys: Sequence[str]) -> list[str]:
    if isinstance(keys, str) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise bad_value(field, keys, 'a non-empty list of taint keys such as ["nvidia.com/gpu"]')
    return list(keys)


def restricted_container_security() -> dict[str, Any]:
    """The Pod Security 'restricted' profile for one container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def restricted_pod_security(uid: int = IMAGE_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def seconds(value: int) -> str:
    """Pulumi custom timeouts take Go durations."""
    return f"{int(value)}s"


def wait_timeouts(expected_s: int, *, margin_s: int = 600) -> pulumi.CustomTimeouts:
    """How long `pulumi up` waits for an object to become ready: the expected time plus a margin
    for pulling a multi-GB image onto a fresh node."""
    total = seconds(expected_s + margin_s)
    return pulumi.CustomTimeouts(create=total, update=total)


# ---------------------------------------------------------------------------------------------
# providers and options


def kubernetes_provider(opts: pulumi.ResourceOptions | None) -> pulumi.ProviderResource:
    """The explicit Kubernetes provider a component was given.

    Why required: without it pulumi-kubernetes falls back to the ambient kubeconfig, and a
    DaemonSet meant for the new UK8S cluster could land on whatever cluster the laptop points at.
    """
    candidates: list[Any] = []
    if opts is not None:
        if opts.provider is not None:
            candidates.append(opts.provider)
        providers = opts.providers
        if isinstance(providers, Mapping):
            candidates.extend(providers.values())
        elif providers:
            candidates.extend(providers)
    for candidate in candidates:
        if isinstance(candidate, pulumi.ProviderResource) and candidate.package == "kubernetes":
            return candidate
    raise ConfigError(
        "opts: no Kubernetes provider given; pass ResourceOptions(provider=k8s_provider) or "
        "providers={'kubernetes': k8s_provider} so nothing falls back to the ambient kubeconfig"
    )


def child_options(
    parent: pulumi.Resource,
    provider: pulumi.ProviderResource,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    custom_timeouts: pulumi.CustomTimeouts | None = None,
) -> pulumi.ResourceOptions:
    """Every child is parented to its component and names the provider explicitly."""
    return pulumi.ResourceOptions(
        parent=parent,
        provider=provider,
        depends_on=list(depends_on) or None,
        custom_timeouts=custom_timeouts,
    )
