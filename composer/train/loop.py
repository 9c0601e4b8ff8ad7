"""The training loop: a built model + a recipe + data -> checkpoints, metrics and curves.

Everything a user can get wrong (the data, the recipe, the batch, a checkpoint from another
blueprint) is found before a weight is allocated and reported in one go (`prepare`). The loop is
plain PyTorch: AdamW/SGD with weight decay on weights only, warm-up + cosine per step, autocast
(bf16, or fp16 with a GradScaler), gradient accumulation and clipping, an EMA of the weights,
DistributedDataParallel under torchrun. The data order comes from an EpochSampler (a DistributedSampler, one
replica without torchrun, that also tells the decoding workers the epoch), so one process and N processes see the same global batches.

A run is four steps: `prepare` (checks and decisions), `_assemble` (model, optimizer, loaders),
then per epoch `_train_epoch` and `_validate`, and `_checkpoint` (best.pt, last.pt, the top-k,
metrics.jsonl / .csv, TensorBoard events).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..blueprint.overrides import apply_overrides
from ..planning.specs import to_plan as make_plan
from ..weights.model import build_network as build_model, save_network as save
from ..blueprint import Blueprint, BlueprintError, Problem
from ..blueprint.validation import validate as validate_blueprint
from ..planning.planner import Plan
from . import distributed, runs
from .augment import Normalize, TrainAugment, soft_cross_entropy
from .autobatch import auto_batch
from .checkpoints import blueprint_text, check_checkpoint, load_checkpoint, restore_rng, rng_state
from .data import (DataError, EpochSampler, ImageDataset, Samples, Splits, TrainDataset, check_images, find_splits,
                   size_note, write_splits)
from .recipe import Recipe, RecipeError, fitted_warmup, with_batch
from .report import Progress, Records, plot_curves, read_metrics

MIN_STEPS = 8  # optimizer steps per epoch that `--batch auto` keeps, data permitting
STEPS = 32  # ... and aims at, while its batches stay at 16 or more (a small set learns from many steps)


class TrainingError(BlueprintError):
    """A run that cannot go on (a non-finite loss)."""

    subject = "in training"


class RunProblems(BlueprintError):
    """Every problem found before a run starts, of the blueprint, the recipe, the data and the flags."""

    def __init__(self, errors: list[BlueprintError]):
        nouns: list[str] = []
        for e in errors:
            if all(p.file == "<command line>" for p in e.problems) and not hasattr(type(e), "subject"):
                noun = "the command line"
            else:
                noun = getattr(e, "subject", "in the blueprint").removeprefix("in ").removeprefix("with ")
            if noun not in nouns:
                nouns.append(noun)
        self.subject = "with " + (nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1])
        super().__init__([p for e in errors for p in e.problems])


class Gather:
    """Run checks one after another, keeping every BlueprintError; `done()` raises them together."""

    def __init__(self) -> None:
        self.errors: list[BlueprintError] = []

    def attempt(self, fn: Callable, *args, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except RunProblems as exc:
            self.errors += [exc]
        except BlueprintError as exc:
            self.errors.append(exc)
        return None

    def add(self, error: BlueprintError) -> None:
        self.errors.append(error)

    def done(self) -> None:
        if self.errors:
            single = len(self.errors) == 1 and hasattr(type(self.errors[0]), "subject")
            raise self.errors[0] if single else RunProblems(self.errors)


@dataclass
class TrainResult:
    out: Path
    epochs: int
    best_top1: float
    last: dict = field(default_factory=dict)
    batch: int = 0
    complete: bool = False  # a resumed run that had nothing left to do


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: not on norms, biases, class tokens or position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    o = recipe.optimizer
    groups = param_groups(model, o.weight_decay)
    if o.type == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)


def warmup_cosine(recipe: Recipe, steps_per_epoch: int):
    """Multiplier of the peak lr at each optimizer step: linear warm-up, then cosine to min_lr.
    The warm-up is the recipe's, shortened to a quarter of a short run (recipe.fitted_warmup)."""
    peak, s = recipe.optimizer.lr, recipe.schedule
    total = max(1, recipe.epochs * steps_per_epoch)
    warm = min(total, round(fitted_warmup(recipe) * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (s.warmup_lr + (peak - s.warmup_lr) * step / warm) / peak
        t = (step - warm) / max(1, total - warm)
        return (s.min_lr + (peak - s.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))) / peak

    return factor


# --- prepare: every check and decision, before a weight exists ----------------------------------

@dataclass
class Prepared:
    bp: Blueprint
    size: tuple[int, int]  # (height, width)
    splits: Splits
    recipe: Recipe
    per_device: int
    checkpoint: Optional[dict] = None
    notes: list[str] = field(default_factory=list)
    complete: bool = False
    channels: int = 3
    plan: Optional[Plan] = None  # of `bp`, made once


def with_classes(bp: Blueprint, n: int) -> Blueprint:
    """The blueprint with a head for `n` classes (its other values as they were)."""
    return validate_blueprint(apply_overrides(bp.source, {"classes": n}))


def _shown(names: list[str]) -> str:
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _input_problem(bp: Blueprint) -> Optional[DataError]:
    if bp.model.input.channels not in (1, 3):
        return DataError(bp.source.problem(("input", "channels"), "training decodes images to 1 (grayscale) or 3 (RGB) channels",
                                           "set `input: {channels: 3}`"))
    return None


def _resume_checks(bp: Blueprint, splits: Optional[Splits], recipe: Recipe, out: Path) -> tuple[Optional[dict], bool]:
    """(the checkpoint of OUT/last.pt, whether the run is complete); raise what forbids resuming."""
    last = out / "last.pt"
    if not last.exists():
        raise DataError(Problem("no checkpoint to resume from", (), str(last),
                                hint="train without `--resume` first, or point `--out` at the run"))
    checkpoint = check_checkpoint(load_checkpoint(last), last)
    if checkpoint["blueprint"] != blueprint_text(bp):
        raise DataError(Problem("the checkpoint was trained from another blueprint", (), str(last),
                                hint="resume with the blueprint (and `--set` values) it was trained with, "
                                     "or start a new run with another `--out`"))
    if splits is not None and list(checkpoint["classes"]) != list(splits.train.classes):
        raise DataError(Problem(f"the data's classes ({_shown(splits.train.classes)}) are not the run's "
                                f"({_shown(list(checkpoint['classes']))})", (), str(splits.train.root),
                                hint="resume on the data the run started with, or start a new run"))
    complete = checkpoint["epoch"] >= recipe.epochs or bool(checkpoint.get("stopped_early"))
    return checkpoint, complete


def _data_limit(per: int) -> int:
    """The largest micro-batch a data set of `per` images per device allows: up to STEPS steps an
    epoch with batches of 16 or more, at least MIN_STEPS steps, and fewer only for tiny sets."""
    if per >= 16 * MIN_STEPS:
        return max(16, per // STEPS)
    if per >= 8 * MIN_STEPS:
        return per // MIN_STEPS
    return max(1, min(8, per))


def _batch(plan: Plan, recipe: Recipe, n_train: int, d: distributed.Dist, auto: bool, batch: Optional[int],
           notes: list[str]) -> tuple[Recipe, int]:
    """(the recipe at the run's batch, its per-device micro-batch x accumulate); raise a bad batch."""
    flag = batch
    per = n_train // (d.world * recipe.accumulate)  # images per device and micro-batch slot
    limit = _data_limit(per)
    if not auto and batch is None and recipe.batch > n_train:  # the recipe's batch, for a data set this small
        batch = limit * d.world * recipe.accumulate
        notes.append(f"batch {batch}: the recipe's {recipe.batch} is larger than the {n_train} training images")
    if auto:
        per_device, info = auto_batch(plan, recipe, d.device, limit=limit)
        if per_device < 1:
            raise DataError(plan.blueprint.source.problem((), f"not even one image per step fits in the {info['free_bytes'] / 2**30:.1f} GiB "
                                                  f"free on {d.device} (estimate: {info['fixed_bytes'] / 2**30:.1f} GiB fixed)",
                                              "a smaller blueprint, `--set recipe.precision=bf16`, or a larger device"))
        chosen = per_device * d.world * recipe.accumulate
        why = "memory" if info["fits"] < limit else f"at least {MIN_STEPS} steps per epoch"
        notes.append(f"batch auto: {chosen} ({per_device} per device, limited by {why}; "
                     f"estimate {info['per_image_bytes'] / 2**20:.1f} MiB per image, {info['free_bytes'] / 2**30:.1f} GiB usable)")
        batch = chosen
    if batch is not None and batch != recipe.batch:
        scaled = with_batch(recipe, batch)
        notes.append(f"lr {scaled.optimizer.lr:.3g} for batch {batch} (the recipe's {recipe.optimizer.lr:.3g} at batch "
                     f"{recipe.batch}, scaled by `lr_scale: {recipe.lr_scale}`)")
        recipe = scaled
    def refuse(message: str, hint: str) -> RecipeError:
        if flag is not None:  # the batch of `--batch N`
            return RecipeError(Problem(f"`--batch {flag}`: {message}", (), "<command line>", hint=hint))
        return RecipeError(recipe.problem(("batch",), message, hint))

    per_device = recipe.batch // (d.world * recipe.accumulate)
    if per_device * d.world * recipe.accumulate != recipe.batch or per_device < 1:
        raise refuse(f"batch {recipe.batch} does not split into {d.world} device(s) x {recipe.accumulate} micro-batch(es)",
                     "choose a batch divisible by devices x accumulate")
    if n_train // d.world < recipe.batch // d.world:
        raise refuse(f"batch {recipe.batch} is larger than the {n_train} training images", "use a smaller `--batch`, or `--batch auto`")
    return recipe, per_device


def prepare(bp: Blueprint, data: Path, recipe: Recipe, out: Path, d: distributed.Dist, *, resume: bool = False,
            auto: bool = False, batch: Optional[int] = None) -> Prepared:
    """Check the blueprint's input, the data, a resumed checkpoint and the batch, and decide the
    head (the data's class count), the warm-up and the batch. Raises every problem at once."""
    gather = Gather()
    input_problem = _input_problem(bp)
    if input_problem is not None:
        gather.add(input_problem)
    splits = gather.attempt(find_splits, data, recipe.data.val_split, recipe.seed)
    notes: list[str] = []
    if splits is not None and bp.model.classes != len(splits.train.classes):
        n = len(splits.train.classes)
        notes.append(f"head: {n} classes from the data ({_shown(splits.train.classes)}); the blueprint says "
                     f"{bp.model.classes}, so the classifier is new (`--set classes={n}` says so in the blueprint)")
        bp = gather.attempt(with_classes, bp, n) or bp
    plan = make_plan(bp)  # once: the batch, the input and the build all take this plan
    checkpoint, complete = None, False
    if resume:
        checkpoint, complete = gather.attempt(_resume_checks, bp, splits, recipe, out) or (None, False)
    if splits is not None and not complete:
        if not resume:
            recipe, per_device = gather.attempt(_batch, plan, recipe, len(splits.train), d, auto, batch, notes) or (recipe, 0)
        else:  # the run's own batch
            recipe, per_device = gather.attempt(_batch, plan, recipe, len(splits.train), d, False, None, notes) or (recipe, 0)
    else:
        per_device = 0
    if recipe.sync_bn and d.enabled and d.device.type != "cuda":
        gather.add(DataError(recipe.problem(("sync_bn",), "sync_bn runs on GPUs only (torch's SyncBatchNorm)",
                                            "`--set recipe.sync_bn=false` for CPU processes")))
    gather.done()
    if fitted_warmup(recipe) < recipe.schedule.warmup_epochs:
        notes.append(f"warm-up {fitted_warmup(recipe):g} epochs (the recipe's {recipe.schedule.warmup_epochs:g}, "
                     f"shortened to a quarter of this {recipe.epochs}-epoch run)")
    shape = plan.input_shape
    return Prepared(bp, tuple(shape[1:]), splits, recipe, per_device, checkpoint, notes, complete, channels=shape[0],
                    plan=plan)


# --- the run's objects ---------------------------------------------------------------------------

@dataclass
class Run:
    """What trains: the model (raw and wrapped), optimizer, schedule, loaders and augmentation."""
    bp: Blueprint
    recipe: Recipe
    out: Path
    d: distributed.Dist
    raw: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    ema: Optional[nn.Module]
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    augment: nn.Module
    normalize: nn.Module
    memory_format: torch.memory_format
    dtype: Optional[torch.dtype]
    micro: int
    classes: list[str]
    workers: int
    threads: int

    def amp(self):
        return torch.autocast(self.d.device.type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()


def _cpu_split(recipe: Recipe, d: distributed.Dist) -> tuple[int, int]:
    """(torch threads, decoding workers) of this process, from the cores not busy with other work;
    a user's OMP_NUM_THREADS is kept."""
    if d.device.type != "cpu":
        return torch.get_num_threads(), min(recipe.data.workers, distributed.usable_cores())
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
    usable, free = distributed.free_cores() if local_world == 1 else (distributed.usable_cores(),) * 2
    threads, workers = distributed.cpu_split(free, local_world, recipe.data.workers)
    if os.environ.get("OMP_NUM_THREADS", "").isdecimal() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads = int(os.environ["OMP_NUM_THREADS"])  # the user's, or the launcher's split for its workers
    torch.set_num_threads(max(1, threads))
    return threads, workers


def _build_model(prep: Prepared, d: distributed.Dist, weights: Any, weight_options: dict, show: Progress) -> nn.Module:
    if weights is None:
        model = build_model(prep.plan or prep.bp, seed=prep.recipe.seed)
    else:
        model = build_model(prep.plan or prep.bp, seed=prep.recipe.seed, weights=weights, **weight_options)
        show.line(model.weights_report.summary())  # what was loaded, resized and re-initialised (a new head)
    if prep.recipe.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model = model.to(d.device)
    if prep.recipe.sync_bn and d.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    fmt = torch.channels_last if prep.recipe.channels_last else torch.contiguous_format
    return model.to(memory_format=fmt)


def _assemble(prep: Prepared, out: Path, d: distributed.Dist, weights: Any, weight_options: dict, auto: bool,
              show: Progress) -> Run:
    recipe, size, channels = prep.recipe, prep.size, prep.channels
    threads, workers = _cpu_split(recipe, d)
    model = _build_model(prep, d, weights, weight_options, show)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    per_device = prep.per_device
    if auto and d.device.type == "cuda":
        per_device = confirm_batch(model, per_device, (channels, *size), fmt, recipe, d)
        recipe = recipe.model_copy(update={"batch": per_device * d.world * recipe.accumulate})
    # workers crop and flip while decoding (TrainDataset); the evaluation view is resized to size / crop_pct
    load = tuple(round(s / recipe.augment.crop_pct) for s in size)
    train_ds = TrainDataset(prep.splits.train, size, channels, recipe.augment.crop, recipe.augment.hflip, recipe.seed, load)
    val_ds = ImageDataset(prep.splits.val, load, size, channels)
    sampler = EpochSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=recipe.seed, drop_last=True)
    # Workers live for the whole run; their seeds come from the loaders' own generators, so the
    # global RNG (augmentation) draws the same numbers with or without workers, resumed or not.
    loader_args = dict(num_workers=workers, pin_memory=d.device.type == "cuda", persistent_workers=workers > 0)
    batch = per_device * recipe.accumulate
    train_loader = DataLoader(train_ds, batch_size=batch, sampler=sampler, drop_last=True,
                              generator=torch.Generator().manual_seed(recipe.seed), **loader_args)
    val_loader = DataLoader(Subset(val_ds, list(range(d.rank, len(prep.splits.val), d.world))), batch_size=batch,
                            generator=torch.Generator().manual_seed(recipe.seed), **loader_args)
    optimizer = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(recipe, len(train_loader)))
    scaler = torch.amp.GradScaler(d.device.type, enabled=recipe.precision == "fp16")
    ema = None
    if recipe.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema), use_buffers=True)
    if d.enabled:  # gradients that exist before DDP become views of its buckets (its own layout), so
        for p in model.parameters():  # no gradient reaches the reducer in another layout (torch's stride warning)
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    net: nn.Module = nn.parallel.DistributedDataParallel(
        model, device_ids=[d.device.index] if d.device.type == "cuda" else None, gradient_as_bucket_view=True) \
        if d.enabled else model
    if recipe.compile:
        net = torch.compile(net)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.precision]
    return Run(prep.bp, recipe, out, d, model, net, optimizer, scheduler, scaler, ema, sampler, train_loader, val_loader,
               TrainAugment(recipe.augment, size, channels, cropped=True).to(d.device),
               Normalize(recipe.augment.mean, recipe.augment.std, channels).to(d.device),
               fmt, dtype, per_device, prep.splits.train.classes, workers, threads)


