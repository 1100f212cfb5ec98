"""``vltool eval``: generate with each model on each dataset and score with that dataset's metric.

``--out FILE.json`` writes ``{"metrics": {dataset: {model: {metric: value}}}, ...}`` and, beside
it, one predictions JSONL per (model, dataset) with ``{"id", "prediction"}`` lines, which
``--predictions`` scores again later with no model (so other tools' outputs are scored by the
same code).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vltool.config.schema import EvalRecipe
from vltool.data.jsonl_lines import read_jsonl_rows
from vltool.data.specs import load_spec
from vltool.errors import UserError
from vltool.eval.scoring import metric_family, score
from vltool.training.progress import NullReporter, Reporter


def _samples(cfg: EvalRecipe, spec: str):
    samples = load_spec(spec, cfg.split, cfg.images)
    return samples[: cfg.eval.max_samples] if cfg.eval.max_samples else samples


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:]


def _check_out(out: Path | None, force: bool) -> None:
    if out is not None and out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it")


def run(cfg: EvalRecipe, models: list[str], out: Path | None = None, force: bool = False,
        reporter: Reporter | None = None) -> dict[str, dict[str, dict[str, float]]]:
    from vltool.models.predictors import GenerationSettings, load_predictor

    reporter = reporter or NullReporter()
    _check_out(out, force)
    if not cfg.data:
        raise UserError("no dataset: pass --data SPEC (e.g. --data demo:sqa)")
    datasets = {spec: _samples(cfg, spec) for spec in cfg.data}
    settings = GenerationSettings(cfg.eval.batch_size, cfg.eval.max_new_tokens, cfg.eval.min_new_tokens,
                                  cfg.eval.num_beams)
    results: dict[str, dict[str, dict[str, float]]] = {spec: {} for spec in cfg.data}
    predictions: dict[tuple[str, str], list[dict]] = {}
    for model_spec in models:
        predictor = load_predictor(model_spec)
        for spec, samples in datasets.items():
            if predictor.blip2 is None and any(s.image is not None for s in samples):
                reporter.log(f"skipping {spec} for {model_spec}: a text-only model cannot read its images")
                results[spec][model_spec] = {}
                continue
            reporter.start(f"eval {Path(model_spec).name} on {spec}", len(samples))
            texts = predictor.generate(samples, settings, progress=lambda n: reporter.update(n))
            reporter.finish()
            results[spec][model_spec] = score(metric_family(spec), samples, texts)
            predictions[(model_spec, spec)] = [{"id": s.id, "prediction": t} for s, t in zip(samples, texts)]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        files = {}
        for (model_spec, spec), rows in predictions.items():
            name = out.with_name(f"{out.stem}.{_slug(Path(model_spec).name)}.{_slug(spec)}.jsonl")
            name.write_text("".join(json.dumps(r) + "\n" for r in rows))
            files[f"{model_spec} | {spec}"] = name.name
        out.write_text(json.dumps({"metrics": results, "predictions": files, "split": cfg.split,
                                   "generation": settings.__dict__}, indent=2) + "\n")
    return results


def read_predictions(path: Path) -> dict[str, str]:
    return {str(row["id"]): str(row["prediction"])
            for _, row in read_jsonl_rows(path, "predictions", ("id", "prediction"))}


def score_predictions_file(cfg: EvalRecipe, path: Path, out: Path | None = None,
                           force: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Score saved predictions (ours or another tool's) against one dataset."""
    _check_out(out, force)
    if len(cfg.data) != 1:
        raise UserError("--predictions scores one dataset: give exactly one --data SPEC")
    spec = cfg.data[0]
    samples = _samples(cfg, spec)
    found = read_predictions(path)
    ids = {s.id for s in samples}
    missing = [s.id for s in samples if s.id not in found]
    unknown = [i for i in found if i not in ids]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"{len(missing)} dataset ids have no prediction (e.g. {', '.join(missing[:3])})")
        if unknown:
            parts.append(f"{len(unknown)} predictions have ids not in {spec} (e.g. {', '.join(unknown[:3])})")
        raise UserError(f"{path}: " + "; ".join(parts))
    metrics: dict[str, Any] = score(metric_family(spec), samples, [found[s.id] for s in samples])
    results = {spec: {path.name: metrics}}
    if out is not None:
        out.write_text(json.dumps({"metrics": results}, indent=2) + "\n")
    return results
