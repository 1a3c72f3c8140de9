"""No-reference metrics of the Real-LOLBlur column: NIQE, MUSIQ and NRQM, as one scorer.

- NIQE (`demoe.evaluation.niqe`): fully offline, its pristine model ships with demoe. Lower is
  better.
- MUSIQ (`demoe.evaluation.musiq`): a transformer; needs a trained weights file the user gives
  (e.g. pyiqa's `musiq_koniq_ckpt-e95806b9.pth`). Higher is better.
- NRQM (`demoe.evaluation.nrqm`): regression forests over hand-made features; needs Ma et al.'s
  model file `NRQM_model.mat`. Higher is better.

demoe never downloads weights. `load_no_reference` returns the scorer for the metrics it could
load and, for each metric whose file is missing or unusable, the reason, so that a caller can
say why a column is empty and still compute the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from demoe.evaluation.musiq import MUSIQ, MUSIQWeightsError, load_musiq, musiq_score
from demoe.evaluation.niqe import niqe
from demoe.evaluation.nrqm import NRQMModel, load_nrqm_model, nrqm

NO_REFERENCE_METRICS = ("niqe", "musiq", "nrqm")


@dataclass(frozen=True)
class NoReferenceScorer:
    """Scores one restored image with every metric it holds."""

    niqe: bool = True
    musiq: MUSIQ | None = None
    nrqm: NRQMModel | None = None

    @property
    def names(self) -> tuple[str, ...]:
        held = {"niqe": self.niqe, "musiq": self.musiq is not None, "nrqm": self.nrqm is not None}
        return tuple(name for name in NO_REFERENCE_METRICS if held[name])

    def __call__(self, image: np.ndarray) -> dict[str, float | str | None]:
        """{metric: score} for an (H, W, 3) image; an image a metric cannot score (too small)
        gets None and `<metric>_error` with the reason."""
        scores: dict[str, float | str | None] = {}
        for name in self.names:
            try:
                if name == "niqe":
                    scores[name] = niqe(image)
                elif name == "musiq":
                    scores[name] = musiq_score(image, self.musiq)
                else:
                    scores[name] = nrqm(image, self.nrqm)
            except ValueError as error:
                scores[name] = None
                scores[f"{name}_error"] = str(error)
        return scores


def load_no_reference(
    niqe: bool = True,
    musiq_weights: str | os.PathLike | None = None,
    nrqm_weights: str | os.PathLike | None = None,
    device: str = "cpu",
) -> tuple[NoReferenceScorer, dict[str, str]]:
    """The scorer for NIQE (when asked) and for MUSIQ / NRQM given their weight files, and
    {metric: why it was skipped} for the files that are missing or unusable."""
    skipped: dict[str, str] = {}
    musiq_model = nrqm_model = None
    if musiq_weights is not None:
        try:
            musiq_model = load_musiq(musiq_weights, device=device)
        except (FileNotFoundError, MUSIQWeightsError) as error:
            skipped["musiq"] = str(error)
    if nrqm_weights is not None:
        try:
            nrqm_model = load_nrqm_model(nrqm_weights)
        except (FileNotFoundError, ValueError) as error:
            skipped["nrqm"] = str(error)
    return NoReferenceScorer(niqe=niqe, musiq=musiq_model, nrqm=nrqm_model), skipped


def musiq(image: np.ndarray, weights: str | os.PathLike | MUSIQ) -> float:
    """MUSIQ of one image from a weights file or a loaded model (higher is better)."""
    return musiq_score(image, weights if isinstance(weights, MUSIQ) else load_musiq(weights))

