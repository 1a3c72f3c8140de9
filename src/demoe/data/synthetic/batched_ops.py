"""The building blocks of `demoe.data.synthetic.batched`: blur kernels, camera and scene models
as pure functions of batched torch tensors, on any device.

Each function is the batched counterpart of a numpy function in `kernels`, `camera` or `scene`
(named in its docstring) and follows its maths; every sample of a batch has its own random
parameters. Shapes are static: they follow from the arguments and the config bounds, never from
random values, so nothing here waits for the device (no host synchronisation) and a batch costs
the same whatever its draws.

Legend: B samples, C channels, H/W height/width, N trajectory points, P sub-points, K kernel side.
Images are (B, C, H, W) float32; "linear" images are proportional to scene radiance (white = 1),
"sRGB" images are display-referred values in [0, 1]. Trajectories are (B, N, 2) float64 `(x, y)`
positions in pixels. Kernels are (B, K, K) float32 summing to 1 with the origin at the centre,
or, for `fft_convolve`, (B, H, W) with the origin at index (0, 0) (wrapped, `embed_kernels`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

Range = tuple[float, float]


# --------------------------------------------------------------------------------------------
# Random draws: one value per sample, from a torch.Generator on the images' device.


def uniform(generator: torch.Generator, bounds: Range, count: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(count,) values drawn uniformly from [low, high) (numpy's `rng.uniform(low, high)`)."""
    low, high = float(bounds[0]), float(bounds[1])
    values = torch.rand(count, generator=generator, device=generator.device, dtype=dtype)
    return low + (high - low) * values


def integers(generator: torch.Generator, bounds: tuple[int, int], count: int) -> torch.Tensor:
    """(count,) int64 values drawn uniformly from low..high, both included."""
    return torch.randint(int(bounds[0]), int(bounds[1]) + 1, (count,), generator=generator, device=generator.device)


def signs(generator: torch.Generator, count: int) -> torch.Tensor:
    """(count,) float32 values -1 or +1 with equal chance (numpy's `rng.choice((-1.0, 1.0))`)."""
    return torch.where(uniform(generator, (0.0, 1.0), count) < 0.5, -1.0, 1.0)


def loop_bound(bound: int, values: torch.Tensor) -> int:
    """How many items a loop over up to `bound` per-sample items (frames, layers, sub-steps)
    must cover: `bound` on an accelerator, where reading `values` would wait for the device;
    the batch's largest value on the CPU, where the padding is not free. Same result either way."""
    if values.device.type == "cpu":
        return max(1, min(bound, int(values.max())))
    return bound


# --------------------------------------------------------------------------------------------
# sRGB, noise, quantisation (camera.py)


def srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values -> linear light (IEC 61966-2-1); `camera.srgb_to_linear`."""
    encoded = image.clamp(0.0, 1.0)
    return torch.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    """Linear light (clipped to [0, 1]) -> sRGB in [0, 1]; `camera.linear_to_srgb`."""
    linear = image.clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) values shaped to broadcast over (B, ...) tensors like `like`."""
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def add_heteroscedastic_noise(
    linear: torch.Tensor, generator: torch.Generator, shot_noise: torch.Tensor, read_noise: torch.Tensor
) -> torch.Tensor:
    """Gaussian approximation of Poisson-Gaussian noise, variance = shot * signal + read^2,
    per-sample (B,) parameters; `camera.add_heteroscedastic_noise`. Not clipped."""
    variance = linear.clamp_min(0.0) * per_sample(shot_noise, linear) + per_sample(read_noise, linear) ** 2
    noise = torch.randn(linear.shape, generator=generator, device=linear.device, dtype=linear.dtype)
    return linear + noise * variance.sqrt()


# Above this mean photon count a Poisson draw is replaced by its Gaussian approximation, as in
# camera.add_poisson_gaussian_noise.
_POISSON_EXACT_BELOW = 32.0


