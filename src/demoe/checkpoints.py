"""Model directories (config.json + model.safetensors), bundled weights, official conversion.

A model directory is the one on-disk format of demoe: `config.json` holds the `ModelConfig`,
`model.safetensors` the state dict. Foreign layouts (the authors' `DeMoE.pt`) are converted into
it in exactly one place, `convert_official_state_dict`.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from demoe.config import ModelConfig, get_preset
from demoe.fileio import atomic_write
from demoe.model import DeblurNetwork, DeblurUNet, build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

# Weights shipped inside the package, by name. `default` is what the CLI, the API and the web
# demo load when the user names no weights.
BUNDLED_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = "default"


class WeightsNotFoundError(FileNotFoundError):
    """Raised when the weights a user asked for are not on disk."""


class UntrustedCheckpointError(ValueError):
    """A torch.save file holds Python objects that loading would have to run code to rebuild."""


# Objects training scripts often save next to the weights (a numpy scalar for the best PSNR,
# the argparse options, ordered dicts) that only hold data: loading them runs no user code.
_DATA_GLOBALS = (
    "argparse.Namespace",
    "collections.OrderedDict",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
)


def _is_data_global(name: str) -> bool:
    return name in _DATA_GLOBALS or name.startswith(("numpy.dtypes.", "torch."))


def _resolve_global(name: str) -> object:
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def load_torch_file(path: str | os.PathLike, trust: bool = False) -> object:
    """`torch.load` a foreign checkpoint (.pt/.pth) on the CPU without running pickled code.

    Tensors, containers and numbers load as with `weights_only=True`; numpy scalars/arrays and
    argparse options that training scripts leave in checkpoints are allowed too. Any other
    Python object raises UntrustedCheckpointError naming it; `trust=True` (only for files from
    a trusted source) loads everything with `weights_only=False`.
    Raises FileNotFoundError for a missing file and ValueError for an unreadable one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} is not a file")
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            unsafe = [name for name in names if not _is_data_global(name)]
            if unsafe:
                raise UntrustedCheckpointError(
                    f"{path} holds Python objects besides weights ({', '.join(unsafe)}); demoe does not run "
                    "pickled code to load them. If the file comes from a source you trust, load it with "
                    "trust=True (command line: --trust-checkpoint)"
                ) from None
            allowed = [_resolve_global(name) for name in names]
            if any(name.startswith("numpy.") for name in names):
                import numpy as np  # numpy scalars name their dtype class only while unpickling

                allowed += [getattr(np.dtypes, name) for name in np.dtypes.__all__]
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
    except UntrustedCheckpointError:
        raise
    except Exception as error:  # torch raises many types for a damaged or foreign file
        raise ValueError(f"cannot read {path} as a torch checkpoint: {error}") from error


def save_pretrained(model: DeblurUNet, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `config.json` + `model.safetensors` atomically into `directory`.

    `extra` (JSON-serialisable) is stored beside the config under "extra" (e.g. training info).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict()}
    if extra:
        config["extra"] = extra
    atomic_write(directory / WEIGHTS_FILE, lambda path: save_file(state, str(path)))
    atomic_write(
        directory / CONFIG_FILE,
        lambda path: Path(path).write_text(json.dumps(config, indent=2) + "\n"),
    )
    return directory


def read_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    data = json.loads(path.read_text())
    if "model" not in data:
        raise ValueError(f"{path} is not a demoe model config (no 'model' entry)")
    return ModelConfig.from_dict(data["model"])


