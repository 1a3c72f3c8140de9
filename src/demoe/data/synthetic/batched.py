"""Blur synthesis in whole batches on the training device (a GPU, or the CPU in tests).

The five blur models of `demoe.data.synthetic.generator`, with the same physics (blurring in
linear light, the same image formation per class) and the same `SynthConfig` ranges, including
dark but normally exposed scenes, applied to a batch of crops at once with torch, so that a GPU
is not held up by the host's CPUs. The numpy generator stays the reference (and what validation
uses); this one is for training throughput.

- `synthesize_batch(sharp, task, generator, config)`: (B, 3, S, S) sharp sRGB regions, one
  task -> `BatchedSample` (blurry, sharp target, local-motion mask), every sample with its own
  random parameters;
- `PhotoBank`: photographs decoded once and held on the device; random square crops and flips;
- `SyntheticBlurBatches`: training batches of every task, a pure function of (seed, step,
  rank); `demoe train` uses it for `data.train.kind: synthetic_device`.

How it differs from the numpy generator (tests/data_synth/test_synth_batched.py compares them):
- the draws come from torch's generator: the same distributions, not the same values for a seed;
- convolutions are circular (FFT); the crop margin (`SynthConfig.margin_px`) is wider than every
  kernel's reach, so the wrap-around stays in the margin that is cut away, as the mirrored
  borders of the numpy version do;
- JPEG (global_motion) is baseline JPEG re-implemented in tensor arithmetic (exact DCT instead
  of libjpeg's integer DCT: pixels within about a level of PIL's);
- Gaussian blurs and resizing follow OpenCV's kernels; area downscaling at non-integer factors
  averages slightly different windows (`F.interpolate(mode="area")`);
- a photograph is drawn at random for each crop (with replacement) instead of once per epoch.

Shape: images are (B, 3, S, S) float32 in [0, 1], sRGB-encoded.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from demoe.config import TASK_NAMES
from demoe.data.synthetic import batched_ops as ops
from demoe.data.synthetic.camera import JPEG_MCU_PX
from demoe.data.synthetic.config import (
    DarkSceneConfig,
    DefocusConfig,
    GlobalMotionConfig,
    LocalMotionConfig,
    LowLightConfig,
    SynthConfig,
    SynthGlobalMotionConfig,
)
from demoe.data.synthetic.dataset import check_synthesis_arguments, ensure_min_side, load_photo


@dataclass(frozen=True)
class BatchedSample:
    """A synthesised batch; `mask` marks the blurred region of `local_motion` samples."""

    blurry: torch.Tensor  # (B, 3, S, S) float32 in [0, 1], sRGB
    sharp: torch.Tensor  # (B, 3, S, S) float32 in [0, 1], sRGB: the restoration target
    mask: torch.Tensor | None = None  # (B, S, S) float32 in [0, 1]: moving-object coverage


def synthesize_batch(
    sharp: torch.Tensor, task: str, generator: torch.Generator, config: SynthConfig | None = None
) -> BatchedSample:
    """Blur a batch of sharp photographs with the model of `task`; `generator.synthesize_sample`
    for a batch, each sample with its own random parameters.

    Args:
        sharp: (B, 3, H, W) float in [0, 1], sRGB, on the generator's device.
        task: blur type (one of `demoe.config.TASK_NAMES`).
        generator: a torch.Generator on the device of `sharp`: the source of all randomness.
        config: parameter ranges (default `SynthConfig()`).
    Returns: `BatchedSample`; the target is the input (darkened for dark scenes).

    Example:
        >>> import torch
        >>> images = torch.rand(4, 3, 48, 48)
        >>> sample = synthesize_batch(images, "defocus", torch.Generator().manual_seed(0))
        >>> sample.blurry.shape, sample.blurry.dtype
        (torch.Size([4, 3, 48, 48]), torch.float32)
    """
    config = SynthConfig() if config is None else config
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(sharp, torch.Tensor) or not sharp.is_floating_point():
        raise TypeError("sharp must be a float tensor in [0, 1]")
    if sharp.ndim != 4 or sharp.shape[1] != 3:
        raise ValueError(f"sharp must be (B, 3, H, W), got shape {tuple(sharp.shape)}")
    if sharp.device != generator.device:
        raise ValueError(f"sharp is on {sharp.device} but the generator on {generator.device}")
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    sharp = sharp.float().clamp(0.0, 1.0)
    if task != "low_light" and config.dark_scene.probability > 0:
        chosen = ops.uniform(generator, (0.0, 1.0), sharp.shape[0]) < config.dark_scene.probability
        sharp = torch.where(chosen[:, None, None, None], darken(sharp, generator, config.dark_scene), sharp)
    if task == "global_motion":
        return BatchedSample(global_motion(sharp, generator, config.global_motion), sharp)
    if task == "synth_global_motion":
        return BatchedSample(synth_global_motion(sharp, generator, config.synth_global_motion), sharp)
    if task == "local_motion":
        blurry, mask = local_motion(sharp, generator, config.local_motion)
        return BatchedSample(blurry, sharp, mask)
    if task == "low_light":
        return BatchedSample(low_light(sharp, generator, config.low_light), sharp)
    return BatchedSample(defocus(sharp, generator, config.defocus), sharp)


LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709, as generator.LUMA_WEIGHTS


def mean_luma(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB -> (B,) mean Rec. 709 luma of the encoded values."""
    red, green, blue = image.unbind(1)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).flatten(1).mean(1)


