"""Deterministic, resumable, sharded batch order.

The order of samples is a pure function of (seed, epoch): each epoch draws a permutation from
its OWN ``torch.Generator`` (never the global RNG, which ``DataLoader.__iter__`` and dropout
consume), truncates it to whole optimizer steps and deals it out to the processes. Resuming at
optimizer step ``k`` therefore means skipping index lists, not replaying data, and gives the
same batches as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class StepBatchSampler:
    """Yields this process's micro-batches (lists of dataset indices), step by step.

    One optimizer step consumes ``accum`` micro-batches of ``micro`` samples on each of
    ``world`` processes, i.e. ``micro * accum * world`` samples of the permutation.
    """

    def __init__(
        self,
        dataset_size: int,
        micro: int,
        accum: int,
        world: int,
        rank: int,
        seed: int,
        total_steps: int,
        start_step: int = 0,
    ) -> None:
        self.n = dataset_size
        self.micro, self.accum, self.world, self.rank = micro, accum, world, rank
        self.seed = seed
        self.total_steps = total_steps
        self.start_step = start_step
        self.samples_per_step = micro * accum * world
        self.steps_per_epoch = max(1, self.n // self.samples_per_step)
        if self.n < self.samples_per_step:
            raise ValueError(
                f"the data has {self.n} samples, fewer than one optimizer step needs "
                f"({self.samples_per_step} = micro batch {micro} x accumulation {accum} x {world} processes)"
            )

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while step < self.total_steps:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            order = self._epoch_order(epoch)
            for s in range(in_epoch, self.steps_per_epoch):
                if step >= self.total_steps:
                    return
                chunk = order[s * self.samples_per_step : (s + 1) * self.samples_per_step]
                mine = chunk.view(self.accum, self.world, self.micro)[:, self.rank, :]
                for micro_batch in mine:
                    yield micro_batch.tolist()
                step += 1

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accum
