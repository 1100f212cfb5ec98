"""Finding missing or corrupt images before training starts, not an hour into it.

VPGTrans users lost runs to failed image downloads crashing data loading; vltool opens every
image once up front, counts the bad ones and either refuses (naming a few) or drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vltool.data.sample import Sample
from vltool.errors import UserError


def image_problem(image: object) -> str | None:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(image, (str, Path)):
        return None
    path = Path(image)
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as handle:
            handle.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        return f"corrupt ({type(err).__name__})"
    return None


def check_images(samples: Sequence[Sample], skip_bad: bool, what: str = "data") -> tuple[list[Sample], dict]:
    """Keep samples whose image opens (or that have none); fail or drop the rest."""
    seen: dict[str, str | None] = {}
    good, bad = [], []
    for sample in samples:
        if sample.image is None:
            good.append(sample)
            continue
        key = str(sample.image)
        if key not in seen:
            seen[key] = image_problem(sample.image)
        (bad if seen[key] else good).append(sample)
    problems = {k: v for k, v in seen.items() if v}
    report = {"images": len(seen), "bad_images": len(problems), "dropped_samples": len(bad)}
    if problems and not skip_bad:
        examples = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:3])
        raise UserError(f"{what}: {len(problems)} of {len(seen)} images cannot be read ({examples}); "
                        f"fix them or pass --skip-bad-images to train without them")
    return good, report
