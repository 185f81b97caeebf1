"""The ChatGLM2-6B tokenizer without its remote code.

ChatGLM2 checkpoints ship a SentencePiece model plus tokenization_chatglm.py, a transformers 4.x
class. What that class does is small, so we do the same directly on SentencePiece: text is
`sp.encode(text)` after the prefix [gMASK] sop; five special tokens ([MASK] [gMASK] [sMASK] sop
eop) take the ids right after the SentencePiece vocabulary; EOS is SentencePiece's; a chat is the
"[Round N]\\n\\n问<colon>...\\n\\n答<colon>..." prompt of its `build_prompt` (the colons are
fullwidth, U+FF1A, as in the original). Only the methods the server uses
are provided. ChatGLM3's tokenizer (role tokens, another chat format) is not this one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
QUESTION = "\u95ee\uff1a"  # "question" + FULLWIDTH COLON, exactly as ChatGLM2 was trained
ANSWER = "\u7b54\uff1a"  # "answer" + FULLWIDTH COLON


class ChatGLMTokenizerError(ValueError):
    """The checkpoint's tokenizer is not the ChatGLM2 one this module implements."""


def chatglm2_prompt(messages: Sequence[dict[str, str]]) -> str:
    """ChatGLM2's build_prompt over OpenAI-style messages. It has no system role: system text
    goes before the first question; consecutive user messages share one round."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    rounds: list[list[str | None]] = []  # [question, answer or None]
    for message in messages:
        if message["role"] == "user":
            if rounds and rounds[-1][1] is None:
                rounds[-1][0] = f"{rounds[-1][0]}\n{message['content']}"
            else:
                rounds.append([message["content"], None])
        elif message["role"] == "assistant":
            if not rounds or rounds[-1][1] is not None:
                rounds.append(["", None])
            rounds[-1][1] = message["content"]
    if system:
        if not rounds:
            rounds.append(["", None])
        rounds[0][0] = f"{system}\n{rounds[0][0]}" if rounds[0][0] else system
    prompt = ""
    for number, (question, answer) in enumerate(rounds, start=1):
        prompt += f"[Round {number}]\n\n{QUESTION}{question}\n\n{ANSWER}"
        if answer is not None:
            prompt += f"{answer}\n\n"
    return prompt


class ChatGLM2Tokenizer:
    chat_template = "chatglm2 [Round N] format (built in)"

    def __init__(self, model_file: Path) -> None:
        # Imported here: only ChatGLM2 checkpoints need sentencepiece.
        from sentencepiece import SentencePieceProcessor

        self._sp = SentencePieceProcessor(model_file=str(model_file))
        base = self._sp.vocab_size()
        self.special_ids = {token: base + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._size = base + len(SPECIAL_TOKENS)
        self._base = base
        self.eos_token_id: int = self._sp.eos_id()
        self.bos_token_id: int = self._sp.bos_id()
        self.pad_token_id: int = self._sp.unk_id()

    def __len__(self) -> int:
        return self._size

    def prefix_ids(self) -> list[int]:
        return [self.special_ids["[gMASK]"], self.special_ids["sop"]]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = list(self._sp.encode(text))
        return self.prefix_ids() + ids if add_special_tokens else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        dropped = {self.eos_token_id, self.bos_token_id, self.pad_token_id}
        kept = [
            i for i in ids if 0 <= i < self._base and not (skip_special_tokens and i in dropped)
        ]
        return self._sp.decode(kept)

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, str]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = True,
        return_dict: bool = False,
        **_: Any,
    ) -> list[int] | str:
        """The generation prompt is always added: ChatGLM2's prompts always end with ANSWER."""
        prompt = chatglm2_prompt(messages)
        return self.encode(prompt) if tokenize else prompt


def load_chatglm2_tokenizer(checkpoint: Path) -> ChatGLM2Tokenizer:
    code = checkpoint / "tokenization_chatglm.py"
    if code.is_file() and "<|user|>" in code.read_text(encoding="utf-8", errors="replace"):
        raise ChatGLMTokenizerError(
            "this is a ChatGLM3 tokenizer (role tokens such as <|user|>), which is not built in; "
            "allowed: set LLMSERVE_TOKENIZER to a Hugging Face fast-tokenizer directory"
        )
    model_file = checkpoint / "tokenizer.model"
    if not model_file.is_file():
        raise ChatGLMTokenizerError(
            f"{checkpoint} has no tokenizer.model; allowed: a ChatGLM2 checkpoint with its "
            "SentencePiece model, or LLMSERVE_TOKENIZER set to a tokenizer directory"
        )
    return ChatGLM2Tokenizer(model_file)
