"""Training data mixed from several sources by ratio, as LAVIS mixes datasets, deterministically.

``--data coco:A.json@0.1 --data vg:B.json@0.2 --data wds:/laion/{00000..00999}.tar@0.7``: for
every micro-batch, one source is drawn with those probabilities (LAVIS's ``MultiIterLoader``
draws a dataset per iteration) and the whole micro-batch of every process comes from it. The
draws come from generators seeded by (run seed, draw number), never from a process RNG, so the
order is a pure function of the seed and the step: resuming recomputes it, and the position
each source had reached is stored in the checkpoint and checked on ``--resume``. Specs without
``@R`` are weighted by their sizes (a plain concatenation); giving ``@R`` to some specs but not
others is an error.

Map-style sources (caption files) are walked in a fresh seeded permutation per pass; ``wds:``
sources are streams (``vltool.data.wds``). Images are decoded and transformed in
``__getitem__``, i.e. in the DataLoader's worker processes; with ``augment`` the transform's
randomness is seeded by the sample's draw number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vltool.data.caption_text import processor
from vltool.data.sample import Sample
from vltool.data.sample_table import IndexBuilder, RowIndex
from vltool.data.vl_dataset import ImageTable, resolve_image
from vltool.data.wds import BadSample, ShardStream
from vltool.errors import UserError

BLOCK = 4096  # source draws made per generator


@dataclass
class Source:
    """One ``--data`` spec: its samples (map-style) or shards (a stream), and its ratio (None: by size)."""

    spec: str
    ratio: float | None
    samples: Sequence[Sample] | None = None  # a SampleTable for JSON sources (flat arrays, #23)
    shards: list[Path] | None = None
    size: int = 0


def mixing_weights(sources: Sequence[Source]) -> list[float]:
    given = [s.ratio is not None for s in sources]
    if any(given) and not all(given):
        missing = next(s.spec for s in sources if s.ratio is None)
        raise UserError(f"data spec {missing!r} has no @RATIO while others do; give every --data spec a ratio "
                        "(e.g. coco:A.json@0.1) or none")
    weights = [s.ratio if s.ratio is not None else float(s.size) for s in sources]
    total = sum(weights)
    if total <= 0:
        raise UserError("the data ratios add up to 0")
    return [w / total for w in weights]


class MixtureBatchSampler:
    """This process's micro-batches of keys ``(source, index or stream position, draw number)``."""

    def __init__(self, sizes: Sequence[int | None], weights: Sequence[float], names: Sequence[str], micro: int,
                 accum: int, world: int, rank: int, seed: int, total_steps: int, start_step: int = 0) -> None:
        self.sizes, self.names = list(sizes), list(names)
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.micro, self.accum, self.world, self.rank = micro, accum, world, rank
        self.seed, self.total_steps, self.start_step = seed, total_steps, start_step
        for size, name in zip(sizes, names):
            if size is not None and size < micro * world:
                raise ValueError(f"{name} has {size} samples, fewer than one micro-batch on every process "
                                 f"({micro} x {world})")

    def _block(self, block: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 999_983 + block)
        return torch.multinomial(self.weights, BLOCK, replacement=True, generator=g)

    def _uses_before(self, draw: int) -> list[int]:
        """How many micro-batches each source served before draw ``draw``."""
        counts = torch.zeros(len(self.sizes), dtype=torch.long)
        full, rest = divmod(draw, BLOCK)
        for block in range(full):
            counts += torch.bincount(self._block(block), minlength=len(self.sizes))
        if rest:
            counts += torch.bincount(self._block(full)[:rest], minlength=len(self.sizes))
        return counts.tolist()

    def state(self, step: int) -> dict[str, Any]:
        """What the checkpoint stores: micro-batches drawn and each source's position (samples read)."""
        uses = self._uses_before(step * self.accum)
        return {"draws": step * self.accum,
                "positions": {name: n * self.micro * (self.world if size is not None else 1)
                              for name, n, size in zip(self.names, uses, self.sizes)}}

    def check_state(self, saved: dict[str, Any]) -> None:
        mine = self.state(self.start_step)
        if saved != mine:
            raise UserError(f"the checkpoint's data positions {saved.get('positions')} differ from what this run's "
                            f"data gives at step {self.start_step} ({mine['positions']}): were the --data specs, "
                            "ratios or the seed changed since it was written?")

    def _perm(self, source: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + source * 7919 + epoch)
        return torch.randperm(self.sizes[source], generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        first, last = self.start_step * self.accum, self.total_steps * self.accum
        uses = self._uses_before(first)
        perms: dict[int, tuple[int, torch.Tensor]] = {}
        block = None
        for draw in range(first, last):
            if block is None or draw % BLOCK == 0:
                block = self._block(draw // BLOCK)
            s = int(block[draw % BLOCK])
            size = self.sizes[s]
            keys = []
            for j in range(self.micro):
                draw_id = (draw * self.world + self.rank) * self.micro + j
                if size is None:  # a stream: positions in this process's own stream
                    keys.append((s, uses[s] * self.micro + j, draw_id))
                    continue
                pos = (uses[s] * self.world + self.rank) * self.micro + j
                epoch, within = divmod(pos, size)
                if perms.get(s, (None,))[0] != epoch:
                    perms[s] = (epoch, self._perm(s, epoch))
                keys.append((s, int(perms[s][1][within]), draw_id))
            uses[s] += 1
            yield keys

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accum


class MixedVLData(Dataset):
    """Rows ``(pixels | image index | -1, prompt, answer)`` for keys from ``MixtureBatchSampler``.

    ``images`` is one table of the distinct images of all map-style sources (what the feature
    cache encodes); with ``use_features`` the rows carry those indices instead of pixels.
    """

    decodes_images = True

    def __init__(self, sources: Sequence[Source], preprocess, augment=None, image_root: str | None = None,
                 skip_bad: bool = False, caption_text: Callable[[str], str] | None = None) -> None:
        self.sources = list(sources)
        # the recipe's caption processing (``vltool.data.caption_text``, e.g. blip_caption), streams included
        self.caption_text = caption_text or processor("none")  # module-level functions: workers pickle them
        self.weights = mixing_weights(self.sources)
        self.preprocess, self.augment, self.skip_bad = preprocess, augment, skip_bad
        # flat arrays per source (``vltool.data.sample_table``): bytes per sample, shared by forked workers
        index = IndexBuilder(lambda image: resolve_image(image, image_root))
        keep = None if self.caption_text is processor("none") else self.caption_text  # "none": the column as read
        self.rows: list[RowIndex] = [index.rows(source.samples or [], keep) for source in self.sources]
        paths = index.images()
        self.images = ImageTable(paths, preprocess)
        # the loader starts worker processes only when there is something to decode (text-only: none)
        self.decodes_images = len(paths) > 0 or self.has_streams
        self.use_features = False
        self.bad_features: set[int] = set()  # images the feature cache could not encode
        self.bad_log: Path | None = None
        self.seed, self._streams = 0, {}
        self.rank, self.world = 0, 1

    def __len__(self) -> int:
        return sum(s.size for s in self.sources)

    @property
    def has_streams(self) -> bool:
        return any(s.shards is not None for s in self.sources)

    def batch_sampler(self, micro: int, accum: int, world: int, rank: int, seed: int, total: int,
                      start: int) -> MixtureBatchSampler:
        """Called by the training loop before its DataLoader starts workers."""
        self.seed, self.rank, self.world = seed, rank, world
        self._streams = {i: ShardStream(s.shards, rank, world, seed) for i, s in enumerate(self.sources)
                         if s.shards is not None}
        sizes = [None if s.shards is not None else len(s.samples) for s in self.sources]
        return MixtureBatchSampler(sizes, self.weights, [s.spec for s in self.sources], micro, accum, world, rank,
                                   seed, total, start)

    def _pixels(self, image: Any, draw_id: int):
        from PIL import Image

        if self.augment is None:
            return self.preprocess(image)
        if not isinstance(image, Image.Image):
            with Image.open(image) as handle:
                image = handle.convert("RGB")
        return self.augment(image, self.seed * 1_000_000_007 + draw_id)

    def _note_bad(self, what: str) -> None:
        if self.bad_log is None:
            return
        self.bad_log.mkdir(parents=True, exist_ok=True)
        with (self.bad_log / f"bad-{self.rank}-{os.getpid()}.tsv").open("a") as handle:
            handle.write(what.replace("\n", " ") + "\n")

    def __getitem__(self, key: tuple[int, int, int]):
        source, at, draw_id = key
        for attempt in range(1000):
            try:
                if source in self._streams:
                    image, caption, _ = self._streams[source].get(at + attempt)
                    return self._pixels(image, draw_id), "", self.caption_text(caption)
                index, prompt, answer = self.rows[source][(at + attempt) % len(self.rows[source])]
                if index >= 0 and self.use_features and index in self.bad_features:
                    raise OSError("unreadable when the feature cache was built")
                if index < 0 or self.use_features:
                    return index, prompt, answer
                return self._pixels(self.images.images[index], draw_id), prompt, answer
            except BadSample as err:
                problem = str(err)
            except (OSError, ValueError, SyntaxError) as err:
                problem = f"{self.images.images[index]}: {type(err).__name__}: {err}"
            if not self.skip_bad:
                raise UserError(f"cannot read {problem}; pass --skip-bad-images to skip such samples")
            self._note_bad(problem)
        raise UserError(f"{self.sources[source].spec}: 1000 bad samples in a row near position {at}")


def bad_samples(log: Path | None) -> list[str]:
    """Distinct bad samples the workers noted (see ``MixedVLData.bad_log``)."""
    if log is None or not log.is_dir():
        return []
    seen: dict[str, None] = {}
    for path in sorted(log.glob("bad-*.tsv")):
        for line in path.read_text().splitlines():
            seen.setdefault(line, None)
    return list(seen)
