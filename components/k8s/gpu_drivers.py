"""`GpuDrivers`: what a GPU node needs before a pod can ask for `nvidia.com/gpu`.

Modes:
- `preinstalled` — UK8S GPU node images already carry the NVIDIA driver and runtime. We deploy
  NVIDIA's current device plugin and the DCGM exporter (GPU metrics on :9400/metrics).
- `daemonset` — node images without a driver: additionally the NVIDIA driver container and the
  container toolkit (which registers an `nvidia` runtime with containerd), the same operands the
  GPU Operator runs, without the operator.
- `none` — the local stack: nothing.

Replacing UK8S's old device plugin (1.0.0-beta4): UK8S installs it itself as the DaemonSet
`nvidia-device-plugin-daemonset` in `kube-system` (UK8S docs administercluster/gpu-node.md,
"插件升级": `kubectl set image daemonset nvidia-device-plugin-daemonset -n kube-system ...`, image
`uhub.service.ucloud.cn/uk8s/nvidia-k8s-device-plugin:1.0.0-beta4`), and two plugins registering
`nvidia.com/gpu` on one kubelet take the socket from each other. Ours has its own name
(`<name>-device-plugin`), and with `disable_uk8s_device_plugin` the stack neutralises UK8S's
with a server-side-apply patch (`DaemonSetPatch`): it adds one nodeSelector key that no node
carries, so the DaemonSet keeps existing (UK8S's addon manager finds its object) but runs no
pod. Only that key is ours (nodeSelector is a map: server-side apply tracks each key's owner),
so nothing UK8S set is overwritten. Undo: set the switch false and `pulumi up` — deleting a
patch gives its fields up, the key disappears and UK8S's plugin runs again. The patch is applied
after our plugin is ready, so GPUs stay schedulable throughout. (`pulumi import` of the old
object is no alternative: its selector labels are immutable and differ from ours.)

Images are pinned to the set shipped together by NVIDIA's GPU Operator v26.7 (device plugin
v0.20.1, DCGM exporter 4.6.1-4.8.4, container toolkit v1.20.1) and driver 580.126.20 for Ubuntu
22.04 nodes; override per node OS with the Args.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.conventions import (
    DEFAULT_GPU_TAINT_KEY,
    PART_OF,
    app_labels,
    bad_value,
    child_options,
    gpu_placement,
    image_version,
    kubernetes_provider,
    object_labels,
    require_choice,
    require_dns_label,
    require_label_value,
    require_pinned_image,
    require_taint_keys,
    wait_timeouts,
)

TYPE_TOKEN = "llm-uk8s:k8s:GpuDrivers"
MODES = ("preinstalled", "daemonset", "none")
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.1"
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.1-4.8.4-distroless"
DRIVER_IMAGE = "nvcr.io/nvidia/driver:580.126.20-ubuntu22.04"
TOOLKIT_IMAGE = "nvcr.io/nvidia/k8s/container-toolkit:v1.20.1"
DCGM_PORT = 9400
# The containerd runtime the toolkit registers in daemonset mode, and the RuntimeClass (same name)
# that selects it.
RUNTIME_CLASS = "nvidia"
DRIVER_ROOT = "/run/nvidia/driver"
# Compiling the kernel module on first start takes minutes; waiting on a DaemonSet's rollout is
# what makes the inference Deployment start only once GPUs are schedulable.
DAEMONSET_WAIT_S = 1800
# UK8S's preinstalled plugin (UK8S docs administercluster/gpu-node.md, 插件升级 section).
UK8S_DEVICE_PLUGIN = "nvidia-device-plugin-daemonset"
UK8S_DEVICE_PLUGIN_NAMESPACE = "kube-system"
# A node label no node carries: a DaemonSet selecting it runs nowhere.
NO_NODE_SELECTOR = {"llm-uk8s/uk8s-device-plugin": "disabled"}


@dataclass
class GpuDriversArgs:
    mode: str
    gpu_node_selector: Mapping[str, str] = field(default_factory=dict)
    # Every taint key of the GPU nodes: a pod must tolerate all of them to land there.
    gpu_taint_keys: Sequence[str] = (DEFAULT_GPU_TAINT_KEY,)
    namespace: str = "kube-system"
    device_plugin_image: str = DEVICE_PLUGIN_IMAGE
    dcgm_exporter_image: str = DCGM_EXPORTER_IMAGE
    driver_image: str = DRIVER_IMAGE
    toolkit_image: str = TOOLKIT_IMAGE
    dcgm_exporter: bool = True
    # The app.kubernetes.io/instance label of every object (the stack's installation name).
    instance: str = PART_OF
    # Patch UK8S's own device plugin to run nowhere (see the module docstring).
    disable_uk8s_device_plugin: bool = False

    def validate(self) -> None:
        require_choice("mode", self.mode, MODES)
        require_label_value("instance", self.instance)
        if self.mode == "none":
            if self.disable_uk8s_device_plugin:
                raise bad_value(
                    "disable_uk8s_device_plugin", True, "False when mode is 'none' (no plugin)"
                )
            return
        if not self.gpu_node_selector:
            raise bad_value(
                "gpu_node_selector",
                dict(self.gpu_node_selector),
                "at least one label that only GPU nodes carry, e.g. {'llm-uk8s/gpu': 'true'}",
            )
        require_taint_keys("gpu_taint_keys", self.gpu_taint_keys)
        require_dns_label("namespace", self.namespace)
        images = [("device_plugin_image", self.device_plugin_image)]
        if self.dcgm_exporter:
            images.append(("dcgm_exporter_image", self.dcgm_exporter_image))
        if self.mode == "daemonset":
            images += [("driver_image", self.driver_image), ("toolkit_image", self.toolkit_image)]
        for name, image in images:
            require_pinned_image(name, image)

    @property
    def effective_runtime_class(self) -> str | None:
        """A RuntimeClass whose handler runs the NVIDIA runtime: "nvidia" in daemonset mode (the
        toolkit creates it); None where the node's default runtime is already NVIDIA's (UK8S)."""
        return RUNTIME_CLASS if self.mode == "daemonset" else None


def gpu_pod_spec(args: GpuDriversArgs, *, gpu_user: bool = False, **spec: Any) -> dict[str, Any]:
    """What every GPU-node DaemonSet shares: placement, the taint, and critical priority.

    `gpu_user`: the pod opens the GPUs, so it needs the NVIDIA runtime where that is not the
    node's default (not the driver and toolkit: they install that runtime)."""
    base: dict[str, Any] = {
        **gpu_placement(args.gpu_node_selector, args.gpu_taint_keys),
        "priorityClassName": "system-node-critical",
        "automountServiceAccountToken": False,
    }
    if gpu_user and args.effective_runtime_class:
        spec["runtimeClassName"] = args.effective_runtime_class
    return {**base, **spec}


