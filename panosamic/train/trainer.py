"""The training loop: the reference's protocol on DistributedDataParallel.

One call of :func:`run_training` trains (or resumes) one run directory::

    <experiments>/<dataset>/<YYYYmmdd_HHMMSS>_<config stem>_F<fold>_V<h|l|b|c>_M<n>/
        run_config.json      resolved model, dataset and training settings
        model_last.pth       the latest state (kept at the end unless --delete-last)
        model_best.pth       the selected epoch (see --select-on)
        history.json         per-epoch losses and metrics
        events.out.tfevents.*  TensorBoard scalars
        sam_random_init.pth  only with --random-sam: the frozen weights drawn at start
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.loader import make_loader, to_device
from ..evaluation.metrics import SegmentationMeter, scores_from_counts
from ..hub.locate import BEST_NAME, HISTORY_NAME, LAST_NAME, RUN_CONFIG_NAME, RUN_FORMAT
from ..model import PanoSAMic
from ..model.config import (
    PanoSAMicConfig,
    load_config_json,
    model_config_from_dict,
    with_channel_attention,
)
from ..model.panosamic import TRAINABLE_PREFIXES, prompt_modules_for
from ..model.pretrained import load_sam_weights
from ..utils.atomic import atomic_write, remove_stale_temporaries, write_json
from ..utils.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from . import checkpoint as ckpt_io
from .losses import PanoSAMicLoss, stack_batch
from .optim import LRPlan, build_optimizer, current_lr, plan_learning_rate
from .options import TrainOptions, options_from_values
from .runs import (
    RANDOM_SAM_NAME,
    experiment_id,
    experiments_root,
    read_run_config,
    resolve_options,
)
from .runtime import deterministic_mode, make_grad_scaler, seed_everything

CE_TERMS = ("CrossEntropyLoss", "FocalLoss")

DatasetBuilder = Callable[..., Dataset]


# ------------------------------------------------------------------------ state
@dataclass
class TrainState:
    """Where the run stands (saved in every checkpoint)."""

    epoch: int = 0  # completed epochs
    batches_done: int = 0  # micro-batches of epoch + 1 already trained
    global_step: int = 0  # optimizer steps
    best_miou: float = -math.inf
    best_epoch: int = 0
    miou: float = math.nan
    macc: float = math.nan
    loss_sum: float = 0.0  # training loss of the unfinished epoch (sum over micro-batches)
    loss_count: int = 0
    log_window: list[float] = field(default_factory=list)

    def progress(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "log_window": list(self.log_window),
        }


# ---------------------------------------------------------------------- trainer
class Trainer:
    """Builds everything for one run and trains it; see :func:`run_training`."""

    def __init__(
        self, options: TrainOptions, ctx: DistContext, dataset_builder: DatasetBuilder
    ) -> None:
        self.opts = options
        self.ctx = ctx
        self.resuming = options.resume is not None
        if self.resuming and not options.run_dir:
            raise ValueError("resuming needs the run directory (see resolve_options)")
        self.exp_id = self._experiment_id()
        self.run_dir = self._prepare_run_dir()
        self.saved_run = read_run_config(self.run_dir) if self.resuming else None
        self.config_json = (
            self.saved_run["training"]["config_json"]
            if self.saved_run
            else _channel_attention_as_asked(
                load_config_json(options.config), options.channel_attention
            )
        )
        self.train_set, self.eval_set = self._build_datasets(dataset_builder)
        self.class_names = tuple(self.train_set.class_names)
        self.model_config = self._model_config()
        self.checkpoint = self._resume_checkpoint()
        self.model = self._build_model()
        self.ddp = self._wrap(self.model)
        self._build_loaders()
        self._build_optimization()
        self.scaler = make_grad_scaler(ctx.device, options.precision)
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        elif ctx.is_main:
            self._write_run_config()
        barrier(ctx)
        self.writer = self._tensorboard()

    # ---------------------------------------------------------------- building
    def _build_loaders(self) -> None:
        """Resumable loaders: training shuffled per epoch, held-out split in order."""
        opts, common = self.opts, {"ctx": self.ctx, "seed": self.opts.seed}
        common.update(num_workers=opts.workers)
        self.train_loader, self.train_sampler = make_loader(
            self.train_set, batch_size=opts.batch_size, train=True, **common
        )
        self.eval_loader = None
        if self.eval_set is not None:
            self.eval_loader, _ = make_loader(
                self.eval_set, batch_size=opts.batch_size, train=False, **common
            )
        self.micro_batches = self.train_sampler.batches_per_epoch()

    def _build_optimization(self) -> None:
        """LR plan, optimizer (Ranger21 by default) and loss for this run's step count."""
        opts = self.opts
        if "loss" not in self.config_json:
            raise ValueError(
                "the config has no 'loss' section, e.g. {\"JaccardLoss\": 1} (Stanford2D3DS) or "
                "CE + Jaccard with ScheduledLoss (Matterport3D)"
            )
        self.plan = plan_learning_rate(
            self.config_json.get("optimizer", "Ranger21"),
            self.config_json.get("lr_scheduler"),
            steps_per_epoch=-(-self.micro_batches // opts.grad_accum),
            epochs=opts.epochs,
            total_batch=self.ctx.world_size * opts.batch_size * opts.grad_accum,
            lr_scaling=opts.lr_scaling,
        )
        self.optimizer, self.scheduler = build_optimizer(self.model.parameters(), self.plan)
        self.loss_fn = PanoSAMicLoss(
            self.config_json["loss"],
            class_weights=self._class_weights(),
            total_steps=self.plan.total_steps,
        )

    def _experiment_id(self) -> str:
        opts = self.opts
        cfg = load_config_json(opts.config) if not self.resuming else None
        if cfg is None:
            return read_run_config(Path(opts.run_dir))["experiment_id"]
        vit = None if "encoder" in cfg else opts.vit_model
        return experiment_id(opts.config, opts.fold, vit, len(opts.modalities))

    def _prepare_run_dir(self) -> Path:
        opts = self.opts
        if self.resuming:
            run_dir = Path(opts.run_dir)  # resolve_options filled it in
        elif opts.run_dir:
            run_dir = Path(opts.run_dir).expanduser()
            if run_dir.exists() and any(run_dir.iterdir()):
                raise ValueError(
                    f"--run-dir {run_dir} is not empty; continue it with --resume last "
                    "or choose a new directory"
                )
        else:
            stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
            root = experiments_root(opts.experiments_path, opts.dataset)
            run_dir = root / f"{stamp}_{self.exp_id}"
            run_dir = Path(broadcast_object(str(run_dir), self.ctx))
        if self.ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            removed = remove_stale_temporaries(run_dir)
            for tmp in removed:
                print(f"removed a half-written file of an interrupted run: {tmp.name}")
        barrier(self.ctx)
        return run_dir

    def _build_datasets(self, builder: DatasetBuilder) -> tuple[Dataset, Dataset | None]:
        """Training split and held-out split; rank 0 first (it may write the caches)."""
        opts = self.opts
        common = {
            "fold": opts.fold,
            "modalities": opts.modalities,
            "depth_inlier_ratio": opts.depth_inlier_ratio,
        }
        train_kwargs = {} if opts.augment else {"augment": False}

        def build() -> tuple[Dataset, Dataset | None]:
            train = builder(
                opts.dataset, opts.dataset_path, split="train", **common, **train_kwargs
            )
            held_out = None
            if opts.select_on != "none":
                held_out = builder(opts.dataset, opts.dataset_path, split="eval", **common)
            return train, held_out

        if self.ctx.is_main:
            sets = build()
        barrier(self.ctx)
        if not self.ctx.is_main:
            sets = build()
        return sets

    def _model_config(self) -> PanoSAMicConfig:
        opts = self.opts
        num_classes = int(self.train_set.num_classes)
        if self.saved_run:
            config = PanoSAMicConfig.from_dict(self.saved_run["model"])
        else:
            config = model_config_from_dict(
                self.config_json,
                vit_model=opts.vit_model,
                modalities=opts.modalities,
                num_classes=num_classes,
            )
        if config.num_classes != num_classes:
            raise ValueError(
                f"the config gives {config.num_classes} classes but dataset {opts.dataset!r} "
                f"has {num_classes}"
            )
        if config.modalities != opts.modalities:
            raise ValueError(
                f"the config fixes modalities {list(config.modalities)} but the run asks for "
                f"{list(opts.modalities)}"
            )
        return config

    def _resume_checkpoint(self) -> dict[str, Any] | None:
        if not self.resuming:
            return None
        name = LAST_NAME if self.opts.resume == "last" else BEST_NAME
        path = self.run_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"--resume {self.opts.resume}: {path} does not exist (the run stopped before "
                "its first checkpoint?); start a new run instead"
            )
        return ckpt_io.load_checkpoint(path)

    def _build_model(self) -> PanoSAMic:
        opts = self.opts
        seed_everything(opts.seed)  # the trainable layers' initialisation
        model = PanoSAMic(self.model_config, semantic_only=True, precision=opts.precision)
        model.gradient_checkpointing = opts.gradient_checkpointing
        if self.checkpoint is not None and self.checkpoint["model_contents"] == "full":
            model.load_state_dict(self.checkpoint["model"], strict=True)
        elif opts.random_sam:
            if self.ctx.is_main and not (self.run_dir / RANDOM_SAM_NAME).exists():
                save_random_sam(model, self.run_dir / RANDOM_SAM_NAME, opts.seed)
        else:
            load_sam_weights(model, opts.sam_weights_path)
        if self.checkpoint is not None and self.checkpoint["model_contents"] == "trainable":
            model.load_trainable_state_dict(
                self.checkpoint["model"], f"the {opts.resume} checkpoint"
            )
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        if self.ctx.is_main:
            print(f"model: {n_train / 1e6:.2f} M trainable of {n_all / 1e6:.2f} M parameters")
        return model.to(self.ctx.device)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.ctx.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _class_weights(self) -> Tensor | None:
        loss_cfg = self.config_json.get("loss", {})
        if not any(loss_cfg.get(name) for name in CE_TERMS):
            return None
        # rank 0 computes (and caches) them, the others receive them
        weights = self.train_set.class_weights() if self.ctx.is_main else None
        weights = broadcast_object(weights, self.ctx)
        return torch.as_tensor(weights, dtype=torch.float32)

    def _tensorboard(self) -> Any:
        if not self.ctx.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        purge = self.state.global_step + 1 if self.resuming else None
        writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge)
        if not self.resuming:
            text = json.dumps(read_run_config(self.run_dir), indent=2)
            writer.add_text("Experiment configuration", f"```\n{text}\n```", 0)
        return writer

    # ------------------------------------------------------------- run config
    def _write_run_config(self) -> None:
        opts = self.opts
        contents = self.checkpoint_contents
        if opts.random_sam:
            sam_path: str | None = str((self.run_dir / RANDOM_SAM_NAME).resolve())
        elif opts.sam_weights_path:
            sam_path = str(Path(opts.sam_weights_path).expanduser().resolve())
        else:
            sam_path = None  # the cache
        data = {
            "format": RUN_FORMAT,
            "experiment_id": self.exp_id,
            "created": datetime.now().isoformat(timespec="seconds"),
            "model": self.model_config.to_dict(),
            "semantic_only": True,
            "dataset": {
                "name": opts.dataset,
                "path": str(opts.dataset_path),
                "fold": opts.fold,
                "class_names": list(self.class_names),
                "num_classes": len(self.class_names),
                "depth_threshold": _maybe_float(getattr(self.train_set, "depth_threshold", None)),
                "depth_inlier_ratio": opts.depth_inlier_ratio,
                "mask_black": getattr(self.train_set, "mask_black", None),
                "train_samples": len(self.train_set),
                "eval_samples": None if self.eval_set is None else len(self.eval_set),
            },
            "training": {
                "options": opts.to_dict(),
                "config_path": str(opts.config),
                "config_json": self.config_json,
                "world_size": self.ctx.world_size,
                "micro_batches_per_epoch": self.micro_batches,
                "lr_plan": self.plan.to_dict(),
                "checkpoint_contents": contents,
                "sam_weights_path": sam_path,
            },
            "versions": _versions(),
        }
        write_json(self.run_dir / RUN_CONFIG_NAME, data)

    @property
    def checkpoint_contents(self) -> str:
        return "full" if (self.opts.full_checkpoints or self.opts.random_sam) else "trainable"

    # -------------------------------------------------------------- checkpoint
    def _checkpoint(self) -> dict[str, Any]:
        model = self.model
        sd = (
            model.state_dict()
            if self.checkpoint_contents == "full"
            else model.trainable_state_dict()
        )
        rng = all_gather_objects(ckpt_io.rng_states(), self.ctx)
        s = self.state
        return {
            "format": ckpt_io.CHECKPOINT_FORMAT,
            "epoch": s.epoch,
            "batches_done": s.batches_done,
            "global_step": s.global_step,
            "model": {k: v.detach().cpu() for k, v in sd.items()},
            "model_contents": self.checkpoint_contents,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
            "best_miou": s.best_miou,
            "best_epoch": s.best_epoch,
            "miou": s.miou,
            "macc": s.macc,
            "rng": rng,
            "progress": s.progress(),
            "world_size": self.ctx.world_size,
        }

    def _save(self, *names: str) -> None:
        """Write the current state under each name (every rank calls this)."""
        ckpt = self._checkpoint()
        if self.ctx.is_main:
            for name in names:
                ckpt_io.save_checkpoint(ckpt, self.run_dir / name)
        barrier(self.ctx)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("world_size", 1) != self.ctx.world_size:
            raise ValueError(
                f"the checkpoint was written by {ckpt.get('world_size')} processes, this run has "
                f"{self.ctx.world_size}; resume with the same number of processes"
            )
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("lr_scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["lr_scheduler"])
        if self.scaler is not None and ckpt.get("grad_scaler"):
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        progress = ckpt.get("progress", {})
        self.state = TrainState(
            epoch=int(ckpt["epoch"]),
            batches_done=int(ckpt["batches_done"]),
            global_step=int(ckpt["global_step"]),
            best_miou=float(ckpt["best_miou"]),
            best_epoch=int(ckpt["best_epoch"]),
            miou=float(ckpt["miou"]),
            macc=float(ckpt["macc"]),
            loss_sum=float(progress.get("loss_sum", 0.0)),
            loss_count=int(progress.get("loss_count", 0)),
            log_window=list(progress.get("log_window", [])),
        )
        self.loss_fn.weights(self.state.global_step)
        rng = ckpt["rng"]
        ckpt_io.restore_rng_states(rng[self.ctx.rank])
        history_path = self.run_dir / HISTORY_NAME
        if history_path.is_file():
            history = json.loads(history_path.read_text())
            self.history = [h for h in history if h["epoch"] <= self.state.epoch]
        if self.ctx.is_main:
            where = f"epoch {self.state.epoch} + {self.state.batches_done} batches"
            print(f"resuming {self.run_dir} from {self.opts.resume} ({where})")

    # -------------------------------------------------------------------- loop
    def fit(self) -> Path:
        """Train the remaining epochs; returns the run directory."""
        start = self.state.epoch + 1
        for epoch in range(start, self.opts.epochs + 1):
            t0 = time.time()
            train_loss = self._train_epoch(epoch)
            scores = self._validate(epoch) if self.eval_loader is not None else None
            self._end_epoch(epoch, train_loss, scores, time.time() - t0)
        if self.writer is not None:
            self.writer.close()
        if self.ctx.is_main:
            self._finish()
        barrier(self.ctx)
        return self.run_dir

    def _train_epoch(self, epoch: int) -> float:
        opts, s = self.opts, self.state
        start_batch = s.batches_done
        self.train_sampler.set_epoch(epoch, start_batch)
        self.ddp.train()
        accum, total = opts.grad_accum, self.micro_batches
        bar = tqdm(
            total=total,
            initial=start_batch,
            desc=f"epoch {epoch}/{opts.epochs}",
            disable=not self.ctx.is_main,
            dynamic_ncols=True,
        )
        step_losses: list[float] = []
        for b, (data, labels, _) in enumerate(self.train_loader, start=start_batch):
            group_start = b - b % accum
            group_size = min(accum, total - group_start)
            closes_group = b + 1 == group_start + group_size
            loss = self._micro_step(data, labels, s.global_step + 1, group_size, closes_group)
            step_losses.append(loss)
            s.loss_sum += loss
            s.loss_count += 1
            if closes_group:
                self._optimizer_step()
                self._log_step(sum(step_losses) / len(step_losses))
                step_losses = []
                s.batches_done = b + 1
                every = opts.checkpoint_every
                if every and s.global_step % every == 0 and b + 1 < total:
                    self._save(LAST_NAME)
            bar.update(1)
            bar.set_postfix(loss=f"{s.loss_sum / s.loss_count:.4f}", lr=f"{self._lr():.3g}")
        bar.close()
        totals = all_reduce_sum(torch.tensor([s.loss_sum, float(s.loss_count)]), self.ctx)
        return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan

    def _micro_step(
        self, data: list[dict], labels: list[dict], step: int, group_size: int, closes_group: bool
    ) -> float:
        inputs = to_device(data, self.model_config.modalities, self.ctx.device)
        sync = closes_group or not self.ctx.distributed
        with nullcontext() if sync else self.ddp.no_sync():
            outputs = self.ddp(inputs)  # under the model's own autocast (precision)
            logits, target = stack_batch(outputs, labels)
            loss = self.loss_fn(logits, target, step=step)
            scaled = loss / group_size
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
        return float(loss.detach())

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def _lr(self) -> float:
        return current_lr(self.optimizer, self.scheduler)

    def _log_step(self, step_loss: float) -> None:
        s = self.state
        s.log_window.append(step_loss)
        every = self.opts.log_every
        if s.global_step % every == 0:
            if self.writer is not None:
                window = s.log_window[-every:]
                self.writer.add_scalar("Loss/train", sum(window) / len(window), s.global_step)
                self.writer.add_scalar("Learning Rate", self._lr(), s.global_step)
            s.log_window = []

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, Any]:
        """Loss and split-level counts on the held-out split, reduced over processes."""
        model = self.model
        model.eval()
        meter = SegmentationMeter(len(self.class_names))
        loss_sum, batches = 0.0, 0
        bar = tqdm(
            self.eval_loader,
            desc=f"validate {epoch}/{self.opts.epochs}",
            disable=not self.ctx.is_main,
            dynamic_ncols=True,
        )
        for data, labels, _ in bar:
            inputs = to_device(data, self.model_config.modalities, self.ctx.device)
            outputs = model(inputs)
            logits, target = stack_batch(outputs, labels)
            loss_sum += float(self.loss_fn(logits, target))
            batches += 1
            for out, lab in zip(outputs, labels, strict=True):
                meter.update_logits(out["sem_preds"], lab["semantics"])
        counts = all_reduce_sum(meter.counts, self.ctx)
        totals = all_reduce_sum(torch.tensor([loss_sum, float(batches)]), self.ctx)
        scores = scores_from_counts(counts)
        return {
            "loss": float(totals[0] / totals[1]) if totals[1] > 0 else math.nan,
            "scores": scores,
        }

    def _end_epoch(
        self, epoch: int, train_loss: float, val: dict[str, Any] | None, seconds: float
    ) -> None:
        s = self.state
        s.epoch, s.batches_done = epoch, 0
        s.loss_sum, s.loss_count = 0.0, 0
        names = [LAST_NAME]
        record: dict[str, Any] = {
            "epoch": epoch,
            "global_step": s.global_step,
            "train_loss": train_loss,
            "lr": self._lr(),
            "seconds": round(seconds, 3),
        }
        if val is not None:
            scores = val["scores"]
            s.miou, s.macc = scores.miou, scores.macc
            record.update(val_loss=val["loss"], miou=scores.miou, macc=scores.macc)
            record["iou_per_class"] = dict(zip(self.class_names, scores.iou, strict=True))
        improved = self.opts.select_on != "heldout" or (
            val is not None and not math.isnan(s.miou) and s.miou > s.best_miou
        )
        if improved:
            s.best_miou, s.best_epoch = s.miou, epoch
            names.insert(0, BEST_NAME)
        record["best_epoch"] = s.best_epoch
        self.history.append(record)
        if self.ctx.is_main:  # before the checkpoint: a resume truncates the history to it
            write_json(self.run_dir / HISTORY_NAME, self.history)
            self._log_epoch(record, val)
        self._save(*names)

    def _log_epoch(self, record: dict[str, Any], val: dict[str, Any] | None) -> None:
        epoch = record["epoch"]
        w = self.writer
        w.add_scalar("Loss/epoch_train", record["train_loss"], epoch)
        message = f"epoch {epoch}: train loss {record['train_loss']:.4f}"
        if val is not None:
            scores = val["scores"]
            w.add_scalar("Loss/validation", val["loss"], epoch)
            w.add_scalar("mIoU", scores.miou, epoch)
            w.add_scalar("mAcc", scores.macc, epoch)
            for name, iou in zip(self.class_names, scores.iou, strict=True):
                if not math.isnan(iou):
                    w.add_scalar(f"IoU/{name}", iou, epoch)
            message += (
                f", val loss {val['loss']:.4f}, mIoU {100 * scores.miou:.2f}%, "
                f"mAcc {100 * scores.macc:.2f}% (best epoch {self.state.best_epoch})"
            )
        w.flush()
        tqdm.write(message)

    def _finish(self) -> None:
        s = self.state
        last = self.run_dir / LAST_NAME
        if not self.opts.keep_last and last.exists():
            last.unlink()
        best = (
            ""
            if math.isinf(s.best_miou) or math.isnan(s.best_miou)
            else f" (mIoU {100 * s.best_miou:.2f}%)"
        )
        print(f"done: {self.run_dir}; best epoch {s.best_epoch}{best}")


