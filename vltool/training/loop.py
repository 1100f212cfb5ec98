"""The one training loop every stage uses (warm-up, transfer, tune-mma, demo pre-training).

Stages differ only in which parameters have ``requires_grad``, the loss function and the data;
everything else lives here: Accelerate device placement / DDP / mixed precision, the effective
batch split into micro-batches and gradient accumulation, AdamW groups, LR schedule, gradient
clipping, periodic evaluation, checkpoint + bit-exact resume, non-finite loss handling,
``metrics.jsonl`` and progress reporting on the main process.

Runs in-process (one device) or under ``accelerate launch`` / ``torchrun`` (one process per
device). A 2-process CPU run::

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no -m vltool ...

Gradient accumulation is Accelerate's own: ``accelerator.accumulate(model)`` around each
micro-batch's forward/backward, ``accelerator.gradient_accumulation_steps`` set from the recipe's
effective batch, and the batches come through Accelerate's ``DataLoaderShard``
(``prepare_data_loader``: device placement, end-of-data tracking for ``accumulate``). So the
DeepSpeed ZeRO-2/3 and FSDP configurations of ``accelerate config`` run the same loop (DeepSpeed
takes its micro-batch, accumulation and clipping from the recipe when its config says ``auto``).
The one thing vltool keeps is the sharding of batches across processes: its batch samplers
deal each process its own micro-batches (a pure function of seed and step, the ratio mixture's
stream positions included), which is what makes resume bit-exact; so the DataLoader is wrapped
as for one process, not re-sharded by Accelerate (that would deal out already-dealt batches).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from torch import nn
from torch.utils.data import Dataset

from vltool.errors import Interrupted, UserError
from vltool.eval.metric_fields import is_metric
from vltool.models.memory import (
    FROZEN_DTYPE_NAMES,
    cast_frozen_towers,
    check_quantization,
    enable_gradient_checkpointing,
    frozen_dtype_name,
    quantize_frozen_llm,
)
from vltool.training.checkpoint import (
    checkpoint_dir,
    keep_trainable_hook,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    strict_load_hook,
    trainable_names,
)
from vltool.training.data_loader import iterate, make_loader
from vltool.training.faults import maybe_fault, planned_faults
from vltool.training.fsdp import configure_fsdp
from vltool.training.optim import build_optimizer, build_scheduler
from vltool.training.processes import is_sharded
from vltool.training.progress import NullReporter, Reporter
from vltool.training.sampler import StepBatchSampler
from vltool.training.settings import TrainSettings
from vltool.training.tracking import (
    Tracking,
    accelerator_kwargs,
    begin_phase,
    log_row,
    restart_curve,
    start_tracking,
)

LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvalFn = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class TrainResult:
    """What a run did: steps taken, logged metrics, why it stopped, and the trained model."""

    steps: int
    history: list[dict] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    stopped: str = "completed"
    skipped_nonfinite: int = 0
    wall_time_s: float = 0.0
    model: nn.Module | None = None


def resolve_precision(recipe: str, bf16_device: bool, launched: str | None) -> str:
    """The mixed precision a run uses: the recipe's when set explicitly (``no``/``bf16``/``fp16``);
    for ``auto``, the accelerate config's (``ACCELERATE_MIXED_PRECISION``, set by ``accelerate
    launch``) when it asks for mixed precision, else bf16 on a bf16-capable GPU, else fp32.
    A launcher's ``no`` does not override ``auto``: the launcher also writes ``no`` when nothing was
    configured (set ``train.precision=no`` to force fp32)."""
    if recipe != "auto":
        return recipe
    launched = (launched or "no").lower()
    if launched != "no":
        return launched
    return "bf16" if bf16_device else "no"


def make_accelerator(precision: str = "auto", cpu: bool | None = None, tracking: Tracking | None = None) -> Accelerator:
    """An Accelerator whose mixed precision matches what the device can do.

    ``auto`` means: the mixed precision of ``accelerate launch``'s config when it asks for one
    (``ACCELERATE_MIXED_PRECISION`` bf16/fp16/fp8), else bf16 on a CUDA device that supports it,
    else fp32. An explicit recipe value wins over the accelerate config. fp16 without CUDA is a
    user error (CPU autocast has no fp16 path worth using). ``tracking`` (``tracking.tracking_for``):
    the experiment trackers every ``train()`` on this Accelerator logs to, started here.
    """
    has_cuda = torch.cuda.is_available() and not cpu
    if not has_cuda:
        # Tiny gradients and decayed weights drift into denormal floats, which x86 CPUs process
        # 5-10x slower (seen here: the demo's vision pre-training took 171 s instead of 17 s).
        torch.set_flush_denormal(True)
    precision = resolve_precision(precision, has_cuda and torch.cuda.is_bf16_supported(),
                                  os.environ.get("ACCELERATE_MIXED_PRECISION"))
    if precision == "fp16" and not has_cuda:
        raise UserError("precision fp16 needs a CUDA device; use precision=bf16 or precision=no on CPU")
    # The schedule is written in optimizer steps of the effective batch, so the scheduler must
    # step once per optimizer step, not once per process as Accelerate does by default.
    kwargs: dict[str, Any] = {"mixed_precision": precision, "step_scheduler_with_optimizer": False}
    if cpu:
        kwargs["cpu"] = True
    for env, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(env, "false").lower() == "true" and not has_cuda:
            # Accelerate only enters FSDP / DeepSpeed for accelerator devices: on CPU processes an
            # FSDP config silently becomes plain DDP (state.py keeps MULTI_CPU). Checked again with
            # Accelerate 1.16.0: a 2-process gloo launch with ACCELERATE_USE_FSDP=true and an FSDP2
            # plugin still reports DistributedType.MULTI_CPU. A user planning memory around
            # sharding must hear it.
            raise UserError(f"the accelerate config asks for {name}, but Accelerate runs {name} only on GPUs "
                            f"(on CPU it would silently run plain DDP); launch CPU runs with --multi_gpu, or run on GPUs")
    accelerator = Accelerator(**kwargs, **accelerator_kwargs(tracking))
    start_tracking(accelerator, tracking)
    return accelerator


def plan_steps(settings: TrainSettings, dataset_size: int, world: int) -> tuple[int, int, int]:
    """(total optimizer steps, micro-batch size per process, accumulation steps)."""
    micro = settings.micro_batch_size or max(1, settings.batch_size // world)
    per_forward = micro * world
    if settings.batch_size % per_forward:
        raise UserError(
            f"batch_size {settings.batch_size} is not a multiple of micro_batch_size {micro} x "
            f"{world} processes; pick a batch_size divisible by {per_forward}"
        )
    accum = settings.batch_size // per_forward
    if settings.max_steps is not None:
        total = settings.max_steps
    else:
        total = max(1, math.floor(settings.epochs * dataset_size / settings.batch_size))
    return total, micro, accum


def resolve_warmup(settings: TrainSettings, dataset_size: int) -> TrainSettings:
    """Turn ``warmup_epochs`` into ``warmup_steps`` for this data size."""
    if settings.warmup_epochs is None:
        return settings
    steps = math.floor(settings.warmup_epochs * dataset_size / settings.batch_size)
    return settings.model_copy(update={"warmup_steps": steps, "warmup_epochs": None})


def configure_deepspeed(accelerator: Accelerator, micro: int, accum: int, max_grad_norm: float | None) -> None:
    """Fill a DeepSpeed config's ``auto`` micro-batch, accumulation and clipping from the recipe.

    vltool's batches come from its own batch sampler (``DataLoader.batch_size`` is None), so
    Accelerate cannot infer them. A config that fixes a different accumulation than the recipe's
    effective batch implies is refused: it would silently change the optimisation.
    """
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    wanted = {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": accum,
              "gradient_clipping": float(max_grad_norm or 0.0)}
    for key, value in wanted.items():
        have = config.get(key, "auto")
        if have == "auto":
            config[key] = value
        elif key != "gradient_clipping" and int(have) != value:
            raise UserError(f"the DeepSpeed config sets {key}={have} but the recipe needs {value} (train.batch_size="
                            f"{micro * accum * accelerator.num_processes} = micro {micro} x accumulation {accum} x "
                            f"{accelerator.num_processes} processes); set it to auto")
    config["train_batch_size"] = micro * accum * accelerator.num_processes


class _MetricsLog:
    """Append-only ``metrics.jsonl`` written by the main process; rewritten on resume. Each new
    row also goes to ``on_row`` (the experiment trackers)."""

    def __init__(self, path: Path | None, history: Sequence[dict], enabled: bool,
                 on_row: Callable[[dict], None] | None = None) -> None:
        self.path = path if enabled else None
        self.on_row = on_row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(json.dumps(row) + "\n" for row in history))

    def write(self, row: dict) -> None:
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        if self.on_row is not None:
            self.on_row(row)


def train(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Dataset,
    settings: TrainSettings,
    collate_fn: Callable | None = None,
    run_dir: Path | None = None,
    eval_fn: EvalFn | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    accelerator: Accelerator | None = None,
    task: str = "train",
) -> TrainResult:
    """Train the parameters of ``model`` that have ``requires_grad`` and return the result.

    ``loss_fn(model, batch)`` returns the mean loss of a micro-batch. ``eval_fn(model, step)``
    runs on the main process every ``eval_every`` steps and at the end; its numbers go to
    ``metrics.jsonl`` under ``eval``. With ``resume`` the newest checkpoint in
    ``run_dir/checkpoints`` is restored and the run continues to the same result (tensors and
    logged loss curve) an uninterrupted run gives; a checkpoint of a finished run returns at
    once. With ``save_every`` a last checkpoint is written when the run finishes, so a later
    phase of the same stage can be resumed without redoing this one.

    The Accelerator may be shared by several ``train()`` calls of one stage: each call removes
    its checkpoint hooks and drops its model/optimizer from the Accelerator when it returns.
    Ctrl-C raises ``Interrupted`` naming the checkpoint to resume from.
    """

    check_quantization(settings.llm_quantization, None if accelerator is None else accelerator.device.type == "cuda")
    accelerator = accelerator or make_accelerator(settings.precision)
    store_frozen_towers(model, settings, accelerator)
    if settings.llm_quantization != "none":
        quantize_frozen_llm(model, settings.llm_quantization)
    if settings.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = build_optimizer(model, settings)
    names = trainable_names(model)
    handles = []
    if not is_sharded(accelerator):
        # FSDP and DeepSpeed save and load (sharded) model states their own way; the hooks that
        # keep only the trainable tensors apply to plain and DDP runs.
        handles = [
            accelerator.register_save_state_pre_hook(keep_trainable_hook(names)),
            accelerator.register_load_state_pre_hook(strict_load_hook(model, names)),
        ]
    run = _Run(accelerator, model, loss_fn, train_data, settings, collate_fn, run_dir, eval_fn, reporter, task)
    try:
        return run.go(optimizer, resume)
    except KeyboardInterrupt:
        raise Interrupted(run.resume_hint()) from None
    finally:
        for handle in handles:
            handle.remove()
        accelerator.free_memory()


def store_frozen_towers(model: nn.Module, settings: TrainSettings, accelerator: Accelerator) -> str:
    """Keep the frozen LLM's and ViT's weight matrices in ``train.frozen_dtype`` (``models.memory``);
    returns the dtype name used. Runs before ``prepare`` so the device never holds the fp32 copies."""

    name = frozen_dtype_name(settings.frozen_dtype, str(accelerator.mixed_precision), is_sharded(accelerator))
    if name == "fp16" and accelerator.device.type != "cuda":
        raise UserError("train.frozen_dtype=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if name != "fp32" and accelerator.mixed_precision == "no":
        raise UserError(f"train.frozen_dtype={name} needs mixed precision (train.precision={name}): without "
                        f"autocast the fp32 inputs cannot meet {name} weights")
    cast_frozen_towers(model, getattr(torch, FROZEN_DTYPE_NAMES[name]))
    return name


class _Run:
    """One call of ``train()``: its state lives here so Ctrl-C can say where to resume from."""

    def __init__(self, accelerator: Accelerator, model: nn.Module, loss_fn: LossFn, train_data: Dataset,
                 settings: TrainSettings, collate_fn: Callable | None, run_dir: Path | None,
                 eval_fn: EvalFn | None, reporter: Reporter | None, task: str) -> None:
        self.accelerator, self.model, self.loss_fn = accelerator, model, loss_fn
        self.train_data, self.collate_fn, self.eval_fn, self.task = train_data, collate_fn, eval_fn, task
        self.main = accelerator.is_main_process
        self.reporter = reporter if (reporter is not None and self.main) else NullReporter()
        self.settings = resolve_warmup(settings, len(train_data))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.last_checkpoint: Path | None = None

    def resume_hint(self) -> str:
        if self.last_checkpoint is None:
            return (f"interrupted during {self.task}: no checkpoint was saved yet (train.save_every="
                    f"{self.settings.save_every}); rerunning starts over")
        return (f"interrupted during {self.task}; rerun the same command with --resume to continue from "
                f"{self.last_checkpoint}")

    def go(self, optimizer: torch.optim.Optimizer, resume: bool) -> TrainResult:
        started = time.perf_counter()
        accelerator, settings, run_dir, reporter = self.accelerator, self.settings, self.run_dir, self.reporter
        set_seed(settings.seed)
        total, micro, accum = plan_steps(settings, len(self.train_data), accelerator.num_processes)
        tracker_offset = begin_phase(accelerator, total)  # trackers count steps across a stage's phases
        scheduler = build_scheduler(optimizer, total, settings)
        accelerator.gradient_accumulation_steps = accum
        accelerator.step = 0  # accumulate()'s micro-batch counter (the Accelerator may be shared by phases)
        configure_deepspeed(accelerator, micro, accum, settings.max_grad_norm)
        configure_fsdp(accelerator, self.model)
        if getattr(self.model, "may_leave_parameters_unused", False):
            # DDP all-reduces each gradient bucket once every rank has it; a trainable left out of
            # one rank's forward (an MMA text-only micro-batch skips the front end) must be marked
            # ready there, or the ranks' collectives stop matching.
            accelerator.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
        model, optimizer, scheduler = accelerator.prepare(self.model, optimizer, scheduler)
        trainables = [p for p in model.parameters() if p.requires_grad]

        state: dict[str, Any] = {"step": 0, "history": [], "skipped": 0, "pending": [], "completed": False}
        if run_dir is not None:
            self.last_checkpoint = latest_checkpoint(run_dir)
        if resume:
            if run_dir is None:
                raise UserError("resume needs a run folder; none was given")
            if self.last_checkpoint is None:
                raise UserError(f"nothing to resume: no complete checkpoint in {checkpoint_dir(run_dir)}")
            state.update(load_checkpoint(accelerator, self.last_checkpoint))
            reporter.log(f"resumed {self.task} from {self.last_checkpoint} at step {state['step']}")
        start_step, history, skipped = state["step"], state["history"], state["skipped"]
        # Losses of steps since the last log row: part of the checkpoint, so a resumed run logs
        # the same running mean as an uninterrupted one.
        pending: list[float] = state["pending"]

        log = _MetricsLog(run_dir / "metrics.jsonl" if run_dir else None, history, self.main,
                          on_row=partial(log_row, accelerator, offset=tracker_offset))
        result = TrainResult(steps=start_step, history=history, skipped_nonfinite=skipped)
        evals = [row["eval"] for row in history if "eval" in row]
        result.final_metrics = evals[-1] if evals else {}
        if state["completed"]:
            reporter.log(f"{self.task} had finished; nothing left to train")
            result.wall_time_s = time.perf_counter() - started
            result.model = accelerator.unwrap_model(model)
            return result
        # A resumed (or --force restarted) run's rows replace what a stopped run logged from here on.
        restart_curve(accelerator, tracker_offset + start_step + 1)

        # A dataset may bring its own deterministic batch order (a ratio mixture of sources);
        # the sample order never depends on the worker count.
        make_sampler = getattr(self.train_data, "batch_sampler", None)
        sampler = (make_sampler or partial(StepBatchSampler, len(self.train_data)))(
            micro, accum, accelerator.num_processes, accelerator.process_index, settings.seed, total, start_step,
        )
        if hasattr(sampler, "check_state") and "data" in state:
            sampler.check_state(state["data"])  # the stream positions of the checkpoint
        loader = make_loader(self.train_data, sampler, self.collate_fn, settings.num_workers)
        # Accelerate's DataLoaderShard (device placement; tells accumulate() where the data ends),
        # over batches the sampler has already dealt to this process: wrapped as for one process.
        loader = prepare_data_loader(loader, device=accelerator.device, num_processes=1, process_index=0,
                                     put_on_device=True, non_blocking=loader.pin_memory)
        # DataLoader.__iter__ draws a base seed from the global RNG (at the first batch, as the
        # shard iterates lazily); keep that draw from shifting the dropout stream, so a resumed
        # run matches an uninterrupted one bit for bit.
        rng_state = torch.get_rng_state()
        batches = iterate(loader)
        first = next(batches, None)
        torch.set_rng_state(rng_state)
        batches = itertools.chain([first], batches)
        samples_per_step = micro * accum * accelerator.num_processes
        reporter.start(self.task, total)
        reporter.update(start_step)  # where the ETA starts counting (a resumed run's first step)
        tick = time.perf_counter()
        steps_timed = 0
        faults = planned_faults(self.task)

        # Under FSDP / DeepSpeed every forward gathers parameter shards from all processes, so all
        # of them run the evaluation (the same samples, the same number of forwards); the main one logs.
        sharded = is_sharded(accelerator)

        def evaluate(step: int) -> None:
            if self.eval_fn is None:
                return
            if self.main or sharded:
                unwrapped = accelerator.unwrap_model(model)
                was_training = unwrapped.training
                unwrapped.eval()
                # Under the training step's autocast: frozen towers may be stored in bf16/fp16.
                with torch.no_grad(), accelerator.autocast():
                    metrics = {k: float(v) for k, v in self.eval_fn(unwrapped, step).items()}
                unwrapped.train(was_training)
            if self.main:
                row = {"step": step, "eval": metrics}
                history.append(row)
                log.write(row)
                result.final_metrics = metrics
                reporter.log(f"{self.task} step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                                                                      if is_metric(k)))
            accelerator.wait_for_everyone()

        def checkpoint(step: int, completed: bool) -> None:
            if run_dir is None or not settings.save_every:
                return
            self.last_checkpoint = save_checkpoint(
                accelerator, run_dir, step,
                {"history": history, "skipped": skipped, "pending": pending, "completed": completed,
                 **({"data": sampler.state(step)} if hasattr(sampler, "state") else {})},
                settings.keep_checkpoints,
            )

        model.train()
        for step in range(start_step, total):
            losses = []
            for _ in range(accum):
                batch = next(batches)
                # accumulate(): no gradient all-reduce (DDP) / reduce-scatter (FSDP, ZeRO) until the
                # last micro-batch; accelerator.backward divides the loss by ``accum``.
                with accelerator.accumulate(model), accelerator.autocast():
                    loss = self.loss_fn(model, batch)
                    accelerator.backward(loss)
                losses.append(loss.detach().float())
            if not accelerator.sync_gradients:  # the sampler and accumulate() disagree on the step
                raise RuntimeError(f"gradient accumulation out of step at optimizer step {step + 1}")
            step_loss = torch.stack(losses).mean()
            finite = torch.isfinite(step_loss).to(accelerator.device, torch.float32)
            finite = accelerator.reduce(finite, reduction="sum") if accelerator.num_processes > 1 else finite
            if finite.item() < accelerator.num_processes:
                optimizer.zero_grad(set_to_none=True)
                if settings.on_nonfinite == "skip":
                    skipped += 1
                    scheduler.step()
                    continue
                result.stopped = f"non-finite loss at step {step + 1}"
                break
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(trainables, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            pending.append(accelerator.reduce(step_loss, reduction="mean").item())
            steps_timed += 1
            if done % settings.log_every == 0 or done == total:
                now = time.perf_counter()
                row = {
                    "step": done,
                    "loss": sum(pending) / len(pending),
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_s": samples_per_step * steps_timed / max(now - tick, 1e-9),
                }
                tick, steps_timed = now, 0
                pending.clear()
                history.append(row)
                log.write(row)
                reporter.update(done, loss=row["loss"], lr=row["lr"], samples_per_s=row["samples_per_s"])
            if settings.eval_every and done % settings.eval_every == 0 and done != total:
                evaluate(done)
            if done % max(settings.save_every, 1) == 0 and done != total:
                checkpoint(done, completed=False)
            result.steps = done
            maybe_fault(faults, done)

        loader.end()  # the shard's own end-of-data cleanup (the loop stops at its last batch, not past it)
        if result.stopped == "completed":
            evaluate(result.steps)
            checkpoint(result.steps, completed=True)
        reporter.finish(steps=result.steps, stopped=result.stopped)
        result.history = history
        result.skipped_nonfinite = skipped
        result.wall_time_s = time.perf_counter() - started
        accelerator.wait_for_everyone()
        result.model = accelerator.unwrap_model(model)
        return result
