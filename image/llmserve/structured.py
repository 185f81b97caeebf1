"""Structured outputs: a request's StructuredOutput compiled into a grammar with llguidance, and
the per-step token masks that keep its row inside that grammar.

Why llguidance (guidance-ai/llguidance, 1.9.1): it is maintained, used by vLLM and SGLang for
the same job, ships one abi3 wheel with no dependencies (xgrammar would bring triton along, and
outlines-core has no mask-filling executor), reads HF fast tokenizers directly and accepts any
other tokenizer as a list of token bytes (our ChatGLM2 SentencePiece wrapper). Masks are computed
on the CPU into an int32 bitmask (one bit per token), copied to the logits' device and applied
there with plain torch ops, so one code path serves CPU and CUDA.

A grammar is compiled once per request in `submit` (a few milliseconds for JSON schemas), so a
schema it cannot compile is refused there with StructuredOutputError (HTTP 400), never mid-batch.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import torch

from llmserve.engine_api import StructuredOutput, StructuredOutputError

log = logging.getLogger("llmserve.structured")

# "json_object": any JSON object, as OpenAI's JSON mode.
ANY_OBJECT_SCHEMA = '{"type": "object"}'
# Compact separators and no free whitespace: a model (a random one above all) cannot spend its
# token budget on blank space, and the text stays short.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class JsonShape:
    """Where a JSON text stands: its open containers and whether it is inside a string. What
    the closing steer (logits.py) needs to tell a token that ends a value from one that only
    looks like it ("]}" inside a string is text)."""

    __slots__ = ("escape", "in_string", "stack")

    def __init__(self) -> None:
        self.stack = 0
        self.in_string = False
        self.escape = False

    def copy(self) -> JsonShape:
        other = JsonShape()
        other.stack, other.in_string, other.escape = self.stack, self.in_string, self.escape
        return other

    def feed(self, data: bytes) -> int:
        """Advance over `data`; returns how many commas, colons and minus signs it put outside
        strings (each one means more JSON is to follow)."""
        more = 0
        for byte in data:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif byte == 0x5C:  # backslash
                    self.escape = True
                elif byte == 0x22:
                    self.in_string = False
            elif byte == 0x22:
                self.in_string = True
            elif byte in (0x7B, 0x5B):  # { [
                self.stack += 1
            elif byte in (0x7D, 0x5D):  # } ]
                self.stack = max(0, self.stack - 1)
            elif byte in (0x2C, 0x3A, 0x2D):  # , : -
                more += 1
        return more

    @property
    def depth(self) -> int:
        """Closers still needed: open containers, plus one for an open string."""
        return self.stack + (1 if self.in_string else 0)


class Grammar:
    """One request's grammar state: which tokens may come next, and whether it is complete."""

    def __init__(self, matcher: Any, token_bytes: list[bytes]) -> None:
        self._matcher = matcher
        self._token_bytes = token_bytes
        self.shape = JsonShape()

    @property
    def matcher(self) -> Any:
        return self._matcher

    def accept(self, token: int) -> bool:
        """Advance past a sampled token; False if the grammar refused it (it should not: the
        token was drawn under this grammar's mask)."""
        if 0 <= token < len(self._token_bytes):
            self.shape.feed(self._token_bytes[token])
        return bool(self._matcher.consume_token(token))

    def done(self) -> bool:
        """Nothing may follow (the JSON value is closed): the request is finished."""
        return bool(self._matcher.is_stopped())

    def accepting(self) -> bool:
        return bool(self._matcher.is_accepting())

    def error(self) -> str:
        return str(self._matcher.get_error())