def darken(sharp: torch.Tensor, generator: torch.Generator, config: DarkSceneConfig) -> torch.Tensor:
    """Dark but normally exposed scenes: linear light scaled so that the mean sRGB luma becomes
    a value drawn from `config.mean_luminance` (darker photographs stay as they are);
    `generator.darken` for a batch (the same 20-step bisection)."""
    target = ops.uniform(generator, config.mean_luminance, sharp.shape[0])
    linear = ops.srgb_to_linear(sharp)
    low, high = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(20):  # mean luma is monotonic in the scale
        scale = 0.5 * (low + high)
        brighter = mean_luma(ops.linear_to_srgb(linear * scale[:, None, None, None])) >= target
        low, high = torch.where(brighter, low, scale), torch.where(brighter, scale, high)
    darkened = ops.linear_to_srgb(linear * (0.5 * (low + high))[:, None, None, None])
    already_dark = mean_luma(sharp) <= target
    return torch.where(already_dark[:, None, None, None], sharp, darkened)


def _shake_kernels(generator: torch.Generator, count: int, shake) -> torch.Tensor:
    return ops.shake_kernels(
        generator,
        ops.uniform(generator, shake.length_px, count, torch.float64),
        ops.uniform(generator, shake.smoothness, count, torch.float64),
        shake.num_steps,
        shake.impulse_probability,
        shake.length_px[1],
    )


def global_motion(sharp: torch.Tensor, generator: torch.Generator, config: GlobalMotionConfig) -> torch.Tensor:
    """Camera shake over a long exposure (RealBlur-like): shake PSF in linear light, mild
    Poisson-Gaussian noise, sRGB encoding, JPEG; `generator.global_motion` for a batch."""
    count = sharp.shape[0]
    linear = ops.fft_convolve(ops.srgb_to_linear(sharp), _shake_kernels(generator, count, config.shake))
    linear = ops.add_heteroscedastic_noise(
        linear, generator, ops.uniform(generator, config.shot_noise, count), ops.uniform(generator, config.read_noise, count)
    )
    quality = ops.integers(generator, config.jpeg_quality, count)
    phase = torch.stack([ops.integers(generator, (0, JPEG_MCU_PX - 1), count) for _ in range(2)], 1)
    return ops.jpeg_compress(ops.linear_to_srgb(linear), quality, phase)


