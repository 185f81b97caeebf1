"""llm-uk8s policies, one module per concern; `ALL_POLICIES` is what the pack enforces."""

from pulumi_policy import Policy

from .containers import container_limits, serving_probes
from .exposure import exposed_services_need_api_key
from .gpu import gpu_workloads
from .images import pinned_images
from .secrets import no_plain_secrets
from .volumes import retained_volumes

ALL_POLICIES: list[Policy] = [
    gpu_workloads,
    container_limits,
    serving_probes,
    pinned_images,
    retained_volumes,
    exposed_services_need_api_key,
    no_plain_secrets,
]
