"""The training loop: both stages of the recipe, one process or many (torchrun + DDP).

Stage "pretrain": a baseline with router, loss = pixel_weight * L1 + class_weight * CE(router).
Stage "experts": DeMoE, initialised from a stage-1 baseline (model.init_from), with encoder and
router frozen (train.trainable "decoder") and the dense softmax mixture of experts.

Step s (0-based) of the run uses the global batch at positions [s * B, (s + 1) * B) of epoch
s // steps_per_epoch's permutation; this, the per-rank RNG states in every checkpoint and
deterministic dataset items make a resumed run end with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from demoe.checkpoints import WeightsNotFoundError
from demoe.data.synthetic import SyntheticBlurBatches
from demoe.fileio import atomic_write_text
from demoe.model import DeblurUNet, build_model, init_experts_from_baseline, load_model
from demoe.train import checkpointing
from demoe.train.config import ConfigError, DataConfig, TrainConfig, dump_config, parse_yaml
from demoe.train.data import ResumableSampler, build_dataset, ignore_stop_signals, make_loader
from demoe.train.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup_distributed,
    gather_objects,
    setup_distributed,
    wrap_for_training,
)
from demoe.train.validation import ValidationResult, validate

CONFIG_FILE = "config.yaml"
TENSORBOARD_DIR = "tensorboard"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


class RunDirError(RuntimeError):
    """The run directory does not fit the request (an existing run without --resume, ...)."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    total_steps: int  # length of the schedule
    last_dir: Path  # RUN_DIR/last
    validation: ValidationResult | None  # the last validation, on rank 0
    stopped_by_signal: bool = False  # SIGTERM/SIGINT: stopped after a step, its checkpoint saved


class StopRequest:
    """SIGTERM or SIGINT (Ctrl-C) asks the run to stop cleanly: the step in progress finishes,
    a checkpoint is written, and `demoe train --resume` continues exactly from there. A second
    signal interrupts at once (the newest checkpoint stays the resume point). Handlers are
    installed only in the main thread and restored afterwards."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None:  # the second signal: stop now
            for restored, handler in self._previous.items():
                signal.signal(restored, handler)
            raise KeyboardInterrupt
        self.received = number

    def agreed(self, context: DistributedContext) -> bool:
        """Whether any process received a stop signal (all processes stop at the same step)."""
        flag = torch.tensor(float(self.received is not None), device=context.device)
        return bool(all_reduce_mean(flag, context) > 0)


# ---------------------------------------------------------------------------------------------
# Model construction


def resolve_init_dir(path: str | os.PathLike) -> Path:
    """A stage-1 run directory means its `last/` model directory."""
    path = Path(path)
    return path / checkpointing.LAST_DIR if (path / checkpointing.LAST_DIR).is_dir() else path


def _absolute_photos(photos: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    if photos is None:
        return None
    if isinstance(photos, str):
        return str(Path(photos).resolve())
    return tuple(str(Path(folder).resolve()) for folder in photos)


def build_training_model(config: TrainConfig) -> DeblurUNet:
    """The network of the config, initialised from a stage-1 baseline when model.init_from is set.

    Its config records the training crop (`train_crop`, unless the model overrides set it): the
    model directories the run saves carry it, and test-time local converter (--tlc) needs it."""
    model_config = config.model_config()
    if not model_config.train_crop:
        model_config = model_config.replace(train_crop=config.data.train.crop_size)
    model = build_model(model_config)
    if config.model.init_from is not None:
        directory = resolve_init_dir(config.model.init_from)
        try:
            baseline = load_model(directory)
        except WeightsNotFoundError as error:
            raise ConfigError(f"model.init_from: {error}") from None
        if baseline.config.replace(name=model.config.name, train_crop=model.config.train_crop) == model.config:
            # A warm start: training continues from weights of this very architecture (the
            # shipped weights, a finished run); new optimizer and schedule.
            model.load_state_dict(baseline.state_dict())
        elif model.config.is_moe:
            try:
                init_experts_from_baseline(model, baseline)
            except ValueError as error:
                raise ConfigError(f"model.init_from ({directory}): {error}") from None
        else:
            raise ConfigError(
                f"model.init_from ({directory}): a {baseline.config.name!r} checkpoint cannot "
                f"initialise {model.config.name!r}"
            )
    return model


def frozen_modules(model: DeblurUNet, config: TrainConfig) -> list[nn.Module]:
    """Modules that stay fixed: encoder (intro, encoders, downs) and router in stage 2 with
    train.trainable "decoder"; none otherwise."""
    if config.train.trainable == "router":
        # Router calibration: everything but the router head stays as pre-trained.
        return [module for name, module in model.named_children() if name != "router"]
    modules: list[nn.Module] = []
    if config.stage == "experts" and config.train.trainable == "decoder":
        modules += [model.intro, model.encoders, model.downs]
    if model.router is not None and (modules or not router_gets_gradient(model, config)):
        # A router that no loss reaches stays as it is (eval mode: its BatchNorm statistics
        # too); under DDP a parameter without gradient would also stall the reduction.
        modules.append(model.router)
    return modules


def router_gets_gradient(model: DeblurUNet, config: TrainConfig) -> bool:
    """Whether some loss term reaches the router: its classification loss, or the restoration
    loss through the dense mixture of the experts (MoE model routed by its own router)."""
    routed_by_router = model.config.is_moe and config.train.routing == "dense" and config.train.forced_task is None
    return config.loss.class_weight > 0 or routed_by_router


def freeze(modules: list[nn.Module]) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def set_training_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Train mode, except frozen modules (eval: the router's BatchNorm statistics stay put)."""
    model.train()
    for module in frozen:
        module.eval()


