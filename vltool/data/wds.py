"""``wds:PATTERN``: WebDataset tar shards (LAION-COCO as img2dataset writes it), read as a seekable stream.

A shard is a plain ``.tar`` whose members are grouped into samples by key: ``KEY.jpg`` (or
``.jpeg``/``.png``/``.webp``) and the caption in ``KEY.txt`` or ``KEY.json`` (``"caption"``).
``PATTERN`` uses WebDataset's brace notation: ``/laion/{00000..00999}.tar``, ``{a,b}``.

Why not the ``webdataset`` package's pipeline: it splits shards between DataLoader workers, so
the sample order depends on the worker count, and it cannot seek, so resuming means replaying
the stream. Here the tar headers of a shard are indexed when the shard is first opened (header
reads and seeks only, no image bytes), which gives random access to its samples. Then:

- shards are split between processes (process ``r`` of ``W`` reads shards ``r, r+W, ...``);
  each process's stream visits its shards in a seeded order per epoch, and the samples of a shard
  in a seeded order;
- a sample is addressed by its position in that stream, so the batch sampler decides what each
  batch holds and any number of DataLoader workers (each keeping its own forward-moving cursor,
  skipping the other workers' samples by their headers) gives the same batches;
- the position is a pure function of the optimizer step and is stored in the checkpoint, so
  ``--resume`` seeks back to it instead of replaying data.

Missing images, unreadable images and samples without a caption are errors naming the shard and
key, or, with ``--skip-bad-images``, counted and replaced by the next good sample.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch

from vltool.errors import UserError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a{00..02}b`` -> a00b a01b a02b; ``{x,y}`` -> x y (nested and repeated groups too)."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[end], 0)
        if depth == 0:
            break
    else:
        raise UserError(f"wds pattern {pattern!r} has an unclosed '{{'")
    body, head, tail = pattern[start + 1:end], pattern[:start], pattern[end + 1:]
    match = _RANGE.fullmatch("{" + body + "}")
    if match:
        lo, hi = match.group(1), match.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options, depth, part = [], 0, ""
        for char in body:
            if char == "," and depth == 0:
                options.append(part)
                part = ""
                continue
            depth += {"{": 1, "}": -1}.get(char, 0)
            part += char
        options.append(part)
    return [x for option in options for x in expand_braces(head + option + tail)]


def shard_paths(pattern: str) -> list[Path]:
    """The shards a pattern names; every one must exist (a missing one is named)."""
    if not pattern.strip():
        raise UserError("data spec 'wds:' names no shards; expected wds:/path/{00000..00099}.tar")
    paths = [Path(p).expanduser() for p in expand_braces(pattern)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"wds:{pattern}: {len(missing)} of {len(paths)} shards do not exist (e.g. {missing[0]})")
    compressed = [p for p in paths if not p.name.endswith(".tar")]
    if compressed:
        raise UserError(f"wds shard {compressed[0]} is not a plain .tar (compressed shards cannot be seeked); "
                        "decompress them first")
    return paths


@dataclass
class Member:
    offset: int
    size: int


def index_shard(path: Path) -> list[tuple[str, dict[str, Member]]]:
    """(key, {extension: member}) per sample in file order, from the tar headers only."""
    samples: dict[str, dict[str, Member]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name = info.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                if key and ext:
                    samples.setdefault(info.name[: len(info.name) - len(name)] + key, {})[ext.lower()] = Member(
                        info.offset_data, info.size)
    except (tarfile.TarError, OSError) as err:
        raise UserError(f"wds shard {path} cannot be read as a tar file: {err}") from None
    return list(samples.items())


class BadSample(Exception):
    """A sample that cannot be used; the message names the shard and key."""


class ShardStream:
    """One process's stream over its share of the shards; ``get(position)`` -> (PIL image, caption).

    Keeps a cursor (the current shard's index and open file), so forward reads are cheap; only
    sample counts of earlier shards are remembered.
    """

    def __init__(self, shards: list[Path], rank: int, world: int, seed: int) -> None:
        if len(shards) < world:
            raise UserError(f"{len(shards)} wds shards cannot be split between {world} processes; "
                            "give at least one shard per process")
        self.shards = shards[rank::world]
        self.seed = seed
        self._spans: list[tuple[int, int, int]] = []  # (start position, epoch, slot) of visited shards
        self._current: tuple[int, list, object] | None = None  # (span index, order, file)
        self._pid = os.getpid()

    def _shard_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 7_368_787 + epoch)
        return torch.randperm(len(self.shards), generator=g).tolist()

    def _open_span(self, span: int) -> tuple[list, object]:
        _, epoch, slot = self._spans[span]
        path = self.shards[self._shard_order(epoch)[slot]]
        samples = index_shard(path)
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch * 100_003 + slot)
        order = [samples[i] for i in torch.randperm(len(samples), generator=g).tolist()]
        return order, open(path, "rb")

    def _locate(self, position: int) -> tuple[int, int]:
        if self._current is not None and self._pid != os.getpid():
            self._current = None  # a forked worker: never share the parent's file offset
        self._pid = os.getpid()
        if not self._spans:
            self._spans.append((0, 0, 0))
        span = len(self._spans) - 1
        while True:
            if self._current is None or self._current[0] != span:
                if self._current is not None:
                    self._current[2].close()
                order, handle = self._open_span(span)
                self._current = (span, order, handle)
            start = self._spans[span][0]
            count = len(self._current[1])
            if position < start:  # moving backwards (a new iterator): find the earlier span
                span = max(i for i, s in enumerate(self._spans) if s[0] <= position)
                continue
            if position < start + count:
                return span, position - start
            if span + 1 == len(self._spans):
                _, epoch, slot = self._spans[span]
                slot += 1
                if slot == len(self.shards):
                    epoch, slot = epoch + 1, 0
                    if start + count == self._spans[0][0] and count == 0:
                        raise UserError("wds shards hold no samples")
                self._spans.append((start + count, epoch, slot))
            span += 1

    def where(self, position: int) -> str:
        span, offset = self._locate(position)
        _, epoch, slot = self._spans[span]
        return f"{self.shards[self._shard_order(epoch)[slot]]} {self._current[1][offset][0]}"

    def get(self, position: int):
        from PIL import Image

        _, offset = self._locate(position)
        key, members = self._current[1][offset]
        handle = self._current[2]
        where = f"{handle.name} sample {key}"
        image = next((members[e] for e in IMAGE_EXTS if e in members), None)
        if image is None:
            raise BadSample(f"{where}: no image (.jpg/.png/.webp)")
        caption = None
        if "txt" in members:
            caption = self._read(handle, members["txt"]).decode("utf-8", "replace").strip()
        elif "json" in members:
            try:
                caption = json.loads(self._read(handle, members["json"])).get("caption")
            except (ValueError, AttributeError):
                caption = None
        if not caption:
            raise BadSample(f"{where}: no caption (.txt or .json 'caption')")
        try:
            with Image.open(io.BytesIO(self._read(handle, image))) as handle_img:
                return handle_img.convert("RGB"), caption, where
        except (OSError, ValueError, SyntaxError) as err:
            raise BadSample(f"{where}: corrupt image ({type(err).__name__})") from None

    @staticmethod
    def _read(handle, member: Member) -> bytes:
        handle.seek(member.offset)
        return handle.read(member.size)

    def __getstate__(self) -> dict:  # a worker opens its own files
        return {**self.__dict__, "_current": None}


def estimate_size(shards: list[Path]) -> int:
    """Samples in all shards, estimated from the first one (indexing all would block the start)."""
    return max(1, len(index_shard(shards[0])) * len(shards))


def first_captions(shards: list[Path], limit: int = 20000) -> list[str]:
    """Captions of the first shard(s), e.g. to fit the word converter when all data is in shards."""
    out: list[str] = []
    for path in shards:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(".txt"):
                    out.append(tar.extractfile(info).read().decode("utf-8", "replace").strip())
                    if len(out) >= limit:
                        return out
    return out
