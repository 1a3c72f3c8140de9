"""The deblurring pipeline: a loaded model applied to images as people have them.

`Deblurrer` keeps a model on a device and restores numpy arrays or Pillow images, returning
the same kind: (H, W), (H, W, 1), (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA,
uint8 / uint16 / float in [0, 1]. Gray images are restored as RGB and converted back (ITU-R
601 luma, as Pillow's convert("L")); alpha is passed through untouched; the output is clamped to
[0, 1] before it is quantised back to the input's bit depth.

Routing is decided once per image, by the model's own encoder and router (`model.encode`,
`model.route`: the path of its forward pass, with its padding). Whole-image processing (tile=0)
takes the router's decision from the same forward pass. Tiled processing first runs the encoder
and router on the whole image, or on the area-downscaled `router_view` of at most
`router_max_pixels` (default tile * tile) pixels, turns the probabilities into a (1, E)
expert-weight tensor, and calls the model with that tensor on every tile, so every tile uses the
same experts. The channel attention of every NAFBlock in every tile uses the channel means of
the whole image, not the tile's own (a tile of a dark photograph alone is restored otherwise):
they are recorded on the router's view and refined by one pass over the tiles, each summing the
part of the image it stands for (`RecordedStatistics`, `StatisticsAccumulator` in
`demoe.nn.layers`). Tiles are blended with a raised-cosine window (`demoe.inference.tiling`);
model memory is bounded by the tile size. `tlc=True` runs the model with TLC (local channel
statistics) instead, in the router pass, on the whole image and on every tile alike.

This module imports the model and checkpoint code only, never the training stack.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

from demoe.imageio import to_float
from demoe.imageio import pil_from_pixels, pixels_from_pil
from demoe.inference.memory import MemoryPlan, memory_budget, plan_restoration
from demoe.inference.tiling import TileBlender, core_spans, tile_grid, tile_spans
from demoe.model import DeblurUNet, load_model
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.layers import (
    RecordedStatistics,
    Region,
    StatisticsAccumulator,
    StatisticsRecorder,
    StatisticsSource,
)
from demoe.nn.moe import top_k_weights

Precision = Literal["fp32", "fp16", "bf16"]
UncertainPolicy = Literal["hard", "soft"]
ImageLike = np.ndarray | Image.Image

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICES = ("auto", "cpu", "cuda", "mps")
# `classify` looks at images up to this size whole, and at an area-downscaled view beyond it.
DEFAULT_ROUTER_PIXELS = 2048 * 2048
# ITU-R BT.601 luma weights (what Pillow's convert("L") uses).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class DeblurResult:
    """What `Deblurrer.restore` returns.

    image: the restored image, same kind, shape, dtype (and Pillow mode) as the input.
    task_probs: router probability of each task name (None for a model without router).
    experts_used: names of the experts that ran, largest weight first ([] without MoE).
    entropy: entropy of task_probs in nats (0 = certain, ln 5 = 1.609 = uniform), or None.
    seconds: wall-clock time of the restoration.
    low_confidence: the top router probability is below the requested `min_confidence`.
    tiles: number of tiles processed (1 = whole image).
    fp32_fallback: a half-precision result held NaN/inf and was recomputed in fp32.
    """

    image: ImageLike
    task_probs: dict[str, float] | None
    experts_used: list[str]
    entropy: float | None
    seconds: float
    low_confidence: bool = False
    tiles: int = 1
    fp32_fallback: bool = False
    expert_weights: dict[str, float] = field(default_factory=dict)
    auto_tile: int = 0  # tile side chosen because the whole image did not fit in memory (0: not)


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda if available, else mps if available, else cpu; others checked."""
    if isinstance(device, torch.device):
        return device
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but PyTorch sees no CUDA GPU; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but the Apple MPS backend is not available; use --device cpu")
    return torch.device(device)


