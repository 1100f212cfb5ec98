"""Images for generation, decoded and preprocessed in DataLoader workers ahead of the model.

``vltool eval`` and ``vltool predict`` read every image once, a batch at a time; with workers the
next batches decode while the model generates the current one, and nothing is kept after its
batch. A bad image is still one line: the worker returns the ``UserError`` and the main process
raises it (a worker's exception would otherwise arrive wrapped in its traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vltool.data.sample import Sample
from vltool.errors import UserError

Preprocess = Callable[[Any], torch.Tensor]


class _Chunks(Dataset):
    def __init__(self, samples: Sequence[Sample], chunks: Sequence[Sequence[int]], preprocess: Preprocess) -> None:
        self.samples, self.chunks, self.preprocess = samples, chunks, preprocess

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> list[torch.Tensor | None] | UserError:
        try:
            return [None if self.samples[i].image is None else self.preprocess(self.samples[i].image)
                    for i in self.chunks[index]]
        except UserError as err:
            return err


def image_chunks(samples: Sequence[Sample], chunks: Sequence[Sequence[int]], preprocess: Preprocess,
                 workers: int = 0) -> Iterator[list[torch.Tensor | None]]:
    """For each chunk of sample indices, its preprocessed images (None for text-only samples), in order."""
    dataset = _Chunks(samples, chunks, preprocess)
    if workers <= 0 or len(chunks) < 2:
        items: Any = (dataset[i] for i in range(len(dataset)))
    else:
        items = DataLoader(dataset, batch_size=None, num_workers=min(workers, len(chunks)),
                           pin_memory=torch.cuda.is_available(), prefetch_factor=2)
    for item in items:
        if isinstance(item, UserError):
            raise item
        yield item
