"""demoe: all-in-one image deblurring with a mixture-of-experts decoder (DeMoE).

Public API (a contract): `create_model`, `load_model`, `ModelConfig`, `TASK_NAMES`,
`DeblurOutput`, and for images `deblur` / `Deblurrer`.
"""

from demoe.checkpoints import create_model, load_model
from demoe.config import PRESETS, TASK_NAMES, ModelConfig
from demoe.inference.pipeline import Deblurrer, deblur
from demoe.model import DeblurOutput, DeblurUNet

__version__ = "0.1.0"

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