def _host_dir(name: str, path: str, kind: str = "Directory") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def device_plugin_spec(args: GpuDriversArgs) -> dict[str, Any]:
    """Unprivileged: the plugin only talks to the kubelet through its socket directory."""
    env = [{"name": "FAIL_ON_INIT_ERROR", "value": "true"}]
    mounts = [{"name": "device-plugins", "mountPath": "/var/lib/kubelet/device-plugins"}]
    volumes = [_host_dir("device-plugins", "/var/lib/kubelet/device-plugins")]
    if args.mode == "daemonset":
        # The driver container installs under /run/nvidia/driver, not the host's /usr.
        env.append({"name": "NVIDIA_DRIVER_ROOT", "value": DRIVER_ROOT})
        mounts.append(
            {
                "name": "driver-root",
                "mountPath": "/driver-root",
                "readOnly": True,
                "mountPropagation": "HostToContainer",
            }
        )
        volumes.append(_host_dir("driver-root", DRIVER_ROOT, "DirectoryOrCreate"))
    return gpu_pod_spec(
        args,
        gpu_user=True,
        containers=[
            {
                "name": "nvidia-device-plugin",
                "image": args.device_plugin_image,
                "env": env,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "volumeMounts": mounts,
            }
        ],
        volumes=volumes,
    )


