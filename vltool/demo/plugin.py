"""The demo world as a vltool plugin: its data kind, caption metrics and model aliases, from one place.

Declared in pyproject.toml under the ``vltool.plugins`` entry point group, so the registries in
``vltool.data.specs``, ``vltool.eval.scoring`` and ``vltool.sources.aliases`` learn about the demo
world when first asked, and none of them imports it.

Imports sit inside the functions on purpose: the registries load this module while they are
themselves being imported (``register`` calls back into them), so a module-level import of
``vltool.data.specs`` here would be a cycle, and the demo's readers stay unloaded until used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from vltool.data.sample import Sample

MODELS = (
    ("demo-blip2-opt-s", "source", "demo world source BLIP-2 (tiny ViT + Q-Former on demo-opt-s)"),
    ("demo-opt-s", "target", "demo world small OPT (the source's LM)"),
    ("demo-opt-l", "target", "demo world larger OPT, same tokenizer"),
    ("demo-llama", "target", "demo world LLaMA, different tokenizer"),
    ("demo-qformer-stage1", "qformer", "demo world stage-1 Q-Former (ITC + ITG on the demo captions)"),
)


def _read(arg: str, split: str, images: str | None) -> list[Sample]:
    from vltool.demo.datasets import read_demo
    from vltool.demo.home import demo_data_dir

    return read_demo(demo_data_dir(), arg, split)


def _family(arg: str) -> str:
    """``demo:caption|vqa|sqa|text`` are scored as the real datasets of their kind."""
    return arg if arg in ("caption", "vqa", "sqa") else "text"


def _attribute_scores(texts: Sequence[str], samples: Sequence[Sample]) -> dict[str, float]:
    """The demo captions' attribute and scene accuracy, where every sample knows its attributes."""
    if not samples or not all("attributes" in s.meta for s in samples):
        return {}
    from vltool.demo.datasets import caption_scores

    return caption_scores(list(texts), list(samples))


def _locator(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        from vltool.demo.home import demo_model_paths

        return demo_model_paths()[name]

    return locate


def register() -> None:
    from vltool.data.specs import register_kind
    from vltool.eval.scoring import register_caption_metric
    from vltool.sources.aliases import register_alias

    register_kind("demo", _read, _family)
    register_caption_metric(_attribute_scores)
    for name, role, note in MODELS:
        register_alias(name, role, path=_locator(name), note=note,
                       missing_hint="the demo world is not built yet; run 'vltool zoo build' first")
