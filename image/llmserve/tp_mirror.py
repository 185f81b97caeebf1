"""Tensor parallel's driver/worker protocol: every call the engine makes on rank 0's model runner
is replayed, in the same order and with the same arguments, on every other rank's runner.

Why mirror the runner and not the model: each rank holds its own shard of every layer and its own
key/value cache (for its own heads), and the runner is what keeps that cache (prefill appends
rows, keep_rows drops them, chunked prefill keeps one aside). Replaying the runner's calls keeps
every rank's cache in the same layout without knowing what the layout is, so the engine, the
scheduler and the runner itself stay unaware of tensor parallelism; the collectives inside the
sharded Linears keep the ranks in lockstep within each call.

The engine's Sequences live on rank 0 (with their streams, detokenizers, grammars and random
generators, which never leave it). Each call carries, per Sequence, only its plain fields (ints,
strings, lists of token ids, SamplingParams) that changed since the last call, and token lists
that only grew carry their new tail. Workers keep a shadow Sequence per request holding those
fields and their own device state (a chunked prefill's cache). Workers compute logits but do not
sample: rank 0's choice is the one that counts."""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llmserve.engine_api import SamplingParams
from llmserve.sampling import Choice
from llmserve.sequence import Sequence

# Runner methods that are host-side questions, not steps on the model: answered by rank 0 alone.
LOCAL_METHODS = frozenset({"generator"})
_PLAIN_SCALARS = (bool, int, float, str, SamplingParams)


class WorkerFailedError(RuntimeError):
    """A tensor-parallel rank died or could not be reached: its shards are gone."""


@dataclass
class SeqRef:
    """A Sequence on the wire: its key, the plain fields that changed, the tails of token lists
    that grew."""

    key: int
    changed: dict[str, Any] = field(default_factory=dict)
    grown: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    forget: list[int]  # keys of Sequences rank 0 no longer holds


@dataclass
class Stop:
    """Workers leave their loop (the server is shutting down)."""


def _all_ints(values: list[Any]) -> bool:
    return all(type(v) is int for v in values)


class SequenceEncoder:
    """Rank 0's side: turns the engine's Sequences into SeqRefs, remembering what each worker
    already holds."""

    def __init__(self) -> None:
        self._sent: weakref.WeakKeyDictionary[Sequence, tuple[int, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._next_key = 0
        self._forgotten: deque[int] = deque()  # appended by finalizers, from any thread
        self._fields = [f.name for f in dataclasses.fields(Sequence)]

    def take_forgotten(self) -> list[int]:
        taken = []
        while self._forgotten:  # deque's popleft and append are atomic: none is lost
            taken.append(self._forgotten.popleft())
        return taken

    def encode(self, value: Any) -> Any:
        if isinstance(value, Sequence):
            return self._encode_sequence(value)
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.encode(v) for v in value)
        if isinstance(value, dict):
            return {k: self.encode(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.cpu()
        return value

    def _encode_sequence(self, seq: Sequence) -> SeqRef:
        entry = self._sent.get(seq)
        if entry is None:
            key, self._next_key = self._next_key, self._next_key + 1
            entry = (key, {})
            self._sent[seq] = entry
            weakref.finalize(seq, self._forgotten.append, key)
        key, sent = entry
        ref = SeqRef(key)
        for name in self._fields:
            value = getattr(seq, name)
            old = sent.get(name, _MISSING)
            if type(value) is list:
                # Token lists grow by a few ids a step: check and send only the new tail.
                if type(old) is list and len(value) >= len(old) and value[: len(old)] == old:
                    if len(value) > len(old) and _all_ints(tail := value[len(old) :]):
                        ref.grown[name] = tail
                        old.extend(tail)
                    continue
                if not _all_ints(value):
                    continue  # not token ids (logprob records): each rank keeps its own
            elif not (value is None or isinstance(value, _PLAIN_SCALARS)):
                continue  # rank 0's own objects, or device state each rank keeps for itself
            elif old is not _MISSING and (old is value or old == value):
                continue
            ref.changed[name] = list(value) if type(value) is list else value
            sent[name] = list(value) if type(value) is list else value
        return ref


_MISSING = object()


class SequenceDecoder:
    """A worker's side: the shadow Sequences the SeqRefs describe."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.shadows: dict[int, Sequence] = {}

    def forget(self, keys: list[int]) -> None:
        for key in keys:
            self.shadows.pop(key, None)

    def decode(self, value: Any) -> Any:
        if isinstance(value, SeqRef):
            return self._apply(value)
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.decode(v) for v in value)
        if isinstance(value, dict):
            return {k: self.decode(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.to(self.device)
        return value

    def _apply(self, ref: SeqRef) -> Sequence:
        seq = self.shadows.get(ref.key)
        if seq is None:
            seq = _blank_sequence()
            self.shadows[ref.key] = seq
        for name, value in ref.changed.items():
            setattr(seq, name, value)
        for name, tail in ref.grown.items():
            getattr(seq, name).extend(tail)
        return seq


def _blank_sequence() -> Sequence:
    """Every field at its default (None where it has none): a worker never holds rank 0's
    stream, detokenizer or grammar."""
    seq = object.__new__(Sequence)
    for f in dataclasses.fields(Sequence):
        if f.default is not dataclasses.MISSING:
            value: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        setattr(seq, f.name, value)
    return seq


class MirroredRunner:
    """Rank 0's model runner, as the engine sees it: each public method call goes to the workers
    first, then runs here. Attributes and LOCAL_METHODS are rank 0's own."""

    def __init__(
        self,
        runner: Any,
        send: Callable[[Call | Stop], None],
        check_alive: Callable[[], None],
    ) -> None:
        self._runner = runner
        self._send = send
        self._check_alive = check_alive
        self._encoder = SequenceEncoder()
        # One call at a time on the wire, in the order the ranks run them (the engine calls from
        # one thread; shutdown may call from another).
        self.lock = threading.Lock()

    @property
    def local(self) -> Any:
        return self._runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._runner, name)
        if name.startswith("_") or name in LOCAL_METHODS or not callable(value):
            return value

        def mirrored(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self._check_alive()
                encode = self._encoder.encode
                call = Call(
                    name,
                    encode(args),
                    encode(kwargs),
                    self._encoder.take_forgotten(),
                )
                self._send(call)
                return value(*args, **kwargs)

        return mirrored


def skip_sampling(runner: Any) -> None:
    """A worker's logits are rank 0's too (the output layer gathers them); only rank 0's choice
    counts, so workers skip the pick (and its host sync) when the runner has the usual hook."""
    if hasattr(runner, "_pick"):
        runner._pick = lambda seqs, logits: [Choice(0)] * len(seqs)


def serve_calls(runner: Any, receive: Callable[[], Call | Stop], device: torch.device) -> None:
    """A worker's loop: replay rank 0's calls until it says stop. An exception ends the loop
    (the caller exits the process): rank 0 then fails fast instead of waiting in a collective
    this rank will never join."""
    decoder = SequenceDecoder(device)
    skip_sampling(runner)
    with torch.inference_mode():
        while True:
            message = receive()
            if isinstance(message, Stop):
                return
            decoder.forget(message.forget)
            args = decoder.decode(message.args)
            kwargs = decoder.decode(message.kwargs)
            getattr(runner, message.method)(*args, **kwargs)
