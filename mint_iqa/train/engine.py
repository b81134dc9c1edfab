"""The one training loop, on DeepSpeed, shared by the scorer (stage 1) and the explainer (stage 2).

A `Task` says what a batch is, what the loss is and how to score a checkpoint on the validation split;
`fit` does the rest: DeepSpeed engine from `params.yaml` (ZeRO stage, bf16, accumulation and clipping
always written explicitly, since DeepSpeed silently defaults unknown keys), cosine schedule with
warm-up, a moving average of the weights (what is validated and exported), a checkpoint every epoch
(model, optimizer, scheduler, weight average, data position, RNG, history; frozen weights are left out:
the builders recreate them identically, and a 7B language model would add 13.5 GB), best epoch chosen on
validation only, `resume=True` to continue after an interruption.

Single process on CPU by default: the distributed environment DeepSpeed expects is set up here.
Several processes are started by the `deepspeed` launcher (`mint_iqa.train.launch`).
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mint_iqa.config import TrainConfig
from mint_iqa.io import write_text
from mint_iqa.models.tensors import to_device
from mint_iqa.progress import progress


class Task(Protocol):
    def batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        """Training batches of `epoch`, from step `start_step` on (deterministic per epoch)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss to minimise and scalars to log."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics; must contain `score` (higher is better) used to pick the best epoch."""

    # Optional: `clip_groups(model) -> list[list[nn.Parameter]]`, parts of the model trained apart whose
    # gradients are each clipped to `train.grad_clip` on their own instead of under one global norm.


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint_dir: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed_env() -> None:
    """Variables a single-process DeepSpeed run needs (else it goes looking for MPI); no run-time
    compiling."""
    skip_shm_comm_op()
    if "RANK" in os.environ and "MASTER_ADDR" in os.environ:
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        LOCAL_SIZE="1",
    )


def skip_shm_comm_op() -> None:
    """Keep DeepSpeed from compiling its shared-memory all-reduce op when its comm backend starts.

    The op serves only inference all-reduce (training reduces through torch.distributed / gloo), yet building
    it needs a C++ compiler at run time and takes ~50 s on 2 cores, again whenever the venv's path changes.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def deepspeed_config(cfg: TrainConfig, world_size: int = 1) -> dict[str, Any]:
    """The DeepSpeed config, every behaviour we rely on written out explicitly; `train.deepspeed_extra`
    (e.g. infra/deepspeed/zero3_bf16.json) is merged over it, one level deep. Batch sizes always come
    from params.yaml, and the optimizer and schedule from the code, so the file cannot contradict them."""
    config = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.deepspeed_extra is not None:
        extra = json.loads(Path(cfg.deepspeed_extra).read_text())
        owned = {
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
            "train_batch_size",
            "optimizer",
            "scheduler",
        } & set(extra)
        if owned:
            raise ValueError(
                f"{cfg.deepspeed_extra}: {sorted(owned)} are set by params.yaml and the code, not here"
            )
        for key, value in extra.items():
            config[key] = (
                {**config[key], **value}
                if isinstance(value, dict) and isinstance(config.get(key), dict)
                else value
            )
    return config


def cosine_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def local_device() -> torch.device:
    """Where this rank trains: its accelerator (`LOCAL_RANK` picks which), or the CPU."""
    from deepspeed.accelerator import get_accelerator

    return torch.device(get_accelerator().device_name(int(os.environ.get("LOCAL_RANK", "0"))))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _prune(ckpt_dir: Path, keep: str) -> None:
    """Keep only the newest checkpoint: resuming needs nothing older, and each holds optimizer state."""
    import shutil

    for tag in ckpt_dir.iterdir() if ckpt_dir.exists() else []:
        if tag.is_dir() and tag.name != keep:
            shutil.rmtree(tag, ignore_errors=True)


class WeightAverage:
    """Exponential moving average of the trainable weights (`train.ema`), kept in float32. Validation and the
    exported best weights use the average; training goes on from the raw weights. The decay ramps up as
    (1 + n) / (10 + n) over the first updates, so a short run is not pulled towards its initial weights."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        self.params, self.decay, self.updates = params, decay, 0
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        raw = [p.detach().clone() for p in self.params]
        self._load(self.shadow)
        try:
            yield
        finally:
            self._load(raw)

    @torch.no_grad()
    def _load(self, tensors: list[torch.Tensor]) -> None:
        for p, t in zip(self.params, tensors):
            p.copy_(t)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates, self.shadow = state["updates"], list(state["shadow"])