class ExponentialMovingAverage:
    """A shadow copy of the model whose weights follow decay * shadow + (1 - decay) * weights.

    Floating-point buffers (the router's BatchNorm running statistics) are averaged the same
    way (as timm's ModelEmaV3 does), so the statistics follow the averaged weights rather than
    the current ones; integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: DeblurUNet, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: DeblurUNet) -> None:
        for shadow, current in zip(self.model.parameters(), model.parameters()):
            shadow.lerp_(current.detach(), 1 - self.decay)
        for shadow, current in zip(self.model.buffers(), model.buffers()):
            if shadow.is_floating_point():
                shadow.lerp_(current, 1 - self.decay)
            else:
                shadow.copy_(current)


def pixel_loss_value(restored: torch.Tensor, sharp: torch.Tensor, kind: str) -> torch.Tensor:
    """The pixel loss of a batch: "l1" = mean absolute error over all pixels; "psnr" = the
    mean over images of -PSNR in dB (NAFNet's PSNRLoss, 10 / ln 10 * log(MSE + 1e-8))."""
    if kind == "l1":
        return F.l1_loss(restored, sharp)
    mse = (restored - sharp).pow(2).flatten(1).mean(1)  # (B,)
    return (10 / math.log(10)) * torch.log(mse + 1e-8).mean()


def cosine_factor(step: int, total_steps: int, lr: float, min_lr: float) -> float:
    """Learning-rate multiplier at `step`: cosine annealing from lr to min_lr over the run."""
    progress = min(step, total_steps) / total_steps
    return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / lr


# ---------------------------------------------------------------------------------------------
# The run


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """The config with its file paths made absolute (so the stored config.yaml is usable
    from anywhere)."""

    def data(section: DataConfig | None) -> DataConfig | None:
        if section is None:
            return None
        return replace(
            section,
            manifest=None if section.manifest is None else str(Path(section.manifest).resolve()),
            photos=_absolute_photos(section.photos),
        )

    init_from = config.model.init_from
    return replace(
        config,
        model=replace(config.model, init_from=None if init_from is None else str(Path(init_from).resolve())),
        data=replace(config.data, train=data(config.data.train), val=data(config.data.val)),
    )


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
) -> TrainResult:
    """Train as the config says, writing checkpoints and logs into `run_dir`.

    resume: continue from the newest complete checkpoint in run_dir (start fresh if none).
    max_steps: stop after this many optimizer steps in total (the schedule is unchanged).
    train_dataset / val_dataset: use these instead of building the config's data sections
    (items as in demoe.data: blurry, sharp, label, dataset; with set_epoch); train_dataset may
    also be a `demoe.data.synthetic.SyntheticBlurBatches` (whole batches made on the device).
    Under torchrun each process calls this; the process group is set up and torn down here.
    """
    context = setup_distributed(config.runtime.device)
    try:
        return _run(absolute_paths(config), Path(run_dir), context, resume, max_steps, train_dataset, val_dataset)
    finally:
        cleanup_distributed()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [k for k in new if k not in old]
        found = []
        for key in keys:
            found += _config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [prefix.rstrip(".")]


