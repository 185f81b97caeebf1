"""ChatGLM2/3 checkpoints in their published layout load into GlmForCausalLM and compute the
same logits as ChatGLM2's own forward pass, written out here from its modeling code: fused QKV
split as [queries | keys | values], rotary on the first half of each head with interleaved
pairs, grouped KV heads, SwiGLU as silu(first half) * second half."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from llmserve.chatglm import (
    ChatGLMCheckpointError,
    convert_tensors,
    glm_config_from_chatglm,
    load_chatglm,
)
from llmserve.chatglm_tokenizer import ChatGLM2Tokenizer, chatglm2_prompt
from safetensors.torch import load_file, save_file
from sentencepiece import SentencePieceProcessor, SentencePieceTrainer

from tests.llm_server import start_server

CONFIG = {
    "model_type": "chatglm",
    "architectures": ["ChatGLMModel"],
    "padded_vocab_size": 96,
    "hidden_size": 64,
    "ffn_hidden_size": 80,
    "num_layers": 2,
    "num_attention_heads": 4,
    "kv_channels": 16,
    "multi_query_attention": True,
    "multi_query_group_num": 2,
    "layernorm_epsilon": 1e-5,
    "seq_length": 256,
    "rmsnorm": True,
    "add_qkv_bias": True,
    "add_bias_linear": False,
    "post_layer_norm": True,
    "apply_residual_connection_post_layernorm": False,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def chatglm_weights(seed: int = 0, vocab: int = 96) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, ffn, heads, groups, hn = 64, 80, 4, 2, 16

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    weights = {
        "transformer.embedding.word_embeddings.weight": rand(vocab, h),
        "transformer.rotary_pos_emb.inv_freq": torch.ones(hn // 4),
        "transformer.encoder.final_layernorm.weight": 1 + rand(h),
        "transformer.output_layer.weight": rand(vocab, h),
    }
    qkv = heads * hn + 2 * groups * hn
    for i in range(2):
        p = f"transformer.encoder.layers.{i}."
        weights |= {
            p + "input_layernorm.weight": 1 + rand(h),
            p + "self_attention.query_key_value.weight": rand(qkv, h),
            p + "self_attention.query_key_value.bias": rand(qkv),
            p + "self_attention.dense.weight": rand(h, heads * hn),
            p + "post_attention_layernorm.weight": 1 + rand(h),
            p + "mlp.dense_h_to_4h.weight": rand(2 * ffn, h),
            p + "mlp.dense_4h_to_h.weight": rand(h, ffn),
        }
    return weights


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def chatglm_reference_logits(w: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    heads, groups, hn = 4, 2, 16
    rot = hn // 4  # ChatGLM2 rotates kv_channels // 2 dims of each head: hn // 4 pairs
    seq = ids.shape[0]
    theta = 1.0 / (10000 ** (torch.arange(0, 2 * rot, 2).float() / (2 * rot)))
    angles = torch.outer(torch.arange(seq).float(), theta)  # [seq, rot]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: [seq, heads, hn]
        pairs = x[..., : 2 * rot].reshape(seq, x.shape[1], rot, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        turned = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(2)
        return torch.cat([turned, x[..., 2 * rot :]], dim=-1)

    x = w["transformer.embedding.word_embeddings.weight"][ids]
    for i in range(2):
        p = f"transformer.encoder.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"])
        qkv = (
            h @ w[p + "self_attention.query_key_value.weight"].T
            + w[p + "self_attention.query_key_value.bias"]
        )
        q, k, v = qkv.split([heads * hn, groups * hn, groups * hn], dim=-1)
        q, k = rope(q.view(seq, heads, hn)), rope(k.view(seq, groups, hn))
        v = v.view(seq, groups, hn)
        k = k.repeat_interleave(heads // groups, dim=1)  # group g serves heads g*2, g*2+1
        v = v.repeat_interleave(heads // groups, dim=1)
        attn = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True
        )
        context = attn.transpose(0, 1).reshape(seq, heads * hn)
        x = x + context @ w[p + "self_attention.dense.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        up = h @ w[p + "mlp.dense_h_to_4h.weight"].T
        gate, lin = up.chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * lin) @ w[p + "mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, w["transformer.encoder.final_layernorm.weight"])
    return x @ w["transformer.output_layer.weight"].T


def write_checkpoint(
    directory: Path, config: dict[str, object], weights: dict[str, torch.Tensor]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_file(weights, directory / "model-00001-of-00001.safetensors")
    return directory


def test_converted_chatglm_matches_the_reference_forward(tmp_path: Path) -> None:
    weights = chatglm_weights()
    model = load_chatglm(
        write_checkpoint(tmp_path / "ckpt", CONFIG, weights), torch.device("cpu"), torch.float32
    )
    ids = torch.tensor([5, 17, 3, 88, 42, 9, 61])
    with torch.no_grad():
        ours = model(input_ids=ids[None]).logits[0]
    expected = chatglm_reference_logits(weights, ids)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_a_swapped_qkv_order_would_be_caught(tmp_path: Path) -> None:
    """The comparison above is sharp enough to see a layout mistake."""
    weights = chatglm_weights()
    broken = dict(weights)
    for i in range(2):
        name = f"transformer.encoder.layers.{i}.self_attention.query_key_value.weight"
        q, k, v = weights[name].split([64, 32, 32])
        broken[name] = torch.cat([q, v, k])
    model = load_chatglm(
        write_checkpoint(tmp_path / "ckpt", CONFIG, broken), torch.device("cpu"), torch.float32
    )
    ids = torch.tensor([5, 17, 3, 88])
    with torch.no_grad():
        ours = model(input_ids=ids[None]).logits[0]
    assert not torch.allclose(ours, chatglm_reference_logits(weights, ids), atol=1e-3)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"rmsnorm": False}, "rmsnorm=False"),
        ({"pre_seq_len": 128}, "pre_seq_len=128"),
        ({"quantization_bit": 4}, "quantization_bit=4"),
        ({"padded_vocab_size": None}, "first-generation"),
    ],
)
def test_unsupported_variants_are_refused_by_name(change: dict[str, object], needle: str) -> None:
    config = {k: v for k, v in {**CONFIG, **change}.items() if v is not None}
    with pytest.raises(ChatGLMCheckpointError, match=needle):
        glm_config_from_chatglm(config)


def test_chatglm3_rope_ratio_scales_the_rope_base() -> None:
    config = glm_config_from_chatglm({**CONFIG, "rope_ratio": 50})
    assert config.rope_parameters["rope_theta"] == 500000.0


def test_the_server_loader_takes_a_chatglm_directory_with_a_tokenizer(tmp_path: Path) -> None:
    from llmserve.models import ModelLoadError, load_model

    checkpoint = write_checkpoint(tmp_path / "chatglm2-tiny", CONFIG, chatglm_weights())
    with pytest.raises(ModelLoadError, match="LLMSERVE_TOKENIZER"):
        load_model(str(checkpoint), "cpu", "float32")
    tokenizer_dir = tmp_path / "tokenizer"
    load_model("random:tiny", "cpu", "float32").tokenizer.save_pretrained(tokenizer_dir)
    loaded = load_model(str(checkpoint), "cpu", "float32", tokenizer_source=str(tokenizer_dir))
    assert (loaded.name, loaded.max_model_len, loaded.eos_token_ids[-1]) == (
        "chatglm2-tiny",
        256,
        2,
    )
    assert type(loaded.model).__name__ == "GlmForCausalLM"


def test_pytorch_bin_shards_load_too(tmp_path: Path) -> None:
    """The original THUDM repositories ship pytorch_model-*.bin; they load with weights_only."""
    weights = chatglm_weights(seed=3)
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(CONFIG))
    names = sorted(weights)
    torch.save({n: weights[n] for n in names[:7]}, directory / "pytorch_model-00001-of-00002.bin")
    torch.save({n: weights[n] for n in names[7:]}, directory / "pytorch_model-00002-of-00002.bin")
    model = load_chatglm(directory, torch.device("cpu"), torch.float32)
    ids = torch.tensor([1, 2, 3, 4, 5])
    with torch.no_grad():
        ours = model(input_ids=ids[None]).logits[0]
    torch.testing.assert_close(ours, chatglm_reference_logits(weights, ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_float16_safetensors_shards_equal_the_previous_loader(
    tmp_path: Path, dtype: torch.dtype, parallel: bool
) -> None:
    """Shards read by weight_loading and cast per shard (the GPU path, run here on the CPU)
    give exactly the tensors of safetensors' load_file then convert_tensors (the CPU path)."""
    weights = {n: t.to(torch.float16) for n, t in chatglm_weights(seed=4).items()}
    directory = tmp_path / "fp16"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(CONFIG))
    names = sorted(weights)
    for i, part in enumerate((names[:5], names[5:11], names[11:])):
        save_file(
            {n: weights[n] for n in part}, directory / f"model-{i + 1:05d}-of-00003.safetensors"
        )
    model = load_chatglm(directory, torch.device("cpu"), dtype, parallel=parallel)
    previous = convert_tensors(
        (
            item
            for shard in sorted(directory.glob("*.safetensors"))
            for item in load_file(shard).items()
        ),
        glm_config_from_chatglm(CONFIG),
        dtype,
    )
    state = model.state_dict()
    assert set(state) == set(previous)
    for name, expected in previous.items():
        assert state[name].dtype == dtype and torch.equal(state[name], expected), name


