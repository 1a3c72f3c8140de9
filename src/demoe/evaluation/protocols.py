"""Each benchmark's own evaluation convention, selected by dataset name.

A `Protocol` says how one restored/sharp pair is scored; `evaluate_pair(restored, sharp,
dataset, mask=None)` applies the protocol of a dataset and returns a dict of metrics.

| protocol   | datasets                    | what it does                                            |
|------------|-----------------------------|---------------------------------------------------------|
| `default`  | anything else (LOLBlur, ...) | PSNR + SSIM (Gaussian window) on RGB at the stored bit depth |
| `gopro`    | GoPro, HIDE                 | MATLAB `psnr` + MATLAB `ssim` on the RGB volume (MPRNet/Restormer `evaluate_GOPRO_HIDE.m`) |
| `realblur` | RealBlur-J/-R, RSBlur       | gain matching, ECC homography alignment of the restored image to the ground truth, PSNR/SSIM over the valid region (`rimchang/RSBlur: evaluation/evaluate_RealBlur.py`, `evaluate_RSBlur.py`) |
| `dpdd`     | DPDD, RealDOF               | 16-bit data kept (read with `demoe.imageio`), PSNR + SSIM + MAE on [0, 1] |
| `reloblur` | ReLoBlur                    | PSNR + SSIM, and with a blur mask also the mask-weighted `psnr_masked` / `ssim_masked` |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from demoe.imageio import to_float


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    align: bool = False  # RealBlur/RSBlur: gain matching + ECC homography, valid-region metrics
    matlab_ssim: bool = False  # GoPro/HIDE: MATLAB's ssim on the RGB volume instead of per-channel SSIM
    mae: bool = False  # DPDD: also report the mean absolute error on [0, 1]
    masked: bool = False  # ReLoBlur: also report mask-weighted PSNR/SSIM when a mask is given


PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol("default", "PSNR and SSIM (Gaussian window, sigma 1.5) on RGB at the stored bit depth"),
        Protocol("gopro", "MATLAB psnr and MATLAB ssim on the RGB volume (GoPro/HIDE papers)", matlab_ssim=True),
        Protocol(
            "realblur",
            "gain matching + ECC homography alignment to the ground truth, PSNR/SSIM on the valid "
            "region (official RealBlur/RSBlur evaluation)",
            align=True,
        ),
        Protocol("dpdd", "16-bit data, PSNR + SSIM + MAE on [0, 1] (DPDD)", mae=True),
        Protocol("reloblur", "PSNR + SSIM, plus mask-weighted PSNR/SSIM when a blur mask is given", masked=True),
    )
}

# Normalised dataset-name prefix -> protocol name. Names are lower-cased with everything but
# letters and digits removed ("RealBlur-J" -> "realblurj").
_DATASET_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gopro", "gopro"),
    ("hide", "gopro"),
    ("realblur", "realblur"),
    ("rsblur", "realblur"),
    ("dpdd", "dpdd"),
    ("realdof", "dpdd"),
    ("reloblur", "reloblur"),
)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def protocol_for(dataset: str) -> Protocol:
    """The protocol of a dataset name ("GoPro", "RealBlur-J", "rsblur", "DPDD", ...) or a
    protocol name ("realblur"); unknown datasets get `default`."""
    if dataset in PROTOCOLS:
        return PROTOCOLS[dataset]
    key = _normalise(dataset)
    for prefix, protocol_name in _DATASET_PREFIXES:
        if key.startswith(prefix):
            return PROTOCOLS[protocol_name]
    return PROTOCOLS["default"]


class AlignmentError(RuntimeError):
    """ECC alignment of a restored image to its ground truth did not converge."""


@dataclass(frozen=True)
class Alignment:
    aligned: np.ndarray  # (H, W, 3) float32: gain-matched restored image warped onto the ground truth, zero outside
    reference: np.ndarray  # (H, W, 3) float32: ground truth times `valid`
    valid: np.ndarray  # (H, W, 3) float32 in {0, 1}: pixels the warped image covers
    warp: np.ndarray  # (3, 3) float32 homography, OpenCV's WARP_INVERSE_MAP convention
    gain: float  # intensity factor applied to the restored image before warping


ECC_ITERATIONS = 100
ECC_GAUSS_FILTER_SIZE = 5


def align_to_reference(restored: np.ndarray, sharp: np.ndarray) -> Alignment:
    """The official RealBlur/RSBlur alignment (after Koehler et al.'s evaluation code).

    restored, sharp: (H, W, 3) float in [0, 1] (float32 is used, as in the official code).
    The restored image is scaled by the least-squares gain sum(sharp * restored) / sum(restored^2),
    an ECC homography (100 iterations, eps 0, Gaussian pre-filter 5) maps it onto the ground truth
    in grayscale, it is warped with bicubic interpolation and reflected borders, and the pixels
    not covered by the warp (nearest-neighbour warp of ones, zero border) are masked out of both.
    """
    restored = np.ascontiguousarray(restored, dtype=np.float32)
    sharp = np.ascontiguousarray(sharp, dtype=np.float32)
    if restored.shape != sharp.shape or restored.ndim != 3 or restored.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of the same size, got {restored.shape} and {sharp.shape}")
    energy = float(np.sum(restored * restored))
    gain = float(np.sum(sharp * restored)) / energy if energy > 0 else 1.0
    scaled = (gain * restored).astype(np.float32)
    warp = np.eye(3, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 0)
    try:
        _, warp = cv2.findTransformECC(
            cv2.cvtColor(sharp, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(scaled, cv2.COLOR_RGB2GRAY),
            warp,
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            ECC_GAUSS_FILTER_SIZE,
        )
    except cv2.error as error:
        raise AlignmentError(f"ECC alignment failed: {error.msg.strip() or error}") from error
    height, width = sharp.shape[:2]
    aligned = cv2.warpPerspective(
        scaled, warp, (width, height), flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )
    valid = cv2.warpPerspective(
        np.ones_like(scaled),
        warp,
        (width, height),
        flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return Alignment(aligned=aligned * valid, reference=sharp * valid, valid=valid, warp=warp, gain=gain)


def _same_type(restored: np.ndarray, sharp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both at the stored pixel type when they agree, else both as float [0, 1]."""
    if restored.dtype == sharp.dtype and restored.dtype in (np.uint8, np.uint16):
        return restored, sharp
    return to_float(restored), to_float(sharp)


def evaluate_pair(
    restored: np.ndarray,
    sharp: np.ndarray,
    dataset: str,
    mask: np.ndarray | None = None,
    protocol: Protocol | None = None,
) -> dict[str, float | str]:
    """Score one restored image against its ground truth with the dataset's convention.

    restored, sharp: (H, W, 3) uint8 / uint16 / float in [0, 1], as read by `demoe.imageio`
    (images of different bit depths are compared as floats in [0, 1]).
    dataset: dataset or protocol name, see `protocol_for`; `protocol` overrides it.
    mask: (H, W) or (H, W, 1) weights in [0, 1] (uint8 masks: nonzero = 1), used by `reloblur`.
    Returns {"protocol": name, "psnr": dB, "ssim": ...} plus "mae" (dpdd), "gain" (realblur),
    "psnr_masked"/"ssim_masked" (reloblur with a mask).
    """
    from demoe.evaluation import metrics  # SciPy (the [eval] extra): only scoring needs it, not the table

    protocol = protocol or protocol_for(dataset)
    restored, sharp = np.asarray(restored), np.asarray(sharp)
    if restored.shape != sharp.shape:
        raise ValueError(f"restored and sharp differ in shape: {restored.shape} vs {sharp.shape}")
    result: dict[str, float | str] = {"protocol": protocol.name}
    if protocol.align:
        alignment = align_to_reference(to_float(restored), to_float(sharp))
        aligned = np.clip(alignment.aligned, 0.0, 1.0)
        reference = np.clip(alignment.reference, 0.0, 1.0)
        result["psnr"] = metrics.masked_psnr(aligned, reference, alignment.valid, data_range=1.0)
        result["ssim"] = metrics.masked_ssim(aligned, reference, alignment.valid, data_range=1.0)
        result["gain"] = alignment.gain
        return result
    restored, sharp = _same_type(restored, sharp)
    result["psnr"] = metrics.psnr(restored, sharp)
    result["ssim"] = metrics.matlab_ssim(restored, sharp) if protocol.matlab_ssim else metrics.ssim(restored, sharp)
    if protocol.mae:
        result["mae"] = metrics.mae(restored, sharp)
    if protocol.masked and mask is not None:
        weights = mask_weights(mask)
        result["psnr_masked"] = metrics.masked_psnr(restored, sharp, weights)
        result["ssim_masked"] = metrics.masked_ssim(restored, sharp, weights)
    return result


def mask_weights(mask: np.ndarray) -> np.ndarray:
    """A mask image -> (H, W) float64 weights: integer masks are binarised (> 0, as ReLoBlur's
    loader does, first channel), float masks are used as weights in [0, 1]."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) mask, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        return np.clip(mask.astype(np.float64), 0.0, 1.0)
    return (mask > 0).astype(np.float64)