def fit(
    model: nn.Module,
    task: Task,
    cfg: TrainConfig,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    *,
    seed: int = 0,
    resume: bool = False,
    on_epoch_end: Any = None,
    on_best: Any = None,
) -> FitResult:
    """Train `model` on `task`; DeepSpeed checkpoints in `ckpt_dir`, history in `out_dir/history.json`.
    `on_best(model, epoch)` runs when validation improves (export there), `on_epoch_end(record)` per epoch."""
    setup_distributed_env()
    torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    rank = int(os.environ.get("RANK", "0"))
    params = [p for p in model.parameters() if p.requires_grad]
    engine, scheduler, clip_groups = _initialise(model, task, cfg, params)
    average = WeightAverage(params, cfg.ema) if cfg.ema else None
    averaged = average.applied if average is not None else nullcontext
    start_epoch, start_step, history, best = 0, 0, [], (-1, -math.inf)

    def save(epoch: int, step: int, tag: str) -> None:
        state = {"epoch": epoch, "step": step, "history": history, "best": list(best), "rng": _rng_state()}
        state |= {"ema": average.state_dict()} if average is not None else {}
        engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=state, exclude_frozen_parameters=True)
        if rank == 0:
            _prune(ckpt_dir, tag)

    if resume and (ckpt_dir / "latest").exists():
        start_epoch, start_step, history, best = _resume(engine, ckpt_dir, average)
    for epoch in range(start_epoch, cfg.epochs):
        started = time.time()
        logs = _train_epoch(engine, task, cfg, epoch, start_step, clip_groups, average, save)
        start_step = 0
        engine.eval()
        with averaged(), torch.no_grad():  # the weights validated are the weights exported
            val = task.validate(engine.module)
            if val["score"] > best[1]:
                best = (epoch + 1, val["score"])
                if on_best is not None and rank == 0:
                    on_best(engine.module, epoch + 1)
        train = {f"train_{k}": float(np.mean([s[k] for s in logs])) for k in (logs[0] if logs else {})}
        timing = {"seconds": round(time.time() - started, 1), "lr": scheduler.get_last_lr()[0]}
        record = {"epoch": epoch + 1, **timing, **train, **{f"val_{k}": v for k, v in val.items()}}
        history.append(record)
        if on_epoch_end is not None and rank == 0:
            on_epoch_end(record)
        save(epoch + 1, 0, f"epoch{epoch + 1}")
        if rank == 0:
            write_text(out_dir / "history.json", json.dumps(history, indent=2) + "\n")
            numbers = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
            print(f"epoch {epoch + 1}: {numbers}", flush=True)
    _write_param_digest(engine.module, out_dir, rank)
    return FitResult(best_epoch=best[0], best_score=best[1], history=history, checkpoint_dir=ckpt_dir)


def _resume(engine: Any, ckpt_dir: Path, average: WeightAverage | None) -> tuple[int, int, list, tuple]:
    """Epoch, step, history and best (epoch, score) of the latest checkpoint, with its weights, optimizer,
    weight average and random states restored (frozen weights stay as built)."""
    _, client = engine.load_checkpoint(str(ckpt_dir), load_module_strict=False)
    _set_rng_state(client["rng"])
    if average is not None:
        average.load_state_dict(client["ema"])
    return client["epoch"], client["step"], client["history"], tuple(client["best"])


