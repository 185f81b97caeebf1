"""`InferenceService`: the inference image as a Deployment, a Service and what keeps them safe.

Choices worth knowing:
- Rollouts never need a spare GPU: with GPUs the strategy is RollingUpdate with maxSurge 0 and
  maxUnavailable 1 (an old pod leaves before its replacement asks for the GPU), so a cluster with
  exactly `replicas` GPUs cannot deadlock. Without GPUs (CPU) a surge pod keeps serving.
- Shutdown lets streams finish: preStop sleeps while endpoints drop the pod, then SIGTERM makes
  the server stop admitting and drain for `drain_seconds`; the grace period covers both.
- `pulumi up` waits for readiness (weights loaded and warmed), so its timeouts are the startup
  budget plus time to pull a multi-GB image. The Service, PodDisruptionBudget and NetworkPolicy
  are created after the Deployment is ready: pulumi-kubernetes waits for a (non-headless)
  Service until it has an endpoint, and no pod exists before the model download has finished,
  so a Service created alongside would time out on the first `pulumi up`.
- The API key is generated at deploy time (RandomPassword, a secret in state), stored in a
  Kubernetes Secret and read by the server from a mounted file: never a plain env value.
- Placement: replicas spread over zones (`topology.kubernetes.io/zone`, which UK8S's kubelet
  sets on every node: UK8S docs administercluster/k8splugin_restore.md, its `--node-labels`),
  as a preference (ScheduleAnyway): a zone without a free GPU must never stop a replica from
  starting elsewhere. A PriorityClass of our own ranks them above ordinary pods.
- Scraping: the pods carry the prometheus.io/* annotations; the server serves /metrics on its
  API port (7861), so "the metrics port" is that port.
- Autoscaled (`autoscaled=True`): the Deployment leaves `replicas` to the HPA that KEDA creates,
  so `pulumi up` never resets what the autoscaler chose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.k8s.conventions import (
    DEFAULT_GPU_TAINT_KEY,
    GPU_RESOURCE,
    PART_OF,
    app_labels,
    bad_value,
    child_options,
    gpu_placement,
    image_version,
    kubernetes_provider,
    object_labels,
    require_choice,
    require_cidrs,
    require_dns_label,
    require_label_value,
    require_pinned_image,
    require_positive_int,
    require_quantity,
    require_taint_keys,
    restricted_container_security,
    restricted_pod_security,
    wait_timeouts,
)

TYPE_TOKEN = "llm-uk8s:k8s:InferenceService"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
DTYPES = ("auto", "bfloat16", "float16", "float32")
# The server's LLMSERVE_QUANTIZATION (image/llmserve/quantization.py MODES).
QUANTIZATIONS = ("none", "int8", "fp8")
PORT = 7861
DEFAULT_NODE_PORT = 30619
MODEL_MOUNT = "/app/models"
# The torch.compile cache of GPU pods (the server's LLMSERVE_COMPILE_CACHE_DIR): a directory of
# the model volume, mounted read-write, so the second pod (and every restart) reuses the first
# one's compiled kernels instead of compiling for minutes. The fetch Job creates it, owned by
# the image's user (kubelet would create a missing subPath as root: kubernetes#41638).
COMPILE_CACHE_SUBPATH = ".llmserve-compile-cache"
COMPILE_CACHE_MOUNT = "/app/compile-cache"
API_KEY_DIR = "/var/run/secrets/llm-uk8s/api-key"
API_KEY_FILE_KEY = "api-key"
PRESTOP_SLEEP_S = 5
STARTUP_PERIOD_S = 10
# UK8S's cloud controller reads this annotation to make an internet-facing (outer) ULB or one
# reachable only inside the VPC (inner).
UCLOUD_LB_TYPE_ANNOTATION = "service.beta.kubernetes.io/ucloud-load-balancer-type"
UCLOUD_LB_TYPES = ("inner", "outer")
METRICS_PATH = "/metrics"
ZONE_LABEL = "topology.kubernetes.io/zone"
# Above every ordinary pod (priority 0) and far below the system classes (2000000000+), so
# inference pods are scheduled first and never preempted by ordinary workloads.
PRIORITY_VALUE = 1000000
# The label Kubernetes puts on every namespace (NamespaceDefaultLabelName, 1.21+).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass
class InferenceServiceArgs:
    namespace: pulumi.Input[str]
    image: str
    model_claim_name: pulumi.Input[str]
    served_model_name: str
    # Weights inside the pod (ModelFetch.model_dir); None: the image's bundled model.
    model_dir: str | None = None
    model_revision: str | None = None
    replicas: int = 1
    gpus_per_replica: int = 1
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "32Gi"
    memory_limit: str = "48Gi"
    shm_size: str = "8Gi"
    tmp_size: str = "4Gi"
    # Node disk the pod may use: /tmp (the compile cache, up to tmp_size) plus logs and the
    # writable layer; the kubelet evicts a pod above the limit instead of filling the node.
    ephemeral_storage_request: str = "4Gi"
    ephemeral_storage_limit: str = "6Gi"
    gpu_node_selector: Mapping[str, str] = field(default_factory=dict)
    # Every taint key of the GPU nodes: the pod must tolerate all of them.
    gpu_taint_keys: Sequence[str] = (DEFAULT_GPU_TAINT_KEY,)
    # RuntimeClass of GPU pods (GpuDrivers.runtime_class_name: "nvidia" in daemonset mode).
    runtime_class_name: str | None = None
    service_type: str = "ClusterIP"
    node_port: int = DEFAULT_NODE_PORT
    load_balancer_annotations: Mapping[str, str] = field(default_factory=dict)
    # Address users reach a NodePort on (a node's EIP); only used to build `endpoint`.
    node_address: pulumi.Input[str] | None = None
    network_policy: bool = False
    allowed_cidrs: Sequence[str] = field(default_factory=list)
    max_batch: int = 64
    max_model_len: int | None = None
    dtype: str = "auto"
    quantization: str = "none"
    drain_seconds: int = 30
    startup_timeout_s: int = 1800
    # Resources the Deployment must wait for: the model fetch Job, the GPU DaemonSets.
    wait_for: Sequence[pulumi.Resource] = field(default_factory=list)
    # The app.kubernetes.io/instance label of every object (the stack's installation name).
    instance: str = PART_OF
    # A HorizontalPodAutoscaler (KEDA's) owns `replicas`: the Deployment does not set it.
    autoscaled: bool = False
    # With the NetworkPolicy: the namespace whose pods (Prometheus) may scrape the metrics
    # port; None admits no other namespace.
    metrics_scraper_namespace: str | None = None

    def validate(self) -> None:
        require_pinned_image("image", self.image)
        if not self.served_model_name or any(c.isspace() for c in self.served_model_name):
            raise bad_value(
                "served_model_name", self.served_model_name, "a non-empty model id without spaces"
            )
        if self.model_dir is not None and not self.model_dir.startswith(MODEL_MOUNT + "/"):
            raise bad_value("model_dir", self.model_dir, f"a path under {MODEL_MOUNT}/ or None")
        require_positive_int("replicas", self.replicas, maximum=64)
        require_positive_int("gpus_per_replica", self.gpus_per_replica, minimum=0, maximum=16)
        for name in (
            "cpu_request",
            "cpu_limit",
            "memory_request",
            "memory_limit",
            "shm_size",
            "tmp_size",
            "ephemeral_storage_request",
            "ephemeral_storage_limit",
        ):
            require_quantity(name, getattr(self, name))
        if self.gpus_per_replica > 0 and not self.gpu_node_selector:
            raise bad_value(
                "gpu_node_selector",
                dict(self.gpu_node_selector),
                "at least one GPU node label when gpus_per_replica > 0",
            )
        if self.uses_gpu:
            require_taint_keys("gpu_taint_keys", self.gpu_taint_keys)
        if self.runtime_class_name is not None:
            require_dns_label("runtime_class_name", self.runtime_class_name)
        require_choice("service_type", self.service_type, SERVICE_TYPES)
        require_positive_int("node_port", self.node_port, minimum=30000, maximum=32767)
        require_cidrs("allowed_cidrs", self.allowed_cidrs)
        require_positive_int("max_batch", self.max_batch, maximum=4096)
        if self.max_model_len is not None:
            require_positive_int("max_model_len", self.max_model_len, minimum=16)
        require_choice("dtype", self.dtype, DTYPES)
        require_choice("quantization", self.quantization, QUANTIZATIONS)
        require_positive_int("drain_seconds", self.drain_seconds, minimum=0, maximum=3600)
        require_positive_int("startup_timeout_s", self.startup_timeout_s, minimum=60)
        require_label_value("instance", self.instance)
        if self.metrics_scraper_namespace is not None:
            require_dns_label("metrics_scraper_namespace", self.metrics_scraper_namespace)

    @property
    def uses_gpu(self) -> bool:
        return self.gpus_per_replica > 0

    @property
    def exposed(self) -> bool:
        return self.service_type != "ClusterIP"

    @property
    def compile_cache(self) -> bool:
        """Only GPU pods compile (the server compiles CUDA-graphed steps only)."""
        return self.uses_gpu


def rollout_strategy(uses_gpu: bool) -> dict[str, Any]:
    """Never ask for an extra GPU during a rollout: that pod could wait forever for one."""
    if uses_gpu:
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def termination_grace_s(drain_seconds: int) -> int:
    """preStop sleep + the server's drain + time to exit."""
    return PRESTOP_SLEEP_S + drain_seconds + 15