def _prepare_run_dir(run_dir: Path, config: TrainConfig, resume: bool, context: DistributedContext) -> Path | None:
    """Check the run directory (rank 0) and return the checkpoint to resume, if any."""
    decision: tuple[str | None, str | None] = (None, None)  # (checkpoint, error)
    if context.is_main:
        existing = checkpointing.latest_checkpoint(run_dir)
        if existing is not None and not resume:
            decision = (None, f"{run_dir} already holds a training run (newest checkpoint "
                        f"{existing.name}); pass --resume to continue it, or choose another --out")
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpointing.remove_temporaries(run_dir)
            decision = (None if existing is None else str(existing), None)
    checkpoint, error = broadcast_object(decision, context)
    if error is not None:
        raise RunDirError(error)
    return None if checkpoint is None else Path(checkpoint)


def _write_run_config(run_dir: Path, config: TrainConfig, resume: bool, context: DistributedContext) -> None:
    """Write RUN_DIR/config.yaml (rank 0), once the run has started or its checkpoint has
    loaded: a refused resume leaves the run's config as it was."""
    if not context.is_main:
        return
    config_path = run_dir / CONFIG_FILE
    if resume and config_path.is_file():
        changed = _config_differences(parse_yaml(config_path.read_text()), config.to_dict())
        if changed:
            print(f"demoe train: warning: resuming with a changed configuration ({', '.join(changed)})", file=sys.stderr)
    atomic_write_text(config_path, dump_config(config))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX tiles): there bf16
    autocast is the fastest sound path (measured in docs/training.md); elsewhere it is emulated
    and slower than fp32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _precision(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a GradScaler is used)."""
    precision = config.runtime.precision
    if precision == "auto":
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        precision = "bf16" if fast_bf16 else "fp32"
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, True
    return None, False


@dataclass
class _Run:
    """What one training run holds once it is set up (`_setup`)."""

    config: TrainConfig
    run_dir: Path
    context: DistributedContext
    model: DeblurUNet  # the network whose weights are trained and saved
    frozen: list[nn.Module]
    ema: ExponentialMovingAverage | None
    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None  # None = fp32
    train_dataset: Dataset
    sampler: ResumableSampler
    loader: DataLoader
    val_loader: DataLoader | None  # rank 0 only
    local_batch_size: int
    steps_per_epoch: int
    total_steps: int  # length of the schedule
    train_model: nn.Module | None = None  # the model as stepped: DDP-wrapped and/or compiled

    @property
    def device(self) -> torch.device:
        return self.context.device


@dataclass(frozen=True)
class _StepResult:
    loss: torch.Tensor  # the total loss, averaged over processes (0-d, detached)
    pixel_loss: torch.Tensor
    class_loss: torch.Tensor | None
    grad_norm: torch.Tensor | None
    lr: float  # the learning rate the step used


def _run(
    config: TrainConfig,
    run_dir: Path,
    context: DistributedContext,
    resume: bool,
    max_steps: int | None,
    train_dataset: Dataset | None,
    val_dataset: Dataset | None,
) -> TrainResult:
    if config.train.batch_size % context.world_size:
        raise ConfigError(
            f"train.batch_size: the global batch {config.train.batch_size} must divide evenly "
            f"across {context.world_size} processes"
        )
    with _process_settings(config, context.device):
        resume_from = _prepare_run_dir(run_dir, config, resume, context)
        run = _setup(config, run_dir, context, train_dataset, val_dataset)
        start_step, rng_state = _load_resume_state(run, resume_from)
        _write_run_config(run_dir, config, resume, context)
        # Experts that see no image in a step get no gradient; DDP must be told to look for them.
        find_unused = config.train.forced_task is not None or config.train.routing == "label"
        run.train_model = wrap_for_training(run.model, context, find_unused)
        if config.runtime.compile:
            run.train_model = torch.compile(run.train_model)
        # Random states last, right before the first step: dropout and router noise differ per rank.
        if rng_state is not None:
            checkpointing.restore_rng_state(rng_state, context.device)
        else:
            _seed_everything(config.seed + 1_000_003 * context.rank + start_step)
        stop_step = run.total_steps if max_steps is None else min(run.total_steps, max_steps)
        return _loop(run, start_step, stop_step)


@contextlib.contextmanager
def _process_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Process-wide torch settings for the run (threads, determinism, cuDNN autotuning, TF32),
    put back as they were when the run ends."""
    previous = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_float32_matmul_precision(),
    )
    try:
        if config.runtime.cpu_threads > 0:
            torch.set_num_threads(config.runtime.cpu_threads)
        if config.runtime.deterministic:
            torch.use_deterministic_algorithms(True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = not config.runtime.deterministic
            torch.set_float32_matmul_precision("high")
        yield
    finally:
        threads, deterministic, warn_only, benchmark, matmul_precision = previous
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_float32_matmul_precision(matmul_precision)


def _setup(
    config: TrainConfig,
    run_dir: Path,
    context: DistributedContext,
    train_dataset: Dataset | None,
    val_dataset: Dataset | None,
) -> _Run:
    """Model, data, optimizer and schedule of a fresh run (before any checkpoint is loaded)."""
    device = context.device
    local_batch_size = config.train.batch_size // context.world_size

    # Model: the same initial weights on every rank (DDP also broadcasts rank 0's).
    _seed_everything(config.seed)
    model = build_training_model(config)
    frozen = frozen_modules(model, config)
    freeze(frozen)
    model.to(device)
    if config.runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = ExponentialMovingAverage(model, config.train.ema_decay) if config.train.ema_decay > 0 else None

    # Data.
    if train_dataset is None:
        train_dataset = build_dataset(config.data.train, config.seed, device)
    sampler = ResumableSampler(train_dataset, context.world_size, context.rank, config.seed)
    steps_per_epoch = len(train_dataset) // config.train.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size: the training set has {len(train_dataset)} items, fewer than one "
            f"global batch of {config.train.batch_size}"
        )
    total_steps = config.train.total_steps or config.train.epochs * steps_per_epoch
    loader = make_loader(
        train_dataset, sampler, local_batch_size, config.train.num_workers, device.type == "cuda"
    )
    val_loader = None
    if context.is_main and (val_dataset is not None or config.data.val is not None):
        if val_dataset is None:
            val_dataset = build_dataset(config.data.val, config.seed)
        val_dataset.set_epoch(0)
        val_loader = DataLoader(val_dataset, batch_size=local_batch_size, num_workers=config.train.num_workers,
                                worker_init_fn=ignore_stop_signals)

    # Optimizer and schedule over the trainable parameters only.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.optim.lr,
        betas=config.optim.betas,
        eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total_steps, config.optim.lr, config.optim.min_lr)
    )
    autocast_dtype, use_scaler = _precision(config, device)
    return _Run(
        config=config,
        run_dir=run_dir,
        context=context,
        model=model,
        frozen=frozen,
        ema=ema,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=use_scaler),
        autocast_dtype=autocast_dtype,
        train_dataset=train_dataset,
        sampler=sampler,
        loader=loader,
        val_loader=val_loader,
        local_batch_size=local_batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )


