"""``vltool eval``: generate with each model on each dataset and score with that dataset's metric.

``--out FILE.json`` writes ``{"metrics": {dataset: {model: {metric: value}}}, ...}`` and, beside
it, one predictions JSONL per (model, dataset) with ``{"id", "prediction"}`` lines, which
``--predictions`` scores again later with no model (so other tools' outputs are scored by the
same code). For text-only datasets the lines also carry each answer's teacher-forced NLL and
token count, so perplexity can be recomputed from the file alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vltool.config.schema import EvalRecipe
from vltool.data.training_data import read_samples
from vltool.data.vqav2 import with_question_text
from vltool.data.workers import auto_workers
from vltool.errors import UserError
from vltool.eval.dataset_eval import evaluate_dataset
from vltool.eval.predictions import read_predictions, write_predictions
from vltool.eval.predictors import GenerationSettings, MMAPredictor, load_predictor
from vltool.eval.scoring import metric_family, score
from vltool.training.processes import process_state
from vltool.training.progress import NullReporter, Reporter


def _samples(cfg: EvalRecipe, spec: str, read_images: bool = True):
    """The samples of ``spec`` (``read_samples``, as training's validation reads them), questions in the
    recipe's text processing; when a model will read their images, bad ones fail or are skipped first."""
    samples, _ = read_samples([spec], cfg.data.split, cfg.data.images, cfg.data.skip_bad_images,
                              cfg.eval.max_samples, what=spec, check=read_images)
    return with_question_text(samples, cfg.eval.question_text)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:]


def _check_out(out: Path | None, force: bool) -> None:
    if out is not None and out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it")


def sharded(state: Any, samples: list, fn: Callable[[list], list]) -> list:
    """``fn(samples)`` with the samples split across the processes of ``accelerate launch``.

    Each process runs its contiguous share; the results are gathered back into sample order on
    every process, so the scores (computed on all of them alike) and the files (written by the
    main process) do not depend on the number of processes.
    """
    if state.num_processes == 1:
        return fn(samples)
    from accelerate.utils import gather_object

    indices = list(range(len(samples)))
    with state.split_between_processes(indices) as mine:
        local = list(zip(mine, fn([samples[i] for i in mine]) if mine else []))
    merged = dict(gather_object(local))
    return [merged[i] for i in indices]


def run(cfg: EvalRecipe, models: list[str], out: Path | None = None, force: bool = False,
        reporter: Reporter | None = None) -> dict[str, dict[str, dict[str, float]]]:

    reporter = reporter or NullReporter()
    _check_out(out, force)
    if not cfg.data.eval:
        raise UserError("no dataset: pass --data SPEC (e.g. --data demo:sqa)")
    datasets = {spec: _samples(cfg, spec) for spec in cfg.data.eval}
    settings = GenerationSettings(cfg.eval.batch_size, cfg.eval.max_new_tokens, cfg.eval.min_new_tokens,
                                  cfg.eval.num_beams, prompt=cfg.eval.prompt, workers=auto_workers(),
                                  length_penalty=cfg.eval.length_penalty, temperature=cfg.eval.temperature,
                                  top_p=cfg.eval.top_p, seed=cfg.eval.seed)
    results: dict[str, dict[str, dict[str, float]]] = {spec: {} for spec in cfg.data.eval}
    written: dict[tuple[str, str], tuple[list, list[str], list | None]] = {}

    state = process_state()
    device = state.device  # the GPU when there is one (or what `accelerate launch` assigns)
    for model_spec in models:
        predictor = load_predictor(model_spec).to(device)
        if isinstance(predictor, MMAPredictor) and settings.num_beams > 1:
            reporter.log(f"{model_spec} is an MM-Adapter (LaVIN-layout) model: it decodes with one beam, "
                         f"not eval.num_beams={settings.num_beams}")
        for spec, samples in datasets.items():
            if predictor.blip2 is None and any(s.image is not None for s in samples):
                reporter.log(f"skipping {spec} for {model_spec}: a text-only model cannot read its images")
                results[spec][model_spec] = {}
                continue
            reporter.start(f"eval {Path(model_spec).name} on {spec}", len(samples))
            done = evaluate_dataset(predictor, spec, samples, settings, progress=reporter.update,
                                    shard=lambda fn, ss=samples: sharded(state, ss, fn))
            reporter.finish()
            results[spec][model_spec] = done.metrics
            written[(model_spec, spec)] = (samples, done.texts, done.nll)
    if out is not None and state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        files = {}
        for (model_spec, spec), (samples, texts, nll) in written.items():
            name = out.with_name(f"{out.stem}.{_slug(Path(model_spec).name)}.{_slug(spec)}.jsonl")
            write_predictions(name, samples, texts, nll)
            files[f"{model_spec} | {spec}"] = name.name
        out.write_text(json.dumps({"metrics": results, "predictions": files, "split": cfg.data.split,
                                   "generation": settings.__dict__, "device": str(device),
                                   "processes": state.num_processes}, indent=2) + "\n")
    return results


def score_predictions_file(cfg: EvalRecipe, path: Path, out: Path | None = None,
                           force: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Score saved predictions (ours or another tool's) against one dataset, with no model."""
    _check_out(out, force)
    if len(cfg.data.eval) != 1:
        raise UserError("--predictions scores one dataset: give exactly one --data SPEC")
    spec = cfg.data.eval[0]
    samples = _samples(cfg, spec, read_images=False)
    found = read_predictions(path)
    nll = found.nll if found.nll and metric_family(spec) == "text" else None
    if nll is not None and len(nll) != len(found.texts):
        raise UserError(f"{path}: {len(found.texts) - len(nll)} lines lack 'nll'/'tokens' while others have them; "
                        f"perplexity needs them on every line")
    metrics: dict[str, Any] = score(spec, samples, found.texts, nll=nll)
    results = {spec: {path.name: metrics}}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"metrics": results, "predictions": str(path), "split": cfg.data.split}, indent=2) + "\n")
    return results
