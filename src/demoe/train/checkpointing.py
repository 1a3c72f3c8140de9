"""Training checkpoints: written atomically, found again by `--resume`.

Layout of a run directory:

    RUN_DIR/config.yaml                     resolved training configuration
    RUN_DIR/last/                           latest model directory (config.json + model.safetensors)
    RUN_DIR/checkpoints/step-000500/        one checkpoint (six-digit step):
        config.json, model.safetensors      the model directory (demoe.load_model reads it)
        ema.safetensors                     EMA weights (when train.ema_decay > 0)
        training_state.pt                   optimizer, scheduler, grad scaler, RNG states, data position

A checkpoint is written into a hidden temporary folder and renamed into place, so a folder named
`step-XXXXXX` is always complete; a run killed while writing leaves only a temporary folder,
which is ignored and removed by the next run.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from demoe.checkpoints import CONFIG_FILE, WEIGHTS_FILE, CheckpointReadError, read_weights, save_pretrained
from demoe.model import DeblurUNet

CHECKPOINTS_DIR = "checkpoints"
LAST_DIR = "last"
STATE_FILE = "training_state.pt"
EMA_FILE = "ema.safetensors"
STATE_FORMAT_VERSION = 1
_STEP_PATTERN = re.compile(r"^step-(\d{6,})$")
_TEMPORARY_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE))


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, directory)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _STEP_PATTERN.match(entry.name)
        if match and entry.is_dir() and is_complete(entry):
            found.append((int(match[1]), entry))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][1] if checkpoints else None


def remove_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete folders left by checkpoint writes that were interrupted."""
    run_dir = Path(run_dir)
    for folder in (run_dir / CHECKPOINTS_DIR, run_dir):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.startswith(_TEMPORARY_PREFIX) and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)


def _temporary_dir(parent: Path, name: str) -> Path:
    temporary = parent / f"{_TEMPORARY_PREFIX}{name}-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    return temporary


def _replace_dir(temporary: Path, target: Path) -> None:
    """Move a finished folder into place; an existing `target` is swapped out, then removed."""
    if target.exists():
        old = target.parent / f"{_TEMPORARY_PREFIX}old-{target.name}-{os.getpid()}"
        os.rename(target, old)
        os.rename(temporary, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(temporary, target)


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: DeblurUNet,
    training_state: dict[str, Any],
    ema_model: DeblurUNet | None,
    extra: dict[str, Any],
) -> Path:
    """Write `RUN_DIR/checkpoints/step-XXXXXX/` atomically and return it."""
    parent = Path(run_dir) / CHECKPOINTS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    temporary = _temporary_dir(parent, name)
    save_pretrained(model, temporary, extra=extra)
    if ema_model is not None:
        ema_state = {key: value.detach().cpu().contiguous() for key, value in ema_model.state_dict().items()}
        save_file(ema_state, str(temporary / EMA_FILE))
    torch.save(training_state, temporary / STATE_FILE)
    target = parent / name
    _replace_dir(temporary, target)
    return target


def save_last(run_dir: str | os.PathLike, model: DeblurUNet, extra: dict[str, Any]) -> Path:
    """Replace `RUN_DIR/last/` with the model directory of `model`."""
    run_dir = Path(run_dir)
    temporary = _temporary_dir(run_dir, LAST_DIR)
    save_pretrained(model, temporary, extra=extra)
    target = run_dir / LAST_DIR
    _replace_dir(temporary, target)
    return target


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Keep the `keep` newest checkpoints (0 = keep all)."""
    if keep <= 0:
        return
    for _, directory in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(directory, ignore_errors=True)


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """(model state dict, EMA state dict or None, training state) of a checkpoint folder."""
    directory = Path(directory)
    if not is_complete(directory):
        raise FileNotFoundError(f"{directory} is not a complete training checkpoint")
    model_state = read_weights(directory / WEIGHTS_FILE)
    ema_path = directory / EMA_FILE
    ema_state = read_weights(ema_path) if ema_path.is_file() else None
    state_path = directory / STATE_FILE
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only: a pickle naming anything but tensors and plain values is never run
        raise CheckpointReadError(
            f"{state_path}: holds Python objects a demoe training state never holds; refusing to "
            "load it (it was not written by demoe train)"
        ) from None
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointReadError(f"{state_path}: unreadable ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise CheckpointReadError(f"{state_path}: not a demoe training state")
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"{directory / STATE_FILE}: unsupported format {state.get('format_version')!r}")
    return model_state, ema_state, state


# ---------------------------------------------------------------------------------------------
# Random number generator states (python, numpy, torch, CUDA), as plain values that
# torch.load(weights_only=True) accepts.


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
