"""Model directories (config.json + model.safetensors), bundled weights, official conversion.

A model directory is the one on-disk format of demoe: `config.json` holds the `ModelConfig`,
`model.safetensors` the state dict. Foreign layouts (the authors' `DeMoE.pt`) are converted into
it in exactly one place, `map_official_state_dict`.

This is the file-format layer: it does not import the networks (`demoe.model` imports it).
`PretrainedNetwork` gives every network `save_pretrained` / `from_pretrained`; the functions
that build a network (`load_model`, `create_model`, `convert_official`,
`convert_official_state_dict`) live in `demoe.model` and are still importable from here.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from demoe.config import ModelConfig
from demoe.fileio import atomic_write

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

# Weights shipped inside the package, by name. `default` is what the CLI, the API and the web
# demo load when the user names no weights.
BUNDLED_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = "default"


class WeightsNotFoundError(FileNotFoundError):
    """Raised when the weights a user asked for are not on disk."""


class CheckpointReadError(ValueError):
    """A checkpoint or weights file that cannot be used (damaged, foreign or untrusted)."""


class UntrustedCheckpointError(CheckpointReadError):
    """A torch.save file holds Python objects that loading would have to run code to rebuild."""


# What a foreign checkpoint may name besides the tensors, storages, dtypes, torch.Size and
# OrderedDicts that `torch.load(weights_only=True)` accepts by itself: the data objects
# training scripts leave next to the weights (a numpy scalar for the best PSNR, a numpy array,
# the argparse options, `torch.__version__`). Exact names only: a prefix rule such as
# "torch.*" would admit functions that run code or write files (torch.fx's
# `_exec_with_source`, `torch.save`, `torch.hub`'s downloads, `os` reached through a torch
# module), so every other global is refused by name before anything is imported.
_DATA_GLOBALS = frozenset(
    {
        "argparse.Namespace",
        "collections.OrderedDict",
        "torch.torch_version.TorchVersion",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray._reconstruct",
    }
)


def is_allowed_global(name: str) -> bool:
    """Whether a global named by a checkpoint's pickle is one of the data objects above, or a
    numpy dtype class (`numpy.dtypes.Float64DType`, ..., exactly those numpy lists)."""
    if name in _DATA_GLOBALS:
        return True
    module, _, attribute = name.rpartition(".")
    return module == "numpy.dtypes" and attribute in np.dtypes.__all__


def _resolve_global(name: str) -> object:
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def load_torch_file(path: str | os.PathLike, trust: bool = False) -> object:
    """`torch.load` a foreign checkpoint (.pt/.pth) on the CPU without running pickled code.

    Tensors, containers and numbers load as with `weights_only=True`; besides them only the
    data objects that `is_allowed_global` names (numpy scalars/arrays, argparse options,
    `torch.__version__`) are rebuilt. Any other global the pickle names raises
    UntrustedCheckpointError naming it, before anything is imported or called; `trust=True`
    (only for files from a trusted source) loads everything with `weights_only=False`.
    Raises FileNotFoundError for a missing file and CheckpointReadError (a ValueError) for an
    unreadable one."""
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
            unsafe = [name for name in names if not is_allowed_global(name)]
            if unsafe:
                raise UntrustedCheckpointError(
                    f"{path} holds Python objects besides weights ({', '.join(unsafe)}); demoe does not run "
                    "pickled code to load them. If the file comes from a source you trust, load it with "
                    "trust=True (command line: --trust-checkpoint)"
                ) from None
            allowed = [_resolve_global(name) for name in names]
            if any(name.startswith("numpy.") for name in names):
                # numpy scalars name their dtype class only while unpickling
                allowed += [getattr(np.dtypes, name) for name in np.dtypes.__all__]
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
    except UntrustedCheckpointError:
        raise
    except Exception as error:  # torch raises many types for a damaged or foreign file
        raise CheckpointReadError(f"cannot read {path} as a torch checkpoint: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def save_pretrained(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    extra: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `config.json` + `model.safetensors` of a network with a `config` (`ModelConfig`)
    atomically into `directory` (created if needed), and return the directory.

    `extra` (JSON-serialisable) is stored beside the config under "extra" (e.g. training info).
    `dtype` (e.g. torch.float16, half the file size): floating-point tensors are stored in it;
    loading upcasts them to the model's float32 parameters.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict()}
    if extra:
        config["extra"] = extra
    atomic_write(directory / WEIGHTS_FILE, lambda path: save_file(state, str(path)))
    atomic_write(
        directory / CONFIG_FILE,
        lambda path: Path(path).write_text(json.dumps(config, indent=2) + "\n"),
    )
    return directory


class ModelDirectoryError(CheckpointReadError):
    """A model directory whose config.json or model.safetensors cannot be used."""


def read_config(directory: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a model directory's config.json, every field checked (type, range).

    Raises ModelDirectoryError (a ValueError) naming the file and what is wrong with it."""
    path = Path(directory) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelDirectoryError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise ModelDirectoryError(f"{path}: not a text file (config.json must be UTF-8 JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelDirectoryError(f"{path} is not a demoe model config (no 'model' mapping)")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path}: format_version {version!r} is not one this demoe reads (it reads "
            f"{FORMAT_VERSION}); the directory was written by another version of demoe"
        )
    try:
        return ModelConfig.from_dict(data["model"])
    except (TypeError, ValueError) as error:
        raise ModelDirectoryError(f"{path}: {error}") from None


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file on the CPU; ModelDirectoryError for a damaged file."""
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type, OSError, ValueError
        raise ModelDirectoryError(
            f"{path}: not a readable safetensors file, truncated or damaged ({_first_line(error)})"
        ) from None


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """CheckpointMismatchError, in a few lines, unless `state` has exactly the model's keys and
    shapes (dtypes may differ: they are cast on loading)."""
    reference = model.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    misshaped = sorted(
        f"{key}: file {tuple(state[key].shape)}, config {tuple(reference[key].shape)}"
        for key in set(state) & set(reference)
        if tuple(state[key].shape) != tuple(reference[key].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the architecture of its config.json "
                 f"({len(reference) - len(missing) - len(misshaped)} of {len(reference)} tensors match):"]
        lines += _mismatch_lines(missing, unexpected, misshaped, shown=3)
        lines.append("  the weights were saved from another configuration; use the config.json written with them")
        raise CheckpointMismatchError("\n".join(lines))


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


def load_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Load a model directory's `model.safetensors` into `model` strictly: ModelDirectoryError
    for a damaged file, CheckpointMismatchError unless keys and shapes are exactly the model's."""
    path = Path(directory) / WEIGHTS_FILE
    state = read_weights(path)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)


