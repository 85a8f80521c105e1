"""An example of a user's own chaos workload (``workload.kind =
"lineagerun.chaos.example_workload:word_count"``, see chaos/rt-user-module.toml).

A user workload is any importable ``function(**params)`` that runs a job on
the connected cluster and returns a value: the runner calls it once before
the faults (the expected value) and then repeatedly under faults; every
call must return the same value. Remote functions it uses must be
importable by the workers (module level in an importable module)."""

from __future__ import annotations

import collections

import lineagerun

WORDS = ("lineage", "actor", "task", "object", "node", "replica", "chaos", "proxy")


@lineagerun.remote
def count_words(seed: int, chunk: int, words: int) -> dict[str, int]:
    counts = collections.Counter(WORDS[(seed * 7919 + chunk * 104729 + i * 31) % len(WORDS)] for i in range(words))
    return dict(counts)


@lineagerun.remote
def merge(*counts: dict[str, int]) -> dict[str, int]:
    total: collections.Counter = collections.Counter()
    for part in counts:
        total.update(part)
    return dict(sorted(total.items()))


def word_count(words: int = 1000, chunks: int = 8, seed: int = 0) -> dict[str, int]:
    parts = [count_words.remote(seed, chunk, words) for chunk in range(chunks)]
    return lineagerun.get(merge.remote(*parts), timeout=90)