def _load_resume_state(run: _Run, checkpoint: Path | None) -> tuple[int, Any]:
    """Weights, EMA, optimizer, schedule and scaler from a checkpoint; (its step, this rank's
    random state or None). A fresh run starts at step 0."""
    if checkpoint is None:
        return 0, None
    config, context = run.config, run.context
    model_state, ema_state, state = checkpointing.load_checkpoint(checkpoint)
    if state["global_batch_size"] != config.train.batch_size or state["steps_per_epoch"] != run.steps_per_epoch:
        raise ConfigError(
            f"train.batch_size: {checkpoint} was written with a global batch of "
            f"{state['global_batch_size']} and {state['steps_per_epoch']} steps per epoch; "
            f"now {config.train.batch_size} and {run.steps_per_epoch}: the data position would not match"
        )
    run.model.load_state_dict(model_state, strict=True)
    if run.ema is not None:
        # A run resumed with train.ema_decay newly set starts its average at the resumed weights.
        run.ema.model.load_state_dict(model_state if ema_state is None else ema_state, strict=True)
        if ema_state is None and context.is_main:
            print(f"demoe train: {checkpoint} holds no EMA weights; the average (train.ema_decay) "
                  "starts from its weights", file=sys.stderr)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["grad_scaler"])
    if len(state["rng"]) == context.world_size:
        return int(state["step"]), state["rng"][context.rank]
    if context.is_main:
        print(f"demoe train: warning: {checkpoint} was written by {len(state['rng'])} "
              f"processes, now {context.world_size}: random states are re-seeded",
              file=sys.stderr)
    return int(state["step"]), None


