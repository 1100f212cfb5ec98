"""Samples held as a few flat arrays, so a dataset's index costs bytes per sample, not Python objects.

Why (#23): a list of ``Sample`` objects costs about 1 KB a caption (the dataclass, its dict, a
references list, a meta dict, four strings), i.e. over a GB for COCO + SBU, and a DataLoader
worker forked from the training process writes to every one of those objects' pages as soon as
it reads them (reference counts), so each worker ends up with its own copy. Here the same
samples are a handful of NumPy arrays and ``bytes`` blobs: one object each, whose pages nothing
writes after the build, so forked workers keep sharing them.

- ``StringColumn``: n strings as one UTF-8 blob plus n + 1 offsets.
- ``SampleTable``: a read-only ``Sequence[Sample]``; ``table[i]`` builds that ``Sample`` on
  access. Images are stored once each (COCO has five captions per image): a column of distinct
  image paths and an ``int32`` index per sample (-1: text only). ``references`` equal to
  ``[answer]`` and an empty ``meta`` cost only their offsets.

Readers of large JSON sources (COCO, VG, SBU, LLaVA, JSONL, Alpaca) return a ``SampleTable``;
``bench/json_index.py`` measures its bytes per sample at 1M entries.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from vltool.data.sample import Sample


class StringColumn(Sequence[str]):
    """Immutable strings in one blob: ``blob[offsets[i]:offsets[i + 1]]`` is string i (UTF-8)."""

    def __init__(self, blob: bytes, offsets: np.ndarray) -> None:
        self.blob, self.offsets = blob, offsets

    @classmethod
    def of(cls, strings: Iterable[str]) -> StringColumn:
        builder = StringColumnBuilder()
        for text in strings:
            builder.append(text)
        return builder.finish()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"string {index} of {n}")
        return self.blob[int(self.offsets[index]):int(self.offsets[index + 1])].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.offsets.nbytes


class StringColumnBuilder:
    """Appends strings into a growing ``bytearray`` and an ``array('q')`` of offsets."""

    def __init__(self) -> None:
        self._blob = bytearray()
        self._offsets = array("q", [0])

    def append(self, text: str) -> int:
        self._blob += text.encode("utf-8")
        self._offsets.append(len(self._blob))
        return len(self._offsets) - 2

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def finish(self) -> StringColumn:
        return StringColumn(bytes(self._blob), np.frombuffer(self._offsets, dtype=np.int64).copy())


def _json_or_empty(value: Any, empty: Any) -> str:
    return "" if value == empty else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SampleTable(Sequence[Sample]):
    """A read-only sequence of samples whose images are paths (or None); see the module docstring."""

    def __init__(self, ids: StringColumn, images: StringColumn, image_index: np.ndarray, prompts: StringColumn,
                 answers: StringColumn, references: StringColumn, meta: StringColumn) -> None:
        self.ids, self.images, self.image_index = ids, images, image_index
        self.prompts, self.answers, self.references, self.meta = prompts, answers, references, meta

    def __len__(self) -> int:
        return len(self.image_index)

    def _one(self, i: int) -> Sample:
        code = int(self.image_index[i])
        answer = self.answers[i]
        refs, meta = self.references[i], self.meta[i]
        return Sample(self.ids[i], self.images[code] if code >= 0 else None, self.prompts[i], answer,
                      json.loads(refs) if refs else [answer], json.loads(meta) if meta else {})

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> SampleTable: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample {index} of {n}")
        return self._one(index)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self._one(i)

    def take(self, indices: Iterable[int]) -> SampleTable:
        """The samples at ``indices``, as a new table."""
        builder = SampleTableBuilder()
        for i in indices:
            builder.append(self._one(int(i)))
        return builder.finish()

    def image_paths(self) -> tuple[Sequence[str], np.ndarray]:
        """(distinct image paths, per-sample index into them or -1), without building any ``Sample``."""
        return self.images, self.image_index

    @property
    def nbytes(self) -> int:
        """The bytes the table holds (arrays and blobs; a few hundred bytes of objects aside)."""
        return (self.image_index.nbytes + sum(c.nbytes for c in (self.ids, self.images, self.prompts, self.answers,
                                                                  self.references, self.meta)))

    @staticmethod
    def concat(tables: Sequence[SampleTable]) -> SampleTable:
        builder = SampleTableBuilder()
        for table in tables:
            for sample in table:
                builder.append(sample)
        return builder.finish()


class SampleTableBuilder:
    """Readers append ``Sample``s one at a time; nothing per sample is kept but bytes."""

    def __init__(self) -> None:
        self.ids, self.prompts, self.answers = StringColumnBuilder(), StringColumnBuilder(), StringColumnBuilder()
        self.references, self.meta, self.images = StringColumnBuilder(), StringColumnBuilder(), StringColumnBuilder()
        self._image_codes: dict[str, int] = {}
        self._index = array("i")

    def append(self, sample: Sample) -> None:
        image = sample.image
        if image is None:
            code = -1
        elif isinstance(image, (str, Path)):
            key = str(image)
            code = self._image_codes.get(key, -1)
            if code < 0:
                code = self._image_codes[key] = self.images.append(key)
        else:
            raise TypeError(f"a SampleTable holds image paths, not {type(image).__name__}")
        self._index.append(code)
        self.ids.append(str(sample.id))
        self.prompts.append(sample.prompt)
        self.answers.append(sample.answer)
        self.references.append(_json_or_empty(list(sample.references), [sample.answer]))
        self.meta.append(_json_or_empty(dict(sample.meta), {}))

    def __len__(self) -> int:
        return len(self._index)

    def finish(self) -> SampleTable:
        index = np.frombuffer(self._index, dtype=np.int32).copy() if len(self._index) else np.zeros(0, np.int32)
        self._image_codes.clear()
        return SampleTable(self.ids.finish(), self.images.finish(), index, self.prompts.finish(),
                           self.answers.finish(), self.references.finish(), self.meta.finish())


def compact(samples: Sequence[Sample]) -> Sequence[Sample]:
    """``samples`` as one ``SampleTable`` when every image is a path (or None), else unchanged.

    Several tables (or a list of readers' outputs) are joined into one; samples holding in-memory
    images (the demo world's PIL images, plugins) stay a list.
    """
    if isinstance(samples, SampleTable):
        return samples
    builder = SampleTableBuilder()
    try:
        for sample in samples:
            builder.append(sample)
    except TypeError:
        return samples
    return builder.finish()


class RowIndex(Sequence[tuple[int, str, str]]):
    """Training rows ``(image index or -1, prompt, answer)`` in flat arrays (see ``IndexBuilder``)."""

    def __init__(self, image_index: np.ndarray, prompts: StringColumn, answers: StringColumn) -> None:
        self.image_index, self.prompts, self.answers = image_index, prompts, answers

    def __len__(self) -> int:
        return len(self.image_index)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return int(self.image_index[i]), self.prompts[i], self.answers[i]

    @property
    def nbytes(self) -> int:
        return self.image_index.nbytes + self.prompts.nbytes + self.answers.nbytes


class IndexBuilder:
    """One table of the distinct images of several sample sequences, and each sequence's ``RowIndex``.

    Images are keyed by ``str(image)`` after ``resolve`` (an ``--images`` root). Paths end up in a
    ``StringColumn``; in-memory images (the demo world's PIL images) keep a plain list. A
    ``SampleTable`` is indexed through its distinct images, without building its samples.
    """

    def __init__(self, resolve: Any = None) -> None:
        self.resolve = resolve or (lambda image: image)
        self._codes: dict[str, int] = {}
        self._paths = StringColumnBuilder()
        self._objects: list[Any] | None = None

    def _code(self, image: Any) -> int:
        image = self.resolve(image)
        key = str(image)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self._codes)
            if self._objects is None and not isinstance(image, (str, Path)):
                self._objects = list(self._paths.finish())
            if self._objects is None:
                self._paths.append(key)
            else:
                self._objects.append(image)
        return code

    def rows(self, samples: Sequence[Sample], answer: Any = None) -> RowIndex:
        """``samples`` as rows; ``answer`` maps each answer (e.g. the recipe's caption processing)."""
        if isinstance(samples, SampleTable):
            images, per_row = samples.image_paths()
            codes = np.array([self._code(path) for path in images] + [-1], dtype=np.int32)
            index = codes[per_row]  # -1 picks the trailing -1
            answers = samples.answers if answer is None else StringColumn.of(answer(a) for a in samples.answers)
            return RowIndex(index, samples.prompts, answers)
        index = array("i")
        prompts, answers = StringColumnBuilder(), StringColumnBuilder()
        for sample in samples:
            index.append(-1 if sample.image is None else self._code(sample.image))
            prompts.append(sample.prompt)
            answers.append(sample.answer if answer is None else answer(sample.answer))
        as_array = np.frombuffer(index, dtype=np.int32).copy() if len(index) else np.zeros(0, np.int32)
        return RowIndex(as_array, prompts.finish(), answers.finish())

    def images(self) -> Sequence[Any]:
        """The distinct images, in code order."""
        self._codes.clear()
        return self._objects if self._objects is not None else self._paths.finish()


def join(parts: Sequence[Sequence[Sample]]) -> Sequence[Sample]:
    """Several readers' outputs as one sequence: the table itself for one, one table for several
    tables, else a list (e.g. demo samples holding in-memory images)."""
    if len(parts) == 1:
        return parts[0]
    if parts and all(isinstance(p, SampleTable) for p in parts):
        return SampleTable.concat(parts)
    return [s for part in parts for s in part]


def answers(samples: Sequence[Sample]) -> Sequence[str]:
    """The answers of ``samples``; a table's column as it is."""
    return samples.answers if isinstance(samples, SampleTable) else [s.answer for s in samples]