def bundled_weights() -> list[str]:
    """Names of the weight directories shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / WEIGHTS_FILE).is_file())


def resolve_weights(path_or_name: str | os.PathLike | None) -> Path:
    """The model directory for a path or a bundled-weights name (None = the default weights)."""
    if path_or_name is None:
        path_or_name = DEFAULT_WEIGHTS
    candidate = Path(path_or_name)
    if candidate.is_dir():
        missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (candidate / f).is_file()]
        if missing:
            raise WeightsNotFoundError(
                f"{candidate} is not a demoe model directory: missing {', '.join(missing)} "
                "(a model directory holds config.json + model.safetensors, as written by "
                "model.save_pretrained or `demoe convert-official`)"
            )
        return candidate
    bundled = BUNDLED_DIR / str(path_or_name)
    if (bundled / WEIGHTS_FILE).is_file() and (bundled / CONFIG_FILE).is_file():
        return bundled
    available = bundled_weights()
    hint = (
        f"bundled weights: {', '.join(available)}"
        if available
        else "no weights are bundled with this installation"
    )
    raise WeightsNotFoundError(
        f"no weights found for {str(path_or_name)!r}: it is neither a model directory nor the "
        f"name of bundled weights ({hint}). Give a directory with config.json + "
        "model.safetensors (written by model.save_pretrained or `demoe train`), or convert the "
        "authors' checkpoint with `demoe convert-official DeMoE.pt OUT_DIR`. Random, untrained "
        "models of a preset come from demoe.create_model(name)."
    )


def load_model(path_or_name: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> DeblurNetwork:
    """Load a model directory or bundled weights by name (None = the default weights).

    The model is rebuilt from its config, its weights are loaded strictly, and it is returned
    in eval mode.
    """
    directory = resolve_weights(path_or_name)
    config = read_config(directory)
    model = build_model(config)
    state = load_file(str(directory / WEIGHTS_FILE), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def create_model(name: str, **overrides) -> DeblurNetwork:
    """A freshly initialised model of a preset, with config fields overridden by keyword."""
    config = get_preset(name)
    if overrides:
        config = config.replace(**overrides)
    return build_model(config)


# ---------------------------------------------------------------------------------------------
# The authors' checkpoint (DeMoE.pt): torch.save({"params": state_dict, ...}).

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# (official pattern, our replacement), applied in order to each key.
_OFFICIAL_KEY_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^encoders\.(\d+)\.modules_list\.(\d+)\.", r"encoders.\1.\2."),
        (r"^decoders\.(\d+)\.modules_list\.(\d+)\.", r"decoders.\1.\2."),
        (r"^middle_blks\.modules_list\.(\d+)\.", r"middle.\1."),
        (r"^experts\.0\.experts\.(\d+)\.", r"middle_moe.experts.\1."),
        (r"^experts\.(\d+)\.experts\.(\d+)\.", lambda m: f"decoder_moes.{int(m[1]) - 1}.experts.{m[2]}."),
        (r"\.sca\.1\.", r".sca.proj."),
        (r"^mlp_branch\.conv_bottleneck\.", r"router.reduce."),
        (r"^mlp_branch\.attention\.", r"router.attention."),
        (r"^mlp_branch\.classifier\.", r"router.classifier."),
    )
)


def strip_wrapper_prefixes(key: str) -> str:
    """Remove DDP (`module.`) and torch.compile (`_orig_mod.`) prefixes, however nested."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def official_key_to_demoe(key: str) -> str:
    key = strip_wrapper_prefixes(key)
    for pattern, replacement in _OFFICIAL_KEY_RULES:
        key = pattern.sub(replacement, key)
    return key


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model it is converted into."""


_KEYS_SHOWN = 12  # keys named per kind of mismatch in an error message


def convert_official_state_dict(
    official: dict[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """Map an official DeMoE state dict onto ours, checking every key and shape."""
    reference = DeblurUNet(config).state_dict()
    converted: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for key, value in official.items():
        ours = official_key_to_demoe(key)
        if ours in converted:
            raise CheckpointMismatchError(f"keys {sources[ours]!r} and {key!r} both map to {ours!r}")
        converted[ours] = value
        sources[ours] = key
    missing = sorted(set(reference) - set(converted))
    unexpected = sorted(sources[k] for k in set(converted) - set(reference))
    misshaped = sorted(
        f"{sources[k]}: checkpoint {tuple(converted[k].shape)}, expected {tuple(reference[k].shape)}"
        for k in set(converted) & set(reference)
        if tuple(converted[k].shape) != tuple(reference[k].shape)
    )
    if missing or unexpected or misshaped:
        found = len(reference) - len(missing)
        lines = [
            f"the checkpoint does not match the {config.name!r} architecture "
            f"({found} of its {len(reference)} keys found):"
        ]
        if found == 0:
            lines[0] += " it is not a DeMoE/NAFNet checkpoint, or another --preset is needed"
        for label, keys, separator in (
            ("missing", missing, ", "),
            ("unexpected", unexpected, ", "),
            ("mis-shaped", misshaped, "; "),
        ):
            if keys:
                shown = separator.join(keys[:_KEYS_SHOWN])
                more = f"{separator}... and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else ""
                lines.append(f"  {label} keys ({len(keys)}): {shown}{more}")
        raise CheckpointMismatchError("\n".join(lines))
    return {k: v.to(reference[k].dtype).contiguous() for k, v in converted.items()}


def load_official_checkpoint(path: str | os.PathLike, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read the authors' checkpoint without running pickled code (see `load_torch_file`) and
    return its state dict."""
    checkpoint = load_torch_file(path, trust=trust)
    if isinstance(checkpoint, dict) and "params" in checkpoint:
        state = checkpoint["params"]
    elif isinstance(checkpoint, dict) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint  # a bare state dict
    else:
        keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointMismatchError(
            f"{path}: expected torch.save({{'params': state_dict, ...}}) as released by the "
            f"authors, found {keys}"
        )
    return state


def convert_official(
    checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "demoe", trust: bool = False
) -> DeblurUNet:
    """Convert `DeMoE.pt` into a demoe model directory and return the loaded model.
    trust: also load Python objects other than weights from the file (trusted files only)."""
    config = get_preset(preset)
    state = convert_official_state_dict(load_official_checkpoint(checkpoint_path, trust=trust), config)
    model = DeblurUNet(config)
    model.load_state_dict(state, strict=True)
    save_pretrained(model.eval(), out_dir, extra={"converted_from": str(Path(checkpoint_path).name)})
    return model.eval()
