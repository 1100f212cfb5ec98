"""``vltool zoo build``: build (or verify) the demo world, cached under VLTOOL_HOME.

Order: the data (rendered PNG images + JSON samples) and the two tokenizers in this process;
then the model jobs (``jobs.py``): demo-opt-s, the vision encoder, demo-opt-l, demo-llama, the
source BLIP-2 once demo-opt-s and the vision encoder exist, and the stage-1 Q-Former (the
from-scratch baseline's start) once the vision encoder exists.

The model jobs run on worker processes, one torch thread each. These models are so small that
a second intra-op thread buys ~1.4x for twice the CPU, while two single-threaded trainings
side by side buy ~2x on a 2-core laptop; and one thread per job makes the world bit-identical
whatever the number of workers or cores. ``workers=1`` runs the jobs in this process.

Every item is built in a temporary sibling folder, renamed when complete, and carries a
``build.json`` with its quality figures and build time (wall and CPU seconds). A rerun skips
every item whose ``build.json`` and files are present; ``force`` rebuilds everything.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vltool.artifacts.environment import package_versions
from vltool.data.workers import cpu_count
from vltool.demo import datasets, tokenizers
from vltool.demo import home as homes
from vltool.demo.jobs import (
    ITEM_MANIFEST,
    JOB_ORDER,
    NEEDS,
    PROFILES,
    Profile,
    build_item,
    is_built,
    item_path,
    job_request,
    quiet_transformers,
    run_job,
)
from vltool.errors import UserError
from vltool.training.progress import NullReporter, Reporter


class _Progress:
    """One progress bar over every job's training steps; one log line per finished item."""

    def __init__(self, reporter: Reporter, totals: dict[str, int]) -> None:
        self.reporter, self.totals = reporter, dict(totals)
        self.done = {job: 0 for job in totals}
        reporter.start("build demo world", max(1, sum(self.totals.values())))

    def event(self, job: str, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            self.totals[job] = event["total"]
        elif kind == "update":
            self.done[job] = event["done"]
            running = {j: f"{d}/{self.totals[j]}" for j, d in self.done.items() if 0 < d < self.totals[j]}
            self.reporter.update(sum(self.done.values()), **running)
        elif kind == "log":
            self.reporter.log(f"{job}: {event['message']}")

    def finished(self, job: str, info: dict[str, Any]) -> None:
        self.done[job] = self.totals[job]
        self.reporter.update(sum(self.done.values()))
        figures = ", ".join(f"{k} {v:.3g}" for k, v in info.get("metrics", {}).items())
        took = f"{info.get('build_s', 0):.1f} s ({info.get('build_cpu_s', 0):.1f} CPU s)"
        self.reporter.log(f"built {job} in {took}"
                          + (f": {figures}" if figures else ""))


class _InProcessReporter:
    """Feeds a job's training progress straight into ``_Progress`` (workers=1)."""

    def __init__(self, progress: _Progress, job: str) -> None:
        self.progress, self.job = progress, job

    def start(self, task: str, total: int) -> None:
        self.progress.event(self.job, {"event": "start", "total": total})

    def update(self, done: int, **fields: Any) -> None:
        self.progress.event(self.job, {"event": "update", "done": done})

    def finish(self, **fields: Any) -> None:
        pass

    def log(self, message: str) -> None:
        self.progress.event(self.job, {"event": "log", "message": message})


class _Worker:
    """A ``python -m vltool.demo.jobs`` subprocess and the thread that reads its replies."""

    def __init__(self, index: int, events: queue.Queue, log: Path) -> None:
        self.index, self.log = index, log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vltool.demo.jobs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.handle, text=True, bufsize=1,
            env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
        self.job: str | None = None
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: queue.Queue) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            events.put((self.index, json.loads(line)))
        events.put((self.index, {"event": "exit"}))

    def submit(self, request: str, job: str) -> None:
        assert self.proc.stdin is not None
        self.job = job
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        elif self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()
        self.handle.close()


def _run_jobs(jobs: list[str], root: Path, seed: int, profile: Profile, force: bool, workers: int,
              progress: _Progress) -> dict[str, dict[str, Any]]:
    """Run the model jobs in ``JOB_ORDER`` priority, each once its ``NEEDS`` are built."""
    results: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for job in jobs:
            results[job] = run_job(job, root, seed, profile, force, _InProcessReporter(progress, job))
            progress.finished(job, results[job])
        return results

    logs = root / "build-logs"
    logs.mkdir(exist_ok=True)
    events: queue.Queue = queue.Queue()
    pool = [_Worker(i, events, logs / f"worker-{i}.log") for i in range(workers)]
    waiting, ok = list(jobs), False
    try:
        while waiting or any(w.job for w in pool):
            for worker in pool:
                ready = [j for j in waiting if all(n in results or n not in jobs for n in NEEDS.get(j, ()))]
                if worker.job is None and ready:
                    waiting.remove(ready[0])
                    worker.submit(job_request(ready[0], root, seed, profile, force), ready[0])
            index, event = events.get()
            worker = pool[index]
            if event["event"] == "done":
                results[event["job"]] = event["info"]
                progress.finished(event["job"], event["info"])
                worker.job = None
            elif event["event"] == "error":
                message = f"building {event['job']} failed: {event['message']}"
                raise UserError(message) if event["user"] else RuntimeError(f"{message} (see {worker.log})")
            elif event["event"] == "exit":
                raise RuntimeError(f"demo world worker {index} stopped while building {worker.job} "
                                   f"(see {worker.log})")
            else:
                progress.event(event["job"], event)
        ok = True
    finally:
        for worker in pool:
            worker.close(kill=not ok)
    return results