def progress_deadline_s(startup_timeout_s: int) -> int:
    return startup_timeout_s + 600


def resources(args: InferenceServiceArgs) -> dict[str, dict[str, str]]:
    requests = {
        "cpu": args.cpu_request,
        "memory": args.memory_request,
        "ephemeral-storage": args.ephemeral_storage_request,
    }
    limits = {
        "cpu": args.cpu_limit,
        "memory": args.memory_limit,
        "ephemeral-storage": args.ephemeral_storage_limit,
    }
    if args.uses_gpu:
        # Extended resources: request == limit; the limit alone is what the scheduler counts.
        limits[GPU_RESOURCE] = str(args.gpus_per_replica)
        requests[GPU_RESOURCE] = str(args.gpus_per_replica)
    return {"requests": requests, "limits": limits}


def server_env(args: InferenceServiceArgs) -> list[dict[str, str]]:
    """The image's settings (image/README.md); secrets come by file, never as values here."""
    env = {
        "LLMSERVE_MODEL_NAME": args.served_model_name,
        "LLMSERVE_HOST": "0.0.0.0",
        "LLMSERVE_PORT": str(PORT),
        "LLMSERVE_API_KEY_FILE": f"{API_KEY_DIR}/{API_KEY_FILE_KEY}",
        "LLMSERVE_MAX_BATCH": str(args.max_batch),
        "LLMSERVE_DEVICE": "cuda" if args.uses_gpu else "cpu",
        "LLMSERVE_DTYPE": args.dtype,
        "LLMSERVE_QUANTIZATION": args.quantization,
        "LLMSERVE_DRAIN_SECONDS": str(args.drain_seconds),
        "HOME": "/tmp",
        "HF_HOME": "/tmp/hf",
        "HF_HUB_OFFLINE": "1",
    }
    if args.model_dir is not None:
        env["LLMSERVE_MODEL"] = args.model_dir
    if args.max_model_len is not None:
        env["LLMSERVE_MAX_MODEL_LEN"] = str(args.max_model_len)
    if args.gpus_per_replica > 1:  # one pod's GPUs share the model: tensor parallel over them
        env["LLMSERVE_TENSOR_PARALLEL"] = str(args.gpus_per_replica)
    if args.compile_cache:
        env["LLMSERVE_COMPILE_CACHE_DIR"] = COMPILE_CACHE_MOUNT
    return [{"name": k, "value": v} for k, v in env.items()]


