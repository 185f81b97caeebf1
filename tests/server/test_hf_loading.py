"""llmserve.hf_loading on CPU: an HF directory read through weight_loading (the GPU path, run
here on the CPU) gives the model from_pretrained gives (same tensors, dtypes, tied weights,
buffers, generation config, logits and greedy tokens); checkpoints that need transformers' own
conversions, and the CPU, go to from_pretrained (prefetched from a network filesystem)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from llmserve import hf_loading
from llmserve.models import load_model
from llmserve.weight_loading import filesystem_type, release_file_buffers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, GlmConfig, LlamaConfig, PreTrainedModel

CPU = torch.device("cpu")
SMALL = dict(
    vocab_size=500,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def _save(model: PreTrainedModel, directory: Path, dtype: torch.dtype, shard: str) -> Path:
    model.to(dtype).save_pretrained(directory, max_shard_size=shard)
    return directory


@pytest.fixture
def tied_llama_bf16(tmp_path: Path) -> Path:
    """Tied embeddings, bf16 on disk, sharded (an index file): the common published layout."""
    torch.manual_seed(0)
    config = LlamaConfig(**SMALL, tie_word_embeddings=True, eos_token_id=[2, 7])
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [2, 7, 11]  # generation_config.json's own: read too
    return _save(model, tmp_path / "llama", torch.bfloat16, "60KB")


@pytest.fixture
def untied_glm_fp32(tmp_path: Path) -> Path:
    """Untied, float32 on disk, one file: served in float32 nothing is cast or copied."""
    torch.manual_seed(1)
    from transformers import GlmForCausalLM

    config = GlmConfig(**SMALL, head_dim=16, tie_word_embeddings=False, pad_token_id=0)
    return _save(GlmForCausalLM(config), tmp_path / "glm", torch.float32, "10GB")


def _today(path: Path, dtype: torch.dtype) -> Any:
    """The loader models.py used before: from_pretrained, then .to(device)."""
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation="sdpa"
    ).eval()


def _parallel(path: Path, dtype: torch.dtype) -> Any:
    return hf_loading.load_parallel(path, AutoConfig.from_pretrained(path), CPU, dtype)


def _no_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the fast path called from_pretrained")

    monkeypatch.setattr(hf_loading.AutoModelForCausalLM, "from_pretrained", refuse)


def _no_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved directories have no tokenizer; load_model only needs one to exist."""
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda *_a, **_k: None)


