"""Does the model fit the GPU, and does the pod fit the node? Arithmetic for the stack config.

Why here and not at `pulumi up`: a model that cannot fit is found only when the pod OOMs on a
GPU host that bills by the hour; a pod asking for the whole node never schedules at all. Both
follow from the config alone, so the config refuses them with what would fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.ucloud import vocabulary

GIB = 1024**3
MIB = 1024**2
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Bytes a parameter of a quantized Linear takes (the server's LLMSERVE_QUANTIZATION,
# image/llmserve/quantization.py WEIGHT_BYTES_PER_PARAM): one byte a weight plus one scale per
# output channel (int8: 2 bytes in the model's dtype; fp8: a 4-byte float32), i.e. 2/K or 4/K
# bytes a parameter for K inputs, rounded up to 0.01 (K >= 400 in any model worth quantizing).
# Embeddings (and norms) keep the model's dtype.
QUANTIZED_BYTES_PER_PARAM = {"int8": 1.01, "fp8": 1.01}


@dataclass(frozen=True)
class ModelShape:
    """What decides a decoder's memory: parameters, and the KV cache's size per token."""

    params: float  # parameters, all of them (embeddings included)
    layers: int
    kv_heads: int  # key/value heads (multi-query groups), not query heads
    head_dim: int
    # The input embedding's parameters (vocabulary x hidden): quantization leaves them in the
    # model's dtype. 0 when unknown, so every parameter counts as quantized.
    embedding_params: float = 0.0

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def weight_bytes(self, dtype_bytes: int, quantization: str = "none") -> float:
        """The weights in GPU memory: all at the model's dtype, or the Linear layers quantized
        and the embedding at the model's dtype."""
        if quantization == "none":
            return self.params * dtype_bytes
        linear = self.params - self.embedding_params
        return (
            linear * QUANTIZED_BYTES_PER_PARAM[quantization] + self.embedding_params * dtype_bytes
        )


# Known model shapes, by Hub repository id (lower case).
# THUDM/chatglm2-6b config.json as published by THUDM on the Hugging Face Hub: num_layers 28,
# hidden_size 4096, num_attention_heads 32, multi_query_group_num 2, kv_channels 128,
# padded_vocab_size 65024; 6.24 B parameters (counted from that shape; DESIGN.md section 7),
# of which the embedding is 65024 x 4096.
KNOWN_MODELS: dict[str, ModelShape] = {
    "thudm/chatglm2-6b": ModelShape(
        params=6.24e9, layers=28, kv_heads=2, head_dim=128, embedding_params=65024 * 4096
    ),
}

# Headroom on each GPU, our own choice (no source): 1 GiB for the CUDA context, cuBLAS
# workspaces and CUDA graph pools, plus 10% of the card for ECC and driver reservations,
# prefill activations and the allocator's fragmentation.
HEADROOM_FIXED_GIB = 1.0
HEADROOM_FRACTION = 0.10

# What a GPU node keeps from pods. UK8S-doc administercluster/kubelet_conf.md: kubeReserved
# cpu 100m / memory 500Mi and systemReserved cpu 100m / memory 500Mi by default, evictionHard
# memory.available 5%; UK8S-doc introduction/node_requirements.md: "默认预留 1G 内存, 0.2 核
# CPU" and pods get about node memory - 1G - 5%. On top, our own allowance for DaemonSet pods
# on every GPU node: ours request at most 400m / 896Mi (components/k8s/gpu_drivers.py); UK8S's
# own (CNI, CSI, kube-proxy) requests are undocumented, so 0.5 CPU and 1 GiB in all (our choice).
KUBE_RESERVED_MILLICPU = 200
KUBE_RESERVED_MIB = 1000
EVICTION_FRACTION = 0.05
DAEMONSET_MILLICPU = 500
DAEMONSET_MIB = 1024