def _restore(run: Run, checkpoint: Optional[dict]) -> tuple[int, float, list[dict]]:
    """(first epoch, best top-1, metrics rows so far): from a checkpoint, or a fresh start."""
    if checkpoint is None:
        torch.manual_seed(run.recipe.seed)
        return 0, -1.0, []
    run.raw.load_state_dict(checkpoint["state_dict"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.ema is not None and checkpoint.get("ema") is not None:
        run.ema.load_state_dict(checkpoint["ema"])
    restore_rng(checkpoint["rng"])
    start = checkpoint["epoch"]
    rows = [r for r in read_metrics(run.out / "metrics.jsonl") if r.get("epoch", 0) <= start]
    return start, checkpoint["best_top1"], rows


# --- one epoch -----------------------------------------------------------------------------------

def _train_epoch(run: Run, epoch: int, show: Progress) -> dict:
    """Train one epoch; the losses (with and without label smoothing) and top-1 on the training batches."""
    r, d, micro = run.recipe, run.d, run.micro
    run.sampler.set_epoch(epoch)
    run.net.train()
    t0 = time.perf_counter()
    sums = [0.0, 0.0, 0.0, 0.0]  # smoothed loss, plain loss, correct, images
    show.start(f"epoch {epoch + 1}/{r.epochs}", len(run.train_loader))
    for step, (images, labels) in enumerate(run.train_loader):
        images = images.to(d.device, non_blocking=True)
        labels = labels.to(d.device, non_blocking=True)
        x, targets = run.augment(images, labels)
        x = x.contiguous(memory_format=run.memory_format)
        for i in range(r.accumulate):
            part = slice(i * micro, (i + 1) * micro)
            sync = i == r.accumulate - 1 or not d.enabled
            with (contextlib.nullcontext() if sync else run.net.no_sync()), run.amp():
                logits = run.net(x[part]).float()
                loss = soft_cross_entropy(logits, targets[part], r.label_smoothing)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(Problem(
                    f"the training loss became {value} at epoch {epoch + 1}, step {step + 1}; the run stopped", (), str(run.out),
                    hint=f"{run.out / 'last.pt'} holds the last good epoch" + (f" ({epoch})" if epoch else " (none yet)")
                         + "; lower `recipe.optimizer.lr`, set `recipe.clip_grad`, or check `recipe.augment.mean/std`"))
            run.scaler.scale(loss / r.accumulate).backward()
            with torch.no_grad():
                plain = soft_cross_entropy(logits, targets[part], 0.0).item() if r.label_smoothing else value
                hard = labels[part]
                sums[0] += value * micro
                sums[1] += plain * micro
                sums[2] += (logits.argmax(1) == hard).sum().item()
                sums[3] += micro
        if r.clip_grad is not None:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.raw.parameters(), r.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=not d.enabled)  # under DDP the gradients stay bucket views
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.raw)
        show.update(1, images=micro * r.accumulate * d.world, loss=value, lr=run.scheduler.get_last_lr()[0])
    show.finish()
    elapsed = time.perf_counter() - t0
    smoothed, plain, correct, seen = distributed.all_sum(d, sums)
    return {"epoch": epoch + 1, "train_loss": plain / seen, "train_loss_smoothed": smoothed / seen, "train_top1": correct / seen,
            "lr": run.scheduler.get_last_lr()[0], "images_per_s": seen / elapsed, "epoch_time_s": elapsed}