def dcgm_exporter_spec(args: GpuDriversArgs) -> dict[str, Any]:
    """Root (DCGM opens the GPUs) but unprivileged: SYS_ADMIN only, for profiling counters."""
    probe = {
        "httpGet": {"path": "/health", "port": "metrics"},
        "periodSeconds": 15,
        "timeoutSeconds": 5,
    }
    return gpu_pod_spec(
        args,
        gpu_user=True,
        containers=[
            {
                "name": "dcgm-exporter",
                "image": args.dcgm_exporter_image,
                "env": [
                    {"name": "DCGM_EXPORTER_LISTEN", "value": f":{DCGM_PORT}"},
                    {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
                    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                ],
                "ports": [{"name": "metrics", "containerPort": DCGM_PORT, "protocol": "TCP"}],
                "startupProbe": {**probe, "failureThreshold": 20},
                "livenessProbe": {**probe, "failureThreshold": 4},
                "readinessProbe": {**probe, "failureThreshold": 2},
                "securityContext": {
                    "runAsUser": 0,
                    "runAsNonRoot": False,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                },
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "volumeMounts": [
                    {
                        "name": "pod-resources",
                        "mountPath": "/var/lib/kubelet/pod-resources",
                        "readOnly": True,
                    }
                ],
            }
        ],
        volumes=[_host_dir("pod-resources", "/var/lib/kubelet/pod-resources")],
    )


def driver_spec(args: GpuDriversArgs) -> dict[str, Any]:
    """Privileged by necessity: it loads kernel modules into the host."""
    return gpu_pod_spec(
        args,
        hostPID=True,
        containers=[
            {
                "name": "nvidia-driver",
                "image": args.driver_image,
                "command": ["nvidia-driver", "init"],
                "securityContext": {"privileged": True, "seLinuxOptions": {"level": "s0"}},
                "startupProbe": {
                    "exec": {"command": ["nvidia-smi"]},
                    "periodSeconds": 20,
                    "failureThreshold": DAEMONSET_WAIT_S // 20,
                },
                "livenessProbe": {
                    "exec": {"command": ["nvidia-smi"]},
                    "periodSeconds": 60,
                    "timeoutSeconds": 30,
                    "failureThreshold": 3,
                },
                "resources": {
                    "requests": {"cpu": "200m", "memory": "512Mi"},
                    "limits": {"cpu": "4", "memory": "4Gi"},
                },
                "volumeMounts": [
                    {
                        "name": "run-nvidia",
                        "mountPath": "/run/nvidia",
                        "mountPropagation": "Bidirectional",
                    },
                    {"name": "var-log", "mountPath": "/var/log"},
                    {"name": "dev-log", "mountPath": "/dev/log"},
                    {
                        "name": "host-os-release",
                        "mountPath": "/host-etc/os-release",
                        "readOnly": True,
                    },
                    {"name": "firmware", "mountPath": "/lib/firmware"},
                ],
            }
        ],
        volumes=[
            _host_dir("run-nvidia", "/run/nvidia", "DirectoryOrCreate"),
            _host_dir("var-log", "/var/log"),
            _host_dir("dev-log", "/dev/log", "Socket"),
            _host_dir("host-os-release", "/etc/os-release", "File"),
            _host_dir("firmware", "/lib/firmware", "DirectoryOrCreate"),
        ],
    )


def toolkit_spec(args: GpuDriversArgs) -> dict[str, Any]:
    """Privileged by necessity: it rewrites containerd's config and signals containerd."""
    return gpu_pod_spec(
        args,
        hostPID=True,
        containers=[
            {
                "name": "nvidia-container-toolkit",
                "image": args.toolkit_image,
                "args": ["/usr/local/nvidia"],
                "env": [
                    {"name": "RUNTIME", "value": "containerd"},
                    {"name": "CONTAINERD_CONFIG", "value": "/runtime/config-dir/config.toml"},
                    {"name": "CONTAINERD_SOCKET", "value": "/runtime/sock-dir/containerd.sock"},
                    {"name": "CONTAINERD_RUNTIME_CLASS", "value": RUNTIME_CLASS},
                    {"name": "NVIDIA_DRIVER_ROOT", "value": DRIVER_ROOT},
                ],
                "securityContext": {"privileged": True},
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "512Mi"},
                },
                "volumeMounts": [
                    {
                        "name": "run-nvidia",
                        "mountPath": "/run/nvidia",
                        "mountPropagation": "Bidirectional",
                    },
                    {"name": "toolkit-root", "mountPath": "/usr/local/nvidia"},
                    {"name": "containerd-config", "mountPath": "/runtime/config-dir"},
                    {"name": "containerd-socket", "mountPath": "/runtime/sock-dir"},
                ],
            }
        ],
        volumes=[
            _host_dir("run-nvidia", "/run/nvidia", "DirectoryOrCreate"),
            _host_dir("toolkit-root", "/usr/local/nvidia", "DirectoryOrCreate"),
            _host_dir("containerd-config", "/etc/containerd", "DirectoryOrCreate"),
            _host_dir("containerd-socket", "/run/containerd"),
        ],
    )


def daemonset_body(
    name: str,
    namespace: str,
    component: str,
    pod_spec: dict[str, Any],
    *,
    instance: str = PART_OF,
) -> dict[str, Any]:
    selector = app_labels("nvidia-gpu", component)
    image = pod_spec["containers"][0]["image"]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": object_labels(
                "nvidia-gpu", component, instance=instance, version=image_version(image)
            ),
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": selector}, "spec": pod_spec},
        },
    }


