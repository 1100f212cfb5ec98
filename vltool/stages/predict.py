"""``vltool predict``: caption images or answer prompts with any model ``vltool eval`` accepts.

Requests come from one or more images (``--image IMG``, repeatable), every image file in a folder
(``--image-dir DIR``, sorted by name, not recursive; ``--images``, its old name, still works
with a note: everywhere else ``--images`` is the root of relative image paths), a JSON Lines
file of ``{"image"?, "prompt"?, "id"?}`` requests (``--requests FILE``; other keys such as ``answer`` are ignored, so an eval
``jsonl:`` file works as is), or just ``--prompt`` for a text-only question. ``--prompt`` is the
prompt of every image (and the default for request lines without one); the empty prompt
captions, as in BLIP-2 / VPGTrans pre-training. Prompts are passed as written: for VQA use the
training format, e.g. ``Question: what colour is the circle? Answer:``.

The model is loaded by eval's ``load_predictor`` (vpg artifacts, adapters artifacts, merged
folders, HF BLIP-2 folders, aliases) and generates with the same ``Predictor.generate``, so a
prediction here is exactly what ``vltool eval`` scores for the same input and settings. An alias
that means a BLIP-2 model as a source and a plain LM as a target (``opt2.7b``) is the BLIP-2 model
when there are images, the LM for text-only prompts. Images
are opened (fully decoded) before the model is loaded: missing or corrupt ones are one error
naming them, or are dropped with ``skip_bad_images``.

The CLI prints the text alone for one request, ``id<TAB>prediction`` lines for several (ids are
image file names, or the request lines' ``id`` / line numbers), and with ``--json`` one
``{"id", "image", "prompt", "prediction"}`` object a line. Under ``accelerate launch`` the
requests are shared out across processes as eval's are, and printed once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vltool.config.schema import EvalSection
from vltool.data.images import check_images, drop_bad_images, resolve_image_path
from vltool.data.sample import Sample
from vltool.data.workers import auto_workers
from vltool.errors import UserError
from vltool.eval.predictors import GenerationSettings, MMAPredictor, load_predictor
from vltool.sources.aliases import names_alias, resolve_alias
from vltool.stages.evaluate import sharded
from vltool.training.processes import process_state
from vltool.training.progress import NullReporter, Reporter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Prediction:
    """One answered request: what ``--json`` prints a line of."""

    id: str
    image: str | None
    prompt: str
    prediction: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _image_file(spec: str | Path, flag: str) -> str:
    path = Path(spec).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; pass --image-dir {path} to predict on every image in it")
    return str(path)


def images_in(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise UserError(f"--image-dir {path} does not exist")
    if not path.is_dir():
        raise UserError(f"--image-dir {path} is not a folder; pass a single image as --image {path}")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise UserError(f"--image-dir {path} has no image files ({', '.join(IMAGE_SUFFIXES)})")
    return found


def _rows(path: Path):
    """(line number, object) for every non-blank line of a requests file."""
    if path.is_dir():
        raise UserError(f"--requests {path} is a folder; pass a JSON Lines file (or use --image-dir {path})")
    if not path.is_file():
        raise UserError(f"requests file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err.reason}); expected JSON Lines requests") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not valid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number}: expected an object like "
                            f'{{"image": "cat.jpg", "prompt": "..."}}, found a {type(row).__name__}')
        yield number, row


def read_requests(path: str | Path, default_prompt: str | None) -> list[Sample]:
    """``{"image"?, "prompt"?, "id"?}`` lines; a relative image is next to the file; id = line number."""
    path = Path(path).expanduser()
    samples = []
    for number, row in _rows(path):
        where = f"{path} line {number}"
        image, prompt = row.get("image"), row.get("prompt", default_prompt)
        if image is not None and not isinstance(image, str):
            raise UserError(f"{where}: 'image' must be a path string or null, found {type(image).__name__}")
        if prompt is not None and not isinstance(prompt, str):
            raise UserError(f"{where}: 'prompt' must be a string, found {type(prompt).__name__}")
        if not image and prompt is None:
            raise UserError(f"{where}: a request needs an 'image', a 'prompt' or both (or pass --prompt)")
        image = resolve_image_path(image, None, path.parent) if image else None
        samples.append(Sample(str(row.get("id", number)), image, prompt or "", ""))
    if not samples:
        raise UserError(f"requests file {path} has no requests (expected JSON lines like "
                        f'{{"image": "cat.jpg", "prompt": "Question: ... Answer:"}})')
    return samples


def collect_requests(images: Sequence[str] = (), images_dir: str | Path | None = None,
                     requests: str | Path | None = None, prompt: str | None = None) -> list[Sample]:
    """The requests one ``predict`` call answers, from exactly one kind of input."""
    given = [flag for flag, value in (("--image", images), ("--image-dir", images_dir), ("--requests", requests))
             if value]
    if len(given) > 1:
        raise UserError(f"give one of --image, --image-dir and --requests, not {' and '.join(given)}")
    if requests:
        return read_requests(requests, prompt)
    if images_dir:
        files = images_in(images_dir)
        return [Sample(p.name, str(p), prompt or "", "") for p in files]
    if images:
        paths = [_image_file(image, "--image") for image in images]
        return [Sample(Path(p).name, p, prompt or "", "") for p in paths]
    if prompt is None:
        raise UserError("nothing to predict: give --image IMG, --image-dir DIR or --requests FILE.jsonl "
                        "(with --prompt TEXT to ask a question; no prompt captions), or --prompt alone "
                        "for a text-only answer")
    return [Sample("prompt", None, prompt, "")]


def usable(samples: list[Sample], skip_bad_images: bool, reporter: Reporter) -> list[Sample]:
    """Every image decoded once up front: refuse bad ones (naming a few) or drop them."""
    report = check_images(samples, thorough=True)
    if report.ok:
        return samples
    if not skip_bad_images:
        raise UserError(report.summary("predict") + "; fix them or pass --skip-bad-images to skip them")
    kept = drop_bad_images(samples, report)
    if not kept:
        raise UserError(report.summary("predict") + "; nothing left to predict")
    reporter.log(f"skipping {len(samples) - len(kept)} requests: " + report.summary("predict"))
    return kept


def _model_for(model: str, samples: Sequence[Sample]) -> str:
    """An alias that names both a BLIP-2 source and a plain LM (``opt2.7b``) means the BLIP-2 for images."""

    if any(s.image is not None for s in samples) and names_alias(model, "source") and names_alias(model, "target"):
        return str(resolve_alias(model, "source", "MODEL"))
    return model


def run(model: str, images: Sequence[str] = (), images_dir: str | Path | None = None,
        requests: str | Path | None = None, prompt: str | None = None, max_new_tokens: int | None = None,
        num_beams: int | None = None, batch_size: int | None = None, skip_bad_images: bool = False,
        reporter: Reporter | None = None) -> list[Prediction]:
    """Answer every request with ``model``; the predictions come back in request order.

    Generation settings left as None are ``EvalSection``'s defaults, so predict and ``vltool eval``
    agree without a second copy of them.
    """

    reporter = reporter or NullReporter()
    defaults = EvalSection()
    max_new_tokens = defaults.max_new_tokens if max_new_tokens is None else max_new_tokens
    num_beams = defaults.num_beams if num_beams is None else num_beams
    batch_size = defaults.batch_size if batch_size is None else batch_size
    for name, value in (("--max-new-tokens", max_new_tokens), ("--num-beams", num_beams),
                        ("--batch-size", batch_size)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    samples = usable(collect_requests(images, images_dir, requests, prompt), skip_bad_images, reporter)

    settings = GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                  workers=auto_workers())
    predictor = load_predictor(_model_for(model, samples))
    if isinstance(predictor, MMAPredictor) and num_beams > 1:
        raise UserError(f"{model} is an MM-Adapter (LaVIN-layout) model, which decodes greedily; "
                        f"drop --num-beams {num_beams}")
    if predictor.blip2 is None and any(s.image is not None for s in samples):
        raise UserError(f"{model} is a text-only model and cannot read images; give a vpg or adapters "
                        f"artifact, a merged folder or a BLIP-2 model, or ask with --prompt alone")
    # as eval: the GPU when there is one; under `accelerate launch` the requests are shared out
    state = process_state()
    predictor.to(state.device)
    reporter.start(f"predict {Path(model).name}", len(samples))
    texts = sharded(state, samples, lambda part: predictor.generate(part, settings, progress=reporter.update))
    reporter.finish()
    return [Prediction(s.id, None if s.image is None else str(s.image), s.prompt, t)
            for s, t in zip(samples, texts)]