def _validate(run: Run) -> dict:
    """Validation loss (with and without label smoothing), top-1 and top-5; the EMA's top-1."""
    args = (run.val_loader, run.normalize, run.d, len(run.classes), run.memory_format, run.amp, run.recipe.label_smoothing)
    val = evaluate_loader(run.net, *args)
    row = {"val_loss": val["loss"], "val_loss_smoothed": val["loss_smoothed"], "val_top1": val["top1"], "val_top5": val["top5"]}
    if run.ema is not None:
        row["ema_top1"] = evaluate_loader(run.ema.module, *args)["top1"]
    return row


def _plateau(rows: list[dict], recipe: Recipe) -> bool:
    """Whether validation top-1 has not gained more than `min_delta` for `patience` epochs."""
    if recipe.early_stop is None:
        return False
    best, since = -math.inf, 0
    for r in rows:
        if r["val_top1"] > best + recipe.early_stop.min_delta:
            best, since = r["val_top1"], 0
        else:
            since += 1
    return since >= recipe.early_stop.patience


def _checkpoint(run: Run, rows: list[dict], best: float, improved: bool, stopped: bool, records: Records) -> None:
    """best.pt (when improved), the top-k, last.pt and the metrics files: each written atomically."""
    extra = {"recipe": run.recipe.model_dump(mode="json"), "classes": run.classes, "epoch": rows[-1]["epoch"],
             "best_top1": best, "metrics": rows[-1], "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
             "ema": run.ema.state_dict() if run.ema is not None else None, "rng": rng_state(), "stopped_early": stopped}
    if improved:
        save(run.raw, run.bp, run.out / "best.pt", extra=extra)
    if run.recipe.keep_top > 1:
        ranked = sorted(rows, key=lambda r: (-r["val_top1"], r["epoch"]))[: run.recipe.keep_top]
        keep = {f"top-{r['epoch']}.pt" for r in ranked}
        if f"top-{rows[-1]['epoch']}.pt" in keep:
            save(run.raw, run.bp, run.out / f"top-{rows[-1]['epoch']}.pt", extra=extra)
        for old in run.out.glob("top-*.pt"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
    save(run.raw, run.bp, run.out / "last.pt", extra=extra)
    records.write(rows)


def _epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} (top-1 {row['train_top1']:.2%}), "
            f"val loss {row['val_loss']:.4f}, top-1 {row['val_top1']:.2%}, top-5 {row['val_top5']:.2%}, "
            f"{row['images_per_s']:.0f} images/s" + (f", EMA top-1 {row['ema_top1']:.2%}" if "ema_top1" in row else ""))