def add_poisson_gaussian_noise(
    linear: torch.Tensor, generator: torch.Generator, photons_at_white: torch.Tensor, read_noise: torch.Tensor
) -> torch.Tensor:
    """Shot noise (Poisson photon counts, `photons_at_white` electrons for a value of 1) plus
    Gaussian read noise, per-sample (B,) parameters; `camera.add_poisson_gaussian_noise`."""
    photons = per_sample(photons_at_white, linear)
    expected = linear.clamp_min(0.0) * photons
    gaussian = expected + expected.sqrt() * torch.randn(
        expected.shape, generator=generator, device=expected.device, dtype=expected.dtype
    )
    exact = torch.poisson(expected, generator=generator)
    electrons = torch.where(expected < _POISSON_EXACT_BELOW, exact, gaussian)
    read = torch.randn(linear.shape, generator=generator, device=linear.device, dtype=linear.dtype)
    return electrons / photons + read * per_sample(read_noise, linear)


def quantize(image: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Round values in [0, 1] to `levels` steps (255 = 8-bit), clipping first."""
    return torch.round(image.clamp(0.0, 1.0) * levels) / levels


# --------------------------------------------------------------------------------------------
# JPEG (camera.jpeg_compress runs PIL on the CPU; this is the same codec in tensor arithmetic)

# The example tables of the JPEG standard (Annex K), which libjpeg scales by the quality.
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


@functools.cache
def _base_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: copying them from the host at every call would wait for the device.
    return tuple(torch.tensor(table, dtype=torch.int64, device=device) for table in (_LUMA_TABLE, _CHROMA_TABLE))


def jpeg_quantization_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's `jpeg_set_quality(q, force_baseline=TRUE)` tables for (B,) qualities 1..100.
    Returns (luma, chroma), each (B, 8, 8) float32."""
    quality = quality.clamp(1, 100).to(torch.int64)
    scale = torch.where(quality < 50, 5000 // quality, 200 - 2 * quality)[:, None, None]
    luma, chroma = (
        ((base * scale + 50) // 100).clamp(1, 255).to(torch.float32) for base in _base_tables(quality.device)
    )
    return luma, chroma


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """(8, 8) orthonormal DCT-II: JPEG's 8x8 transform is D @ block @ D.T."""
    index = torch.arange(8, dtype=torch.float64, device=device)
    matrix = torch.cos((2 * index[None, :] + 1) * index[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(torch.float32)


def _quantize_blocks(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """DCT, quantisation and inverse DCT of the 8x8 blocks of (B, H, W) level-shifted samples
    (H, W multiples of 8) with per-sample (B, 8, 8) tables."""
    batch, height, width = plane.shape
    blocks = plane.reshape(batch, height // 8, 8, width // 8, 8).transpose(2, 3)  # (B, h, w, 8, 8)
    coefficients = dct @ blocks @ dct.T
    table = table[:, None, None]
    coefficients = torch.round(coefficients / table) * table
    blocks = dct.T @ coefficients @ dct
    return blocks.transpose(2, 3).reshape(batch, height, width)


def jpeg_compress(image: torch.Tensor, quality: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
    """Encode and decode (B, 3, H, W) sRGB in [0, 1] as baseline JPEG with per-sample (B,)
    qualities, as PIL does in `camera.jpeg_compress`: 8-bit RGB, JFIF YCbCr, 4:2:0 chroma
    (2x2 averages), 8x8 DCT with libjpeg's quality-scaled tables, and on decoding libjpeg's
    "fancy" (triangular, i.e. bilinear) chroma upsampling. Edges are extended by replication
    to whole 16x16 blocks. The DCT is exact here and integer in libjpeg, so pixels differ from
    PIL's by a level or so (tests/data_synth/test_synth_batched.py measures it).

    `phase`: per-sample (B, 2) (rows, columns) in 0..15, where each image starts in the 16x16
    grid of coded units, as in `camera.jpeg_compress` (None = all (0, 0)).

    Returns: (B, 3, H, W) float32 in [0, 1], on 1/255 levels.
    """
    height, width = image.shape[2:]
    rgb = torch.round(image.clamp(0.0, 1.0) * 255.0)
    if phase is None:
        return _jpeg_codec(rgb, quality)[..., :height, :width].contiguous()
    # Each image edge-extended by its phase above and left (and by 15 - phase below and right),
    # coded, and cut out again.
    phase = phase.to(device=image.device, dtype=torch.int64)
    span = 15
    extended = _gather_windows(
        rgb,
        (torch.arange(height + span, device=image.device) - phase[:, :1]).clamp(0, height - 1),
        (torch.arange(width + span, device=image.device) - phase[:, 1:]).clamp(0, width - 1),
    )
    decoded = _jpeg_codec(extended, quality)
    return _gather_windows(
        decoded,
        torch.arange(height, device=image.device) + phase[:, :1],
        torch.arange(width, device=image.device) + phase[:, 1:],
    )


def _gather_windows(images: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): per-sample rows (B, h) and columns (B, w) of each image."""
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    picked = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], columns[:, None, :]]  # (B, h, w, C)
    return picked.permute(0, 3, 1, 2).contiguous()


def _jpeg_codec(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline JPEG of (B, 3, H, W) 8-bit RGB levels (floats); `jpeg_compress`. Returns the
    decoded (B, 3, H', W') in [0, 1], H' and W' the sizes rounded up to whole 16x16 units."""
    height, width = rgb.shape[2:]
    pad_bottom, pad_right = -height % 16, -width % 16
    rgb = F.pad(rgb, (0, pad_right, 0, pad_bottom), mode="replicate")
    red, green, blue = rgb.unbind(1)
    luma = torch.round(0.299 * red + 0.587 * green + 0.114 * blue)
    blue_difference = torch.round(-0.168736 * red - 0.331264 * green + 0.5 * blue + 128.0).clamp(0, 255)
    red_difference = torch.round(0.5 * red - 0.418688 * green - 0.081312 * blue + 128.0).clamp(0, 255)
    chroma = torch.stack([blue_difference, red_difference], 1)
    chroma = torch.round(F.avg_pool2d(chroma, 2))  # (B, 2, H/2, W/2)
    luma_table, chroma_table = jpeg_quantization_tables(quality)
    dct = _dct_matrix(rgb.device)
    luma = (_quantize_blocks(luma - 128.0, luma_table, dct) + 128.0).round().clamp(0, 255)
    chroma = torch.stack(
        [(_quantize_blocks(plane - 128.0, chroma_table, dct) + 128.0).round().clamp(0, 255) for plane in chroma.unbind(1)],
        1,
    )
    chroma = torch.round(F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False))
    blue_difference, red_difference = (chroma - 128.0).unbind(1)
    red = luma + 1.402 * red_difference
    green = luma - 0.344136 * blue_difference - 0.714136 * red_difference
    blue = luma + 1.772 * blue_difference
    return torch.stack([red, green, blue], 1).round().clamp(0, 255) / 255.0


# --------------------------------------------------------------------------------------------
# Kernels (kernels.py)


def scale_to_extent(positions: torch.Tensor, length_px: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Scale (B, N, 2) positions about the first one so that the extent (largest distance of
    two valid points) is the sample's `length_px` (B,); `kernels.scale_to_extent`."""
    positions = positions - positions[:, :1]
    distances = torch.cdist(positions, positions)  # (B, N, N)
    if valid is not None:
        distances = distances * (valid[:, :, None] & valid[:, None, :])
    extent = distances.flatten(1).amax(1)
    factor = torch.where(extent < 1e-12, 1.0, length_px.to(positions.dtype) / extent.clamp_min(1e-12))
    return positions * factor[:, None, None]


def shake_trajectories(
    generator: torch.Generator,
    length_px: torch.Tensor,
    smoothness: torch.Tensor,
    num_steps: int = 48,
    impulse_probability: float = 0.04,
) -> torch.Tensor:
    """Camera-shake paths, a random walk with inertia (Boracchi & Foi, 2012);
    `kernels.camera_shake_trajectory` for (B,) lengths and smoothness values.

    Returns: (B, num_steps, 2) float64 positions, uniformly spaced in time.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    count = length_px.shape[0]
    device = length_px.device
    angle = uniform(generator, (0.0, 2.0 * math.pi), count, torch.float64)
    velocity = torch.stack([angle.cos(), angle.sin()], 1)  # (B, 2)
    innovations = torch.randn(count, num_steps - 1, 2, generator=generator, device=device, dtype=torch.float64)
    impulses = torch.rand(count, num_steps - 1, 1, generator=generator, device=device) < impulse_probability
    innovations = torch.where(impulses, 4.0 * innovations, innovations)
    smoothness = smoothness.to(torch.float64)[:, None]
    innovation_scale = (1.0 - smoothness**2).sqrt()
    pull_back = 0.02  # centripetal term: hands return towards the rest position
    positions = [torch.zeros(count, 2, dtype=torch.float64, device=device)]
    for step in range(1, num_steps):
        velocity = smoothness * velocity + innovation_scale * innovations[:, step - 1] - pull_back * positions[-1]
        positions.append(positions[-1] + velocity)
    return scale_to_extent(torch.stack(positions, 1), length_px)


def smooth_paths(
    generator: torch.Generator,
    length_px: torch.Tensor,
    num_steps: torch.Tensor,
    curvature: torch.Tensor,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth camera paths, cubic Bezier curves with a random monotonic time warp;
    `kernels.smooth_path` for (B,) lengths, step counts (int64, each <= max_steps) and curvatures.

    Returns: positions (B, max_steps, 2) float64 (entry i of sample b is its i-th position for
    i < num_steps[b]) and valid (B, max_steps) bool.
    """
    count = length_px.shape[0]
    angle = uniform(generator, (0.0, 2.0 * math.pi), count, torch.float64)
    direction = torch.stack([angle.cos(), angle.sin()], 1)[:, None]  # (B, 1, 2)
    normal = torch.stack([-direction[..., 1], direction[..., 0]], -1)
    curvature = curvature.to(torch.float64)[:, None, None]

    def control(along: Range) -> torch.Tensor:
        forward = uniform(generator, along, count, torch.float64)[:, None, None]
        sideways = uniform(generator, (-1.0, 1.0), count, torch.float64)[:, None, None] * curvature
        return direction * forward + normal * sideways

    control_1, control_2 = control((0.2, 0.45)), control((0.55, 0.8))
    index = torch.arange(max_steps, device=length_px.device, dtype=torch.float64)
    valid = index[None] < num_steps[:, None]
    t = (index[None] / (num_steps[:, None] - 1).clamp_min(1)).clamp(max=1.0)
    warp = uniform(generator, (-0.6, 0.6), count, torch.float64)[:, None]
    t = (t + warp * torch.sin(math.pi * t) / math.pi)[..., None]  # (B, N, 1)
    positions = 3 * (1 - t) ** 2 * t * control_1 + 3 * (1 - t) * t**2 * control_2 + t**3 * direction
    return scale_to_extent(positions, length_px, valid), valid


def trajectory_points(positions: torch.Tensor, valid: torch.Tensor, max_substeps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sub-pixel points `kernels.rasterize_trajectory` splats: each segment of a (B, N, 2)
    path (valid: (B, N) bool, a prefix of each row) split into `substeps` equal parts, with
    substeps = ceil(longest segment / 0.2 px) per sample (at most `max_substeps`), every
    segment taking an equal share of the exposure; centred on their mass.

    Returns: points (B, P, 2) float64 and weights (B, P) float64 summing to 1 per sample.
    """
    starts, ends = positions[:, :-1], positions[:, 1:]  # (B, N-1, 2)
    segment_valid = valid[:, 1:]
    lengths = (ends - starts).norm(dim=-1) * segment_valid
    substeps = torch.ceil(lengths.amax(1) / 0.2).clamp(1, max_substeps)  # (B,)
    max_substeps = loop_bound(max_substeps, substeps)
    steps = torch.arange(max_substeps, device=positions.device, dtype=positions.dtype)
    fractions = steps[None] / substeps[:, None]  # (B, M)
    points = starts[:, :, None] + (ends - starts)[:, :, None] * fractions[:, None, :, None]  # (B, N-1, M, 2)
    weights = (segment_valid[:, :, None] & (steps[None] < substeps[:, None])[:, None, :]).to(positions.dtype)
    points, weights = points.flatten(1, 2), weights.flatten(1)
    weights = weights / weights.sum(1, keepdim=True)
    center = (points * weights[..., None]).sum(1, keepdim=True)
    return points - center, weights


def splat_kernels(points: torch.Tensor, weights: torch.Tensor, half: int) -> torch.Tensor:
    """PSFs from weighted points (B, P, 2) around the origin: each point splatted bilinearly
    (a sum of tent functions), on a (2 half + 1)^2 grid centred on the origin.

    Returns: (B, K, K) float32 summing to 1, K = 2 half + 1 (points must lie within `half - 1`).
    """
    grid = torch.arange(-half, half + 1, device=points.device, dtype=points.dtype)
    tent_x = (1 - (grid[None, None] - points[..., 0:1]).abs()).clamp_min(0)  # (B, P, K)
    tent_y = (1 - (grid[None, None] - points[..., 1:2]).abs()).clamp_min(0)
    kernels = torch.einsum("bp,bpy,bpx->byx", weights, tent_y, tent_x)
    return (kernels / kernels.sum((1, 2), keepdim=True)).to(torch.float32)


def shake_kernels(
    generator: torch.Generator,
    length_px: torch.Tensor,
    smoothness: torch.Tensor,
    num_steps: int,
    impulse_probability: float,
    max_length_px: float,
) -> torch.Tensor:
    """Camera-shake PSFs centred on their mass; `kernels.camera_shake_kernel` for (B,)
    lengths (each <= max_length_px). Returns (B, K, K) float32, K = 2 ceil(max_length_px) + 3."""
    path = shake_trajectories(generator, length_px, smoothness, num_steps, impulse_probability)
    valid = torch.ones(path.shape[:2], dtype=torch.bool, device=path.device)
    # No segment is longer than the extent; no point is farther from the mass than the extent.
    points, weights = trajectory_points(path, valid, math.ceil(max_length_px / 0.2) + 1)
    return splat_kernels(points, weights, math.ceil(max_length_px) + 1)


def linear_motion_kernels(length_px: torch.Tensor, angle_rad: torch.Tensor, max_length_px: float) -> torch.Tensor:
    """Uniform straight motion, centred; `kernels.linear_motion_kernel` for (B,) lengths
    (each <= max_length_px) and angles. Returns (B, K, K) float32, K = 2 ceil(max / 2) + 3."""
    direction = torch.stack([angle_rad.cos(), angle_rad.sin()], 1).to(torch.float64)  # (B, 2)
    steps = torch.linspace(-0.5, 0.5, 16, dtype=torch.float64, device=length_px.device)
    positions = steps[None, :, None] * direction[:, None] * length_px.to(torch.float64)[:, None, None]
    valid = torch.ones(positions.shape[:2], dtype=torch.bool, device=positions.device)
    points, weights = trajectory_points(positions, valid, math.ceil(max_length_px / 15 / 0.2) + 1)
    return splat_kernels(points, weights, math.ceil(max_length_px / 2) + 1)


def disk_kernels(radius_px: torch.Tensor, max_radius_px: float) -> torch.Tensor:
    """Defocus PSFs, uniform disks with anti-aliased rims; `kernels.disk_kernel` for (B,) radii
    (each <= max_radius_px; below 0.5 the identity). Returns (B, K, K), K = 2 ceil(max) + 1."""
    half = math.ceil(max_radius_px)
    grid = torch.arange(-half, half + 1, device=radius_px.device, dtype=torch.float32)
    distance = (grid[None, :] ** 2 + grid[:, None] ** 2).sqrt()  # (K, K)
    radius = radius_px.to(torch.float32)[:, None, None]
    disks = (radius + 0.5 - distance).clamp(0.0, 1.0)
    disks = disks / disks.sum((1, 2), keepdim=True)
    identity = torch.zeros_like(disks)
    identity[:, half, half] = 1.0
    return torch.where(radius < 0.5, identity, disks)


def embed_kernels(kernels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, K, K) centred kernels -> (B, H, W) with the centre at index (0, 0) and negative
    offsets wrapped to the far end: the layout `fft_convolve` expects. A kernel wider than the
    image is folded onto it (its taps add up, as in a circular convolution)."""
    count, size = kernels.shape[0], kernels.shape[-1]
    offsets = torch.arange(size, device=kernels.device) - size // 2
    rows = (offsets % height)[None, :, None].expand(count, size, size)
    cols = (offsets % width)[None, None, :].expand(count, size, size)
    samples = torch.arange(count, device=kernels.device)[:, None, None].expand(count, size, size)
    embedded = kernels.new_zeros(count, height, width)
    return embedded.index_put_((samples, rows, cols), kernels, accumulate=True)


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Circular convolution (a true convolution, as `camera.convolve`) of every channel of
    (B, C, H, W) with each sample's kernel, (B, K, K) centred or (B, H, W) embedded.

    Content wraps around the borders: callers keep only pixels farther from the border than
    the kernel's reach (the crop margin of `SynthConfig.margin_px`)."""
    height, width = images.shape[-2:]
    if kernels.shape[-2:] != (height, width):
        kernels = embed_kernels(kernels, height, width)
    spectrum = torch.fft.rfft2(images.float()) * torch.fft.rfft2(kernels.float())[:, None]
    return torch.fft.irfft2(spectrum, s=(height, width))


# --------------------------------------------------------------------------------------------
# Gaussian blur and resizing (what scene.py and the generator do with OpenCV)


def _gaussian_half(sigma: torch.Tensor | float) -> torch.Tensor | int:
    """Half the side of OpenCV's Gaussian kernel for float images: ksize = round(8 sigma + 1) | 1."""
    if isinstance(sigma, torch.Tensor):
        return (torch.floor(sigma * 8 + 1.5).to(torch.int64) | 1) // 2
    return (int(math.floor(sigma * 8 + 1.5)) | 1) // 2


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with a (B,) standard deviation per sample (each
    <= max_sigma), truncated where OpenCV's `GaussianBlur(..., (0, 0), sigma)` truncates and
    mirrored at the borders (BORDER_REFLECT_101). sigma <= 0 leaves a sample unchanged."""
    batch, channels, height, width = images.shape
    half = _gaussian_half(max(float(max_sigma), 1e-6))
    offsets = torch.arange(-half, half + 1, device=images.device, dtype=torch.float32)
    sigma = sigma.to(torch.float32)
    safe = sigma.clamp_min(1e-6)[:, None]
    taps = torch.exp(-(offsets[None] ** 2) / (2 * safe**2))
    taps = taps * (offsets[None].abs() <= _gaussian_half(safe)).to(taps.dtype)
    delta = (offsets == 0).to(taps.dtype)[None]
    taps = torch.where(sigma[:, None] > 0, taps / taps.sum(1, keepdim=True), delta)  # (B, K)
    taps = taps.repeat_interleave(channels, 0)  # (B * C, K)
    flat = images.reshape(1, batch * channels, height, width)
    mode = "reflect" if half < min(height, width) else "replicate"
    flat = F.pad(flat, (half, half, half, half), mode=mode)
    flat = F.conv2d(flat, taps[:, None, :, None], groups=batch * channels)
    flat = F.conv2d(flat, taps[:, None, None, :], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def resize_bicubic(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """OpenCV's INTER_CUBIC (a = -0.75, pixel-centre alignment, replicated borders)."""
    return F.interpolate(images, size=(height, width), mode="bicubic", align_corners=False)


# --------------------------------------------------------------------------------------------
# Scene structure (scene.py)


def _sorted_crossings(fine: torch.Tensor, counts: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """x positions where the polygons' edges cross the rows `ys` (Hs,), sorted per row, +inf
    where an edge does not cross. Returns (B, Hs, V)."""
    count, sides = fine.shape[:2]
    index = torch.arange(sides, device=fine.device)
    following = torch.where(index[None] + 1 < counts[:, None], index[None] + 1, 0)  # (B, V)
    start, end = fine, fine.gather(1, following[..., None].expand(-1, -1, 2))
    x0, y0 = start[..., 0][:, None], start[..., 1][:, None]  # (B, 1, V)
    x1, y1 = end[..., 0][:, None], end[..., 1][:, None]
    rows = ys[None, :, None]  # (1, Hs, 1)
    spans = ((y0 > rows) != (y1 > rows)) & (index < counts[:, None])[:, None]
    crossing = x0 + (x1 - x0) * (rows - y0) / torch.where(y1 == y0, 1.0, y1 - y0)
    return torch.where(spans, crossing, math.inf).sort(-1).values


def _even_odd(crossings: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Whether the points (x in xs, on each row of `crossings`) have an odd number of edge
    crossings to their right: inside by the even-odd rule. Returns (B, Hs, Ws) bool."""
    count, rows, _ = crossings.shape
    queries = xs.expand(count, rows, xs.shape[0]).contiguous()
    at_or_left = torch.searchsorted(crossings, queries, right=True)  # crossings <= x
    to_the_right = torch.isfinite(crossings).sum(-1, keepdim=True) - at_or_left
    return to_the_right % 2 == 1


def polygon_coverage(
    vertices: torch.Tensor, counts: torch.Tensor, height: int, width: int, supersample: int = 4
) -> torch.Tensor:
    """Anti-aliased fill of closed polygons, as `scene.object_mask` draws them with OpenCV: the
    vertices (B, V, 2) `(x, y)`, of which the first `counts` (B,) are used, are rounded to a grid
    `supersample` times finer, its points are filled by the even-odd rule, and each pixel
    averages its supersample^2 points. Like `cv2.fillPoly`, which also fills the points its
    outline passes through, a point half a fine step from the outline (left, right, above or
    below) counts as inside; without that the area would be ~3 % smaller than OpenCV's.
    Returns (B, H, W) float32 in [0, 1]."""
    fine = torch.round(vertices.to(torch.float32) * supersample)
    xs = torch.arange(width * supersample, device=vertices.device, dtype=torch.float32)
    ys = torch.arange(height * supersample, device=vertices.device, dtype=torch.float32)
    level = _sorted_crossings(fine, counts, ys)
    filled = _even_odd(level, xs - 0.5) | _even_odd(level, xs + 0.5)
    for shift in (-0.5, 0.5):
        filled |= _even_odd(_sorted_crossings(fine, counts, ys + shift), xs)
    coverage = filled.to(torch.float32).reshape(-1, height, supersample, width, supersample)
    return coverage.mean((2, 4))


def _normalize(values: torch.Tensor) -> torch.Tensor:
    """Each sample of (B, H, W) scaled to [0, 1] (zeros where it is constant)."""
    low = values.flatten(1).amin(1)[:, None, None]
    high = values.flatten(1).amax(1)[:, None, None]
    span = high - low
    return torch.where(span < 1e-12, torch.zeros_like(values), (values - low) / span.clamp_min(1e-12))


def depth_maps(
    generator: torch.Generator,
    height: int,
    width: int,
    correlation: torch.Tensor,
    tilt: torch.Tensor,
    max_correlation: float,
    min_correlation: float,
) -> torch.Tensor:
    """Smooth random depth maps; `scene.random_depth_map` for (B,) correlations (each in
    [min_correlation, max_correlation]) and tilts. Returns (B, H, W) float32 in [0, 1]."""
    count = correlation.shape[0]
    device = correlation.device
    side = max(height, width)
    cells = torch.clamp_min(torch.ceil(1.0 / correlation).to(torch.int64) + 1, 2)
    fewest = max(2, math.ceil(1.0 / max_correlation) + 1)
    most = max(2, math.ceil(1.0 / min_correlation) + 1)
    coarse = torch.randn(count, 1, most, most, generator=generator, device=device)
    structure = torch.zeros(count, side, side, device=device)
    for size in range(fewest, most + 1):  # each sample keeps the upsampling of its own grid
        upsampled = resize_bicubic(coarse[:, :, :size, :size], side, side)[:, 0]
        structure = torch.where((cells == size)[:, None, None], upsampled, structure)
    structure = structure[:, :height, :width]
    angle = uniform(generator, (0.0, 2.0 * math.pi), count)[:, None, None]
    ys = torch.arange(height, device=device, dtype=torch.float32)[None, :, None]
    xs = torch.arange(width, device=device, dtype=torch.float32)[None, None, :]
    ramp = (angle.cos() * xs + angle.sin() * ys) / side
    tilt = tilt.to(torch.float32)[:, None, None]
    return _normalize((1.0 - tilt) * _normalize(structure) + tilt * _normalize(ramp))


def affine_warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """`cv2.warpAffine(image, M, ..., INTER_LINEAR)` for (B, C, H, W) images and (B, 2, 3)
    forward matrices in pixel coordinates (dst = M @ [src, 1]); borders mirrored."""
    batch, _, height, width = images.shape
    (a, b), (c, d) = matrices[:, 0, :2].unbind(1), matrices[:, 1, :2].unbind(1)
    determinant = a * d - b * c  # closed form: torch.linalg.inv would wait for the device
    inverse = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / determinant[:, None, None]
    shift = matrices[:, :, 2:]
    ys, xs = torch.meshgrid(
        torch.arange(height, device=images.device, dtype=matrices.dtype),
        torch.arange(width, device=images.device, dtype=matrices.dtype),
        indexing="ij",
    )
    destination = torch.stack([xs.flatten(), ys.flatten()], 0)[None]  # (1, 2, H*W)
    source = inverse @ (destination - shift)  # (B, 2, H*W)
    # grid_sample's normalised coordinates, pixel centres at (2 i + 1) / n - 1
    normalised_x = (2 * source[:, 0] + 1) / width - 1
    normalised_y = (2 * source[:, 1] + 1) / height - 1
    grid = torch.stack([normalised_x, normalised_y], -1).reshape(batch, height, width, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
