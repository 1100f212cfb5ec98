"""The training DataLoader: images decoded in worker processes, pinned memory, prefetch.

The loop gets its batch order from a deterministic batch sampler (``StepBatchSampler``, or the
dataset's own, e.g. a ratio mixture), and the DataLoader only turns index lists into batches:
worker ``w`` builds batches ``w, w + W, ...`` and the DataLoader hands them back in order. The
datasets and collators vltool trains on are pure functions of the indices they receive (image
augmentation draws from a generator seeded by the sample's position in the run, never from a
worker's RNG), so any worker count gives the same batches as ``num_workers=0``, and a resumed run
the same as an uninterrupted one.

``train.num_workers``: ``null``/unset means automatic: ``min(4, CPUs - 1)`` for datasets that
decode images (they set ``decodes_images = True``), 0 for in-memory tensors and text, where
worker processes only add start-up time. 0 decodes in the training process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vltool.data.heap import release_free_memory
from vltool.data.workers import auto_workers
from vltool.errors import UserError


def resolve_workers(requested: int | None, dataset: Dataset) -> int:
    if requested is not None:
        return requested
    return auto_workers() if getattr(dataset, "decodes_images", False) else 0


class _OneLineErrors:
    """Iterates a DataLoader; a UserError raised in a worker keeps its one line (not the traceback)."""

    def __init__(self, loader: DataLoader) -> None:
        self._it = iter(loader)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._it)
        except UserError as err:
            # DataLoader re-raises a worker's exception as "Caught UserError in DataLoader worker
            # process 0.\nOriginal Traceback ...\nvltool.errors.UserError: <message>".
            text = str(err).strip()
            if "Original Traceback" in text:
                last = text.splitlines()[-1]
                text = last.split("UserError: ", 1)[-1]
            raise UserError(text) from None


def make_loader(dataset: Dataset, batch_sampler: Iterable[list[Any]], collate_fn: Callable | None,
                num_workers: int | None, prefetch_factor: int = 4) -> DataLoader:
    """A DataLoader over ``batch_sampler`` with ``num_workers`` resolved (see the module docstring),
    ``pin_memory`` on CUDA machines and ``prefetch_factor`` batches in flight per worker."""
    workers = resolve_workers(num_workers, dataset)
    kwargs: dict[str, Any] = {}
    if workers:
        kwargs["prefetch_factor"] = prefetch_factor
        release_free_memory()
    return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), **kwargs)


def iterate(loader: DataLoader) -> Iterator[Any]:
    """``iter(loader)`` whose worker errors read as one line."""
    return _OneLineErrors(loader)
