"""llmserve.hf_loading on CPU: an HF directory read through weight_loading gives the model
from_pretrained gives (same tensors, dtypes, tied weights, buffers, generation config, logits
and greedy tokens); checkpoints that need transformers' own conversions go to from_pretrained."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from llmserve import hf_loading
from llmserve.models import ModelLoadError, load_model
from llmserve.weight_loading import release_file_buffers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GlmConfig, LlamaConfig, PreTrainedModel

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


def _no_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the fast path called from_pretrained")

    monkeypatch.setattr(hf_loading.AutoModelForCausalLM, "from_pretrained", refuse)


def _no_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved directories have no tokenizer; load_model only needs one to exist."""
    monkeypatch.setattr("llmserve.models.AutoTokenizer.from_pretrained", lambda *_a, **_k: None)


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
    ours = hf_loading.load_hf_directory(tied_llama_bf16, torch.device("cpu"), dtype)
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    _assert_same_model(ours, reference)


def test_untied_fp32_checkpoint_equals_from_pretrained(
    untied_glm_fp32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _today(untied_glm_fp32, torch.float32)
    _no_from_pretrained(monkeypatch)
    ours = hf_loading.load_hf_directory(untied_glm_fp32, torch.device("cpu"), torch.float32)
    _assert_same_model(ours, reference)


def test_load_model_serves_the_fast_path(
    tied_llama_bf16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _today(tied_llama_bf16, torch.float32)
    _no_from_pretrained(monkeypatch)
    monkeypatch.setattr("llmserve.models.AutoTokenizer.from_pretrained", lambda *_a, **_k: object())
    loaded = load_model(str(tied_llama_bf16), "cpu", "float32", cpu_weights="float")
    _assert_same_model(loaded.model, reference)
    assert loaded.eos_token_ids == [2, 7, 11]


def test_keys_without_the_prefix_go_to_from_pretrained(
    untied_glm_fp32: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint of the base model (no `model.` prefix) needs transformers' renaming."""
    path = untied_glm_fp32 / "model.safetensors"
    save_file({k.removeprefix("model."): v for k, v in load_file(path).items()}, path)
    reference = _today(untied_glm_fp32, torch.float32)
    with caplog.at_level(logging.INFO, logger="llmserve.hf_loading"):
        ours = hf_loading.load_hf_directory(untied_glm_fp32, torch.device("cpu"), torch.float32)
    assert "with from_pretrained (the checkpoint lacks ['model.embed_tokens.weight'" in caplog.text
    _assert_same_model(ours, reference)


def test_a_shape_that_does_not_fit_the_config_is_named(
    untied_glm_fp32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = untied_glm_fp32 / "config.json"
    config.write_text(
        config.read_text().replace('"intermediate_size": 96', '"intermediate_size": 80')
    )
    _no_tokenizer(monkeypatch)
    with pytest.raises(
        ModelLoadError, match=r"'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"
    ):
        load_model(str(untied_glm_fp32), "cpu", "float32", cpu_weights="float")


def test_replaced_weights_free_their_file_bytes_once_released(tmp_path: Path) -> None:
    """Served in the checkpoint's dtype, parameters are views of one allocation per file; after
    a weight is replaced, release_file_buffers gives the rest their own storage (ties kept)."""
    torch.manual_seed(2)
    from transformers import LlamaForCausalLM

    config = LlamaConfig(**SMALL, tie_word_embeddings=True)
    path = _save(LlamaForCausalLM(config), tmp_path / "fp32", torch.float32, "10GB")
    model = hf_loading.load_hf_directory(path, torch.device("cpu"), torch.float32)
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
