"""The demo world's model jobs, and the worker process that runs them (``python -m vltool.demo.jobs``).

A job builds one item (an LM, the vision encoder or the source BLIP-2) atomically under the
world folder. Every job runs with exactly one torch thread and seeds itself, so its result
is bit-identical whether it runs in the calling process or in a worker, alone or beside
another one (see ``build``).

Workers are plain subprocesses speaking JSON lines (jobs on stdin; progress, results and
errors on stdout), not a multiprocessing pool: a spawned pool re-imports the caller's main
script, which breaks any unguarded script or notebook that calls ``build_world``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vltool.demo import datasets, lms, source_blip2, stage1_qformer, vision
from vltool.errors import UserError

ITEM_MANIFEST = "build.json"  # not manifest.json: that name marks vltool artifacts; these are HF folders
LM_NAMES = ("demo-opt-s", "demo-opt-l", "demo-llama")
TOKENIZER_OF = {"demo-opt-s": "opt", "demo-opt-l": "opt", "demo-llama": "llama"}
# Priority order; on 2 workers it gives the shortest build (the source waits for opt-s + vision).
JOB_ORDER = ("demo-opt-s", "vision", "demo-llama", "demo-opt-l", "demo-blip2-opt-s", "demo-qformer-stage1")
NEEDS = {"demo-blip2-opt-s": ("demo-opt-s", "vision"), "demo-qformer-stage1": ("vision",)}
REQUIRED_FILES = {
    "data": ("train_caption.json", "val_caption.json", "test_caption.json", "train_sqa.json"),
    "tokenizers": ("opt/tokenizer.json", "llama/tokenizer.json"),
    "vision": ("config.json", "model.safetensors"),
}
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class Profile:
    """Sizes and training budgets of one world: "full", or "quick" for tests and smoke runs."""

    name: str
    splits: dict[str, int]
    lm_docs: int
    lm_steps: dict[str, int]
    vision_steps: int
    vision_images: int
    source_steps: int
    stage1_steps: int = 0  # the stage-1 Q-Former (ITC + ITG) of the from-scratch baseline
    stage1_batch: int = 64

    def job_steps(self) -> dict[str, int]:
        return {**self.lm_steps, "vision": self.vision_steps, "demo-blip2-opt-s": self.source_steps,
                "demo-qformer-stage1": self.stage1_steps}


PROFILES = {
    "full": Profile("full", {"train": 3000, "val": 300, "test": 300}, lm_docs=8000,
                    lm_steps={"demo-opt-s": 1200, "demo-opt-l": 900, "demo-llama": 900},
                    vision_steps=500, vision_images=4000, source_steps=400, stage1_steps=400),
    "quick": Profile("quick", {"train": 600, "val": 100, "test": 100}, lm_docs=1500,
                     lm_steps={"demo-opt-s": 60, "demo-opt-l": 40, "demo-llama": 40},
                     vision_steps=100, vision_images=800, source_steps=60, stage1_steps=30, stage1_batch=32),
}


def item_path(root: Path, name: str) -> Path:
    return root / name if name in ("data", "tokenizers", "vision") else root / "models" / name


def is_built(path: Path) -> bool:
    files = REQUIRED_FILES.get(path.name, MODEL_FILES)
    return (path / ITEM_MANIFEST).is_file() and all((path / f).is_file() for f in files)


def build_item(path: Path, make: Callable[[Path], dict[str, Any]], force: bool) -> dict[str, Any]:
    """Build one item into a temporary sibling and rename it into place; cached unless ``force``."""
    if is_built(path) and not force:
        return json.loads((path / ITEM_MANIFEST).read_text())
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        info = make(tmp)
        info = {"item": path.name, **info, "build_s": round(time.perf_counter() - started, 2),
                "build_cpu_s": round(time.process_time() - cpu, 2)}
        (tmp / ITEM_MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        try:
            tmp.rename(path)
        except OSError:
            if not is_built(path):
                raise
            info = json.loads((path / ITEM_MANIFEST).read_text())  # a concurrent build got there first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# --- the jobs -------------------------------------------------------------------------------


def _lm_job(root: Path, name: str, seed: int, profile: Profile, reporter) -> Callable[[Path], dict[str, Any]]:
    def make(p: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer


        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizers" / TOKENIZER_OF[name]))
        train_docs, val_docs = datasets.lm_corpus(seed, n_train=profile.lm_docs)
        model, metrics = lms.pretrain_lm(name, tokenizer, train_docs, val_docs, seed, reporter=reporter,
                                         steps=profile.lm_steps[name])
        model.save_pretrained(str(p))
        tokenizer.save_pretrained(str(p))
        return {"metrics": metrics, "parameters": sum(x.numel() for x in model.parameters()),
                "hidden_size": model.config.hidden_size, "vocab_size": model.config.vocab_size,
                "steps": profile.lm_steps[name]}

    return make


def _vision_job(root: Path, seed: int, profile: Profile, reporter) -> Callable[[Path], dict[str, Any]]:
    def make(p: Path) -> dict[str, Any]:

        model, metrics = vision.pretrain_vision(seed, reporter=reporter, steps=profile.vision_steps,
                                                n_train=profile.vision_images)
        model.save_pretrained(str(p))
        return {"metrics": metrics, "steps": profile.vision_steps}

    return make


def _source_job(root: Path, seed: int, profile: Profile, reporter) -> Callable[[Path], dict[str, Any]]:
    def make(p: Path) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2VisionModel


        lm_dir = root / "models" / "demo-opt-s"
        tokenizer = AutoTokenizer.from_pretrained(str(lm_dir))
        lm = AutoModelForCausalLM.from_pretrained(str(lm_dir))
        encoder = Blip2VisionModel.from_pretrained(str(root / "vision"))
        model, metrics = source_blip2.train_source(root / "data", encoder, lm, tokenizer,
                                                   vision.image_processor(), seed,
                                                   steps=profile.source_steps, reporter=reporter)
        source_blip2.save_source(model, tokenizer, p)
        metrics.update(source_blip2.check_saved_folder(p, root / "data"))
        return {"metrics": metrics, "num_query_tokens": model.config.num_query_tokens,
                "steps": profile.source_steps}

    return make


def _stage1_job(root: Path, seed: int, profile: Profile, reporter) -> Callable[[Path], dict[str, Any]]:
    def make(p: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer, Blip2VisionModel


        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizers" / "opt"))
        encoder = Blip2VisionModel.from_pretrained(str(root / "vision"))
        processor = vision.image_processor()
        model, metrics = stage1_qformer.train_stage1(root / "data", encoder, tokenizer, processor, seed,
                                                     steps=profile.stage1_steps, batch_size=profile.stage1_batch,
                                                     reporter=reporter)
        stage1_qformer.save_stage1(model, tokenizer, processor, p)
        return {"metrics": metrics, "num_query_tokens": model.config.num_query_tokens,
                "steps": profile.stage1_steps, "objectives": "ITC + ITG"}

    return make


def run_job(job: str, root: Path, seed: int, profile: Profile, force: bool, reporter) -> dict[str, Any]:
    """Build one model item with one torch thread; returns its build manifest."""
    import torch

    if job in LM_NAMES:
        make = _lm_job(root, job, seed, profile, reporter)
    elif job == "vision":
        make = _vision_job(root, seed, profile, reporter)
    elif job == "demo-qformer-stage1":
        make = _stage1_job(root, seed, profile, reporter)
    else:
        make = _source_job(root, seed, profile, reporter)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_item(item_path(root, job), make, force)
    finally:
        torch.set_num_threads(threads)


# --- the worker process ---------------------------------------------------------------------


class _LineReporter:
    """A Reporter that writes a job's progress as JSON lines for the parent."""

    def __init__(self, out, job: str) -> None:
        self.out, self.job = out, job
        self.last = 0.0

    def _send(self, **event: Any) -> None:
        self.out.write(json.dumps({"job": self.job, **event}) + "\n")
        self.out.flush()

    def start(self, task: str, total: int) -> None:
        self._send(event="start", total=total)

    def update(self, done: int, **fields: Any) -> None:
        self._send(event="update", done=done)

    def finish(self, **fields: Any) -> None:
        pass

    def log(self, message: str) -> None:
        self._send(event="log", message=message)


def worker_main() -> None:
    """Read job requests (JSON lines) from stdin until it closes; answer on the original stdout.

    Anything else writing to stdout (a library's print) is sent to stderr, which the parent
    keeps in a log file.
    """
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    quiet_transformers()

    for line in sys.stdin:
        request = json.loads(line)
        job = request["job"]
        reporter = _LineReporter(out, job)
        try:
            info = run_job(job, Path(request["root"]), request["seed"], Profile(**request["profile"]),
                           request["force"], reporter)
            reporter._send(event="done", info=info)
        except UserError as err:
            reporter._send(event="error", message=str(err), user=True)
        except BaseException as err:  # report everything: the parent stops the build and names it
            traceback.print_exc()
            reporter._send(event="error", message=f"{type(err).__name__}: {err}", user=False)
            if isinstance(err, KeyboardInterrupt):
                raise


def job_request(job: str, root: Path, seed: int, profile: Profile, force: bool) -> str:
    return json.dumps({"job": job, "root": str(root), "seed": seed, "profile": asdict(profile),
                       "force": force})


if __name__ == "__main__":
    worker_main()