# --- the whole run -------------------------------------------------------------------------------

def train(bp: Blueprint, data: str | Path, recipe: Recipe, out: str | Path, *, resume: bool = False,
          weights: Any = None, weights_from: str = "auto", partial: bool = False, parts: Optional[list] = None,
          weights_blueprint: Optional[Blueprint] = None, auto: bool = False, batch: Optional[int] = None,
          device: Optional[str] = None, exist_ok: bool = False, progress: bool = True,
          stop_after: Optional[int] = None, prepared: Optional[Prepared] = None) -> TrainResult:
    """Train the network of `bp` on `data` (ImageFolder tree or CSV) with `recipe`; write
    OUT/last.pt, OUT/best.pt, OUT/metrics.jsonl (+ .csv), OUT/curves.png and TensorBoard events.

    An OUT that holds files is left alone: the run goes to the first free numbered folder beside
    it (TrainResult.out), unless `exist_ok` (reuse it) or `resume` (continue from OUT/last.pt; its
    blueprint and classes must be these). `batch` replaces the recipe's global batch and `auto`
    picks one (both scale the lr by `recipe.lr_scale`). `weights` (a path, `hf-hub:` name or state
    dict) starts from a checkpoint, as `composer.build` reads it (`weights_from`, `partial`, `parts`,
    `weights_blueprint`). `stop_after` ends the run after that many epochs of this call, as an
    interruption would (the run can be resumed). `prepared`: what `prepare` gave for these same
    arguments on one process (the command line checks before it runs), taken instead of preparing
    again; a run of several processes prepares on each.
    """
    d = distributed.setup(device)
    out = Path(out)
    if not (resume or exist_ok):
        out = _agreed(d, runs.free_folder(out) if d.main else None)
    show = Progress(enabled=progress and d.main)
    try:
        if prepared is not None and not d.enabled:
            prep = prepared
        else:
            prep = prepare(bp, Path(data), recipe, out, d, resume=resume, auto=auto, batch=batch)
        if prep.complete:
            return _complete(prep, out, show)
        with runs.locked(out) if d.main else contextlib.nullcontext():
            return _run(prep, Path(data), out, d, show, weights,
                        {"weights_from": weights_from, "strict": not partial, "parts": parts, "weights_blueprint": weights_blueprint},
                        auto, stop_after)
    finally:
        distributed.teardown(d)


