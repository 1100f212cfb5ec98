"""``vltool zoo build``: build (or verify) the demo world, step by step, cached under VLTOOL_HOME.

Order: data (rendered images + JSON samples) -> tokenizers -> the three LMs -> the vision
encoder -> the source BLIP-2. Every item is written to a temporary sibling folder and renamed
when complete, and carries a ``manifest.json`` with its quality figures and build time; a rerun
skips every item whose manifest is present. Deterministic from the seed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vltool.demo import home as homes
from vltool.training.progress import NullReporter, Reporter

ITEM_MANIFEST = "build.json"  # not manifest.json: these are models, not vltool artifacts


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _item(path: Path, make: Callable[[Path], dict[str, Any]], force: bool, reporter: Reporter,
          label: str) -> dict[str, Any]:
    """Build one item atomically unless a complete one is cached; returns its manifest."""
    manifest = path / ITEM_MANIFEST
    if manifest.is_file() and not force:
        return json.loads(manifest.read_text())
    tmp = path.parent / f".tmp-{path.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        info = make(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = {"item": path.name, **info, "build_s": round(time.perf_counter() - started, 2),
            "build_cpu_s": round(time.process_time() - cpu, 2)}
    (tmp / ITEM_MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    reporter.log(f"built {label} in {info['build_s']:.1f} s")
    return info


def build_world(seed: int = 0, force: bool = False, reporter: Reporter | None = None,
                home: Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Build everything the demo aliases resolve to; returns per-item manifests.

    ``quick`` shrinks every training budget (for tests); its world lives in its own folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2Processor, Blip2VisionModel

    from vltool.data.vl_dataset import image_preprocessor
    from vltool.demo import datasets, lms, source_blip2, tokenizers, vision

    _quiet_transformers()
    torch.manual_seed(seed)
    reporter = reporter or NullReporter()
    root = homes.world_dir(seed, home, "quick" if quick else "full")
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    scale = 0.25 if quick else 1.0
    sizes = {"train": int(3000 * scale), "val": 300 if not quick else 100, "test": 300 if not quick else 100}
    items: dict[str, dict[str, Any]] = {}
    reporter.start("demo world", 7)

    items["data"] = _item(root / "data", lambda p: {"samples": datasets.write_world_data(p, seed, sizes)},
                          force, reporter, "data")
    reporter.update(1)
    train_docs, val_docs = datasets.lm_corpus(seed, n_train=int(6000 * scale) or 500)

    def make_tokenizers(p: Path) -> dict:
        word = tokenizers.train_word_tokenizer(train_docs)
        bpe = tokenizers.train_bpe_tokenizer(train_docs)
        word.save_pretrained(str(p / "opt"))
        bpe.save_pretrained(str(p / "llama"))
        return {"opt_vocab": len(word), "llama_vocab": len(bpe)}

    items["tokenizers"] = _item(root / "tokenizers", make_tokenizers, force, reporter, "tokenizers")
    reporter.update(2)
    tok_dir = {"demo-opt-s": "opt", "demo-opt-l": "opt", "demo-llama": "llama"}
    for done, name in enumerate(("demo-opt-s", "demo-opt-l", "demo-llama"), start=3):
        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizers" / tok_dir[name]))

        def make_lm(p: Path, name: str = name, tokenizer=tokenizer) -> dict:
            steps = None if not quick else 60
            model, metrics = lms.pretrain_lm(name, tokenizer, train_docs, val_docs, seed, steps=steps)
            model.save_pretrained(str(p))
            tokenizer.save_pretrained(str(p))
            return {"metrics": metrics, "parameters": sum(x.numel() for x in model.parameters())}

        items[name] = _item(models / name, make_lm, force, reporter, name)
        reporter.update(done)

    def make_vision(p: Path) -> dict:
        model, metrics = vision.pretrain_vision(seed, steps=700 if not quick else 120,
                                                n_train=4000 if not quick else 1000)
        model.save_pretrained(str(p))
        return {"metrics": metrics}

    items["vision"] = _item(root / "vision", make_vision, force, reporter, "vision encoder")
    reporter.update(6)

    def make_source(p: Path) -> dict:
        tokenizer = AutoTokenizer.from_pretrained(str(models / "demo-opt-s"))
        lm = AutoModelForCausalLM.from_pretrained(str(models / "demo-opt-s"))
        encoder = Blip2VisionModel.from_pretrained(str(root / "vision"))
        processor = vision.image_processor()
        model, metrics = source_blip2.train_source(
            root / "data", encoder, lm, tokenizer, image_preprocessor(processor), seed,
            steps=400 if not quick else 80, lr=3e-3)
        model.save_pretrained(str(p))
        Blip2Processor(image_processor=processor, tokenizer=tokenizer,
                       num_query_tokens=model.config.num_query_tokens).save_pretrained(str(p))
        return {"metrics": metrics, "num_query_tokens": model.config.num_query_tokens}

    items["demo-blip2-opt-s"] = _item(models / "demo-blip2-opt-s", make_source, force, reporter,
                                      "demo-blip2-opt-s")
    reporter.update(7)
    reporter.finish()
    summary = {"root": str(root), "seed": seed, "quick": quick, "items": items}
    (root / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
