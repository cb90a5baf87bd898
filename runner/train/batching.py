"""Token-budget batching (`train.max_tokens_per_batch`): batches of rows of similar length, as many
rows as fit in the budget, so a batch of short texts holds many rows and one of long texts few.

The rows are sorted by length (ties in an order drawn from the seed and the epoch), cut into
batches greedily, and the batches are shuffled by (seed, epoch). The cut depends only on the
sorted lengths, so every epoch has the same number of batches (the Trainer plans its steps from it).
A batch costs rows x longest row when padded (the longest rounded up to the collator's multiple, on a GPU
8), the sum of its lengths when packed; a row longer than the budget gets a batch of its own.
"""

from __future__ import annotations


def cut_batches(sorted_lengths: list[int], max_tokens: int, packed: bool, max_rows: int | None = None,
                multiple: int = 1) -> list[int]:
    """The sizes of the batches that cut a length-sorted list greedily within the budget."""
    sizes, rows, longest, total = [], 0, 0, 0
    for length in sorted_lengths:
        longer, summed = max(longest, length), total + length
        cost = summed if packed else (rows + 1) * -(-longer // multiple) * multiple
        if rows and (cost > max_tokens or (max_rows and rows >= max_rows)):
            sizes.append(rows)
            rows, longer, summed = 0, length, length
        rows, longest, total = rows + 1, longer, summed
    if rows:
        sizes.append(rows)
    return sizes


class TokenBudgetBatchSampler:
    """A batch sampler (lists of row indices) for torch's DataLoader."""

    def __init__(self, lengths, max_tokens: int, seed: int = 0, packed: bool = False, max_rows: int | None = None,
                 multiple: int | None = None):
        import numpy as np

        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_tokens, self.seed, self.packed, self.max_rows = int(max_tokens), int(seed), packed, max_rows
        self.epoch = 0
        self.sizes = cut_batches(sorted(self.lengths.tolist()), self.max_tokens, packed, max_rows, multiple or 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def batches(self) -> list[list[int]]:
        import numpy as np

        rng = np.random.default_rng([self.seed, self.epoch])
        shuffled = rng.permutation(len(self.lengths))
        order = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
        ends = np.cumsum(self.sizes)
        out = [order[end - size:end].tolist() for size, end in zip(self.sizes, ends)]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self):
        yield from self.batches()
