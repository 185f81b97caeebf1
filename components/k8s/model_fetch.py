"""`ModelFetch`: the Kubernetes side of the model storage.

A static PersistentVolume over the UFS mount point (NFS) — or a hostPath on a laptop cluster —,
a claim bound to exactly that volume, and a Job that fills `/models/<model-name>/<revision>` from
the hub with the inference image's `llmserve fetch`. The Job is idempotent (a completion marker per
revision), so re-running `pulumi up` costs nothing; the inference Deployment depends on it.

How "the Deployment starts only after the Job has completed" holds: pulumi-kubernetes awaits a
Job until its `Complete` condition is true (and fails on `Failed`), so the Job resource is not
created, from the engine's point of view, before the download has finished and verified. The
InferenceService lists `ModelFetch.dependencies` in its `depends_on`, so its Deployment is
registered only after that. `job_timeout_s` becomes both the Job's activeDeadlineSeconds and
Pulumi's wait (plus a margin for the image pull).

Changing the revision changes the Job's pod template, which Kubernetes cannot update in place:
Pulumi replaces the Job (a new one downloads into a new revision directory, the old one is
deleted) and the Deployment, which takes `ModelFetch.revision` and `model_dir` from here, rolls
onto the new directory only after the new Job has completed; old pods keep reading the old
directory untouched until they stop.

A failed Job (say, the hub was down) stays failed on the cluster; `pulumi.com/replaceUnready`
makes the next `pulumi up` replace it instead of failing on it again. That is safe because the
fetch resumes from the files already on the volume and checks its completion marker.

The PersistentVolume and claim carry a fixed nominal size: NFS ignores it, and a claim's size
that followed the UFS size would force a replacement of the claim (deleted while pods hold it)
whenever the volume grows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ConfigError
from components.k8s.conventions import (
    IMAGE_UID,
    PART_OF,
    bad_value,
    child_options,
    is_commit_sha,
    is_pinned_revision,
    kubernetes_provider,
    object_labels,
    require_choice,
    require_label_value,
    require_model_dir_name,
    require_pinned_image,
    require_positive_int,
    require_quantity,
    restricted_container_security,
    restricted_pod_security,
    strip_nfs_export,
    wait_timeouts,
    workload_labels,
)
from components.k8s.inference import COMPILE_CACHE_SUBPATH, MODEL_MOUNT

# The class was called ModelStore; the type token keeps that name on purpose. It is part of every
# child's URN, and a changed URN makes `pulumi up` replace the PV, claim and Job of live stacks
# (tests/stack/urns/ pins it).
TYPE_TOKEN = "llm-uk8s:k8s:ModelStore"
SOURCES = ("huggingface", "bundled")
VOLUME_MOUNT_IN_JOB = "/models"
NFS_MOUNT_OPTIONS = ("nolock", "nfsvers=4.0")
_TOKEN_DIR = "/var/run/secrets/llm-uk8s/hub-token"
_TOKEN_KEY = "token"
# Kubernetes needs some capacity on an NFS volume and claim but enforces none; UFS's smallest size.
NOMINAL_CAPACITY = "100Gi"
# pulumi-kubernetes: replace an unready (failed, timed-out) object on the next update.
REPLACE_UNREADY = {"pulumi.com/replaceUnready": "true"}


@dataclass
class ModelFetchArgs:
    """What the model store needs; exactly one of `nfs_server` and `host_path` is set."""

    namespace: pulumi.Input[str]
    model_name: str
    source: str = "huggingface"
    # UFS mount point address ("10.0.0.5" or UFS's own "10.0.0.5:/"); None on a laptop cluster.
    nfs_server: pulumi.Input[str] | None = None
    nfs_path: str = "/"
    # Node directory for the local stack (kind, minikube, Docker Desktop).
    host_path: str | None = None
    repo_id: str | None = None
    # A 40-hex commit or a release tag: what was tested is what is served. A branch needs
    # allow_unpinned.
    revision: str | None = None
    allow_unpinned: bool = False
    hub_endpoint: str | None = None
    hub_token: pulumi.Input[str] | None = None
    fetch_image: str | None = None
    job_timeout_s: int = 3600
    fetch_cpu: str = "2"
    fetch_memory: str = "4Gi"
    # The app.kubernetes.io/instance label of every object (the stack's installation name).
    instance: str = PART_OF

    def validate(self) -> None:
        """Fail at `pulumi preview` time, naming the field, rather than on the cluster."""
        require_model_dir_name("model_name", self.model_name)
        require_label_value("instance", self.instance)
        require_choice("source", self.source, SOURCES)
        if (self.nfs_server is None) == (self.host_path is None):
            raise ConfigError(
                "nfs_server/host_path: set exactly one (nfs_server for UFS, host_path for a "
                f"local cluster); got nfs_server={self.nfs_server!r}, host_path={self.host_path!r}"
            )
        if self.host_path is not None and not self.host_path.startswith("/"):
            raise bad_value("host_path", self.host_path, "an absolute path on the node")
        if not self.nfs_path.startswith("/"):
            raise bad_value("nfs_path", self.nfs_path, 'an absolute export path such as "/"')
        if isinstance(self.nfs_server, str):
            strip_nfs_export(self.nfs_server)
        require_quantity("fetch_cpu", self.fetch_cpu)
        require_quantity("fetch_memory", self.fetch_memory)
        if self.source != "huggingface":
            return
        if not self.repo_id or self.repo_id.count("/") != 1:
            raise bad_value("repo_id", self.repo_id, 'a hub repo id "ORG/NAME"')
        if not self.revision:
            raise bad_value("revision", self.revision, "a 40-hex commit sha or a tag like v1.0")
        if not self.allow_unpinned and not is_pinned_revision(self.revision):
            raise bad_value(
                "revision",
                self.revision,
                "a 40-hex commit sha or a release tag like v1.0 (or set allow_unpinned)",
            )
        # It names the weights' directory: one path segment, never a traversal.
        require_model_dir_name("revision", self.revision)
        if self.hub_endpoint is not None and not re.match(r"^https?://[^\s/]+", self.hub_endpoint):
            raise bad_value("hub_endpoint", self.hub_endpoint, "an http(s) URL of a hub mirror")
        if self.fetch_image is None:
            raise bad_value(
                "fetch_image", None, "the inference image (it carries `llmserve fetch`)"
            )
        require_pinned_image("fetch_image", self.fetch_image)
        require_positive_int("job_timeout_s", self.job_timeout_s, minimum=60)


def weights_subdir(args: ModelFetchArgs) -> str:
    """`<model-name>/<revision>`: each revision has its own directory, so a rollout switches
    servers from one complete set of weights to another, never to half-written files."""
    return f"{args.model_name}/{args.revision}"


def fetch_command(args: ModelFetchArgs) -> list[str]:
    """The Job's command line: the image's own `llmserve fetch`, token by file, never by env."""
    command = [
        "llmserve",
        "fetch",
        "--repo-id",
        str(args.repo_id),
        "--revision",
        str(args.revision),
        "--dest",
        f"{VOLUME_MOUNT_IN_JOB}/{weights_subdir(args)}",
    ]
    if args.hub_endpoint:
        command += ["--endpoint", args.hub_endpoint]
    if args.hub_token is not None:
        command += ["--token-file", f"{_TOKEN_DIR}/{_TOKEN_KEY}"]
    if not is_commit_sha(str(args.revision)):
        # `llmserve fetch` takes anything but a commit only with this flag (it resolves a tag or
        # branch to its commit once and records it).
        command.append("--allow-unpinned")
    return command


def prepare_dir_command(*subdirs: str, uid: int = IMAGE_UID) -> list[str]:
    """A fresh UFS export (or hostPath) belongs to root; the unprivileged fetcher needs its dir
    (and the servers their compile cache: inference.COMPILE_CACHE_SUBPATH)."""
    steps = []
    for subdir in subdirs:
        target = f"{VOLUME_MOUNT_IN_JOB}/{subdir}"
        steps.append(f"mkdir -p '{target}' && chown {uid}:{uid} '{target}'")
    return ["sh", "-c", " && ".join(steps)]


def access_modes(args: ModelFetchArgs) -> list[str]:
    """UFS is shared by every node (RWX); a node directory is honest only as ReadWriteOnce (the
    Job and the server share the local stack's single node)."""
    return ["ReadWriteMany"] if args.nfs_server is not None else ["ReadWriteOnce"]


def volume_source(args: ModelFetchArgs) -> dict[str, object]:
    """The PersistentVolume's spec: UFS over NFS (RWX, Retain) or a node directory (local)."""
    spec: dict[str, object] = {
        "capacity": {"storage": NOMINAL_CAPACITY},
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "volumeMode": "Filesystem",
        "accessModes": access_modes(args),
    }
    if args.nfs_server is not None:
        spec["mountOptions"] = list(NFS_MOUNT_OPTIONS)
        spec["nfs"] = {
            "server": pulumi.Output.from_input(args.nfs_server).apply(strip_nfs_export),
            "path": args.nfs_path,
        }
    else:
        spec["hostPath"] = {"path": args.host_path, "type": "DirectoryOrCreate"}
    return spec


class ModelFetch(pulumi.ComponentResource):
    """PersistentVolume + claim for the model volume, and the fetch Job that fills it."""

    claim_name: pulumi.Output[str]
    model_dir: str | None
    # The revision the weights in model_dir belong to; None for the bundled model.
    revision: str | None
    fetch_job: k8s.batch.v1.Job | None
    volume: k8s.core.v1.PersistentVolume
    claim: k8s.core.v1.PersistentVolumeClaim

    def __init__(
        self, name: str, args: ModelFetchArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        provider = kubernetes_provider(opts)
        super().__init__(TYPE_TOKEN, name, None, opts)
        # The version of what these objects hold: the model revision (or the bundled model).
        labels = object_labels(
            "model-store", name, instance=args.instance, version=args.revision or "bundled"
        )
        claim_resource_name = f"{name}-models"

        self.volume = k8s.core.v1.PersistentVolume(
            f"{name}-models",
            metadata={"labels": labels},
            spec={
                **volume_source(args),
                # Pre-bound: no other claim with storageClassName "" can take this volume.
                "claimRef": {"namespace": args.namespace, "name": claim_resource_name},
            },
            opts=child_options(self, provider),
        )
        self.claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata={"name": claim_resource_name, "namespace": args.namespace, "labels": labels},
            spec={
                "accessModes": access_modes(args),
                "storageClassName": "",
                "volumeName": self.volume.metadata.apply(lambda m: m.name),
                "resources": {"requests": {"storage": NOMINAL_CAPACITY}},
            },
            opts=child_options(self, provider),
        )
        self.claim_name = self.claim.metadata.apply(lambda m: m.name)

        self.fetch_job = None
        self.token_secret: k8s.core.v1.Secret | None = None
        if args.source == "huggingface":
            self.model_dir = f"{MODEL_MOUNT}/{weights_subdir(args)}"
            self.revision = args.revision
            if args.hub_token is not None:
                self.token_secret = k8s.core.v1.Secret(
                    f"{name}-hub-token",
                    metadata={"namespace": args.namespace, "labels": labels},
                    type="Opaque",
                    string_data={_TOKEN_KEY: pulumi.Output.secret(args.hub_token)},
                    opts=child_options(self, provider),
                )
            self.fetch_job = self._fetch_job(name, args, provider, labels)
        else:
            # The image's bundled model: nothing to fetch, the server ignores the volume.
            self.model_dir = None
            self.revision = None

        self.register_outputs(
            {
                "claim_name": self.claim_name,
                "model_dir": self.model_dir,
                "revision": self.revision,
                "fetch_job_name": self.fetch_job.metadata.apply(lambda m: m.name)
                if self.fetch_job
                else None,
            }
        )

    @property
    def dependencies(self) -> Sequence[pulumi.Resource]:
        """What a consumer must wait for: the claim, and the download when there is one."""
        return [self.claim] + ([self.fetch_job] if self.fetch_job is not None else [])

    def _fetch_job(
        self,
        name: str,
        args: ModelFetchArgs,
        provider: pulumi.ProviderResource,
        labels: dict[str, str],
    ) -> k8s.batch.v1.Job:
        assert args.fetch_image is not None  # validate() guarantees it
        volumes: list[dict[str, object]] = [
            {"name": "models", "persistentVolumeClaim": {"claimName": self.claim_name}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        ]
        mounts: list[dict[str, object]] = [
            {"name": "models", "mountPath": VOLUME_MOUNT_IN_JOB},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
        if self.token_secret is not None:
            volumes.append(
                {
                    "name": "hub-token",
                    "secret": {
                        "secretName": self.token_secret.metadata.apply(lambda m: m.name),
                        "defaultMode": 0o440,
                    },
                }
            )
            mounts.append({"name": "hub-token", "mountPath": _TOKEN_DIR, "readOnly": True})
        resources = {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": args.fetch_cpu, "memory": args.fetch_memory},
        }
        return k8s.batch.v1.Job(
            f"{name}-fetch",
            metadata={
                "namespace": args.namespace,
                "labels": labels,
                "annotations": {
                    "llm-uk8s/model-revision": str(args.revision),
                    **REPLACE_UNREADY,
                },
            },
            spec={
                "backoffLimit": 3,
                "activeDeadlineSeconds": args.job_timeout_s,
                "template": {
                    # The labels it always had: a Job's template is immutable, a change replaces
                    # the Job (and re-runs the fetch).
                    "metadata": {
                        "labels": {
                            **workload_labels("model-store", name),
                            "llm-uk8s/role": "model-fetch",
                        }
                    },
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            **restricted_pod_security(),
                            # The init container below is the one exception to non-root.
                            "runAsNonRoot": False,
                        },
                        "initContainers": [
                            {
                                "name": "prepare-dir",
                                "image": args.fetch_image,
                                "command": prepare_dir_command(
                                    weights_subdir(args), COMPILE_CACHE_SUBPATH
                                ),
                                # Root without privileges: only the right to chown its directories.
                                "securityContext": {
                                    "runAsUser": 0,
                                    "runAsNonRoot": False,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"cpu": "200m", "memory": "128Mi"},
                                },
                                "volumeMounts": [
                                    {"name": "models", "mountPath": VOLUME_MOUNT_IN_JOB}
                                ],
                            }
                        ],
                        "containers": [
                            {
                                "name": "fetch",
                                "image": args.fetch_image,
                                "command": fetch_command(args),
                                "env": [
                                    {"name": "HOME", "value": "/tmp"},
                                    {"name": "HF_HOME", "value": "/tmp/hf"},
                                    {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
                                ],
                                "securityContext": restricted_container_security(),
                                "resources": resources,
                                "volumeMounts": mounts,
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            },
            opts=child_options(
                self,
                provider,
                depends_on=[self.claim],
                custom_timeouts=wait_timeouts(args.job_timeout_s),
            ),
        )