def synth_global_motion(sharp: torch.Tensor, generator: torch.Generator, config: SynthGlobalMotionConfig) -> torch.Tensor:
    """GoPro-like blur, the average of a virtual high-frame-rate sequence along a smooth camera
    path with small rotation and zoom, in the gamma-linearised space of the camera response;
    `generator.synth_global_motion` for a batch (every sample has its own frame count)."""
    count, _, height, width = sharp.shape
    translation = ops.uniform(generator, config.translation_px, count, torch.float64)
    low, high = config.num_frames
    num_frames = torch.ceil(translation / config.frame_step_px).to(torch.int64).add(1).clamp(low, high)
    num_frames = num_frames + 1 - num_frames % 2  # odd: the middle frame is the sharp one
    max_frames = high + 1 - high % 2
    curvature = ops.uniform(generator, (0.0, 0.5), count, torch.float64)
    path, valid = ops.smooth_paths(generator, translation, num_frames, curvature, max_frames)
    middle = num_frames // 2
    path = path - path.gather(1, middle[:, None, None].expand(-1, 1, 2))
    rotation = torch.deg2rad(ops.uniform(generator, config.rotation_deg, count, torch.float64)) * ops.signs(generator, count)
    zoom = ops.uniform(generator, config.zoom, count, torch.float64) * ops.signs(generator, count)
    frames = torch.arange(max_frames, device=sharp.device, dtype=torch.float64)
    progress = -0.5 + frames[None] / (num_frames[:, None] - 1)  # (B, F)
    angle = rotation[:, None] * progress
    scale = 1.0 + zoom[:, None] * progress
    alpha, beta = scale * angle.cos(), scale * angle.sin()  # cv2.getRotationMatrix2D
    center_x, center_y = (width - 1) / 2.0, (height - 1) / 2.0
    shift_x = (1 - alpha) * center_x - beta * center_y + path[..., 0]
    shift_y = beta * center_x + (1 - alpha) * center_y + path[..., 1]
    matrices = torch.stack([torch.stack([alpha, beta, shift_x], -1), torch.stack([-beta, alpha, shift_y], -1)], -2)
    linear = sharp.clamp_min(0.0) ** config.gamma
    accumulated = torch.zeros_like(linear)
    for frame in range(ops.loop_bound(max_frames, num_frames)):
        warped = ops.affine_warp(linear, matrices[:, frame])  # (B, F, 2, 3) -> (B, 2, 3)
        image = torch.where((middle == frame)[:, None, None, None], linear, warped)
        accumulated = accumulated + image * valid[:, frame, None, None, None]
    average = accumulated / num_frames[:, None, None, None].to(linear.dtype)
    return average.clamp(0.0, 1.0) ** (1.0 / config.gamma)


def object_masks(generator: torch.Generator, count: int, height: int, width: int, config: LocalMotionConfig) -> torch.Tensor:
    """Random object silhouettes, star-shaped polygons rounded and feathered;
    `scene.object_mask` for a batch with parameters drawn from `config`. Returns (B, H, W)."""
    area = ops.uniform(generator, config.object_area, count)
    num_vertices = ops.integers(generator, config.num_vertices, count)
    most = config.num_vertices[1]
    roughness = ops.uniform(generator, config.roughness, count)
    feather = ops.uniform(generator, config.feather_px, count)
    radius = torch.sqrt(area * height * width / math.pi)
    center = torch.stack(
        [ops.uniform(generator, (0.25, 0.75), count) * width, ops.uniform(generator, (0.25, 0.75), count) * height], 1
    )
    used = torch.arange(most, device=area.device)[None] < num_vertices[:, None]
    angles = torch.rand(count, most, generator=generator, device=area.device) * (2 * math.pi)
    angles = torch.where(used, angles, 4 * math.pi).sort(1).values  # unused vertices last
    jitter = torch.rand(count, most, generator=generator, device=area.device) * 2 - 1
    radii = radius[:, None] * (1.0 + roughness[:, None] * jitter)
    aspect = ops.uniform(generator, (0.6, 1.4), count)[:, None]
    vertices = center[:, None] + torch.stack([radii * angles.cos() * aspect, radii * angles.sin() / aspect], -1)
    mask = ops.polygon_coverage(vertices, num_vertices, height, width)[:, None]
    largest_radius = math.sqrt(config.object_area[1] * height * width / math.pi)
    # Round the polygon's corners, then re-sharpen into a blob with a soft rim.
    mask = ops.gaussian_blur(mask, (radius * 0.15).clamp_min(0.5), max(largest_radius * 0.15, 0.5))
    mask = ((mask - 0.5) * 4.0 + 0.5).clamp(0.0, 1.0)
    mask = ops.gaussian_blur(mask, feather, config.feather_px[1])
    return mask[:, 0]