class _Batches:
    """The batch of each step: epoch e's permutation from its (seed, e) position on, so a run
    resumed mid-epoch sees the same batches as an uninterrupted one. Blur synthesised on the
    device (`SyntheticBlurBatches`) is a function of the step itself."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.iterator: Iterator[dict] | None = None

    def __call__(self, step: int) -> dict:
        run = self.run
        if isinstance(run.train_dataset, SyntheticBlurBatches):
            context = run.context
            return run.train_dataset.batch(step, run.config.train.batch_size, context.rank, context.world_size)
        epoch, batch_in_epoch = divmod(step, run.steps_per_epoch)
        if self.iterator is None or batch_in_epoch == 0:
            run.sampler.set_position(epoch, batch_in_epoch * run.local_batch_size)
            run.train_dataset.set_epoch(epoch)
            run.loader.generator.manual_seed(run.config.seed * 100_003 + epoch)
            self.iterator = iter(run.loader)
        return next(self.iterator)


def _loop(run: _Run, start_step: int, stop_step: int) -> TrainResult:
    """Steps start_step .. stop_step - 1, with logging, validation and checkpoints."""
    config, context = run.config, run.context
    writer = None
    if context.is_main and config.log.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.run_dir / TENSORBOARD_DIR))
    progress = tqdm(
        total=stop_step,
        initial=start_step,
        disable=not (context.is_main and config.log.progress),
        desc=f"{config.stage}",
        unit="step",
        dynamic_ncols=True,
    )
    if start_step >= stop_step and context.is_main:
        progress.write(f"nothing to do: the run is at step {start_step}, the stop step is {stop_step}")
    set_training_mode(run.model, run.frozen)
    batches = _Batches(run)
    last_validation: ValidationResult | None = None
    stopped_by_signal = False
    done = start_step
    window_start, window_images = time.perf_counter(), 0
    try:
        with StopRequest() as stop_request:
            for step in range(start_step, stop_step):
                result = _train_step(run, batches(step), step)
                done = step + 1
                window_images += config.train.batch_size
                progress.update(1)
                if context.is_main and (done % config.log.log_every == 0 or done == stop_step):
                    elapsed = time.perf_counter() - window_start
                    _log_step(writer, progress, result, done, step // run.steps_per_epoch,
                              window_images / max(elapsed, 1e-9))
                    window_start, window_images = time.perf_counter(), 0
                validate_now = run.val_loader is not None and (
                    (config.log.validate_every > 0 and done % config.log.validate_every == 0) or done == stop_step
                )
                if context.is_main and validate_now:
                    last_validation = _validate(run)
                    _log_validation(writer, progress, last_validation, done)
                if stop_request.agreed(context):
                    _save(run, done)
                    stopped_by_signal = True
                    progress.write(f"stopped by signal {stop_request.received} after step {done}; "
                                   f"checkpoint saved, continue with --resume")
                    break
                if done % config.log.save_every == 0 or done == stop_step:
                    _save(run, done)
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    return TrainResult(
        run_dir=run.run_dir,
        step=done if stopped_by_signal else stop_step,
        total_steps=run.total_steps,
        last_dir=run.run_dir / checkpointing.LAST_DIR,
        validation=last_validation,
        stopped_by_signal=stopped_by_signal,
    )


def _router_only(run: _Run) -> bool:
    """Router calibration in one process: the forward stops at the router head (encoder and
    router only; the frozen decoder's output would not enter the loss). Across processes the
    step goes through the DDP-wrapped full model, whose hooks average the router's gradients."""
    return run.config.train.trainable == "router" and run.context.world_size == 1


def _train_step(run: _Run, batch: dict, step: int) -> _StepResult:
    """One optimizer step on one batch: forward (autocast), losses in fp32, backward, update."""
    config, device = run.config, run.device
    blurry = batch["blurry"].to(device, non_blocking=True)
    sharp = batch["sharp"].to(device, non_blocking=True).float()
    labels = batch["label"].to(device, non_blocking=True)
    if config.runtime.channels_last:
        blurry = blurry.contiguous(memory_format=torch.channels_last)
    routing: str | torch.Tensor = config.train.forced_task or "auto"
    if config.train.routing == "label":
        routing = F.one_hot(labels, run.model.config.num_experts).float()  # (B, E)

    dtype = run.autocast_dtype
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        if _router_only(run):
            image, router_logits = None, run.model.route(run.model.encode(blurry).bottleneck).logits
        else:
            output = run.train_model(blurry, task=routing)
            image, router_logits = output.image, output.router_logits
    if image is None:  # router calibration: no pixel loss (loss.pixel_weight is 0)
        pixel_loss = torch.zeros((), device=device)
    else:
        pixel_loss = pixel_loss_value(image.float(), sharp, config.loss.pixel)
    loss = config.loss.pixel_weight * pixel_loss
    class_loss = None
    if config.loss.class_weight > 0:
        class_loss = F.cross_entropy(router_logits.float(), labels)
        loss = loss + config.loss.class_weight * class_loss

    reported = all_reduce_mean(loss.detach(), run.context)
    if not bool(torch.isfinite(reported)):
        newest = checkpointing.latest_checkpoint(run.run_dir)
        kept = f"the last good checkpoint is {newest}" if newest else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the training loss became {float(reported)} at step {step + 1} "
            f"(epoch {step // run.steps_per_epoch}); stopping without saving. {kept}. "
            "Lower optim.lr or set optim.grad_clip, then continue with --resume."
        )

    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    grad_norm = None
    if config.optim.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, config.optim.grad_clip)
    lr = run.optimizer.param_groups[0]["lr"]
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return _StepResult(reported, pixel_loss.detach(), None if class_loss is None else class_loss.detach(), grad_norm, lr)