def load_pretrained(
    path_or_name: str | os.PathLike | None,
    build: Callable[[ModelConfig], torch.nn.Module],
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The network `build(config)` makes of a model directory's config (a path, or bundled
    weights by name; None = the default weights), its weights loaded strictly, on `device`, in
    eval mode."""
    directory = resolve_weights(path_or_name)
    model = build(read_config(directory))
    load_weights(model, directory)
    return model.to(device).eval()


class PretrainedNetwork(torch.nn.Module):
    """Base of the networks built from a `ModelConfig`: `save_pretrained` writes a model
    directory, `from_pretrained` reads one back. A subclass takes the config as its one
    constructor argument, keeps it as `self.config`, and names in `architecture` the
    `ModelConfig.architecture` it builds (None: an abstract base, nothing to load)."""

    architecture: ClassVar[str | None] = None

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Self:
        """This class's network from a model directory or bundled weights by name (None = the
        default weights): rebuilt from its config.json, weights loaded strictly, eval mode.

        ModelDirectoryError when the directory holds another architecture (`demoe.load_model`
        loads any)."""
        return load_pretrained(path_or_name, cls._from_config, device)

    @classmethod
    def _from_config(cls, config: ModelConfig) -> Self:
        if cls.architecture is None or config.architecture != cls.architecture:
            builds = f"builds architecture {cls.architecture!r}" if cls.architecture else "is a base class"
            raise ModelDirectoryError(
                f"the model directory holds {config.name!r}, a {config.architecture!r} network, and "
                f"{cls.__name__} {builds}: load it with demoe.load_model, which builds any architecture"
            )
        return cls(config)

    def save_pretrained(
        self, directory: str | os.PathLike, extra: dict | None = None, dtype: torch.dtype | None = None
    ) -> Path:
        """Write `config.json` + `model.safetensors` into `directory` (created if needed); see
        `demoe.checkpoints.save_pretrained` for `extra` and `dtype`."""
        return save_pretrained(self, directory, extra=extra, dtype=dtype)


# The network-building functions moved to demoe.model (which imports this module); they stay
# importable from here, looked up on first use so that this module imports no network.
_MOVED_TO_MODEL = frozenset({"load_model", "create_model", "convert_official", "convert_official_state_dict"})


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_MODEL:
        return getattr(importlib.import_module("demoe.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


class CheckpointMismatchError(CheckpointReadError):
    """The checkpoint's keys or shapes do not match the model it is converted into."""


_KEYS_SHOWN = 12  # keys named per kind of mismatch in an error message


def _mismatch_lines(missing: list[str], unexpected: list[str], misshaped: list[str], shown: int) -> list[str]:
    """One line per kind of mismatch, naming at most `shown` keys."""
    lines = []
    for label, keys, separator in (
        ("missing", missing, ", "),
        ("unexpected", unexpected, ", "),
        ("mis-shaped", misshaped, "; "),
    ):
        if keys:
            listed = separator.join(keys[:shown])
            more = f"{separator}... and {len(keys) - shown} more" if len(keys) > shown else ""
            lines.append(f"  {label} keys ({len(keys)}): {listed}{more}")
    return lines


def map_official_state_dict(
    official: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], name: str
) -> dict[str, torch.Tensor]:
    """Map an official DeMoE state dict onto `reference`, the state dict of the network of
    preset `name` it is converted into, checking every key and shape; tensors are cast to the
    reference's dtypes. CheckpointMismatchError names what does not match."""
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
            f"the checkpoint does not match the {name!r} architecture "
            f"({found} of its {len(reference)} keys found):"
        ]
        if found == 0:
            lines[0] += " it is not a DeMoE/NAFNet checkpoint, or another --preset is needed"
        lines += _mismatch_lines(missing, unexpected, misshaped, shown=_KEYS_SHOWN)
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
