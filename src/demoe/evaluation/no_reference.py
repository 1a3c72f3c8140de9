"""Learned no-reference metrics used for Real-LOLBlur: MUSIQ and NRQM — entry points only.

demoe computes NIQE itself (`demoe.evaluation.niqe`), fully offline. MUSIQ (a multi-scale image
transformer) and NRQM (Ma et al.'s regression forests over hand-made features) need their
authors' trained weights, which demoe does not ship and never downloads, and their
architectures are not implemented in demoe. These functions check the weight file the user
names and then raise `UnsupportedMetricError`, so a caller gets one clear, specific answer
instead of a silently missing column. Use pyiqa (`pyiqa.create_metric("musiq")`,
`pyiqa.create_metric("nrqm")`) on the restored images for these two numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SUPPORTED_NO_REFERENCE = ("niqe",)


class UnsupportedMetricError(NotImplementedError):
    """A metric demoe names but does not compute (its architecture is not implemented)."""


def _check_weights(metric: str, weights: str | os.PathLike | None) -> Path:
    if weights is None:
        raise FileNotFoundError(f"{metric} needs its trained weights file; demoe does not ship or download it")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{metric} weights not found: {path} is not a file")
    return path


def _unsupported(metric: str, path: Path) -> UnsupportedMetricError:
    return UnsupportedMetricError(
        f"{metric} is not implemented in demoe (weights given: {path}). Supported no-reference "
        f"metrics: {', '.join(SUPPORTED_NO_REFERENCE)}; compute {metric} with pyiqa on the restored images."
    )


def musiq(image: np.ndarray, weights: str | os.PathLike | None) -> float:
    """MUSIQ of an (H, W, 3) image. Raises FileNotFoundError without a weight file and
    UnsupportedMetricError with one (not implemented)."""
    raise _unsupported("MUSIQ", _check_weights("MUSIQ", weights))


def nrqm(image: np.ndarray, weights: str | os.PathLike | None) -> float:
    """NRQM of an (H, W, 3) image. Raises FileNotFoundError without a weight file and
    UnsupportedMetricError with one (not implemented)."""
    raise _unsupported("NRQM", _check_weights("NRQM", weights))
