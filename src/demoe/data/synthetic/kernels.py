"""Blur kernels (PSFs) as pure functions of numpy arrays.

Every kernel is a (K, K) float32 array with odd K, non-negative, summing to 1, whose centre
pixel `(K // 2, K // 2)` is the origin of the blur. Trajectories are (N, 2) float arrays of
`(x, y)` positions in pixels, sampled uniformly in time over the exposure.
"""

from __future__ import annotations

import numpy as np


def camera_shake_trajectory(
    rng: np.random.Generator,
    length_px: float,
    num_steps: int = 48,
    smoothness: float = 0.75,
    impulse_probability: float = 0.04,
) -> np.ndarray:
    """A random camera-shake path: a random walk with inertia (Boracchi & Foi, 2012).

    The velocity is an AR(1) process, `v_t = s v_(t-1) + sqrt(1 - s^2) e_t`, pulled back
    towards the start so the path stays compact, with occasional large jerks. The path is then
    scaled so that its extent (largest distance between two of its points) is `length_px`.

    Returns: (num_steps, 2) float64 `(x, y)` positions, uniformly spaced in time.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    angle = rng.uniform(0.0, 2.0 * np.pi)
    velocity = np.array([np.cos(angle), np.sin(angle)])
    innovations = rng.standard_normal((num_steps - 1, 2))
    impulses = rng.random(num_steps - 1) < impulse_probability
    innovations[impulses] *= 4.0
    innovation_scale = np.sqrt(1.0 - smoothness**2)
    pull_back = 0.02  # centripetal term: hands return towards the rest position
    positions = np.zeros((num_steps, 2))
    for step in range(1, num_steps):
        velocity = smoothness * velocity + innovation_scale * innovations[step - 1] - pull_back * positions[step - 1]
        positions[step] = positions[step - 1] + velocity
    return scale_to_extent(positions, length_px)


def smooth_path(rng: np.random.Generator, length_px: float, num_steps: int = 32, curvature: float = 0.5) -> np.ndarray:
    """A smooth camera path: a cubic Bezier curve with a random, monotonic time warp
    (the camera accelerates or decelerates during the exposure).

    `curvature` in [0, 1] sets how far the control points leave the chord (0 = straight line).
    Returns: (num_steps, 2) float64 positions uniformly spaced in time, extent `length_px`.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    start, end = np.zeros(2), direction
    control_1 = direction * rng.uniform(0.2, 0.45) + normal * rng.uniform(-curvature, curvature)
    control_2 = direction * rng.uniform(0.55, 0.8) + normal * rng.uniform(-curvature, curvature)
    # Time warp t -> t + a sin(pi t) / pi (monotonic for |a| < 1): the speed changes smoothly.
    t = np.linspace(0.0, 1.0, num_steps)
    t = t + rng.uniform(-0.6, 0.6) * np.sin(np.pi * t) / np.pi
    t = t[:, None]
    positions = (
        (1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * control_1 + 3 * (1 - t) * t**2 * control_2 + t**3 * end
    )
    return scale_to_extent(positions, length_px)


def scale_to_extent(positions: np.ndarray, length_px: float) -> np.ndarray:
    """Scale (N, 2) positions about the first one so that their extent is `length_px`."""
    positions = positions - positions[0]
    differences = positions[:, None, :] - positions[None, :, :]
    extent = float(np.sqrt((differences**2).sum(-1)).max())
    if extent < 1e-12:
        return positions
    return positions * (length_px / extent)


def rasterize_trajectory(positions: np.ndarray, center: str = "mass") -> np.ndarray:
    """Accumulate the time a point light spends at each pixel along a trajectory: the PSF.

    The path between the (N, 2) samples is followed with linear interpolation at sub-pixel
    steps and each point is splatted bilinearly, so short and diagonal paths keep their exact
    sub-pixel shape. `center="mass"` puts the kernel's centre of mass on the centre pixel (the
    blurry image stays aligned with the sharp one); `center="origin"` keeps position (0, 0)
    there (e.g. the sharp frame of an averaged sequence).

    Returns: (K, K) float32 kernel summing to 1, K odd.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) < 1:
        raise ValueError(f"positions must be (N, 2) with N >= 1, got shape {positions.shape}")
    if len(positions) > 1:
        step_lengths = np.sqrt((np.diff(positions, axis=0) ** 2).sum(-1))
        substeps = max(1, int(np.ceil(step_lengths.max() / 0.2)))
        fractions = np.arange(substeps) / substeps
        starts, ends = positions[:-1, None, :], positions[1:, None, :]
        # Each segment is one time step: its sub-points share its exposure time equally.
        points = (starts + (ends - starts) * fractions[None, :, None]).reshape(-1, 2)
    else:
        points = positions
    if center == "mass":
        points = points - points.mean(axis=0)
    elif center != "origin":
        raise ValueError(f"center must be 'mass' or 'origin', got {center!r}")
    half = int(np.ceil(np.abs(points).max())) + 1
    size = 2 * half + 1
    coordinates = points + half
    low = np.floor(coordinates).astype(np.int64)
    fraction = coordinates - low
    kernel = np.zeros(size * size, dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (fraction[:, 0] if dx else 1 - fraction[:, 0]) * (fraction[:, 1] if dy else 1 - fraction[:, 1])
            index = (low[:, 1] + dy) * size + (low[:, 0] + dx)
            kernel += np.bincount(index, weights=weight, minlength=size * size)
    kernel = kernel.reshape(size, size)
    return (kernel / kernel.sum()).astype(np.float32)


def camera_shake_kernel(
    rng: np.random.Generator,
    length_px: float,
    num_steps: int = 48,
    smoothness: float = 0.75,
    impulse_probability: float = 0.04,
) -> np.ndarray:
    """A camera-shake PSF (random walk with inertia, rasterised, centred on its mass).

    Returns: (K, K) float32 summing to 1.
    """
    path = camera_shake_trajectory(rng, length_px, num_steps, smoothness, impulse_probability)
    return rasterize_trajectory(path, center="mass")


def linear_motion_kernel(length_px: float, angle_rad: float) -> np.ndarray:
    """Uniform straight motion of `length_px` pixels at `angle_rad` (x right, y down),
    centred. Returns: (K, K) float32 summing to 1."""
    direction = np.array([np.cos(angle_rad), np.sin(angle_rad)])
    positions = np.linspace(-0.5, 0.5, 16)[:, None] * direction * length_px
    return rasterize_trajectory(positions, center="mass")


def disk_kernel(radius_px: float) -> np.ndarray:
    """Defocus PSF: a uniform disk of radius `radius_px` with anti-aliased rim (each pixel
    weighted by its approximate coverage). Radius < 0.5 gives the identity kernel.

    Returns: (K, K) float32 summing to 1, K = 2 * ceil(radius) + 1.
    """
    if radius_px < 0:
        raise ValueError(f"radius_px must be >= 0, got {radius_px}")
    if radius_px < 0.5:
        return np.ones((1, 1), dtype=np.float32)
    half = int(np.ceil(radius_px))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    distance = np.sqrt(offsets[None, :] ** 2 + offsets[:, None] ** 2)
    kernel = np.clip(radius_px + 0.5 - distance, 0.0, 1.0)
    return (kernel / kernel.sum()).astype(np.float32)