def _assert_same_model(ours: Any, reference: Any) -> None:
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert set(mine) == set(theirs)
    for name, expected in theirs.items():
        got = mine[name]
        assert got.dtype == expected.dtype and torch.equal(got, expected), name
    buffers = dict(reference.named_buffers())
    for name, buffer in ours.named_buffers():
        assert buffer.dtype == buffers[name].dtype and torch.equal(buffer, buffers[name]), name
    ours_tied = ours.lm_head.weight is ours.get_input_embeddings().weight
    assert ours_tied == (reference.lm_head.weight is reference.get_input_embeddings().weight)
    assert ours.generation_config.to_dict() == reference.generation_config.to_dict()
    assert not ours.training
    ids = torch.tensor([[5, 17, 3, 88, 42, 9, 61]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, reference(ids).logits)
        greedy = dict(max_new_tokens=12, do_sample=False, min_new_tokens=12)
        assert torch.equal(ours.generate(ids, **greedy), reference.generate(ids, **greedy))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sharded_tied_bf16_checkpoint_equals_from_pretrained(
    tied_llama_bf16: Path, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(hf_loading.safetensors_files(tied_llama_bf16) or []) > 1
    reference = _today(tied_llama_bf16, dtype)
    _no_from_pretrained(monkeypatch)
    ours = _parallel(tied_llama_bf16, dtype)
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    _assert_same_model(ours, reference)


def test_untied_fp32_checkpoint_equals_from_pretrained(
    untied_glm_fp32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _today(untied_glm_fp32, torch.float32)
    _no_from_pretrained(monkeypatch)
    ours = _parallel(untied_glm_fp32, torch.float32)
    _assert_same_model(ours, reference)


def test_load_model_on_the_cpu_equals_the_previous_loader(
    tied_llama_bf16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _today(tied_llama_bf16, torch.float32)
    _no_tokenizer(monkeypatch)
    loaded = load_model(str(tied_llama_bf16), "cpu", "float32", cpu_weights="float")
    _assert_same_model(loaded.model, reference)
    assert loaded.eos_token_ids == [2, 7, 11]


def test_a_gpu_reads_in_parallel_and_falls_back_to_from_pretrained(
    tied_llama_bf16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The routing alone (no GPU here): parallel on a GPU unless refused, mapped on the CPU."""
    calls: list[str] = []
    answer: dict[str, object] = {"parallel": "parallel model"}
    monkeypatch.setattr(
        hf_loading, "load_parallel", lambda *_a: calls.append("parallel") or answer["parallel"]
    )
    monkeypatch.setattr(hf_loading, "load_mapped", lambda *_a: calls.append("mapped") or "mapped")
    gpu = torch.device("cuda", 0)
    assert hf_loading.load_hf_directory(tied_llama_bf16, gpu, torch.bfloat16) == "parallel model"
    answer["parallel"] = None  # refused
    assert hf_loading.load_hf_directory(tied_llama_bf16, gpu, torch.bfloat16) == "mapped"
    assert hf_loading.load_hf_directory(tied_llama_bf16, CPU, torch.float32) == "mapped"
    assert calls == ["parallel", "parallel", "mapped", "mapped"]


def test_from_a_network_filesystem_the_mapped_files_are_prefetched(
    tied_llama_bf16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[list[Path]] = []
    monkeypatch.setattr(hf_loading, "prefetch", lambda paths: fetched.append(list(paths)) or 0)
    hf_loading.load_mapped(tied_llama_bf16, CPU, torch.float32)
    assert fetched == []  # tmp_path is a local disk
    monkeypatch.setattr(hf_loading, "on_network_filesystem", lambda _path: True)
    monkeypatch.setattr(hf_loading, "filesystem_type", lambda _path: "nfs4")
    hf_loading.load_mapped(tied_llama_bf16, CPU, torch.float32)
    assert fetched == [sorted(tied_llama_bf16.glob("*.safetensors"))]


def test_filesystem_type_takes_the_longest_mount_point(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "31 22 0:40 / /app/models rw,relatime shared:9 - nfs4 10.9.1.2:/ rw,vers=4.0\n"
        "32 22 0:41 / /app/models-local rw - tmpfs tmpfs rw\n"
    )
    assert filesystem_type(Path("/app/models/glm/config.json"), mountinfo) == "nfs4"
    assert filesystem_type(Path("/app/models"), mountinfo) == "nfs4"
    assert filesystem_type(Path("/app/models-local/x"), mountinfo) == "tmpfs"
    assert filesystem_type(Path("/etc/hosts"), mountinfo) == "ext4"
    assert filesystem_type(Path("/x"), tmp_path / "missing") == "unknown"


def test_keys_without_the_prefix_are_left_to_from_pretrained(
    untied_glm_fp32: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint of the base model (no `model.` prefix) needs transformers' renaming."""
    path = untied_glm_fp32 / "model.safetensors"
    save_file({k.removeprefix("model."): v for k, v in load_file(path).items()}, path)
    with caplog.at_level(logging.INFO, logger="llmserve.hf_loading"):
        assert _parallel(untied_glm_fp32, torch.float32) is None
    assert "not read in parallel: the checkpoint lacks ['model.embed_tokens.weight'" in caplog.text
    ours = hf_loading.load_hf_directory(untied_glm_fp32, CPU, torch.float32)
    _assert_same_model(ours, _today(untied_glm_fp32, torch.float32))


def test_a_shape_that_does_not_fit_the_config_is_named(untied_glm_fp32: Path) -> None:
    config = untied_glm_fp32 / "config.json"
    config.write_text(
        config.read_text().replace('"intermediate_size": 96', '"intermediate_size": 80')
    )
    with pytest.raises(
        hf_loading.HfLoadError, match=r"'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"
    ):
        _parallel(untied_glm_fp32, torch.float32)


def test_replaced_weights_free_their_file_bytes_once_released(tmp_path: Path) -> None:
    """Served in the checkpoint's dtype, parameters are views of one allocation per file; after
    a weight is replaced, release_file_buffers gives the rest their own storage (ties kept)."""
    torch.manual_seed(2)
    from transformers import LlamaForCausalLM

    config = LlamaConfig(**SMALL, tie_word_embeddings=True)
    path = _save(LlamaForCausalLM(config), tmp_path / "fp32", torch.float32, "10GB")
    model = _parallel(path, torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    embed = model.model.embed_tokens.weight
    assert embed.untyped_storage().nbytes() > embed.nbytes  # a view of the file's allocation
    model.model.layers[0].mlp.down_proj.weight = torch.nn.Parameter(torch.zeros(64, 96))
    copied = release_file_buffers(model)
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in tensors)
    assert copied == sum(t.nbytes for t in model.parameters()) - 64 * 96 * 4
    assert model.lm_head.weight is model.model.embed_tokens.weight
    after = model.state_dict()
    for name, expected in before.items():
        if name != "model.layers.0.mlp.down_proj.weight":
            assert torch.equal(after[name], expected), name