class GpuDrivers(pulumi.ComponentResource):
    """NVIDIA device plugin and DCGM exporter (and, in `daemonset` mode, driver and toolkit)."""

    daemonsets: list[k8s.apps.v1.DaemonSet]
    metrics_service: k8s.core.v1.Service | None
    # What a GPU workload must wait for: GPUs schedulable (device plugin; driver, toolkit and
    # RuntimeClass in daemonset mode). Not the DCGM exporter: metrics failing must not stop serving.
    gpu_ready: list[pulumi.Resource]
    # The RuntimeClass GPU pods must name (None: the node's default runtime is NVIDIA's).
    runtime_class_name: str | None

    def __init__(
        self, name: str, args: GpuDriversArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__(TYPE_TOKEN, name, None, opts)
        self.daemonsets = []
        self.metrics_service = None
        self.gpu_ready = []
        self.runtime_class_name = args.effective_runtime_class
        if args.mode == "none":
            self.register_outputs({"daemonsets": []})
            return
        provider = kubernetes_provider(opts)
        timeouts = wait_timeouts(DAEMONSET_WAIT_S, margin_s=300)

        def daemonset(
            component: str, spec: dict[str, Any], after: list[pulumi.Resource]
        ) -> k8s.apps.v1.DaemonSet:
            body = daemonset_body(
                f"{name}-{component}", args.namespace, component, spec, instance=args.instance
            )
            ds = k8s.apps.v1.DaemonSet(
                f"{name}-{component}",
                metadata=body["metadata"],
                spec=body["spec"],
                opts=child_options(self, provider, depends_on=after, custom_timeouts=timeouts),
            )
            self.daemonsets.append(ds)
            return ds

        # The device plugin and exporter wait for the NVIDIA runtime (toolkit, RuntimeClass); GPU
        # workloads (gpu_ready) for the driver as well.
        runtime_ready: list[pulumi.Resource] = []
        prereqs: list[pulumi.Resource] = []
        if args.mode == "daemonset":
            driver = daemonset("driver", driver_spec(args), [])
            toolkit = daemonset("toolkit", toolkit_spec(args), [driver])
            runtime_class = k8s.node.v1.RuntimeClass(
                f"{name}-runtime-class",
                metadata={
                    "name": RUNTIME_CLASS,
                    "labels": object_labels(
                        "nvidia-gpu",
                        "runtime-class",
                        instance=args.instance,
                        version=image_version(args.toolkit_image),
                    ),
                },
                handler=RUNTIME_CLASS,
                scheduling=gpu_placement(args.gpu_node_selector, args.gpu_taint_keys),
                opts=child_options(self, provider),
            )
            runtime_ready = [toolkit, runtime_class]
            prereqs = [driver, *runtime_ready]
        device_plugin = daemonset("device-plugin", device_plugin_spec(args), runtime_ready)
        self.gpu_ready = [*prereqs, device_plugin]
        if args.dcgm_exporter:
            exporter = daemonset("dcgm-exporter", dcgm_exporter_spec(args), runtime_ready)
            self.metrics_service = k8s.core.v1.Service(
                f"{name}-dcgm-exporter",
                metadata={
                    "name": f"{name}-dcgm-exporter",
                    "namespace": args.namespace,
                    "labels": object_labels(
                        "nvidia-gpu",
                        "dcgm-exporter",
                        instance=args.instance,
                        version=image_version(args.dcgm_exporter_image),
                    ),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(DCGM_PORT),
                    },
                },
                spec={
                    "type": "ClusterIP",
                    "selector": app_labels("nvidia-gpu", "dcgm-exporter"),
                    "ports": [{"name": "metrics", "port": DCGM_PORT, "targetPort": "metrics"}],
                },
                opts=child_options(self, provider, depends_on=[exporter]),
            )
        self.uk8s_plugin_patch: k8s.apps.v1.DaemonSetPatch | None = None
        if args.disable_uk8s_device_plugin:
            self.uk8s_plugin_patch = k8s.apps.v1.DaemonSetPatch(
                f"{name}-uk8s-device-plugin-off",
                metadata={"name": UK8S_DEVICE_PLUGIN, "namespace": UK8S_DEVICE_PLUGIN_NAMESPACE},
                spec=uk8s_plugin_patch_spec(),
                # Only once ours serves: GPUs never stop being schedulable.
                opts=child_options(self, provider, depends_on=[device_plugin]),
            )
        self.register_outputs(
            {"daemonsets": [ds.metadata.apply(lambda m: m.name) for ds in self.daemonsets]}
        )


def uk8s_plugin_patch_spec() -> dict[str, Any]:
    """The only field the patch owns: a nodeSelector key no node carries."""
    return {"template": {"spec": {"nodeSelector": dict(NO_NODE_SELECTOR)}}}