class GrammarCompiler:
    """Compiles StructuredOutputs against one tokenizer. The tokenizer's conversion for
    llguidance takes about a second (for a 49k vocabulary), so it is built once, on first use."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, eos_token_ids: list[int]) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._eos = list(eos_token_ids)
        self._ll_tokenizer: Any = None
        self._token_bytes: list[bytes] | None = None
        self._structural: tuple[list[int], list[bytes]] | None = None
        self._lock = threading.Lock()
        self._executor: Any = None

    def ll_tokenizer(self) -> Any:
        with self._lock:
            if self._ll_tokenizer is None:
                self._ll_tokenizer = _ll_tokenizer(self._tokenizer, self._vocab_size, self._eos)
            return self._ll_tokenizer

    def executor(self) -> Any:
        """llguidance's thread pool for filling many rows' masks at once (the GIL is released)."""
        import llguidance

        if self._executor is None:
            self._executor = llguidance.LLExecutor()
        return self._executor

    def token_bytes(self) -> list[bytes]:
        """Every id's bytes as llguidance decodes them (ids past the tokenizer's: empty)."""
        tokenizer = self.ll_tokenizer()
        with self._lock:
            if self._token_bytes is None:
                out = []
                for i in range(self._vocab_size):
                    try:
                        out.append(bytes(tokenizer.decode_bytes([i])))
                    except Exception:  # ids past the tokenizer's vocabulary
                        out.append(b"")
                self._token_bytes = out
            return self._token_bytes

    def structural_tokens(self) -> tuple[list[int], list[bytes]]:
        """The ids (and bytes) made only of JSON punctuation, digits and spaces: the tokens
        the closing steer chooses among."""
        if self._structural is None:
            ids = [
                i
                for i, raw in enumerate(self.token_bytes())
                if raw and i not in self._eos and all(b in _STRUCTURAL for b in raw)
            ]
            self._structural = ids, [self.token_bytes()[i] for i in ids]
        return self._structural

    def compile(self, structured: StructuredOutput) -> Grammar:
        """A fresh grammar state for one request; StructuredOutputError if it cannot be built."""
        import llguidance

        schema = _schema_text(structured)
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except ValueError as err:
            raise StructuredOutputError(
                f"structured output schema cannot be compiled: {err}"
            ) from None
        tokenizer = self.ll_tokenizer()
        problem = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if problem:
            raise StructuredOutputError(
                f"structured output schema cannot be compiled: {_short(problem)}"
            )
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise StructuredOutputError(
                f"structured output schema cannot be compiled: {_short(matcher.get_error())}"
            )
        return Grammar(matcher, self.token_bytes())


_STRUCTURAL = frozenset(b'{}[],:"0123456789- ')


def _short(message: str, limit: int = 300) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _schema_text(structured: StructuredOutput) -> str:
    if structured.kind == "json_object":
        return ANY_OBJECT_SCHEMA
    if structured.kind != "json_schema":
        raise StructuredOutputError(
            f"structured.kind={structured.kind!r} is not known; allowed: json_object, json_schema"
        )
    if not structured.schema:
        raise StructuredOutputError("structured.kind='json_schema' needs a schema")
    try:
        parsed = json.loads(structured.schema)
    except ValueError as err:
        raise StructuredOutputError(f"structured.schema is not valid JSON: {err}") from None
    if isinstance(parsed, bool):  # true: anything; false: nothing can match
        if not parsed:
            raise StructuredOutputError("structured.schema is false: no value can match it")
        return "{}"
    if not isinstance(parsed, dict):
        raise StructuredOutputError(
            f"structured.schema must be a JSON object, got {type(parsed).__name__}"
        )
    return structured.schema


def _ll_tokenizer(tokenizer: Any, vocab_size: int, eos: list[int]) -> Any:
    import llguidance
    import llguidance.hf
    from transformers import PreTrainedTokenizerFast

    eos_token: int | list[int] | None = eos or None
    if isinstance(tokenizer, PreTrainedTokenizerFast):
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_token)
    sentencepiece = getattr(tokenizer, "_sp", None)
    if sentencepiece is not None:
        pieces = _PieceTokenizer(tokenizer, vocab_size, eos)
        converted = llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(pieces), n_vocab=vocab_size, eos_token=eos_token
        )
        pieces.greedy = converted.greedy_tokenize
        return converted
    raise StructuredOutputError(
        f"structured outputs need a fast (Rust) tokenizer or a SentencePiece one; this model's "
        f"tokenizer is {type(tokenizer).__name__}"
    )


class _PieceTokenizer:
    """ChatGLM2's SentencePiece tokenizer (chatglm_tokenizer.py) as llguidance's TokenizerWrapper
    wants it: every id's bytes (control and special tokens marked with a leading 0xFF byte, as
    llguidance expects) and an encode function.

    Encoding uses llguidance's own greedy tokenizer over those bytes: SentencePiece would add its
    dummy-prefix space to every fragment, and llguidance only needs some tokenization whose
    bytes are exactly the text."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos: list[int]) -> None:
        sp = tokenizer._sp
        self.eos_token_id = eos[0] if eos else tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        tokens: list[bytes] = []
        special: list[int] = []
        for i in range(vocab_size):
            if i < sp.vocab_size():
                piece = sp.id_to_piece(i)
                if sp.is_byte(i):
                    tokens.append(bytes([int(piece[3:5], 16)]))
                    continue
                if sp.is_control(i) or sp.is_unknown(i):
                    tokens.append(b"\xff" + piece.encode())
                    special.append(i)
                    continue
                tokens.append(piece.replace("\u2581", " ").encode())
            else:
                names = {v: k for k, v in getattr(tokenizer, "special_ids", {}).items()}
                name = names.get(i, f"<extra_{i}>")
                tokens.append(b"\xff" + name.encode())
                special.append(i)
        self.tokens = tokens
        self.special_token_ids = special
        self.greedy: Any = None  # set once the LLTokenizer exists

    def __call__(self, text: bytes | str) -> list[int]:
        if self.greedy is None:
            raise RuntimeError("the greedy tokenizer is set after the conversion")
        raw = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
        return list(self.greedy(raw))


def new_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    """Host buffer for `rows` masks, all tokens allowed (-1: every bit set)."""
    return torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def fill_bitmasks(
    compiler: GrammarCompiler, grammars: list[Grammar], bitmask: torch.Tensor
) -> None:
    """Each grammar's allowed next tokens into its row of `bitmask` (CPU, int32, contiguous),
    filled by llguidance's thread pool with the GIL released."""
    from llguidance.torch import fill_next_token_bitmask_par

    fill_next_token_bitmask_par(
        compiler.executor(), [(g.matcher, i) for i, g in enumerate(grammars)], bitmask
    )


_BITS = {}  # device -> [32] int32 of 1 << i


def apply_bitmask(logits: torch.Tensor, rows: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set to -inf, in place, every token a grammar forbids: row rows[i] of logits gets
    bitmask[i] (bit j of word w allows token 32*w + j; tokens past the mask are forbidden)."""
    device = logits.device
    bits = _BITS.get(device)
    if bits is None:
        bits = _BITS[device] = (1 << torch.arange(32, dtype=torch.int64)).to(device)
    words = bitmask.to(device, non_blocking=True).to(torch.int64)
    allowed = (words.unsqueeze(-1) & bits) != 0  # [rows, words, 32]
    allowed = allowed.flatten(1)
    vocab = logits.shape[-1]
    if allowed.shape[1] >= vocab:
        allowed = allowed[:, :vocab]
    else:
        pad = allowed.new_zeros((allowed.shape[0], vocab - allowed.shape[1]))
        allowed = torch.cat([allowed, pad], dim=1)
    sub = logits[rows]
    logits[rows] = sub.masked_fill(~allowed, float("-inf"))