def volume_mounts(args: InferenceServiceArgs) -> list[dict[str, Any]]:
    """The weights read-only; with the compile cache, one directory of the same volume
    read-write (so the claim itself is mounted writable: `model_volume`)."""
    mounts: list[dict[str, Any]] = [
        {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True},
        {"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if args.compile_cache:
        mounts.append(
            {"name": "models", "mountPath": COMPILE_CACHE_MOUNT, "subPath": COMPILE_CACHE_SUBPATH}
        )
    return mounts


def model_volume(args: InferenceServiceArgs) -> dict[str, Any]:
    """The claim read-only unless the compile cache needs a writable directory of it: a
    read-only claim makes every mount of it read-only, whatever each mount says."""
    claim: dict[str, Any] = {"claimName": args.model_claim_name}
    if not args.compile_cache:
        claim["readOnly"] = True
    return {"name": "models", "persistentVolumeClaim": claim}


def probes(startup_timeout_s: int) -> dict[str, dict[str, Any]]:
    """The server opens its port at once and loads weights in the background: /health answers
    immediately, /ready once the weights are loaded and warmed. The startup probe waits on /ready
    for the whole load budget (a multi-GB model over NFS) before liveness starts; a load that
    overruns it restarts the container."""
    return {
        "startupProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": STARTUP_PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(startup_timeout_s / STARTUP_PERIOD_S),
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }


def scrape_annotations() -> dict[str, str]:
    """What annotation-based Prometheus scrape configs read (prometheus.io/scrape, port, path)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": METRICS_PATH,
    }


def zone_spread(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """Replicas over zones, preferred not required: never block a replica for lack of a GPU in
    the emptiest zone."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": ZONE_LABEL,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(selector)},
        }
    ]