def _agreed(d: distributed.Dist, value: Any) -> Any:
    """Rank 0's `value`, on every process."""
    if not d.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _complete(prep: Prepared, out: Path, show: Progress) -> TrainResult:
    c = prep.checkpoint
    if c.get("stopped_early"):
        how = f"stopped early at epoch {c['epoch']} (no validation gain)"
        more = f"To train on from its weights: a new run with `--weights {out / 'best.pt'}`"
    else:
        how = f"trained its {c['epoch']} epochs"
        more = f"To train longer: `--resume --epochs {max(c['epoch'], prep.recipe.epochs) + max(1, c['epoch'] // 2)}`"
    show.line(f"the run in {out} is complete: it {how}; best top-1 {c['best_top1']:.2%}. Nothing was changed. {more}")
    return TrainResult(out, c["epoch"], c["best_top1"], c.get("metrics") or {}, prep.recipe.batch, complete=True)


def _run(prep: Prepared, data: Path, out: Path, d: distributed.Dist, show: Progress, weights: Any, weight_options: dict,
         auto: bool, stop_after: Optional[int]) -> TrainResult:
    splits = prep.splits
    skipped, stats = _broken_images(Samples(splits.train.paths + splits.val.paths, splits.train.labels + splits.val.labels,
                                            splits.train.classes, splits.train.root), prep.recipe, d, show)
    note = size_note(stats, prep.size)
    if note:
        show.line(note)
    if skipped:
        show.line(f"skipped {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} (recipe data.bad_images: skip)")
        splits.train, splits.val = (s.subset([i for i, p in enumerate(s.paths) if str(p) not in skipped])
                                    for s in (splits.train, splits.val))
        if not len(splits.val):
            raise DataError(Problem("no readable validation images are left", (), str(data)))
    run = _assemble(prep, out, d, weights if prep.checkpoint is None else None, weight_options, auto, show)
    start, best, rows = _restore(run, prep.checkpoint)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        write_splits(out, splits)  # OUT/train.csv, OUT/val.csv: what `eval --split` scores
        for stale in out.glob(".*.pt.*.tmp"):  # left by a run killed while writing a checkpoint
            stale.unlink(missing_ok=True)
        _plan_lines(run, prep, show)
    records = Records(out, enabled=d.main)
    stopped = False
    for epoch in range(start, run.recipe.epochs):
        row = _train_epoch(run, epoch, show)
        row.update(_validate(run))
        rows.append(row)
        improved = row["val_top1"] > best
        best = max(best, row["val_top1"])
        stopped = _plateau(rows, run.recipe)
        if d.main:
            _checkpoint(run, rows, best, improved, stopped, records)
            show.line(_epoch_line(row, run.recipe.epochs))
        if stopped:
            show.line(f"stopped early at epoch {row['epoch']}: validation top-1 gained no more than "
                      f"{run.recipe.early_stop.min_delta:g} in {run.recipe.early_stop.patience} epochs")
            break
        if stop_after is not None and epoch + 1 - start >= stop_after:
            break
    records.close()
    if d.main and rows:
        plot_curves(rows, out / "curves.png")
        show.line(f"best top-1 {best:.2%}; wrote {out / 'best.pt'}, {out / 'last.pt'}, {out / 'metrics.jsonl'}, {out / 'curves.png'}")
    if d.enabled:
        dist.barrier()
    return TrainResult(out, rows[-1]["epoch"] if rows else start, best, rows[-1] if rows else {}, run.recipe.batch)


