"""The training loop: a built model + a recipe + data -> checkpoints, metrics and curves.

Everything a user can get wrong (the data, the class count, the batch, a checkpoint from another
blueprint) is refused before a weight is allocated. The loop is plain PyTorch: AdamW/SGD with
weight decay on weights only, warm-up + cosine per step, autocast (bf16, or fp16 with a
GradScaler), gradient accumulation and clipping, an EMA of the weights, DistributedDataParallel
under torchrun. The data order comes from a DistributedSampler (one replica without torchrun), so
one process and N processes see the same global batches.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..api import build as build_model, plan as make_plan, save
from ..blueprint import Blueprint, Problem
from . import distributed
from .augment import Normalize, TrainAugment, soft_cross_entropy
from .autobatch import auto_batch
from .checkpoints import blueprint_text, load_checkpoint, restore_rng, rng_state
from .data import (DataError, EpochSampler, ImageDataset, Samples, TrainDataset, check_images, find_splits, size_note,
                   write_splits)
from .recipe import Recipe
from .report import Progress, plot_curves, read_metrics, write_metrics


@dataclass
class TrainResult:
    out: Path
    epochs: int
    best_top1: float
    last: dict = field(default_factory=dict)
    batch: int = 0


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
    """Multiplier of the peak lr at each optimizer step: linear warm-up, then cosine to min_lr."""
    peak, s = recipe.optimizer.lr, recipe.schedule
    total = max(1, recipe.epochs * steps_per_epoch)
    warm = min(total, round(s.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (s.warmup_lr + (peak - s.warmup_lr) * step / warm) / peak
        t = (step - warm) / max(1, total - warm)
        return (s.min_lr + (peak - s.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))) / peak

    return factor


def _classes_match(bp: Blueprint, classes: list[str]) -> None:
    n = bp.model.classes
    if n != len(classes):
        shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise DataError(bp.source.problem(
            ("classes",), f"the data has {len(classes)} classes ({shown}) but the blueprint's `classes` is {n}",
            f"train with `--set classes={len(classes)}`"))


def _rank_slice(samples: Samples, d: distributed.Dist) -> list[int]:
    return list(range(d.rank, len(samples), d.world))


def train(bp: Blueprint, data: str | Path, recipe: Recipe, out: str | Path, *, resume: bool = False,
          weights: Optional[str | Path] = None, auto: bool = False, device: Optional[str] = None,
          progress: bool = True, stop_after: Optional[int] = None) -> TrainResult:
    """Train the network of `bp` on `data` (ImageFolder tree or CSV) with `recipe`; write
    OUT/last.pt, OUT/best.pt, OUT/metrics.jsonl and OUT/curves.png.

    `resume` continues from OUT/last.pt (its blueprint must be this one). `auto` picks the largest
    per-device batch that fits. `stop_after` ends the run after that many epochs of this call, as an
    interruption would (the run can be resumed).
    """
    out = Path(out)
    d = distributed.setup(device)
    show = Progress(enabled=progress and d.main)
    try:
        return _train(bp, Path(data), recipe, out, d, show, resume, weights, auto, stop_after)
    finally:
        distributed.teardown(d)


def _train(bp, data, recipe, out, d, show, resume, weights, auto, stop_after) -> TrainResult:
    plan = make_plan(bp)
    channels, size = plan.input_shape[0], tuple(plan.input_shape[1:])  # size: (height, width)
    if channels not in (1, 3):
        raise DataError(bp.source.problem(("input", "channels"), "training decodes images to 1 (grayscale) or 3 (RGB) channels",
                                          "set `input: {channels: 3}`"))

    # --- everything that can be wrong, before a weight exists ------------------------------------
    splits = find_splits(data, recipe.data.val_split, recipe.seed)
    _classes_match(bp, splits.train.classes)
    checkpoint = None
    last_path = out / "last.pt"
    if resume:
        if not last_path.exists():
            raise DataError(Problem("no checkpoint to resume from", (), str(last_path),
                                    hint="train without `--resume` first, or point `--out` at the run"))
        checkpoint = load_checkpoint(last_path)
        if checkpoint["blueprint"] != blueprint_text(bp):
            raise DataError(Problem("the checkpoint was trained from another blueprint", (), str(last_path),
                                    hint="resume with the blueprint (and `--set` values) it was trained with, "
                                         "or start a new run with another `--out`"))
    skipped, stats = _broken_images(Samples(splits.train.paths + splits.val.paths, splits.train.labels + splits.val.labels,
                                     splits.train.classes, splits.train.root), recipe, d, show)
    if size_note(stats, size):
        show.line(size_note(stats, size))
    if skipped:
        show.line(f"skipped {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} (recipe data.bad_images: skip)")
        splits.train, splits.val = (s.subset([i for i, p in enumerate(s.paths) if str(p) not in skipped])
                                    for s in (splits.train, splits.val))
        if not len(splits.val):
            raise DataError(Problem("no readable validation images are left", (), str(data)))

    per_device = recipe.batch // (d.world * recipe.accumulate)
    if auto:
        per_device, info = auto_batch(plan, recipe, d.device, limit=max(1, len(splits.train) // d.world))
        if per_device < 1:
            raise DataError(bp.source.problem((), f"not even one image per step fits in the {info['free_bytes'] / 2**30:.1f} GiB "
                                                  f"free on {d.device} (estimate: {info['fixed_bytes'] / 2**30:.1f} GiB fixed)",
                                              "a smaller blueprint, `--set recipe.precision=bf16`, or a larger device"))
        recipe = recipe.model_copy(update={"batch": per_device * d.world * recipe.accumulate})
        show.line(f"batch auto: {per_device} per device (estimate {info['per_image_bytes'] / 2**20:.1f} MiB per image, "
                  f"{info['fixed_bytes'] / 2**20:.0f} MiB fixed, {info['free_bytes'] / 2**30:.1f} GiB usable)")
    elif per_device * d.world * recipe.accumulate != recipe.batch or per_device < 1:
        raise DataError(Problem(f"batch {recipe.batch} does not split into {d.world} device(s) x {recipe.accumulate} "
                                f"micro-batch(es)", (), "<recipe>", hint="choose a batch divisible by devices x accumulate"))
    if len(splits.train) // d.world < per_device * recipe.accumulate:
        raise DataError(Problem(f"batch {recipe.batch} is larger than the {len(splits.train)} training images", (),
                                str(data), hint="use a smaller `--batch`"))

    if recipe.sync_bn and d.enabled and d.device.type != "cuda":
        raise DataError(Problem("sync_bn runs on GPUs only (torch's SyncBatchNorm)", (), "<recipe>",
                                hint="`--set recipe.sync_bn=false` for CPU processes"))

    # --- the model and what trains it ------------------------------------------------------------
    model = build_model(bp, seed=recipe.seed) if weights is None else build_model(bp, seed=recipe.seed, weights=weights)
    if weights is not None:
        show.line(model.weights_report.summary())  # what was loaded, resized and re-initialised (a new head)
    model = model.to(d.device)
    if recipe.sync_bn and d.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if auto and d.device.type == "cuda":
        per_device = confirm_batch(model, per_device, (channels, *size), memory_format, recipe, d)
        recipe = recipe.model_copy(update={"batch": per_device * d.world * recipe.accumulate})
    optimizer = make_optimizer(model, recipe)
    micro = per_device
    # workers crop and flip while decoding (TrainDataset); the evaluation view is resized to size / crop_pct
    load = tuple(round(s / recipe.augment.crop_pct) for s in size)
    train_ds = TrainDataset(splits.train, size, channels, recipe.augment.crop, recipe.augment.hflip, recipe.seed, load)
    val_ds = ImageDataset(splits.val, load, size, channels)
    sampler = EpochSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=recipe.seed, drop_last=True)
    # more decoding workers than cores only contend (and torch warns); workers decode, they draw no
    # random numbers of the run, so their count changes no result
    workers = min(recipe.data.workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    # Workers live for the whole run; their seeds come from the loaders' own generators, so the
    # global RNG (augmentation) draws the same numbers with or without workers, resumed or not.
    loader_args = dict(num_workers=workers, pin_memory=d.device.type == "cuda", persistent_workers=workers > 0)
    train_loader = DataLoader(train_ds, batch_size=micro * recipe.accumulate, sampler=sampler, drop_last=True,
                              generator=torch.Generator().manual_seed(recipe.seed), **loader_args)
    val_loader = DataLoader(Subset(val_ds, _rank_slice(splits.val, d)), batch_size=micro * recipe.accumulate,
                            generator=torch.Generator().manual_seed(recipe.seed), **loader_args)
    steps = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(recipe, steps))
    scaler = torch.amp.GradScaler(d.device.type, enabled=recipe.precision == "fp16")
    ema = None
    if recipe.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema), use_buffers=True)
    augment = TrainAugment(recipe.augment, size, channels, cropped=True).to(d.device)
    normalize = Normalize(recipe.augment.mean, recipe.augment.std, channels).to(d.device)

    start, best = 0, -1.0
    rows = []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        if ema is not None and checkpoint.get("ema") is not None:
            ema.load_state_dict(checkpoint["ema"])
        restore_rng(checkpoint["rng"])
        start, best = checkpoint["epoch"], checkpoint["best_top1"]
        rows = [r for r in read_metrics(out / "metrics.jsonl") if r["epoch"] <= start]
    else:
        torch.manual_seed(recipe.seed)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        write_splits(out, splits)  # OUT/train.csv, OUT/val.csv: what `eval --split` scores
        for stale in out.glob(".*.pt.*.tmp"):  # left by a run killed while writing a checkpoint
            stale.unlink(missing_ok=True)

    raw = model
    net: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None) \
        if d.enabled else model
    if recipe.compile:
        net = torch.compile(net)
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.precision]

    def amp():
        return torch.autocast(d.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()

    classes = splits.train.classes
    if d.main:
        n_params = sum(p.numel() for p in raw.parameters())
        show.line(f"training {bp.name} ({n_params:,} parameters) on {len(splits.train)} images of {len(classes)} classes, "
                  f"validating on {len(splits.val)}{' (held out of train)' if splits.held_out else ''}; "
                  f"{d.world} process(es) on {d.device.type}, batch {recipe.batch} = {d.world} x {recipe.accumulate} x {micro}")
    run_epochs = 0
    for epoch in range(start, recipe.epochs):
        sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        show.start(f"epoch {epoch + 1}/{recipe.epochs}", steps)
        for images, labels in train_loader:
            images = images.to(d.device, non_blocking=True)
            labels = labels.to(d.device, non_blocking=True)
            x, targets = augment(images, labels)
            x = x.contiguous(memory_format=memory_format)
            for i in range(recipe.accumulate):
                part = slice(i * micro, (i + 1) * micro)
                sync = i == recipe.accumulate - 1 or not d.enabled
                with (contextlib.nullcontext() if sync else net.no_sync()), amp():
                    logits = net(x[part])
                    loss = soft_cross_entropy(logits.float(), targets[part], recipe.label_smoothing)
                scaler.scale(loss / recipe.accumulate).backward()
                loss_sum += loss.item() * micro
            seen += micro * recipe.accumulate
            if recipe.clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(raw.parameters(), recipe.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(raw)
            show.update(1, images=micro * recipe.accumulate * d.world, loss=loss.item(), lr=scheduler.get_last_lr()[0])
        show.finish()
        train_time = time.perf_counter() - t0
        loss_sum, seen = distributed.all_sum(d, [loss_sum, seen])
        val = evaluate_loader(net, val_loader, normalize, d, len(classes), memory_format, amp, recipe.label_smoothing)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "lr": scheduler.get_last_lr()[0],
               "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
               "images_per_s": seen / train_time, "epoch_time_s": train_time}
        if ema is not None:
            row["ema_top1"] = evaluate_loader(ema.module, val_loader, normalize, d, len(classes), memory_format, amp,
                                              recipe.label_smoothing)["top1"]
        rows.append(row)
        improved = row["val_top1"] > best
        best = max(best, row["val_top1"])
        if d.main:
            extra = {"recipe": recipe.model_dump(mode="json"), "classes": classes, "epoch": epoch + 1,
                     "best_top1": best, "metrics": row, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None, "rng": rng_state()}
            if improved:
                save(raw, bp, out / "best.pt", extra=extra)
            save(raw, bp, out / "last.pt", extra=extra)
            write_metrics(out / "metrics.jsonl", rows)
            show.line(f"epoch {epoch + 1}/{recipe.epochs}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                      f"top-1 {row['val_top1']:.2%}, top-5 {row['val_top5']:.2%}, {row['images_per_s']:.0f} images/s"
                      + (f", EMA top-1 {row['ema_top1']:.2%}" if "ema_top1" in row else ""))
        run_epochs += 1
        if stop_after is not None and run_epochs >= stop_after:
            break
    if d.main and rows:
        plot_curves(rows, out / "curves.png")
        show.line(f"best top-1 {best:.2%}; wrote {out / 'best.pt'}, {out / 'last.pt'}, {out / 'metrics.jsonl'}, {out / 'curves.png'}")
    if d.enabled:
        dist.barrier()
    return TrainResult(out, rows[-1]["epoch"] if rows else start, best, rows[-1] if rows else {}, recipe.batch)


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
    """Loss, top-1 and top-5 over a loader (summed over processes); with `confusion`, the matrix."""
    was = net.training
    net.eval()
    F = torch.nn.functional
    loss_sum, correct1, correct5, total = 0.0, 0.0, 0.0, 0.0
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long)
    k = min(5, n_classes)
    if show is not None:
        show.start("evaluating", len(loader))
    for images, labels in loader:
        x = normalize(images.to(d.device)).contiguous(memory_format=memory_format)
        labels = labels.to(d.device)
        with amp():
            logits = net(x).float()
        loss_sum += F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum").item()
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
    loss_sum, correct1, correct5, total = distributed.all_sum(d, [loss_sum, correct1, correct5, total])
    total = max(total, 1)
    result = {"loss": loss_sum / total, "top1": correct1 / total, "top5": correct5 / total, "images": int(total)}
    if confusion:
        result["confusion"] = matrix
    return result