def fill_behind(linear: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What a moving object hid: its surroundings smoothly extended under it (a normalised
    convolution at 1/8 resolution), blended in by the (B, H, W) mask; `generator._fill_behind`."""
    height, width = mask.shape[-2:]
    small = (max(1, height // 8), max(1, width // 8))
    keep = 1.0 - mask[:, None]
    weighted = F.interpolate(torch.cat([linear * keep, keep], 1), size=small, mode="area")
    sigma = max(small) / 6.0
    weighted = ops.gaussian_blur(weighted, torch.full((mask.shape[0],), sigma, device=mask.device), sigma)
    fill = weighted[:, :3] / weighted[:, 3:].clamp_min(1e-4)
    fill = F.interpolate(fill, size=(height, width), mode="bilinear", align_corners=False)
    return linear * keep + fill * mask[:, None]


def local_motion(
    sharp: torch.Tensor, generator: torch.Generator, config: LocalMotionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """A moving object over a static, sharp background (ReLoBlur-like), composited in linear
    light; `generator.local_motion` for a batch. Pixels the object never reaches keep their
    input values. Returns (blurry (B, 3, H, W), mask (B, H, W): blurred object coverage)."""
    count, _, height, width = sharp.shape
    mask = object_masks(generator, count, height, width, config)
    kernels = ops.linear_motion_kernels(
        ops.uniform(generator, config.length_px, count, torch.float64),
        ops.uniform(generator, (0.0, math.pi), count, torch.float64),
        config.length_px[1],
    )
    linear = ops.srgb_to_linear(sharp)
    background = fill_behind(linear, mask)
    moving = ops.fft_convolve(torch.cat([linear * mask[:, None], mask[:, None]], 1), kernels)
    coverage = moving[:, 3:].clamp(0.0, 1.0)
    blurred = moving[:, :3] + (1.0 - coverage) * background
    touched = coverage > 1e-6  # elsewhere keep the input exactly (no round trip through linear)
    blurry = torch.where(touched, ops.linear_to_srgb(blurred), sharp)
    return blurry, torch.where(touched, coverage, 0.0)[:, 0]


def low_light(sharp: torch.Tensor, generator: torch.Generator, config: LowLightConfig) -> torch.Tensor:
    """A dark hand-held exposure (LOLBlur-like): exposure scale, shake PSF, Poisson-Gaussian
    noise, sRGB, 8-bit levels; `generator.low_light` for a batch."""
    count = sharp.shape[0]
    exposure = ops.uniform(generator, config.exposure, count)[:, None, None, None]
    linear = ops.fft_convolve(ops.srgb_to_linear(sharp), _shake_kernels(generator, count, config.shake)) * exposure
    noisy = ops.add_poisson_gaussian_noise(
        linear, generator, ops.uniform(generator, config.full_well, count), ops.uniform(generator, config.read_noise, count)
    )
    return ops.quantize(ops.linear_to_srgb(noisy))


def defocus(sharp: torch.Tensor, generator: torch.Generator, config: DefocusConfig) -> torch.Tensor:
    """Depth-varying defocus (DPDD-like): layers of a random depth map, each blurred by the
    disk PSF of its distance from a random focal layer, composited back to front in linear
    light; `generator.defocus` for a batch (each sample with its own number of layers)."""
    count, _, height, width = sharp.shape
    num_layers = ops.integers(generator, config.num_layers, count)
    most = config.num_layers[1]
    depth = ops.depth_maps(
        generator,
        height,
        width,
        ops.uniform(generator, config.correlation, count),
        ops.uniform(generator, config.tilt, count),
        max_correlation=config.correlation[1],
        min_correlation=config.correlation[0],
    )
    layers_float = num_layers.to(torch.float32)[:, None, None]
    layers = torch.minimum(torch.floor(depth * layers_float).to(torch.int64), num_layers[:, None, None] - 1)
    index = torch.arange(most, device=sharp.device, dtype=torch.float32)[None]
    layer_depths = (index + 0.5) / num_layers[:, None]  # (B, L)
    focal = torch.minimum(torch.floor(ops.uniform(generator, (0.0, 1.0), count) * num_layers), layers_float[:, 0, 0] - 1)
    distance = (layer_depths - (focal[:, None] + 0.5) / num_layers[:, None]).abs() * (index < num_layers[:, None])
    radii = ops.uniform(generator, config.max_radius_px, count)[:, None] * distance / distance.amax(1, keepdim=True).clamp_min(1e-12)
    linear = ops.srgb_to_linear(sharp)
    color = torch.zeros_like(linear)
    alpha = torch.zeros_like(linear[:, :1])
    for layer in reversed(range(ops.loop_bound(most, num_layers))):  # farthest first
        coverage_sharp = (layers == layer).to(linear.dtype)[:, None]
        kernels = ops.disk_kernels(radii[:, layer], config.max_radius_px[1])
        blurred = ops.fft_convolve(torch.cat([linear * coverage_sharp, coverage_sharp], 1), kernels)
        coverage = blurred[:, 3:].clamp(0.0, 1.0)
        transmitted = 1.0 - coverage
        color = color * transmitted + blurred[:, :3]
        alpha = alpha * transmitted + coverage
    # Where nearer layers hid part of a farther layer's blur, renormalise instead of darkening.
    return ops.linear_to_srgb(color / alpha.clamp_min(1e-6))


# --------------------------------------------------------------------------------------------
# Photographs on the device, and training batches


class PhotoBank:
    """Photographs decoded once and held on a device, for random square crops.

    All pixels sit in one (N_pixels, 3) tensor (uint8 when every photograph is 8-bit, else
    float32 in [0, 1]); photographs with a side below `min_side` are upsampled (bicubic) to it,
    as `synthesize_crop` does (`upsampled` counts them). `SyntheticBlurBatches` asks for the
    largest crop-plus-margin of all tasks, so keep photographs larger than that.

    Example:
        >>> import numpy as np, torch
        >>> bank = PhotoBank([np.zeros((40, 50, 3), np.uint8)], device="cpu", min_side=32)
        >>> bank.crops(torch.Generator().manual_seed(0), 2, 32).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, photos: Sequence[np.ndarray], device: torch.device | str = "cpu", min_side: int = 0) -> None:
        if not photos:
            raise ValueError("no photographs: a PhotoBank needs at least one")
        photos = [_as_rgb_array(photo) for photo in photos]
        self.upsampled = sum(min(photo.shape[:2]) < min_side for photo in photos)  # how many were too small
        photos = [ensure_min_side(photo, min_side) for photo in photos]
        eight_bit = all(photo.dtype == np.uint8 for photo in photos)
        flat = [
            photo.reshape(-1, 3) if eight_bit else (photo.reshape(-1, 3).astype(np.float32) / float(np.iinfo(photo.dtype).max))
            for photo in photos
        ]
        sizes = [photo.shape[0] * photo.shape[1] for photo in photos]
        self.pixels = torch.from_numpy(np.concatenate(flat)).to(device)  # (N_pixels, 3)
        self.device = self.pixels.device  # with its index ("cuda:0"), as generators report theirs
        self.offsets = torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.int64, device=self.device)
        self.heights = torch.tensor([photo.shape[0] for photo in photos], dtype=torch.int64, device=self.device)
        self.widths = torch.tensor([photo.shape[1] for photo in photos], dtype=torch.int64, device=self.device)
        self.min_side = min(min(photo.shape[:2]) for photo in photos)

    @classmethod
    def from_paths(
        cls, paths: Sequence[str | os.PathLike], device: torch.device | str = "cpu", min_side: int = 0, workers: int = 8
    ) -> "PhotoBank":
        """Decode photographs (`load_photo`, several at a time) into a bank on `device`."""
        if not paths:
            raise ValueError("no photographs: paths is empty")
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            photos = list(pool.map(load_photo, paths))
        return cls(photos, device, min_side)

    def __len__(self) -> int:
        return int(self.heights.shape[0])

    def crops(self, generator: torch.Generator, count: int, side: int, flips: bool = True) -> torch.Tensor:
        """`count` random `side`-square crops, each from a photograph drawn uniformly, with
        random horizontal and vertical flips. Returns (count, 3, side, side) float32 sRGB."""
        if side > self.min_side:
            raise ValueError(f"crops of {side} px need photographs of at least that side (smallest: {self.min_side})")
        photo = torch.randint(0, len(self), (count,), generator=generator, device=self.device)
        heights, widths = self.heights[photo], self.widths[photo]
        top = (ops.uniform(generator, (0.0, 1.0), count, torch.float64) * (heights - side + 1)).to(torch.int64)
        left = (ops.uniform(generator, (0.0, 1.0), count, torch.float64) * (widths - side + 1)).to(torch.int64)
        steps = torch.arange(side, device=self.device)
        rows = steps.expand(count, side)
        cols = steps.expand(count, side)
        if flips:
            flip_rows = ops.uniform(generator, (0.0, 1.0), count) < 0.5
            flip_cols = ops.uniform(generator, (0.0, 1.0), count) < 0.5
            rows = torch.where(flip_rows[:, None], side - 1 - rows, rows)
            cols = torch.where(flip_cols[:, None], side - 1 - cols, cols)
        index = (
            self.offsets[photo][:, None, None]
            + (top[:, None, None] + rows[:, :, None]) * widths[:, None, None]
            + (left[:, None, None] + cols[:, None, :])
        )
        pixels = self.pixels[index].permute(0, 3, 1, 2)  # (count, 3, side, side)
        return pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.contiguous()


