"""A real, loadable, tiny Hugging Face model repo for the fake hub: random Llama weights in
safetensors and the bundled SmolLM2 tokenizer, as files a hub would serve."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from tests.image.fake_hub import FakeRepo


@functools.cache
def tiny_llama_files() -> dict[str, bytes]:
    from llmserve.models import bundled_smollm2_gguf, load_gguf_tokenizer
    from llmserve.presets import TINY_LLAMA_SHAPE
    from transformers import LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        LlamaForCausalLM(LlamaConfig(**TINY_LLAMA_SHAPE)).save_pretrained(out)
        load_gguf_tokenizer(bundled_smollm2_gguf()).save_pretrained(out)
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }


def tiny_llama_repo(repo_id: str) -> FakeRepo:
    return FakeRepo(repo_id, dict(tiny_llama_files()))
