"""llm-uk8s policies, one module per concern; `ALL_POLICIES` is what the pack enforces."""

from pulumi_policy import Policy

from .containers import container_limits, serving_probes
from .exposure import exposed_services_need_api_key
from .gpu import gpu_workloads
from .images import pinned_images
from .monitoring import metrics_port_only
from .scaling import bounded_autoscalers
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
    bounded_autoscalers,
    metrics_port_only,
]