def _as_rgb_array(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.dtype not in (np.uint8, np.uint16) or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photographs must be (H, W, 3) uint8 or uint16 arrays (load_photo), got {photo.dtype} {photo.shape}")
    return np.ascontiguousarray(photo)


class SyntheticBlurBatches:
    """Training batches of every blur type, synthesised on a device; the batch of a step is a
    pure function of (seed, step, rank), so a resumed run gets the same batches again.

    Item j of the global batch of step s has task `tasks[(s * B + j) % len(tasks)]` (every task
    equally often, as `SyntheticBlurDataset`); a rank's local batch is grouped by task in the
    order of `tasks`. Each crop is cut from a photograph drawn at random, enlarged by its task's
    margin, blurred with `synthesize_batch` and cropped back to `crop_size`.

    `len()` is the number of items per epoch (`length`, default photographs x tasks): it sets
    how many steps an epoch has for `train.epochs`; the batches do not depend on the epoch.

    Batch: dict(blurry=(b, 3, S, S) float32 in [0, 1] on 8-bit levels, sharp=(b, 3, S, S), label=(b,) int64
    (index in `demoe.config.TASK_NAMES`), dataset=["synthetic"] * b), on the device.

    Example:
        >>> from demoe.data.synthetic import SyntheticBlurBatches, shipped_photo_paths
        >>> batches = SyntheticBlurBatches(shipped_photo_paths(), crop_size=32)
        >>> batch = batches.batch(step=0, batch_size=5)
        >>> batch["blurry"].shape, batch["label"].tolist()
        (torch.Size([5, 3, 32, 32]), [0, 1, 2, 3, 4])
    """

    def __init__(
        self,
        photos: PhotoBank | Sequence[str | os.PathLike],
        crop_size: int = 128,
        tasks: Sequence[str] = TASK_NAMES,
        seed: int = 0,
        length: int | None = None,
        config: SynthConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(photos, (str, os.PathLike)):
            raise TypeError("photos must be a PhotoBank or a sequence of image files; list a folder with sharp_image_paths()")
        tasks = check_synthesis_arguments(crop_size, tasks, seed, length)
        self.crop_size = crop_size
        self.tasks = tasks
        self.seed = seed
        self.config = SynthConfig() if config is None else config
        self.margins = {task: self.config.margin_px(task, crop_size) for task in tasks}
        largest = crop_size + 2 * max(self.margins.values())
        if isinstance(photos, PhotoBank):
            if photos.min_side < largest:
                raise ValueError(f"the PhotoBank's photographs must have sides >= {largest} (min_side) for crops of {crop_size}")
            self.bank = photos
        else:
            self.bank = PhotoBank.from_paths(list(photos), device, min_side=largest)
        self.device = self.bank.device
        self.length = len(self.bank) * len(tasks) if length is None else length
        self._generator = torch.Generator(device=self.device)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Batches depend on the step alone; kept for the training loop's dataset protocol."""

    def seed_for(self, step: int, rank: int = 0) -> int:
        """The generator seed of a step's batch on a rank (SeedSequence of (seed, step, rank))."""
        words = np.random.SeedSequence((self.seed, int(step), int(rank))).generate_state(2, np.uint32)
        return int(words[0]) << 31 | int(words[1]) >> 1

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict:
        """Rank `rank`'s share (batch_size // world_size items) of step `step`'s global batch."""
        if step < 0 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid step {step}, batch_size {batch_size}, rank {rank} of {world_size}")
        if batch_size % world_size:
            raise ValueError(f"the global batch {batch_size} does not split evenly across {world_size} ranks")
        local = batch_size // world_size
        first = step * batch_size + rank * local
        counts = {task: 0 for task in self.tasks}
        for item in range(first, first + local):
            counts[self.tasks[item % len(self.tasks)]] += 1
        generator = self._generator
        generator.manual_seed(self.seed_for(step, rank))
        blurry, sharp, labels = [], [], []
        for task, count in counts.items():
            if count == 0:
                continue
            margin = self.margins[task]
            regions = self.bank.crops(generator, count, self.crop_size + 2 * margin)
            sample = synthesize_batch(regions, task, generator, self.config)
            inner = (slice(None), slice(None), slice(margin, margin + self.crop_size), slice(margin, margin + self.crop_size))
            blurry.append(ops.quantize(sample.blurry[inner]))  # 8-bit, as `SyntheticBlurDataset`
            sharp.append(sample.sharp[inner])
            labels.append(torch.full((count,), TASK_NAMES.index(task), dtype=torch.int64, device=self.device))
        return {
            "blurry": torch.cat(blurry).contiguous(),
            "sharp": torch.cat(sharp).contiguous(),
            "label": torch.cat(labels),
            "dataset": ["synthetic"] * local,
        }
