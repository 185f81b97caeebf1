"""The paged KV cache's bookkeeping: a pool of fixed-size blocks, each sequence's block table,
reference counts, and the prefix cache over full blocks of tokens.

Pure Python, no tensors: the scheduler asks it whether a request fits (admission and preemption
are decided by free blocks), the model runner only reads the block tables it hands out.

Prefix caching (vLLM's automatic prefix caching): every full block of a request's context has a
chained hash, sha256(parent block's hash + the block's token ids), so one hash names the whole
prefix up to and including that block. Once a prompt's blocks are written they are registered
under those hashes, and when a request leaves or is preempted so are the full blocks of what it
generated (a chat's next turn repeats the answer, a recompute repeats it all). A later request
with the same leading blocks takes them (reference count + 1) and prefills only the rest. A
block whose last user leaves stays registered in the free list: free blocks are handed out
least recently freed first, unregistered ones before registered ones, and a registered block
loses its hash only when it is handed out again (LRU eviction). sha256 rather than Python's
hash: prompts are user input, and a crafted collision would make one user's request read
another's keys and values (vLLM switched for the same reason)."""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

BlockHash = bytes


class BlockPoolExhaustedError(RuntimeError):
    """More blocks were asked for than are free (the scheduler checks before it asks)."""


def block_hashes(tokens: Sequence[int], block_size: int, known: list[BlockHash]) -> list[BlockHash]:
    """The chained hashes of every full block of `tokens`, extending `known` (the hashes already
    computed for a shorter context of the same sequence)."""
    hashes = list(known)
    for start in range(len(hashes) * block_size, len(tokens) - block_size + 1, block_size):
        parent = hashes[-1] if hashes else b""
        chunk = array("q", tokens[start : start + block_size]).tobytes()
        hashes.append(hashlib.sha256(parent + chunk).digest())
    return hashes


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks={num_blocks}, block_size={block_size}: both must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._refs = [0] * num_blocks
        # Blocks nobody holds, in the order they are handed out (first = next): unregistered
        # ones at the front, registered ones behind them, least recently freed first.
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self._by_hash: dict[BlockHash, int] = {}
        self._hash_of: dict[int, BlockHash] = {}
        # Prefix-cache counters in tokens, as vLLM's prefix_cache_queries / _hits.
        self.queried_tokens = 0
        self.hit_tokens = 0

    # ------------------------------------------------------------------ counts
    @property
    def free_blocks(self) -> int:
        """Blocks that can be handed out now (registered free ones included: they are evicted)."""
        return len(self._free)

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    # ------------------------------------------------------------------ prefix cache
    def cached_prefix(self, hashes: list[BlockHash], tokens: int) -> list[int]:
        """The registered blocks of the longest cached prefix of a context of `tokens` tokens
        whose full blocks hash to `hashes`. At least one token is always left to compute: its
        logits give the request's next token."""
        if not self.prefix_caching:
            return []
        hit: list[int] = []
        for block_hash in hashes[: (tokens - 1) // self.block_size]:
            block = self._by_hash.get(block_hash)
            if block is None:
                break
            hit.append(block)
        return hit

    def can_allocate(self, new_blocks: int, reused: Sequence[int] = ()) -> bool:
        """Whether `new_blocks` fresh blocks can be handed out once `reused` (cached blocks, some
        of them perhaps free) are taken."""
        reused_free = sum(1 for b in reused if b in self._free)
        return new_blocks <= len(self._free) - reused_free

    def allocate(self, count: int, reused: Sequence[int] = ()) -> list[int]:
        """`reused` blocks (reference + 1) followed by `count` fresh ones, as a block table."""
        if not self.can_allocate(count, reused):
            raise BlockPoolExhaustedError(
                f"{count} blocks asked for, {len(self._free)} free of {self.num_blocks}"
            )
        for block in reused:
            self._take(block)
        fresh = []
        for _ in range(count):
            block = next(iter(self._free))
            self._take(block)
            self._forget(block)  # evicted: its old contents are about to be overwritten
            fresh.append(block)
        return [*reused, *fresh]

    def register(self, table: list[int], hashes: list[BlockHash]) -> None:
        """The blocks of `table` whose tokens are written (the first len(hashes)) become
        reusable under their hashes. A hash already registered keeps its first block."""
        if not self.prefix_caching:
            return
        for block, block_hash in zip(table, hashes, strict=False):
            if block in self._hash_of or block_hash in self._by_hash:
                continue
            self._by_hash[block_hash] = block
            self._hash_of[block] = block_hash

    def count_query(self, tokens: int, hit_blocks: int) -> None:
        self.queried_tokens += tokens
        self.hit_tokens += hit_blocks * self.block_size

    # ------------------------------------------------------------------ release
    def free(self, table: list[int]) -> None:
        """Drop one reference to each block of `table`. Released blocks go to the back of the
        free list in reverse order, so a sequence's last blocks (the least shared part of a
        prefix) are evicted before its first; unregistered ones are reused first."""
        for block in reversed(table):
            self._refs[block] -= 1
            if self._refs[block] < 0:
                raise RuntimeError(f"block {block} freed more often than it was allocated")
            if self._refs[block] == 0:
                self._free[block] = None
                if block not in self._hash_of:
                    self._free.move_to_end(block, last=False)

    def clear_prefix_cache(self) -> None:
        """Forget every registered block (their contents may no longer be trusted)."""
        self._by_hash.clear()
        self._hash_of.clear()

    # ------------------------------------------------------------------ internals
    def _take(self, block: int) -> None:
        if self._refs[block] == 0:
            del self._free[block]
        self._refs[block] += 1

    def _forget(self, block: int) -> None:
        block_hash = self._hash_of.pop(block, None)
        if block_hash is not None:
            del self._by_hash[block_hash]