def entropy_nats(probs: np.ndarray) -> float:
    """Shannon entropy -sum p ln p of a probability vector (0 ln 0 = 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    positive = probs[probs > 0]
    return float(-(positive * np.log(positive)).sum())


def router_probabilities(model: DeblurUNet, x: torch.Tensor, tlc: bool = False) -> torch.Tensor:
    """The router's softmax (B, E) for x (B, 3, H, W) in [0, 1]: the model's encoder and router
    (`model.encode`, `model.route`) without the decoder; the probabilities of `model(x)`."""
    if getattr(model, "router", None) is None:
        raise ValueError("this model has no router: it cannot classify blur")
    return model.route(model.encode(x, tlc=tlc).bottleneck).probs.float()


def router_view(pixels: np.ndarray, max_pixels: int | None = None, max_side: int | None = None) -> np.ndarray:
    """The image the router looks at: pixels (H, W[, C]) area-downscaled (OpenCV INTER_AREA) to
    at most `max_pixels` pixels and a longer side of at most `max_side` (None or 0 = no limit);
    the image itself (not a copy) when it fits. The one downscaling policy of `classify`, the
    router pass of tiled restoration and the analyses (`demoe analyze router --max-side`).

    >>> router_view(np.zeros((300, 400, 3), np.uint8), max_side=200).shape
    (150, 200, 3)
    """
    height, width = pixels.shape[:2]
    scale = 1.0
    if max_pixels:
        scale = min(scale, math.sqrt(max_pixels / (height * width)))
    if max_side:
        scale = min(scale, max_side / max(height, width))
    if scale >= 1.0:
        return pixels
    # The tolerance keeps e.g. 1024 / 1500 * 1500 at 1024, not 1023.
    size = (max(1, math.floor(width * scale + 1e-6)), max(1, math.floor(height * scale + 1e-6)))  # (w, h)
    resized = cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA)
    return resized[:, :, None] if resized.ndim == 2 else resized


@dataclass(frozen=True)
class _Pixels:
    """An input image split into colour (H, W, 1|3) and alpha (H, W) parts, plus how to rebuild it."""

    color: np.ndarray
    alpha: np.ndarray | None
    dtype: np.dtype
    squeeze: bool  # input was (H, W): return (H, W)
    pil_mode: str | None  # input was a Pillow image of this mode
    pil_info: dict


def _split(image: ImageLike) -> _Pixels:
    if isinstance(image, Image.Image):
        pixels = pixels_from_pil(image)
        info = {"icc_profile": image.info["icc_profile"]} if image.info.get("icc_profile") else {}
        pil_mode = image.mode
    elif isinstance(image, np.ndarray):
        pixels, info, pil_mode = image, {}, None
    else:
        raise TypeError(
            f"expected a numpy array (H, W[, C]) or a PIL.Image.Image, got {type(image).__name__}"
        )
    if not (pixels.dtype in (np.uint8, np.uint16) or np.issubdtype(pixels.dtype, np.floating)):
        raise TypeError(f"unsupported pixel type {pixels.dtype}; expected uint8, uint16 or float in [0, 1]")
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"expected an image of shape (H, W) or (H, W, C) with C in 1..4, got {pixels.shape}"
        )
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"the image is empty: shape {pixels.shape}")
    if np.issubdtype(pixels.dtype, np.floating) and not bool(np.isfinite(pixels).all()):
        raise ValueError("the image holds NaN or infinite values")
    squeeze = pixels.ndim == 2
    if squeeze:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    color = pixels[:, :, :3] if channels >= 3 else pixels[:, :, :1]
    alpha = pixels[:, :, channels - 1] if channels in (2, 4) else None
    return _Pixels(color, alpha, pixels.dtype, squeeze, pil_mode, info)


def _quantize(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 -> dtype, clamped to [0, 1] first (in place on `values`)."""
    np.clip(values, 0.0, 1.0, out=values)
    if dtype == np.uint8 or dtype == np.uint16:
        values *= 255.0 if dtype == np.uint8 else 65535.0
        np.rint(values, out=values)
    return values.astype(dtype)


def _assemble(parts: _Pixels, restored_rgb: np.ndarray) -> ImageLike:
    """Restored (H, W, 3) float32 -> the input's kind (gray conversion, alpha, dtype, PIL mode)."""
    if parts.color.shape[2] == 1:
        restored = (restored_rgb @ _LUMA)[:, :, None]  # (H, W, 1)
    else:
        restored = restored_rgb
    restored = _quantize(restored, parts.dtype)
    if parts.alpha is not None:
        restored = np.concatenate([restored, parts.alpha[:, :, None]], axis=2)
    if parts.squeeze:
        restored = restored[:, :, 0]
    if parts.pil_mode is None:
        return restored
    output = pil_from_pixels(restored, mode="I" if parts.pil_mode == "I" else None)
    output.info.update(parts.pil_info)
    return output