def _plan_lines(run: Run, prep: Prepared, show: Progress) -> None:
    d, r = run.d, run.recipe
    for note in prep.notes:
        show.line(note)
    n_params = sum(p.numel() for p in run.raw.parameters())
    splits = prep.splits
    where = f"{d.world} process(es) on {d.device.type}"
    if d.device.type == "cpu":
        where += f" ({run.threads} torch thread(s) + {run.workers} decoding worker(s) each)"
    show.line(f"training {prep.bp.name} ({n_params:,} parameters) at input {prep.size[0]}x{prep.size[1]} on {len(splits.train)} images "
              f"of {len(run.classes)} classes, validating on {len(splits.val)}{' (held out of train)' if splits.held_out else ''}; "
              f"{where}, batch {r.batch} = {d.world} x {r.accumulate} x {run.micro}, lr {r.optimizer.lr:.3g}, "
              f"warm-up {fitted_warmup(r):g} of {r.epochs} epochs{', gradient checkpointing' if r.grad_checkpointing else ''}; "
              f"writing to {run.out}")


def _broken_images(samples: Samples, recipe: Recipe, d: distributed.Dist, show: Progress) -> tuple[set[str], Any]:
    """Decode every image once on the first process (the others wait and take its verdict): broken
    ones are refused (DataError) or returned to be skipped, as the recipe says."""
    result: list[Any] = [None]
    if d.main:
        show.start("checking images", len(samples))
        last = [0]

        def tick(done: int, total: int) -> None:
            show.update(done - last[0])
            last[0] = done

        try:
            checked = check_images(samples, recipe.data.bad_images, tick)
            result[0] = ([str(p) for p in checked.skipped], checked.stats)
        except DataError as exc:
            result[0] = exc
        finally:
            show.finish()
    if d.enabled:
        dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], DataError):
        raise result[0]
    return set(result[0][0]), result[0][1]


