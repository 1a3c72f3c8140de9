"""demoe: all-in-one image deblurring with a mixture-of-experts decoder (DeMoE).

Public API (a contract): `create_model`, `load_model`, `ModelConfig`, `TASK_NAMES`,
`DeblurOutput`, and for images `deblur` / `Deblurrer`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `import demoe` and the start of the `demoe` command
# do not wait for PyTorch: the command can then answer Ctrl-C during its start-up with one line.
_EXPORTED_FROM = {
    "create_model": "demoe.model",
    "load_model": "demoe.model",
    "PRESETS": "demoe.config",
    "TASK_NAMES": "demoe.config",
    "ModelConfig": "demoe.config",
    "Deblurrer": "demoe.inference.pipeline",
    "deblur": "demoe.inference.pipeline",
    "DeblurOutput": "demoe.model",
    "DeblurUNet": "demoe.model",
}

if TYPE_CHECKING:
    from demoe.config import PRESETS, TASK_NAMES, ModelConfig
    from demoe.inference.pipeline import Deblurrer, deblur
    from demoe.model import DeblurOutput, DeblurUNet, create_model, load_model


def __getattr__(name: str):
    if name not in _EXPORTED_FROM:
        # `demoe.config` & co. without importing them first, as when this file imported them
        try:
            return importlib.import_module(f"demoe.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"demoe.{name}":
                raise
        raise AttributeError(f"module 'demoe' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTED_FROM[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTED_FROM))

__all__ = [
    "PRESETS",
    "TASK_NAMES",
    "DeblurOutput",
    "Deblurrer",
    "DeblurUNet",
    "ModelConfig",
    "create_model",
    "deblur",
    "load_model",
    "__version__",
]