def _rgb_tensor(color: np.ndarray, device: torch.device) -> torch.Tensor:
    """(h, w, 1|3) pixels -> (1, 3, h, w) float32 in [0, 1] on device."""
    values = to_float(np.ascontiguousarray(color))
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return torch.from_numpy(values).permute(2, 0, 1).unsqueeze(0).to(device)


@dataclass(frozen=True)
class _Pass:
    image: torch.Tensor  # (1, 3, h, w) float32, not clamped
    probs: np.ndarray | None  # (E,) router softmax
    expert_weights: torch.Tensor | None  # (1, E) on the CPU
    fp32_fallback: bool


@dataclass(frozen=True)
class _Choice:
    """How `Deblurrer.restore` picks the experts of one image: its arguments, checked."""

    task: str
    top_k: int
    fixed: torch.Tensor | None  # (1, E) weights decided by the caller, or None: routing decides
    min_confidence: float | None
    uncertain: UncertainPolicy
    soft_top_k: int
    tlc: bool


@dataclass(frozen=True)
class _Restored:
    rgb: np.ndarray  # (H, W, 3) float32, not clamped
    probs: np.ndarray | None  # (E,) router softmax of the image (None: no router, or not asked)
    weights: torch.Tensor | None  # (1, E) the experts' mixing weights, on the CPU
    low_confidence: bool
    fp32_fallback: bool
    tiles: int