def save_random_sam(model: PanoSAMic, path: Path, seed: int) -> None:
    """Save the run's random frozen weights as a SAM-layout file.

    Besides the model's ``image_encoder.*`` it holds a randomly initialised
    prompt encoder and mask decoder (drawn from their own seed, so the model's
    initialisation is untouched), so ``evaluate --refine`` works on the run too.
    """
    frozen = {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if not k.startswith(TRAINABLE_PREFIXES)
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        prompt_encoder, mask_decoder = prompt_modules_for(model.config)
    for prefix, module in (("prompt_encoder.", prompt_encoder), ("mask_decoder.", mask_decoder)):
        frozen.update({prefix + k: v for k, v in module.state_dict().items()})
    atomic_write(path, lambda tmp: torch.save(frozen, tmp))


def _channel_attention_as_asked(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """The JSON config with the channel attention ``--channel-attention`` asks for
    (``config``: as the file says)."""
    return config if kind == "config" else with_channel_attention(config, kind)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"torch": torch.__version__}
    for name in ("panosamic", "pytorch-optimizer"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _default_builder() -> DatasetBuilder:
    from ..data import build_dataset

    return build_dataset


def run_training(options: TrainOptions, dataset_builder: DatasetBuilder | None = None) -> Path:
    """Train (or resume) one run; works under ``torchrun`` (one process per GPU).

    Args:
        options: see :class:`~panosamic.train.options.TrainOptions`.
        dataset_builder: ``build_dataset``-compatible factory (default:
            :func:`panosamic.data.build_dataset`).
    Returns:
        the run directory.
    """
    ctx = init_distributed(options.device)
    try:
        with deterministic_mode(options.deterministic):
            trainer = Trainer(options, ctx, dataset_builder or _default_builder())
            return trainer.fit()
    finally:
        shutdown_distributed(ctx)


__all__ = [
    "LRPlan",
    "TrainOptions",
    "Trainer",
    "experiment_id",
    "options_from_values",
    "read_run_config",
    "resolve_options",
    "run_training",
]