@pytest.mark.parametrize("parallel", [True, False])
def test_a_truncated_shard_is_a_checkpoint_error(tmp_path: Path, parallel: bool) -> None:
    directory = write_checkpoint(tmp_path / "cut", CONFIG, chatglm_weights())
    shard = directory / "model-00001-of-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(ChatGLMCheckpointError, match=r"model-00001-of-00001\.safetensors"):
        load_chatglm(directory, torch.device("cpu"), torch.float32, parallel=parallel)


# ----------------------------------------------------------------------------- the tokenizer
def train_sentencepiece(path: Path) -> SentencePieceProcessor:
    """A small BPE SentencePiece model with byte fallback, like ChatGLM2's tokenizer.model."""
    corpus = [
        "你好 世界 今天天气很好",
        "Hello world, how are you today?",
        "北京是中国的首都",
        "什么是机器学习? 机器学习是人工智能的一个分支",
        "The quick brown fox jumps over the lazy dog.",
    ] * 40
    with path.open("wb") as model:
        SentencePieceTrainer.train(
            sentence_iterator=iter(corpus),
            model_writer=model,
            vocab_size=400,
            model_type="bpe",
            character_coverage=1.0,
            byte_fallback=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
    return SentencePieceProcessor(model_file=str(path))


def test_chatglm2_prompt_is_build_prompt_over_messages() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好!"},
        {"role": "user", "content": "1+1?"},
    ]
    assert chatglm2_prompt(messages) == (
        "[Round 1]\n\n\u95ee\uff1aBe brief.\n你好\n\n\u7b54\uff1a你好!\n\n"
        "[Round 2]\n\n\u95ee\uff1a1+1?\n\n\u7b54\uff1a"
    )


