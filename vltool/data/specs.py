"""Data SPECs: ``KIND:ARG[,ARG]`` strings naming a dataset, e.g. ``coco:train.json``, ``demo:caption``.

Every stage and ``vltool eval`` take the same strings, so a registry maps each kind to a reader
``(arg, split, images) -> list[Sample]``; the demo world (or a plugin) adds kinds with
``register_kind``. ``split`` matters to datasets that hold several (``scienceqa``, ``demo``);
single-file kinds are already one split and ignore it. ``images`` is the ``--images`` root
relative image paths are under.

Kinds shipped: ``coco:KARPATHY_JSON``, ``vg:JSON`` and ``sbu:JSON`` (LAVIS caption lists),
``wds:SHARDS`` (WebDataset tars, streamed by warmup/transfer), ``vqav2:QUESTIONS[,ANNOTATIONS]``
(OK-VQA's official files have the same shape), ``gqa:QUESTIONS``,
``scienceqa:DIR``, ``cc_sbu_align:DIR`` (MiniGPT-4's aligned set), ``llava:JSON``, ``alpaca:JSON``
and ``jsonl:PATH``; plugins (``vltool.plugins``)
add more, e.g. the demo world's ``demo:caption|vqa|sqa|text``. Each kind names its metric family.

Training data of warmup/transfer may end in ``@RATIO`` (``coco:A.json@0.1``): the sampling
weight of that source in the mixture (``vltool.data.mixture``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from vltool.data.alpaca import read_alpaca
from vltool.data.captions import read_caption_list
from vltool.data.cc_sbu_align import read_cc_sbu_align
from vltool.data.coco import read_coco
from vltool.data.gqa import read_gqa
from vltool.data.jsonl import read_jsonl
from vltool.data.llava import read_llava
from vltool.data.sample import Sample
from vltool.data.scienceqa import read_scienceqa
from vltool.data.vqav2 import read_vqav2_spec
from vltool.errors import UserError
from vltool.plugins import load_plugins

Reader = Callable[[str, str, str | None], list[Sample]]
Family = str | Callable[[str], str]
FAMILIES = ("caption", "vqa", "sqa", "text")
READERS: dict[str, Reader] = {}
KIND_FAMILY: dict[str, Family] = {}


def register_kind(name: str, reader: Reader, family: Family) -> None:
    """``name:ARG`` specs load through ``reader(arg, split, images)`` and are scored as ``family``
    (caption | vqa | sqa | text, or a function of ARG giving one); a later call replaces."""
    if not name or ":" in name or "," in name:
        raise ValueError(f"data kind {name!r} must be a plain word")
    if isinstance(family, str) and family not in FAMILIES:
        raise ValueError(f"metric family {family!r} is not one of {FAMILIES}")
    READERS[name] = reader
    KIND_FAMILY[name] = family


def known_kinds() -> list[str]:
    load_plugins()
    return sorted(READERS)


def family_of(kind: str, arg: str = "") -> str | None:
    """The metric family of ``kind:arg``, None for an unknown kind."""
    load_plugins()
    family = KIND_FAMILY.get(kind)
    return family(arg) if callable(family) else family


def parse_spec(spec: str) -> tuple[str, str]:
    """``"kind:arg"`` -> (kind, arg); an unknown kind names the known ones."""
    kind, sep, arg = spec.partition(":")
    if not sep:
        raise UserError(f"data spec {spec!r} must look like KIND:ARG (e.g. coco:train.json, demo:caption); "
                        f"kinds: {', '.join(known_kinds())}")
    load_plugins()
    if kind not in READERS:
        raise UserError(f"data spec {spec!r}: unknown kind {kind!r}; expected one of {', '.join(known_kinds())}")
    return kind, arg


_RATIO = re.compile(r"@([^@/:]*)$")


def split_ratio(spec: str) -> tuple[str, float | None]:
    """``"coco:A.json@0.1"`` -> ("coco:A.json", 0.1); no ``@`` -> (spec, None); a bad ratio is a UserError."""
    match = _RATIO.search(spec)
    if not match:
        return spec, None
    try:
        ratio = float(match.group(1))
    except ValueError:
        ratio = -1.0
    if not 0 < ratio < float("inf"):
        raise UserError(f"data spec {spec!r}: the ratio after '@' must be a positive number (e.g. @0.2), "
                        f"found {match.group(1)!r}")
    return spec[: match.start()], ratio


def load_spec(spec: str, split: str = "train", images: str | None = None) -> list[Sample]:
    """The samples a SPEC names; an empty dataset is an error rather than a silent no-op run."""
    if split_ratio(spec)[1] is not None:
        raise UserError(f"data spec {spec!r}: sampling ratios (@R) apply to the training data of warmup, "
                        "transfer and tune-mma only")
    kind, arg = parse_spec(spec)
    samples = READERS[kind](arg, split, images)
    if not samples:
        raise UserError(f"data spec {spec!r} ({split} split) has no samples")
    return samples


register_kind("coco", lambda arg, split, images: read_coco(arg, images), "caption")
register_kind("vg", lambda arg, split, images: read_caption_list(arg, images, "vg"), "caption")
register_kind("sbu", lambda arg, split, images: read_caption_list(arg, images, "sbu"), "caption")


def _wds(arg: str, split: str, images: str | None) -> list[Sample]:
    raise UserError(f"wds:{arg}: WebDataset shards are streamed as training data of warmup, transfer and "
                    "tune-mma; other commands take caption files (coco:, jsonl:)")


register_kind("wds", _wds, "caption")
register_kind("vqav2", lambda arg, split, images: read_vqav2_spec(arg, images), "vqa")
register_kind("gqa", lambda arg, split, images: read_gqa(arg, images), "vqa")
# ScienceQA keeps its images in DIR/images: --images (the root of relative paths in coco, llava and
# jsonl files, given once per command) must not move them when datasets are mixed.
register_kind("scienceqa", lambda arg, split, images: read_scienceqa(arg, split), "sqa")
register_kind("llava", lambda arg, split, images: read_llava(arg, images), "text")
register_kind("alpaca", lambda arg, split, images: read_alpaca(arg), "text")
register_kind("jsonl", lambda arg, split, images: read_jsonl(arg, images), "text")
# MiniGPT-4's 3.4k aligned set (VL-Vicuna's chat stage): its images live in DIR/image, as scienceqa's
register_kind("cc_sbu_align", lambda arg, split, images: read_cc_sbu_align(arg), "caption")