_SHAPE_PART = re.compile(r"^(params|layers|kvHeads|headDim|embeddingParams)=([0-9.eE+]+)$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_shape(text: str) -> ModelShape:
    """'params=6.24e9,layers=28,kvHeads=2,headDim=128' (optionally ',embeddingParams=2.66e8')
    -> ModelShape (ValueError if not)."""
    parts: dict[str, float] = {}
    for item in text.split(","):
        match = _SHAPE_PART.match(item.strip())
        if not match:
            raise ValueError(
                f"{item.strip()!r} is not one of params=, layers=, kvHeads=, headDim=, "
                "embeddingParams="
            )
        parts[match.group(1)] = float(match.group(2))
    missing = [k for k in ("params", "layers", "kvHeads", "headDim") if k not in parts]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    ints = {k: parts[k] for k in ("layers", "kvHeads", "headDim")}
    if parts["params"] <= 0 or any(x < 1 or not float(x).is_integer() for x in ints.values()):
        raise ValueError("params must be > 0 and layers, kvHeads, headDim whole numbers >= 1")
    embedding = parts.get("embeddingParams", 0.0)
    if embedding >= parts["params"]:
        raise ValueError("embeddingParams must be less than params")
    return ModelShape(
        parts["params"],
        int(ints["layers"]),
        int(ints["kvHeads"]),
        int(ints["headDim"]),
        embedding_params=embedding,
    )


def quantity(text: str) -> float:
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = float(match.group(1)), match.group(2) or ""
    return number / 1000 if suffix == "m" else number * _SUFFIX[suffix]


@dataclass(frozen=True)
class GpuNeed:
    """Memory one replica needs on its GPU, in GiB, and how it adds up."""

    dtype: str
    quantization: str
    weights_gib: float
    kv_gib: float
    headroom_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.kv_gib + self.headroom_gib


def server_dtype(gpu_type: str) -> str:
    """The dtype the server's `auto` picks on this GPU type (float16 where capability is
    unknown: both half types take two bytes, so the arithmetic is the same)."""
    capability = vocabulary.gpu_capability(gpu_type)
    return vocabulary.auto_dtype(capability) if capability else "float16"


def fp8_runs_on(gpu_type: str) -> bool:
    """FP8 tensor cores: compute capability 8.9 or newer; an unknown capability is refused."""
    capability = vocabulary.gpu_capability(gpu_type)
    return capability is not None and capability >= vocabulary.FP8_MIN_CAPABILITY


def gpu_need(
    shape: ModelShape,
    gpu_type: str,
    max_model_len: int,
    max_batch: int,
    memory_gib: float,
    quantization: str = "none",
) -> GpuNeed:
    """The KV cache stays at the model's dtype whatever the weights are quantized to."""
    dtype = server_dtype(gpu_type)
    size = DTYPE_BYTES[dtype]
    return GpuNeed(
        dtype=dtype,
        quantization=quantization,
        weights_gib=shape.weight_bytes(size, quantization) / GIB,
        kv_gib=max_batch * max_model_len * shape.kv_bytes_per_token(size) / GIB,
        headroom_gib=HEADROOM_FIXED_GIB + HEADROOM_FRACTION * memory_gib,
    )


def fits(
    shape: ModelShape,
    gpu_type: str,
    max_model_len: int,
    max_batch: int,
    quantization: str = "none",
) -> bool | None:
    """True/False (False also where fp8 cannot run); None when the type's memory is unknown."""
    memory = vocabulary.gpu_memory_gib(gpu_type)
    if memory is None:
        return None
    if quantization == "fp8" and not fp8_runs_on(gpu_type):
        return False
    need = gpu_need(shape, gpu_type, max_model_len, max_batch, memory, quantization)
    return need.total_gib <= memory


def largest_fitting(
    shape: ModelShape,
    gpu_type: str,
    max_model_len: int,
    max_batch: int,
    quantization: str = "none",
) -> tuple[int, int]:
    """(largest maxBatch at this maxModelLen, largest maxModelLen at this maxBatch); 0 = none."""
    memory = vocabulary.gpu_memory_gib(gpu_type) or 0.0
    base = gpu_need(shape, gpu_type, 0, 0, memory, quantization)
    free = (memory - base.total_gib) * GIB
    per_token = shape.kv_bytes_per_token(DTYPE_BYTES[base.dtype])
    tokens = max(0, int(free // per_token))
    return tokens // max_model_len, tokens // max_batch


def gpu_types_that_fit(
    shape: ModelShape, max_model_len: int, max_batch: int, quantization: str = "none"
) -> list[str]:
    """Types UCloud sells (not retired) with known memory that hold this model and cache."""
    return [
        name
        for name, spec in vocabulary.GPU_SPECS.items()
        if spec.zones != () and fits(shape, name, max_model_len, max_batch, quantization)
    ]


def node_allocatable(cpu: int, memory_mb: int) -> tuple[float, float]:
    """(CPU cores, memory MiB) a GPU node leaves to the inference pod."""
    cores = (cpu * 1000 - KUBE_RESERVED_MILLICPU - DAEMONSET_MILLICPU) / 1000
    mib = memory_mb * (1 - EVICTION_FRACTION) - KUBE_RESERVED_MIB - DAEMONSET_MIB
    return cores, mib