def confirm_batch(model: nn.Module, batch: int, shape: tuple, memory_format, recipe: Recipe, d: distributed.Dist) -> int:
    """Run forward and backward at `batch` on the GPU, halving on out-of-memory; every process
    takes the smallest batch any of them could run."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.precision]
    while batch >= 1:
        try:
            x = torch.randn(batch, *shape, device=d.device).contiguous(memory_format=memory_format)
            with torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext():
                model(x).float().logsumexp(1).mean().backward()
            break
        except torch.cuda.OutOfMemoryError:
            batch //= 2
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    if d.enabled:
        t = torch.tensor([batch], device=d.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        batch = int(t.item())
    if batch < 1:
        raise DataError(Problem("not even one image per step fits on the GPU", (), "<recipe>",
                                hint="a smaller blueprint or `--set recipe.precision=bf16`"))
    return batch


@torch.no_grad()
def evaluate_loader(net: nn.Module, loader: DataLoader, normalize: nn.Module, d: distributed.Dist, n_classes: int,
                    memory_format=torch.contiguous_format, amp=contextlib.nullcontext, label_smoothing: float = 0.0,
                    confusion: bool = False, show: Optional[Progress] = None) -> dict:
    """Loss (plain cross-entropy, and with `label_smoothing` as `loss_smoothed`), top-1 and top-5 over a
    loader (summed over processes); with `confusion`, the matrix."""
    was = net.training
    net.eval()
    F = torch.nn.functional
    loss_sum, smoothed_sum, correct1, correct5, total = 0.0, 0.0, 0.0, 0.0, 0.0
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long)
    k = min(5, n_classes)
    if show is not None:
        show.start("evaluating", len(loader))
    for images, labels in loader:
        x = normalize(images.to(d.device)).contiguous(memory_format=memory_format)
        labels = labels.to(d.device)
        with amp():
            logits = net(x).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        smoothed_sum += F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum").item() \
            if label_smoothing else 0.0
        top = logits.topk(k, dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(1).sum().item()
        total += labels.numel()
        if confusion:
            matrix += torch.bincount(labels.cpu() * n_classes + top[:, 0].cpu(), minlength=n_classes ** 2).view(n_classes, n_classes)
        if show is not None:
            show.update(1, images=labels.numel())
    if show is not None:
        show.finish()
    net.train(was)
    loss_sum, smoothed_sum, correct1, correct5, total = distributed.all_sum(d, [loss_sum, smoothed_sum, correct1, correct5, total])
    total = max(total, 1)
    result = {"loss": loss_sum / total, "loss_smoothed": (smoothed_sum if label_smoothing else loss_sum) / total,
              "top1": correct1 / total, "top5": correct5 / total, "images": int(total)}
    if confusion:
        result["confusion"] = matrix
    return result