def _validate(run: _Run) -> ValidationResult:
    """Validation of the trained (or EMA) weights in fp32; training modes restored after."""
    evaluated = run.model if run.ema is None else run.ema.model
    result = validate(evaluated, run.val_loader, run.device, None, run.config.log.sample_images)
    set_training_mode(run.model, run.frozen)
    if run.ema is not None:
        run.ema.model.eval()
    return result


def _save(run: _Run, step: int) -> None:
    """A resumable checkpoint at `step` and RUN_DIR/last (rank 0 writes; every rank waits)."""
    context, config = run.context, run.config
    rng_states = gather_objects(checkpointing.capture_rng_state(run.device), context)
    if context.is_main:
        training_state = {
            "format_version": checkpointing.STATE_FORMAT_VERSION,
            "step": step,
            "epoch": step // run.steps_per_epoch,
            "batch_in_epoch": step % run.steps_per_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            "global_batch_size": config.train.batch_size,
            "world_size": context.world_size,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "grad_scaler": run.scaler.state_dict(),
            "rng": rng_states,
        }
        extra = {
            "stage": config.stage,
            "weights": "ema" if run.ema is not None else "model",
            "step": step,
        }
        ema_model = None if run.ema is None else run.ema.model
        checkpointing.save_checkpoint(run.run_dir, step, run.model, training_state, ema_model, extra)
        checkpointing.save_last(run.run_dir, run.model if ema_model is None else ema_model, extra)
        checkpointing.prune_checkpoints(run.run_dir, config.log.keep_checkpoints)
    barrier(context)


def _log_step(writer: Any, progress: tqdm, result: _StepResult, step: int, epoch: int, images_per_second: float) -> None:
    scalars = {
        "train/loss": float(result.loss),
        "train/pixel_loss": float(result.pixel_loss),
        "train/lr": result.lr,
        "train/images_per_second": images_per_second,
        "train/epoch": epoch,
    }
    if result.class_loss is not None:
        scalars["train/class_loss"] = float(result.class_loss)
    if result.grad_norm is not None:
        scalars["train/grad_norm"] = float(result.grad_norm)
    if writer is not None:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
    progress.set_postfix(loss=f"{scalars['train/loss']:.4f}", lr=f"{result.lr:.2e}")


def _log_validation(writer: Any, progress: tqdm, result: ValidationResult, step: int) -> None:
    scalars = result.scalars()
    if writer is not None:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
        for index, image in enumerate(result.samples):
            writer.add_image(f"val/sample_{index}", image, step)
    summary = f"validation at step {step}: PSNR {scalars['val/psnr']:.2f} dB, SSIM {scalars['val/ssim']:.4f}"
    if result.router_accuracy is not None:
        summary += f", router accuracy {result.router_accuracy:.3f}"
    gains = [f"{task} {result.psnr_by_task[task]:.2f} ({result.psnr_by_task[task] - result.input_psnr_by_task[task]:+.2f})"
             for task in sorted(result.psnr_by_task) if task in result.input_psnr_by_task]
    if gains:
        summary += "; per blur type, dB (gain over the input): " + ", ".join(gains)
    progress.write(summary)