def _initialise(
    model: nn.Module, task: Task, cfg: TrainConfig, params: list[nn.Parameter]
) -> tuple[Any, Any, list[list[nn.Parameter]]]:
    """The DeepSpeed engine over AdamW (no weight decay on biases and norms) and the cosine schedule, and
    the parameter groups whose gradients the loop clips apart (`task.clip_groups`; [] when DeepSpeed
    clips, or must: under ZeRO > 0 or bf16 the gradients live in flat buffers)."""
    import deepspeed

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    scheduler = cosine_schedule(optimizer, cfg, cfg.epochs * cfg.steps_per_epoch)
    clip_groups = getattr(task, "clip_groups", lambda m: [])(model) if cfg.grad_clip > 0 else []
    ds_config = deepspeed_config(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    if clip_groups and (ds_config["zero_optimization"]["stage"] > 0 or ds_config["bf16"].get("enabled")):
        warnings.warn(
            "gradients are clipped by part only under ZeRO stage 0 without bf16 (elsewhere DeepSpeed "
            "holds them in flat buffers): clipping them under one global norm",
            stacklevel=3,
        )
        clip_groups = []
    if clip_groups:
        ds_config["gradient_clipping"] = 0.0  # the loop clips group by group, after backward
    if cfg.ema and ds_config["zero_optimization"]["stage"] == 3:
        raise ValueError(
            "train.ema needs ZeRO stage < 3 (stage 3 partitions the weights it averages); set ema: 0"
        )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    if ds_config["bf16"].get("enabled"):  # DeepSpeed casts the parameters; buffers follow, as `.to` does
        for buffer in engine.module.buffers():
            if buffer.is_floating_point():
                buffer.data = buffer.data.to(torch.bfloat16)
    return engine, scheduler, clip_groups


def _train_epoch(
    engine: Any,
    task: Task,
    cfg: TrainConfig,
    epoch: int,
    start_step: int,
    clip_groups: list[list[nn.Parameter]],
    average: WeightAverage | None,
    save: Any,
) -> list[dict[str, float]]:
    """One epoch of steps from `start_step` (a resumed epoch starts mid-way); each step's loss parts.
    With `cfg.checkpoint_every`, `save(epoch, step, tag)` also runs between epoch ends."""
    engine.train()
    logs: list[dict[str, float]] = []
    bar = progress(
        total=cfg.steps_per_epoch,
        initial=start_step,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="step",
        disable=int(os.environ.get("RANK", "0")) != 0,
    )
    for step, batch in enumerate(task.batches(epoch, start_step), start=start_step):
        loss, scalars = task.loss(engine, to_device(batch, engine.device))
        engine.backward(loss)
        if clip_groups and engine.is_gradient_accumulation_boundary():  # gradients averaged over ranks
            for group in clip_groups:
                torch.nn.utils.clip_grad_norm_(group, cfg.grad_clip)
        engine.step()
        if average is not None and (step + 1) % cfg.grad_accum == 0:
            average.update()
        logs.append(scalars)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean([s['loss'] for s in logs[-20:]]):.4f}", refresh=False)
        every = cfg.checkpoint_every
        if every and (step + 1) % every == 0 and step + 1 < cfg.steps_per_epoch:
            save(epoch, step + 1, f"epoch{epoch}-step{step + 1}")
    bar.close()
    return logs


@contextmanager
def tracked_run(params: Any, name: str, out_dir: Path, resume: bool, tags: dict[str, str]) -> Iterator[Any]:
    """An MLflow run for one training (reopened on resume); yields a per-epoch logging callback.
    The run id is kept in `out_dir/mlflow_run.json` so evaluation logs into the same run."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    import mlflow

    from mint_iqa import tracking

    run_id = tracking.run_id_of(out_dir) if resume else None
    with tracking.run(name, run_id=run_id, tags=tags) as active:
        tracking.record_run(out_dir, active.info.run_id)
        if run_id is None:
            mlflow.log_params(tracking.flatten(params.model_dump(mode="json", by_alias=True)))

        def log(record: dict[str, Any]) -> None:
            mlflow.log_metrics(
                {k: float(v) for k, v in record.items() if k != "epoch"}, step=int(record["epoch"])
            )

        yield log


def _write_param_digest(model: nn.Module, out_dir: Path, rank: int) -> None:
    """Each rank records a digest of its final trainable parameters: data-parallel ranks must agree exactly
    (frozen ones, a 7B language model say, cannot drift and would cost a minute to hash)."""
    import hashlib

    digest = hashlib.sha256()
    for name, p in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        digest.update(name.encode())
        digest.update(p.detach().float().cpu().numpy().tobytes())
    write_text(out_dir / f"params.rank{rank}.sha256", digest.hexdigest() + "\n")