def test_tokenizer_prefixes_gmask_sop_and_puts_specials_after_the_vocabulary(
    tmp_path: Path,
) -> None:
    sp = train_sentencepiece(tmp_path / "tokenizer.model")
    tokenizer = ChatGLM2Tokenizer(tmp_path / "tokenizer.model")
    assert len(tokenizer) == 405 and tokenizer.special_ids["[gMASK]"] == 401
    assert tokenizer.special_ids["sop"] == 403 and tokenizer.eos_token_id == 2
    text = "你好 world"
    assert tokenizer.encode(text) == [401, 403, *sp.encode(text)]
    assert tokenizer.decode([401, 403, *sp.encode(text), 2]) == sp.decode(sp.encode(text))


def test_a_chatglm2_checkpoint_serves_chat_end_to_end(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(
        tmp_path / "chatglm2-tiny", {**CONFIG, "padded_vocab_size": 512}, chatglm_weights(vocab=512)
    )
    sp = train_sentencepiece(checkpoint / "tokenizer.model")
    server = start_server(tmp_path, str(checkpoint))
    try:
        messages = [{"role": "user", "content": "你好"}]
        reply = server.client().chat.completions.create(
            model="chatglm2-tiny",
            messages=messages,
            max_tokens=5,  # type: ignore[arg-type]
            temperature=0,
            extra_body={"ignore_eos": True},
        )
    finally:
        server.stop()
    expected_prompt = [401, 403, *sp.encode(chatglm2_prompt(messages))]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(expected_prompt)
    assert reply.usage.completion_tokens == 5