def priority_class_name(instance: str) -> str:
    """Cluster-wide, so named after the installation: two stacks on one cluster keep theirs."""
    return f"{instance}-inference"


def pod_spec(
    args: InferenceServiceArgs,
    api_key_secret: pulumi.Input[str],
    *,
    selector: Mapping[str, str] | None = None,
    priority_class: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    container_probes = probes(args.startup_timeout_s)
    container: dict[str, Any] = {
        "name": "server",
        "image": args.image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": server_env(args),
        "resources": resources(args),
        **container_probes,
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}},
        "securityContext": restricted_container_security(),
        "volumeMounts": volume_mounts(args),
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(),
        "terminationGracePeriodSeconds": termination_grace_s(args.drain_seconds),
        "topologySpreadConstraints": zone_spread(selector or {}),
        "containers": [container],
        "volumes": [
            model_volume(args),
            {"name": "api-key", "secret": {"secretName": api_key_secret, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {"sizeLimit": args.tmp_size}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": args.shm_size}},
        ],
    }
    if priority_class is not None:
        spec["priorityClassName"] = priority_class
    if args.uses_gpu:
        spec.update(gpu_placement(args.gpu_node_selector, args.gpu_taint_keys))
        if args.runtime_class_name:
            spec["runtimeClassName"] = args.runtime_class_name
    return spec


def ucloud_lb_annotations(lb_type: str) -> dict[str, str]:
    """The Service annotations that make UK8S create an inner or outer ULB."""
    kind = require_choice("load_balancer_type", lb_type, UCLOUD_LB_TYPES)
    return {UCLOUD_LB_TYPE_ANNOTATION: kind}


def service_spec(args: InferenceServiceArgs, selector: Mapping[str, str]) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    spec: dict[str, Any] = {"type": args.service_type, "selector": dict(selector), "ports": [port]}
    if args.service_type == "NodePort":
        port["nodePort"] = args.node_port
    if args.service_type == "LoadBalancer" and args.allowed_cidrs:
        spec["loadBalancerSourceRanges"] = require_cidrs("allowed_cidrs", args.allowed_cidrs)
    if args.exposed and args.network_policy:
        # Keep the client's address so the NetworkPolicy's CIDRs mean something.
        spec["externalTrafficPolicy"] = "Local"
    return spec


def network_policy_spec(args: InferenceServiceArgs, selector: Mapping[str, str]) -> dict[str, Any]:
    """Only the server port, only from this namespace's pods and the allowed CIDRs, and, with
    `metrics_scraper_namespace`, that namespace's pods to the metrics port (the same port:
    the server serves /metrics beside the API, whose routes still need the key)."""
    sources: list[dict[str, Any]] = [{"podSelector": {}}]
    sources += [
        {"ipBlock": {"cidr": c}} for c in require_cidrs("allowed_cidrs", args.allowed_cidrs)
    ]
    port = [{"port": PORT, "protocol": "TCP"}]
    ingress: list[dict[str, Any]] = [{"from": sources, "ports": port}]
    if args.metrics_scraper_namespace is not None:
        scrapers = {"matchLabels": {NAMESPACE_NAME_LABEL: args.metrics_scraper_namespace}}
        ingress.append({"from": [{"namespaceSelector": scrapers}], "ports": port})
    return {
        "podSelector": {"matchLabels": dict(selector)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }


def endpoint_url(
    service_type: str,
    cluster_url: str,
    node_address: str | None,
    node_port: int,
    lb_ingress: Sequence[Mapping[str, Any]] | None,
) -> str:
    """The URL clients use: the load balancer's, a node's for NodePort, else the in-cluster one."""
    if service_type == "LoadBalancer" and lb_ingress:
        first = lb_ingress[0]
        host = first.get("ip") or first.get("hostname")
        if host:
            return f"http://{host}:{PORT}/v1"
    if service_type == "NodePort" and node_address:
        return f"http://{node_address}:{node_port}/v1"
    return cluster_url


class InferenceService(pulumi.ComponentResource):
    """Deployment + Service (+ API-key Secret, PodDisruptionBudget, optional NetworkPolicy)."""

    endpoint: pulumi.Output[str]
    cluster_endpoint: pulumi.Output[str]
    api_key: pulumi.Output[str]
    service_name: pulumi.Output[str]
    deployment: k8s.apps.v1.Deployment
    deployment_name: pulumi.Output[str]
    service: k8s.core.v1.Service

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        provider = kubernetes_provider(opts)
        super().__init__(TYPE_TOKEN, name, None, opts)
        selector = app_labels("llmserve", name)
        labels = object_labels(
            "llmserve", name, instance=args.instance, version=image_version(args.image)
        )
        self.priority_class = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority",
            metadata={"name": priority_class_name(args.instance), "labels": labels},
            value=PRIORITY_VALUE,
            global_default=False,
            preemption_policy="PreemptLowerPriority",
            description=f"llm-uk8s inference pods of {args.instance}",
            opts=child_options(self, provider),
        )

        password = random.RandomPassword(
            f"{name}-api-key",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.api_key = pulumi.Output.secret(password.result)
        secret = k8s.core.v1.Secret(
            f"{name}-api-key",
            metadata={"namespace": args.namespace, "labels": labels},
            type="Opaque",
            string_data={API_KEY_FILE_KEY: self.api_key},
            opts=child_options(self, provider),
        )
        secret_name = secret.metadata.apply(lambda m: m.name)

        template_annotations = {
            "llm-uk8s/served-model": args.served_model_name,
            **scrape_annotations(),
        }
        if args.model_revision:
            template_annotations["llm-uk8s/model-revision"] = args.model_revision
        replicas = {} if args.autoscaled else {"replicas": args.replicas}
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata={"namespace": args.namespace, "labels": labels},
            spec={
                **replicas,
                "selector": {"matchLabels": selector},
                "strategy": rollout_strategy(args.uses_gpu),
                "progressDeadlineSeconds": progress_deadline_s(args.startup_timeout_s),
                "revisionHistoryLimit": 5,
                "template": {
                    "metadata": {"labels": labels, "annotations": template_annotations},
                    "spec": pod_spec(
                        args,
                        secret_name,
                        selector=selector,
                        priority_class=self.priority_class.metadata.apply(lambda m: m.name),
                    ),
                },
            },
            opts=child_options(
                self,
                provider,
                depends_on=list(args.wait_for),
                custom_timeouts=wait_timeouts(args.startup_timeout_s),
            ),
        )

        self.deployment_name = self.deployment.metadata.apply(lambda m: m.name)
        self.selector = selector

        after_ready: list[pulumi.Resource] = [self.deployment]
        service_meta: dict[str, Any] = {"namespace": args.namespace, "labels": labels}
        if args.service_type == "LoadBalancer" and args.load_balancer_annotations:
            service_meta["annotations"] = dict(args.load_balancer_annotations)
        self.service = k8s.core.v1.Service(
            name,
            metadata=service_meta,
            spec=service_spec(args, selector),
            # Its wait (endpoints present) can only succeed once the pods are ready; its 10
            # minutes start after the Deployment's wait, not alongside the download.
            opts=child_options(
                self, provider, depends_on=after_ready, custom_timeouts=wait_timeouts(0)
            ),
        )
        self.service_name = self.service.metadata.apply(lambda m: m.name)

        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata={"namespace": args.namespace, "labels": labels},
            # maxUnavailable (not minAvailable): a single replica must not block node drains.
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            opts=child_options(self, provider, depends_on=after_ready),
        )
        self.network_policy: k8s.networking.v1.NetworkPolicy | None = None
        if args.network_policy:
            self.network_policy = k8s.networking.v1.NetworkPolicy(
                name,
                metadata={"namespace": args.namespace, "labels": labels},
                spec=network_policy_spec(args, selector),
                opts=child_options(self, provider, depends_on=after_ready),
            )

        self.cluster_endpoint = pulumi.Output.all(self.service_name, args.namespace).apply(
            lambda v: f"http://{v[0]}.{v[1]}.svc.cluster.local:{PORT}/v1"
        )
        self.endpoint = pulumi.Output.all(
            self.cluster_endpoint, args.node_address, self.service.status
        ).apply(
            lambda v: endpoint_url(
                args.service_type,
                v[0],
                v[1],
                args.node_port,
                _lb_ingress(v[2]),
            )
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "cluster_endpoint": self.cluster_endpoint,
                "api_key": self.api_key,
                "service_name": self.service_name,
            }
        )


def _lb_ingress(status: Mapping[str, Any] | None) -> list[Mapping[str, Any]] | None:
    """Service.status arrives as pulumi-kubernetes' ServiceStatus in real runs and under mocks
    alike: a dict subclass with snake_case keys, as are its load balancer status and ingresses."""
    return ((status or {}).get("load_balancer") or {}).get("ingress") or None