class Deblurrer:
    """A loaded deblurring model, for restoring many images.

    weights: None (the bundled default weights), a model directory, the name of bundled
        weights, or a `DeblurUNet` instance, which is copied: the caller's model stays as it was
        (device, train/eval mode, memory format).
    device: "auto" (cuda, else mps, else cpu), "cpu", "cuda" or "mps".
    precision: "fp32", or "fp16" / "bf16" (autocast; fp16 on a GPU only, bf16 also on the CPU:
        docs/performance.md says when it pays). A half-precision result holding NaN or inf is
        recomputed in fp32.

    Example:
        >>> from demoe import create_model
        >>> deblurrer = Deblurrer(create_model("demoe-tiny"), device="cpu")
        >>> result = deblurrer.restore(np.zeros((20, 30, 3), np.uint8))
        >>> result.image.shape, result.image.dtype
        ((20, 30, 3), dtype('uint8'))
    """

    def __init__(
        self,
        weights: DeblurUNet | str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        precision: Precision = "fp32",
    ) -> None:
        if precision not in PRECISION_DTYPES:
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("precision fp16 needs a GPU (--device cuda or mps); on the CPU use fp32 or bf16")
        self.precision = precision
        if isinstance(weights, (DeblurUNet, DenseDeblurNet)):
            model = copy.deepcopy(weights)
        elif isinstance(weights, torch.nn.Module):
            raise TypeError(f"expected a demoe network (DeblurUNet or a comparison network), got {type(weights).__name__}")
        else:
            model = load_model(weights)
        model = model.to(self.device).eval()
        if self.device.type == "cpu":
            # channels_last is the fastest CPU path measured (docs/performance.md: 1.46x eager
            # with a fixed task, 1.53x auto, outputs equal to 1e-6); the HWC pixel arrays become
            # channels_last tensors without a copy.
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.model.task_names

    # ---- model calls -------------------------------------------------------------------------

    def _autocast(self, enabled: bool):
        return torch.autocast(
            device_type=self.device.type, dtype=PRECISION_DTYPES[self.precision], enabled=enabled
        )

    def _forward(
        self, x: torch.Tensor, task, top_k: int | None, tlc: bool, statistics: RecordedStatistics | None = None
    ) -> "_Pass":
        """One model call at the chosen precision; a non-finite half-precision result is redone in fp32."""
        half = self.precision != "fp32"
        with torch.inference_mode(), self._autocast(half):
            output = self._call(x, task, top_k, tlc, statistics)
        finite = bool(torch.isfinite(output.image).all()) and (
            output.router_probs is None or bool(torch.isfinite(output.router_probs).all())
        )
        redone = False
        if not finite:
            if not half:
                raise RuntimeError("the model produced NaN or infinite values in fp32")
            with torch.inference_mode(), self._autocast(False):
                output = self._call(x, task, top_k, tlc, statistics)
            redone = True
        probs = None
        if output.router_probs is not None:
            probs = output.router_probs[0].float().cpu().numpy().astype(np.float64)
        weights = None if output.expert_weights is None else output.expert_weights.float().cpu()
        return _Pass(output.image.float(), probs, weights, redone)

    def _call(self, x: torch.Tensor, task, top_k: int | None, tlc: bool, statistics: StatisticsSource | None = None):
        options = {}
        if tlc:
            options["tlc"] = True
        if statistics is not None:
            options["statistics"] = statistics
        if not self.model.config.is_moe:
            return self.model(x, **options)
        return self.model(x, task=task, top_k=top_k, **options)

    def _router_probs(self, color: np.ndarray, max_pixels: int | None, tlc: bool) -> np.ndarray | None:
        """Router probabilities (E,) of the whole image, or of its `router_view` beyond max_pixels."""
        if not self.model.config.router:
            return None
        view = _rgb_tensor(router_view(color, max_pixels), self.device)
        with torch.inference_mode(), self._autocast(self.precision != "fp32"):
            probs = router_probabilities(self.model, view, tlc)
        if not bool(torch.isfinite(probs).all()):
            with torch.inference_mode():
                probs = router_probabilities(self.model, view, tlc)
        return probs[0].cpu().numpy().astype(np.float64)

    def _image_statistics(
        self, color: np.ndarray, routing, tile: int, tile_overlap: int, view_pixels: int
    ) -> RecordedStatistics | None:
        """The channel means every NAFBlock's attention sees on the whole image, within the
        memory of one tile: recorded on the router's view (at most view_pixels pixels), then
        refined by one pass over the tiles, run with the view's means, each tile summing the
        part of the image it stands for (its core; the rest of the tile is context). None for
        networks without NAFBlocks. Recomputed in fp32 if half precision overflowed."""
        if not isinstance(self.model, DeblurUNet):
            return None
        half = self.precision != "fp32"
        statistics = self._image_statistics_at(color, routing, tile, tile_overlap, view_pixels, half)
        if half and not all(bool(torch.isfinite(means).all()) for means in statistics.means.values()):
            statistics = self._image_statistics_at(color, routing, tile, tile_overlap, view_pixels, False)
        return statistics

    def _image_statistics_at(
        self, color: np.ndarray, routing, tile: int, tile_overlap: int, view_pixels: int, half: bool
    ) -> RecordedStatistics:
        height, width = color.shape[:2]
        multiple = self.model.config.size_multiple
        recorder = StatisticsRecorder()
        with torch.inference_mode(), self._autocast(half):
            self._call(_rgb_tensor(router_view(color, view_pixels), self.device), routing, None, False, recorder)
            # The view's means are close to the whole image's, not equal (a downscaled image has
            # other statistics); one pass over the tiles with them gives the first layer's means
            # exactly and every later layer's nearly so (measured in docs/deblur.md).
            accumulator = StatisticsAccumulator(recorder.statistics)
            row_spans = tile_spans(height, tile, tile_overlap, multiple)
            col_spans = tile_spans(width, tile, tile_overlap, multiple)
            row_cores = dict(zip(row_spans, core_spans(row_spans, multiple)))
            col_cores = dict(zip(col_spans, core_spans(col_spans, multiple)))
            for region in tile_grid(height, width, tile, tile_overlap, align=multiple):
                input_height = region.height + -region.height % multiple  # what the model pads to
                input_width = region.width + -region.width % multiple
                top, bottom = row_cores[(region.top, region.bottom)]
                left, right = col_cores[(region.left, region.right)]
                # The image's last core reaches into the padding: the whole image pads there too.
                accumulator.region = Region(
                    top - region.top,
                    input_height if bottom == height else bottom - region.top,
                    left - region.left,
                    input_width if right == width else right - region.left,
                    input_height,
                    input_width,
                )
                pixels = color[region.top : region.bottom, region.left : region.right]
                self._call(_rgb_tensor(pixels, self.device), routing, None, False, accumulator)
        return accumulator.statistics()

    # ---- public API --------------------------------------------------------------------------

    def classify(
        self, image: ImageLike, router_max_pixels: int = DEFAULT_ROUTER_PIXELS, tlc: bool = False
    ) -> dict[str, float]:
        """The router's probability for each blur type, from the whole image (or its
        area-downscaled `router_view` when it has more than router_max_pixels pixels)."""
        self.check_tlc(tlc)
        parts = _split(image)
        probs = self._router_probs(parts.color, router_max_pixels, tlc)
        if probs is None:
            raise ValueError("this model has no router: it cannot classify blur")
        return dict(zip(self.task_names, (float(p) for p in probs)))

    def restore(
        self,
        image: ImageLike,
        task: str = "auto",
        top_k: int | None = None,
        tile: int = 0,
        tile_overlap: int = 32,
        min_confidence: float | None = None,
        uncertain: UncertainPolicy = "hard",
        soft_top_k: int = 2,
        router_max_pixels: int | None = None,
        expert_weights: Mapping[str, float] | None = None,
        tlc: bool = False,
        max_memory: int | None = None,
    ) -> DeblurResult:
        """Deblur one image; returns the same kind of image plus what the router saw.

        task: "auto" (router) or a task name (that expert, whatever the router says).
        top_k: experts mixed per image with task="auto" (1..E); None = the model's own
            `config.top_k`.
        tile: tile side in pixels (0 = whole image); rounded down to a multiple of the model's
            size multiple. tile_overlap: pixels shared by neighbouring tiles (< tile).
        min_confidence: images whose top router probability is below it are `low_confidence`.
        uncertain: "soft" restores low-confidence images (task="auto") with the renormalised
            mixture of the top max(top_k, soft_top_k) experts instead of top_k.
        router_max_pixels: size of the router's view in tiled mode (default tile * tile).
        expert_weights: a mixture decided by the caller (task name -> weight, e.g. once per video
            shot) used instead of task / top_k routing; the router still reports its view of
            this image in whole-image mode, and is skipped when tiling.
        tlc: TLC, local channel statistics over 1.5 x the model's training crop (its
            `config.train_crop`), in the router pass, the whole image and every tile alike.
        max_memory: bytes the restoration may use (None = what the system reports available,
            0 = no check). With tile=0, an image whose whole-image pass does not fit is
            restored in the largest tiles that do (`DeblurResult.auto_tile`); when even that
            does not fit, or a given tile does not, NotEnoughMemoryError (a MemoryError) says
            how much is needed and which --tile would fit (`demoe.inference.memory`).
        """
        start = time.perf_counter()
        parts = _split(image)
        self.check_tlc(tlc)
        top_k, tile = self._checked_options(task, top_k, tile, tile_overlap, uncertain, min_confidence)
        auto_tile = 0
        if max_memory != 0:
            auto_tile = self._tile_for_memory(
                parts, task, top_k, tile, tile_overlap, uncertain, soft_top_k, expert_weights, max_memory
            )
            tile = auto_tile or tile
        fixed = None if expert_weights is None else self.fixed_weights(expert_weights)  # (1, E)
        choice = _Choice(task, top_k, fixed, min_confidence, uncertain, soft_top_k, tlc)
        height, width = parts.color.shape[:2]
        if tile and (height > tile or width > tile):
            restored = self._restore_tiled(parts.color, choice, tile, tile_overlap, router_max_pixels or tile * tile)
        else:
            restored = self._restore_whole(parts.color, choice)
        probs = restored.probs
        used = self._experts_used(restored.weights)
        return DeblurResult(
            image=_assemble(parts, restored.rgb),
            task_probs=None if probs is None else dict(zip(self.task_names, map(float, probs))),
            experts_used=[name for name, _ in used],
            entropy=None if probs is None else entropy_nats(probs),
            seconds=time.perf_counter() - start,
            low_confidence=bool(restored.low_confidence),
            tiles=restored.tiles,
            fp32_fallback=restored.fp32_fallback,
            expert_weights=dict(used),
            auto_tile=auto_tile,
        )

    def _checked_options(
        self, task: str, top_k: int | None, tile: int, tile_overlap: int, uncertain: str, min_confidence: float | None
    ) -> tuple[int, int]:
        """`restore`'s options checked (ValueError naming the valid values): top_k (None = the
        model's) and the tile side rounded down to a multiple of the model's size multiple."""
        config = self.model.config
        if top_k is None:
            top_k = config.top_k
        if task != "auto":
            self.model.task_index(task)  # ValueError naming the valid tasks
            if not config.is_moe:
                raise ValueError("this model has no experts: use task='auto'")
        if config.is_moe and not 1 <= top_k <= config.num_experts:
            raise ValueError(f"top_k must be in 1..{config.num_experts}, got {top_k}")
        if uncertain not in ("hard", "soft"):
            raise ValueError(f"uncertain must be 'hard' or 'soft', got {uncertain!r}")
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if tile < 0:
            raise ValueError(f"tile must be >= 0 (0 = whole image), got {tile}")
        if tile:
            multiple = config.size_multiple
            tile = max(multiple, tile // multiple * multiple)
            if not 0 <= tile_overlap < tile:
                raise ValueError(f"tile_overlap must be in [0, tile) = [0, {tile}), got {tile_overlap}")
        return top_k, tile

    def _tile_for_memory(
        self,
        parts: _Pixels,
        task: str,
        top_k: int,
        tile: int,
        tile_overlap: int,
        uncertain: str,
        soft_top_k: int,
        expert_weights: Mapping[str, float] | None,
        max_memory: int | None,
    ) -> int:
        """The tile side to restore in because the whole image does not fit in `max_memory`
        (0: the restoration fits as asked); NotEnoughMemoryError when nothing fits."""
        config = self.model.config
        mixed = max(top_k, soft_top_k) if uncertain == "soft" else top_k
        if task != "auto" or not config.is_moe:
            mixed = 1
        elif expert_weights is not None:
            mixed = sum(1 for weight in expert_weights.values() if weight > 0)
        height, width, channels = parts.color.shape
        channels += parts.alpha is not None
        plan = self.plan_memory(height, width, channels, parts.dtype.itemsize, tile, tile_overlap, mixed,
                                max_memory, pixels_in_memory=True)
        if not plan.auto:
            return 0
        return max(config.size_multiple, plan.tile // config.size_multiple * config.size_multiple)

    def _restore_whole(self, color: np.ndarray, choice: _Choice) -> _Restored:
        """One pass gives the router's verdict and the restoration; a low-confidence image under
        uncertain="soft" is restored a second time with the wider mixture."""
        is_moe = self.model.config.is_moe
        x = _rgb_tensor(color, self.device)
        if choice.fixed is not None:
            pass_ = self._forward(x, choice.fixed.to(self.device), None, choice.tlc)
        else:
            pass_ = self._forward(x, choice.task, choice.top_k if is_moe else None, choice.tlc)
        probs, weights, fp32_fallback = pass_.probs, pass_.expert_weights, pass_.fp32_fallback
        restored = pass_.image
        low_confidence = _below(probs, choice.min_confidence)
        if low_confidence and choice.uncertain == "soft" and choice.task == "auto" and is_moe and choice.fixed is None:
            soft_weights = top_k_weights(torch.from_numpy(probs).float()[None], max(choice.top_k, choice.soft_top_k))
            if not torch.equal(soft_weights, weights):
                weights = soft_weights
                pass_ = self._forward(x, weights.to(self.device), None, choice.tlc)
                restored, fp32_fallback = pass_.image, fp32_fallback or pass_.fp32_fallback
        rgb = restored[0].permute(1, 2, 0).cpu().numpy()  # (H, W, 3) float32
        return _Restored(rgb, probs, weights, low_confidence, fp32_fallback, tiles=1)

    def _restore_tiled(
        self, color: np.ndarray, choice: _Choice, tile: int, tile_overlap: int, view_pixels: int
    ) -> _Restored:
        """The experts chosen once for the whole image (from the router's view of at most
        view_pixels pixels, or the caller's weights), then every tile restored with them and
        with the whole image's channel statistics (TLC's are local: none then)."""
        if choice.fixed is not None:
            probs, low_confidence, weights = None, False, choice.fixed
        else:
            probs = self._router_probs(color, view_pixels, choice.tlc)
            low_confidence = _below(probs, choice.min_confidence)
            k = choice.top_k
            if low_confidence and choice.uncertain == "soft" and choice.task == "auto":
                k = max(choice.top_k, choice.soft_top_k)
            weights = self._weights(probs, choice.task, k)  # (1, E) or None without experts
        routing = "auto" if weights is None else weights.to(self.device)
        statistics = None
        if not choice.tlc:
            statistics = self._image_statistics(color, routing, tile, tile_overlap, view_pixels)
        height, width = color.shape[:2]
        blender = TileBlender(height, width, 3, tile_overlap)
        tiles = tile_grid(height, width, tile, tile_overlap, align=self.model.config.size_multiple)
        fp32_fallback = False
        for region in tiles:
            x = _rgb_tensor(color[region.top : region.bottom, region.left : region.right], self.device)
            pass_ = self._forward(x, routing, None, choice.tlc, statistics)
            fp32_fallback |= pass_.fp32_fallback
            blender.add(region, pass_.image[0].permute(1, 2, 0).cpu().numpy())
        return _Restored(blender.result(), probs, weights, low_confidence, fp32_fallback, tiles=len(tiles))

    def plan_memory(
        self,
        height: int,
        width: int,
        channels: int,
        sample_bytes: int,
        tile: int = 0,
        tile_overlap: int = 32,
        top_k: int = 1,
        max_memory: int | None = None,
        pixels_in_memory: bool = False,
    ) -> MemoryPlan:
        """How a (height, width, channels) image of `sample_bytes` per value would be restored
        within `max_memory` bytes (None = what the system and this device report available,
        0 = no check); raises NotEnoughMemoryError when nothing fits (`demoe.inference.memory`)."""
        budget = memory_budget(self.device, max_memory)
        return plan_restoration(self.model.config, height, width, channels, sample_bytes, tile, tile_overlap,
                                top_k, budget, pixels_in_memory)

    def fixed_weights(self, expert_weights: Mapping[str, float]) -> torch.Tensor:
        """(1, E) float32 weights summing to 1 from task name -> weight (missing names weigh 0).

        ValueError for a model without experts, unknown names, negative or all-zero weights.
        """
        if not self.model.config.is_moe:
            raise ValueError("this model has no experts: it takes no expert weights")
        weights = torch.zeros(1, self.model.config.num_experts)
        for name, weight in expert_weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"expert weights must be finite and >= 0, got {name}={weight}")
            weights[0, self.model.task_index(name)] = float(weight)  # ValueError naming the tasks
        if float(weights.sum()) <= 0:
            raise ValueError("expert weights are all zero")
        return weights / weights.sum()

    def check_tlc(self, tlc: bool = True) -> None:
        """ValueError (saying why) unless TLC can run on this model: a NAFNet-based network whose
        config records its training crop (`train_crop`, which sizes TLC's window)."""
        if not tlc:
            return
        if not isinstance(self.model, DeblurUNet):
            raise ValueError("TLC applies to the NAFNet-based models (DeMoE, NAFNet), not to this network")
        self.model.tlc_window  # ValueError when the config does not record the training crop

    def _weights(self, probs: np.ndarray, task: str, top_k: int) -> torch.Tensor | None:
        """(1, E) expert weights: one-hot for a named task, top-k of the router otherwise."""
        if not self.model.config.is_moe:
            return None
        if task != "auto":
            weights = torch.zeros(1, self.model.config.num_experts)
            weights[0, self.model.task_index(task)] = 1.0
            return weights
        return top_k_weights(torch.from_numpy(probs).float()[None], top_k)

    def _experts_used(self, weights) -> list[tuple[str, float]]:
        if not isinstance(weights, torch.Tensor):
            return []
        row = weights[0].float().cpu()
        order = torch.argsort(row, descending=True, stable=True)
        return [(self.task_names[int(i)], float(row[int(i)])) for i in order if row[int(i)] != 0]


def _below(probs: np.ndarray | None, min_confidence: float | None) -> bool:
    return probs is not None and min_confidence is not None and float(probs.max()) < min_confidence


def deblur(
    image: ImageLike,
    model: Deblurrer | DeblurUNet | str | os.PathLike | None = None,
    task: str = "auto",
    top_k: int | None = None,
    tile: int = 0,
    tile_overlap: int = 32,
    device: str = "auto",
    precision: Precision = "fp32",
    tlc: bool = False,
) -> ImageLike:
    """Deblur one image and return the same kind (numpy array or Pillow image).

    image: numpy (H, W[, C]) uint8 / uint16 / float in [0, 1], C in 1..4, or a Pillow image.
    model: a `Deblurrer`, a `DeblurUNet`, a model directory, bundled weights by name, or None
        for the bundled default weights. For many images, build one `Deblurrer` and reuse it.
    top_k: None = the model's own `config.top_k`; tlc: see `Deblurrer.restore`.

    Example:
        >>> from demoe import create_model
        >>> restored = deblur(np.zeros((16, 16, 3), np.uint8), model=create_model("demoe-tiny"))
        >>> restored.dtype, restored.shape
        (dtype('uint8'), (16, 16, 3))
    """
    deblurrer = model if isinstance(model, Deblurrer) else Deblurrer(model, device=device, precision=precision)
    return deblurrer.restore(image, task=task, top_k=top_k, tile=tile, tile_overlap=tile_overlap, tlc=tlc).image
