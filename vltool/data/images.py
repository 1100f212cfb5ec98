"""Image paths and files: where a relative path points, opening one, and checking them (the one checker).

VPGTrans users lost runs to failed image downloads that crashed data loading hours in. Without
``--skip-bad-images`` stages call ``usable_samples`` before training: every distinct image is
opened once (in parallel processes when there are many), the missing and corrupt ones are
counted with a few examples, and the stage refuses with one line naming them. With
``--skip-bad-images`` warmup/transfer check lazily instead: training starts at once, a bad image
met while training is replaced by the next good sample, and the bad ones are counted in the
output manifest and the final log line (``vltool.data.mixture``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable
from vltool.data.workers import cpu_count
from vltool.errors import UserError


def resolve_image_path(image: str, root: str | Path | None, base_dir: Path) -> str:
    """Absolute paths stay; relative ones are under ``root`` (``--images``) or else ``base_dir``.

    ``base_dir`` is the data file's folder, so a dataset that keeps its images beside its JSON
    works without ``--images``.
    """
    path = Path(image).expanduser()
    if path.is_absolute():
        return str(path)
    return str(Path(root).expanduser() / path if root is not None else base_dir / path)


def open_image(path: str | Path) -> Any:
    """A decoded RGB ``PIL.Image`` (palette, grey and RGBA files too); bad files are a UserError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        with Image.open(path) as handle:
            return handle.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"image {path} cannot be read: {type(err).__name__}: {err}") from None


def image_problem(path: str | Path, thorough: bool = False) -> str | None:
    """None for a readable image, else ``"missing"`` or ``"corrupt (Reason)"``.

    The default check parses the header and structure (``verify``), which is fast enough for
    hundreds of thousands of files; ``thorough`` decodes every pixel and also catches files
    truncated mid-stream.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as handle:
            if thorough:
                handle.load()
            else:
                handle.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"corrupt ({type(err).__name__})"
    return None


@dataclass
class ImageReport:
    """What ``check_images`` found: distinct images checked and the bad ones, with reasons."""

    checked: int = 0
    samples_with_images: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    affected_samples: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    @property
    def bad(self) -> dict[str, str]:
        """path -> reason, missing ones first."""
        return {**{p: "missing" for p in self.missing}, **self.corrupt}

    def summary(self, what: str = "data", examples: int = 3) -> str:
        """One line: counts and a few examples, e.g. for a refusal before training."""
        if self.ok:
            return f"{what}: all {self.checked} images can be read"
        shown = "; ".join(f"{p}: {r}" for p, r in list(self.bad.items())[:examples])
        return (f"{what}: {len(self.bad)} of {self.checked} images cannot be read "
                f"({len(self.missing)} missing, {len(self.corrupt)} corrupt; {shown}), "
                f"affecting {self.affected_samples} samples")

    def as_metrics(self) -> dict[str, int]:
        """Flat counts for a manifest."""
        return {"images": self.checked, "bad_images": len(self.bad), "missing_images": len(self.missing),
                "corrupt_images": len(self.corrupt), "dropped_samples": self.affected_samples}


PARALLEL_FROM = 2000  # distinct images; fewer are checked in this process


def _problems(paths: list[str], thorough: bool) -> list[str | None]:
    """``image_problem`` of every path, in processes when there are many (a million files must not
    keep a run from starting for an hour: the check is I/O and header parsing, and scales with cores)."""
    if len(paths) < PARALLEL_FROM:
        return [image_problem(p, thorough) for p in paths]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from functools import partial

    check = partial(image_problem, thorough=thorough)
    # Spawned, not forked: a forked checker starts as a copy of this process, models loaded (its page
    # tables copied, its pages counted again by every per-process memory figure, #23). A script that
    # calls vltool without an `if __name__ == "__main__":` guard cannot spawn; it gets forked ones.
    try:
        with ProcessPoolExecutor(max_workers=max(1, cpu_count()),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(check, paths, chunksize=256))
    except BrokenProcessPool:
        with ProcessPoolExecutor(max_workers=max(1, cpu_count()),
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(check, paths, chunksize=256))


def _images_of(samples: Sequence[Sample]) -> tuple[list[str], list[int] | np.ndarray]:
    """(distinct image paths, per-sample index into them or -1); a ``SampleTable`` answers from its
    columns without building its samples (#23: a million captions, no million objects)."""
    if isinstance(samples, SampleTable):
        images, per_sample = samples.image_paths()
        return [str(p) for p in images], per_sample
    codes: dict[str, int] = {}
    per = [-1 if s.image is None or not isinstance(s.image, (str, Path)) else codes.setdefault(str(s.image), len(codes))
           for s in samples]
    return list(codes), per


def check_images(samples: Sequence[Sample], thorough: bool = False,
                 more: Sequence[Sequence[Sample]] = ()) -> ImageReport:
    """Open every distinct image of ``samples`` (and of each of ``more``) once, in parallel when many;
    text-only samples are skipped."""
    report = ImageReport()
    distinct: dict[str, None] = {}
    parts = [_images_of(part) for part in (samples, *more)]
    for paths, _ in parts:
        distinct.update(dict.fromkeys(paths))
    seen = dict(zip(distinct, _problems(list(distinct), thorough)))
    for key, problem in seen.items():
        if problem == "missing":
            report.missing.append(key)
        elif problem:
            report.corrupt[key] = problem
    for paths, per_sample in parts:
        bad = np.array([seen[p] is not None for p in paths] + [False], dtype=bool)
        codes = np.asarray(per_sample, dtype=np.int64)
        report.samples_with_images += int((codes >= 0).sum())
        report.affected_samples += int(bad[codes].sum())  # -1 picks the trailing False
    report.checked = len(seen)
    return report


def drop_bad_images(samples: Sequence[Sample], report: ImageReport) -> Sequence[Sample]:
    """The samples whose image is readable (or that have none); a ``SampleTable`` stays one."""
    bad = report.bad
    if isinstance(samples, SampleTable):
        if not bad:
            return samples
        images, per_sample = samples.image_paths()
        drop = np.array([str(p) in bad for p in images] + [False], dtype=bool)[per_sample]
        return samples.take(np.flatnonzero(~drop))
    return [s for s in samples if s.image is None or str(s.image) not in bad]


def refuse_bad_images(parts: Sequence[Sequence[Sample]], what: str = "data") -> ImageReport:
    """Check the images of several sample sequences at once; any bad one is a UserError naming a few."""
    report = check_images(parts[0], more=parts[1:]) if parts else ImageReport()
    if not report.ok:
        raise UserError(report.summary(what) + "; fix them or pass --skip-bad-images to train without them")
    return report


def usable_samples(samples: Sequence[Sample], skip_bad: bool, what: str = "data",
                   thorough: bool = False) -> tuple[Sequence[Sample], ImageReport]:
    """Check before training: refuse bad images (naming a few) or, with ``skip_bad``, drop them."""
    report = check_images(samples, thorough)
    if not report.ok and not skip_bad:
        raise UserError(report.summary(what) + "; fix them or pass --skip-bad-images to train without them")
    return drop_bad_images(samples, report), report
