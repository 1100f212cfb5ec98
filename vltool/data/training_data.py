"""Data specs -> what a stage trains and validates on; one path for VPGTrans and tune-mma (#24).

Two readings of ``--data`` / ``--val-data`` specs, shared by every stage:

- ``read_samples``: the samples of evaluation and validation specs (a flat table, #23), at most
  ``limit``, their images checked up front (bad ones refused, or dropped and counted with
  ``skip_bad``). The limit is taken before the check, so a 50-sample validation cut of a
  100,000-image set opens 50 images, not 100,000.
- ``train_sources``: the training mixture (``SPEC[@RATIO]``, ``wds:`` shards streamed) that
  ``vltool.data.mixture.MixedVLData`` draws micro-batches from. Images are checked up front unless
  bad ones are skipped; with ``skip_bad`` nothing is opened before training (a million files would
  delay the start) and bad samples met while training are replaced and counted.

``one_stream`` is tune-mma's reading of specs given without ratios: LaVIN's Mixture-of-Modality
Training shuffles text-only and image-text samples into one stream, so a batch mixes both, rather
than drawing every micro-batch from one source as a ratio mixture does.
"""

from __future__ import annotations

from collections.abc import Sequence

from vltool.data.images import refuse_bad_images, usable_samples
from vltool.data.mixture import MixedVLData, Source
from vltool.data.sample import Sample
from vltool.data.sample_table import join
from vltool.data.specs import load_spec, parse_spec, split_ratio
from vltool.data.wds import estimate_size, shard_paths
from vltool.errors import UserError


def read_samples(specs: Sequence[str], split: str, images: str | None, skip_bad: bool,
                 limit: int | None = None, what: str | None = None,
                 check: bool = True) -> tuple[Sequence[Sample], dict[str, int]]:
    """The samples of ``specs`` joined, the first ``limit`` of them, images checked; and the check's counts.

    ``check=False`` when no model reads the images (scoring saved predictions).
    """
    samples = join([load_spec(spec, split, images) for spec in specs])  # flat tables (#23)
    samples = samples[:limit] if limit else samples
    if not check:
        return samples, {}
    samples, report = usable_samples(samples, skip_bad, what or f"{split} data")
    return samples, report.as_metrics()


def train_sources(specs: Sequence[str], images: str | None, skip_bad: bool, limit: int | None = None,
                  example: str = "demo:caption") -> tuple[list[Source], dict[str, int]]:
    """The training mixture's sources and the up-front image check's counts (empty with ``skip_bad``).

    ``limit`` (``data.max_train_samples``) is spent on the map-style sources in order; ``example``
    is the spec the "no training data" error suggests.
    """
    if not specs:
        raise UserError(f"no train data: pass --data SPEC (e.g. --data {example}) or set data.train in the recipe")
    sources, left = [], limit
    for raw in specs:
        spec, ratio = split_ratio(raw)
        kind, arg = parse_spec(spec)
        if kind == "wds":
            shards = shard_paths(arg)
            sources.append(Source(spec, ratio, shards=shards, size=estimate_size(shards)))
            continue
        samples = load_spec(spec, "train", images)
        if left is not None:
            samples, left = samples[:left], max(0, left - len(samples))
        if samples:
            sources.append(Source(spec, ratio, samples=samples, size=len(samples)))
    report: dict[str, int] = {}
    if not skip_bad:
        # the sources' own tables, not one Sample object per caption (#23)
        report = refuse_bad_images([src.samples for src in sources if src.samples], "train data").as_metrics()
    return sources, report


def one_stream(sources: Sequence[Source]) -> list[Source]:
    """Map-style sources without ratios joined into one shuffled source (streams stay as they are).

    With ratios the sources are kept apart: the ratios say how often each one serves a micro-batch.
    """
    def is_plain(source: Source) -> bool:
        return source.samples is not None and source.ratio is None

    plain = [s for s in sources if is_plain(s)]
    if len(plain) < 2:
        return list(sources)
    joined = join([s.samples for s in plain])
    merged = Source("+".join(s.spec for s in plain), None, samples=joined, size=len(joined))
    return [merged, *(s for s in sources if not is_plain(s))]


def modality_counts(data: MixedVLData) -> tuple[int, int]:
    """(image-text, text-only) training samples; a ``wds:`` stream counts its estimated size as image-text."""
    text_only = sum(int((rows.image_index < 0).sum()) for rows in data.rows)
    image = sum(len(rows) for rows in data.rows) - text_only
    return image + sum(s.size for s in data.sources if s.shards is not None), text_only