def default_build_jobs() -> int:
    """One job per core, at most 4 (there are never more than 4 independent jobs)."""
    return max(1, min(4, cpu_count()))


def wanted_jobs(only: list[str] | None) -> tuple[str, ...]:
    """The model jobs ``only`` names plus what they need (None: all), in priority order."""
    if not only:
        return JOB_ORDER
    unknown = [name for name in only if name not in JOB_ORDER]
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: not a demo world model; expected some of "
                        f"{', '.join(JOB_ORDER)}")
    wanted = set(only) | {need for name in only for need in NEEDS.get(name, ())}
    return tuple(j for j in JOB_ORDER if j in wanted)


def build_world(seed: int = 0, force: bool = False, reporter: Reporter | None = None,
                home: Path | None = None, quick: bool = False, workers: int | None = None,
                only: list[str] | None = None) -> dict[str, Any]:
    """Build everything the demo aliases resolve to; returns the summary also written to world.json.

    ``quick`` builds the small world of the tests and ``vltool demo --quick`` (its own folder).
    ``workers``: training processes (default one per core, at most 4; 1 = in this process).
    ``only``: build just these models (and what they need); ``vltool demo`` needs no demo-opt-l.
    """

    quiet_transformers()
    reporter = reporter or NullReporter()
    profile = PROFILES["quick" if quick else "full"]
    root = homes.world_dir(seed, home, profile.name)
    (root / "models").mkdir(parents=True, exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    items: dict[str, dict[str, Any]] = {}

    items["data"] = build_item(
        root / "data", lambda p: {"samples": datasets.write_world_data(p, seed, profile.splits)}, force)

    def make_tokenizers(p: Path) -> dict[str, Any]:
        train_docs, _ = datasets.lm_corpus(seed, n_train=profile.lm_docs)
        word, bpe = tokenizers.train_word_tokenizer(train_docs), tokenizers.train_bpe_tokenizer(train_docs)
        word.save_pretrained(str(p / "opt"))
        bpe.save_pretrained(str(p / "llama"))
        return {"opt_vocab": len(word), "llama_vocab": len(bpe),
                "caption_words": datasets.caption_vocabulary_size(seed)}

    items["tokenizers"] = build_item(root / "tokenizers", make_tokenizers, force)

    selected = wanted_jobs(only)
    jobs = [j for j in selected if force or not is_built(item_path(root, j))]
    # the quick world's jobs take seconds: starting worker processes would cost more than it saves
    workers = min(workers or (1 if quick else default_build_jobs()), len(jobs))
    if jobs:
        steps = profile.job_steps()
        progress = _Progress(reporter, {j: steps[j] for j in jobs})
        items.update(_run_jobs(jobs, root, seed, profile, force, workers, progress))
        reporter.finish()
    for job in JOB_ORDER:
        if job not in items and is_built(item_path(root, job)):
            items[job] = json.loads((item_path(root, job) / ITEM_MANIFEST).read_text())
    if not jobs and not force and (root / "world.json").is_file():
        recorded = json.loads((root / "world.json").read_text())
        if set(recorded["items"]) >= set(items):
            return recorded
    summary = {"root": str(root), "seed": seed, "quick": quick, "profile": profile.name,
               "packages": package_versions(),
               "items": {k: items[k] for k in ("data", "tokenizers", *JOB_ORDER) if k in items},
               "build_s": round(time.perf_counter() - started, 2),
               "build_cpu_s": round(time.process_time() - cpu + sum(
                   items[j].get("build_cpu_s", 0) for j in jobs if workers > 1), 2)}
    (root / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_summary(seed: int = 0, force: bool = False, quick: bool = False, only: list[str] | None = None,
          reporter: Reporter | None = None) -> dict[str, Any]:
    """Build the demo world (or only some of its models) and summarise each item's quality and build time."""
    summary = build_world(seed=seed, force=force, reporter=reporter, quick=quick, only=only)
    rows: list[list[Any]] = [["folder", summary["root"]]]
    for name, info in summary["items"].items():
        metrics = info.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()) if metrics else ""
        extra = {k: v for k, v in info.items() if k not in ("item", "metrics", "build_s", "build_cpu_s")}
        rows.append([name, f"{info.get('build_s', 0):.1f} s  {shown}  {extra or ''}".strip()])
    # Items build on parallel workers, so the wall time is the summary's, not the items' sum.
    rows.append(["world build time", f"{summary.get('build_s', 0.0):.1f} s wall, "
                                     f"{summary.get('build_cpu_s', 0.0):.1f} s CPU"])
    return {"rows": rows, "summary": summary}
