import numpy as np
import pytest
import scipy.ndimage

from demoe.data.synthetic import camera, kernels


def _center_of_mass(kernel: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]]
    return np.array([(kernel * xs).sum(), (kernel * ys).sum()])


@pytest.mark.parametrize("length", [2.0, 7.5, 20.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_camera_shake_kernel_is_a_normalised_nontrivial_centred_psf(length, seed):
    kernel = kernels.camera_shake_kernel(np.random.default_rng(seed), length)
    assert kernel.dtype == np.float32 and kernel.ndim == 2
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.min() >= 0
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert kernel.max() < 0.8  # light is spread over several pixels
    assert (kernel > 1e-3).sum() >= length  # at least about one pixel per pixel of travel
    half = kernel.shape[0] // 2
    np.testing.assert_allclose(_center_of_mass(kernel), [half, half], atol=1e-3)


def test_trajectory_extent_matches_the_requested_length():
    path = kernels.camera_shake_trajectory(np.random.default_rng(3), 12.0, num_steps=40)
    assert path.shape == (40, 2)
    distances = np.sqrt(((path[:, None] - path[None]) ** 2).sum(-1))
    assert distances.max() == pytest.approx(12.0)
    smooth = kernels.smooth_path(np.random.default_rng(3), 9.0, num_steps=20)
    assert np.sqrt(((smooth[:, None] - smooth[None]) ** 2).sum(-1)).max() == pytest.approx(9.0)


def test_trajectories_are_deterministic_for_a_seed_and_differ_between_seeds():
    first = kernels.camera_shake_trajectory(np.random.default_rng(5), 10.0)
    again = kernels.camera_shake_trajectory(np.random.default_rng(5), 10.0)
    other = kernels.camera_shake_trajectory(np.random.default_rng(6), 10.0)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_linear_motion_kernel_is_a_line_in_the_given_direction():
    horizontal = kernels.linear_motion_kernel(9.0, 0.0)
    rows = np.flatnonzero(horizontal.sum(axis=1) > 1e-6)
    assert list(rows) == [horizontal.shape[0] // 2]
    assert (horizontal[horizontal.shape[0] // 2] > 1e-6).sum() >= 9
    vertical = kernels.linear_motion_kernel(9.0, np.pi / 2)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-6)


def test_rasterize_keeps_sub_pixel_positions():
    # A point half-way between two pixels splits its light equally.
    kernel = kernels.rasterize_trajectory(np.array([[0.5, 0.0]]), center="origin")
    half = kernel.shape[0] // 2
    assert kernel[half, half] == pytest.approx(0.5) and kernel[half, half + 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="center"):
        kernels.rasterize_trajectory(np.zeros((2, 2)), center="middle")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        kernels.rasterize_trajectory(np.zeros((3,)))


@pytest.mark.parametrize("radius", [0.0, 0.3, 1.0, 2.5, 6.0])
def test_disk_kernel(radius):
    kernel = kernels.disk_kernel(radius)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    if radius < 0.5:
        assert kernel.shape == (1, 1)
        return
    half = kernel.shape[0] // 2
    assert half == int(np.ceil(radius))
    np.testing.assert_allclose(kernel, kernel.T)  # round
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])
    assert kernel[half, half] == pytest.approx(kernel.max())  # flat top
    assert kernel[half, 0] < kernel[half, half]  # soft rim
    with pytest.raises(ValueError, match="radius"):
        kernels.disk_kernel(-1.0)


def test_srgb_round_trip_and_known_values():
    values = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(camera.linear_to_srgb(camera.srgb_to_linear(values)), values, atol=1e-5)
    assert camera.srgb_to_linear(np.float32([0.5]))[0] == pytest.approx(0.21404, abs=1e-4)
    assert camera.linear_to_srgb(np.float32([0.18]))[0] == pytest.approx(0.46135, abs=1e-4)


@pytest.mark.parametrize("size", [(40, 50), (5, 7)])  # the second is smaller than the kernel
def test_convolve_is_a_true_convolution_with_mirrored_borders(size):
    rng = np.random.default_rng(0)
    image = rng.random(size + (3,), dtype=np.float32)
    kernel = rng.random((15, 15)).astype(np.float32)
    kernel[0, :] += 3.0  # asymmetric: flipping matters
    kernel /= kernel.sum()
    result = camera.convolve(image, kernel)
    assert result.shape == image.shape and result.dtype == np.float32
    for channel in range(3):
        expected = scipy.ndimage.convolve(image[..., channel].astype(np.float64), kernel, mode="reflect")
        np.testing.assert_allclose(result[..., channel], expected, atol=1e-5)


def test_convolve_keeps_a_single_channel_axis():
    image = np.random.default_rng(0).random((20, 20, 1), dtype=np.float32)
    assert camera.convolve(image, kernels.disk_kernel(2.0)).shape == (20, 20, 1)


@pytest.mark.parametrize("photons", [20.0, 5000.0])  # exact Poisson and Gaussian regime
def test_poisson_gaussian_noise_statistics(photons):
    level, read_noise = 0.3, 0.01
    flat = np.full((200, 200, 3), level, dtype=np.float32)
    noisy = camera.add_poisson_gaussian_noise(flat, np.random.default_rng(0), photons, read_noise)
    assert noisy.mean() == pytest.approx(level, rel=0.01)
    assert noisy.var() == pytest.approx(level / photons + read_noise**2, rel=0.05)


def test_jpeg_compress_changes_little_and_checks_quality():
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32) * 0.2 + 0.4
    compressed = camera.jpeg_compress(image, 90)
    assert compressed.shape == image.shape and compressed.dtype == np.float32
    assert 0 < np.abs(compressed - image).mean() < 0.05
    with pytest.raises(ValueError, match="quality"):
        camera.jpeg_compress(image, 0)


def _block_edge_column(image: np.ndarray) -> int:
    """Column (mod 8) where a JPEG's 8x8 block edges lie: the largest mean jump between columns."""
    jumps = np.abs(np.diff(image.mean(2), axis=1)).mean(0)  # jump between column c and c + 1
    return int(np.argmax([jumps[start::8].mean() for start in range(8)]) + 1) % 8


@pytest.mark.parametrize("phase", [(0, 0), (0, 3), (5, 13)])
def test_jpeg_block_edges_follow_the_phase(phase):
    """A crop of a JPEG starts anywhere in its block grid: `phase` puts the edges there."""
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    image = np.stack([0.5 + 0.3 * np.sin(xx / 7 + yy / 11), 0.4 + 0.2 * np.cos(yy / 5), 0.5 + 0.0 * xx], -1)
    image += np.random.default_rng(0).normal(0, 0.03, image.shape).astype(np.float32)
    compressed = camera.jpeg_compress(image, 20, phase)
    assert compressed.shape == image.shape
    assert _block_edge_column(compressed) == (-phase[1]) % 8
    with pytest.raises(ValueError, match="phase"):
        camera.jpeg_compress(image, 20, (16, 0))


def test_global_motion_draws_the_jpeg_grid_phase():
    """The synthetic camera-shake images do not all put their block edges at one place (a
    router learnt the place as the mark of `global_motion`)."""
    from demoe.data.synthetic import GlobalMotionConfig, ShakeConfig
    from demoe.data.synthetic.generator import global_motion

    config = GlobalMotionConfig(shake=ShakeConfig(length_px=(1.0, 1.5)), shot_noise=(0.0, 0.0),
                                read_noise=(0.0, 0.0), jpeg_quality=(15, 15))
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    image = np.stack([0.5 + 0.3 * np.sin(xx / 7 + yy / 11)] * 3, -1)
    image += np.random.default_rng(0).normal(0, 0.03, image.shape).astype(np.float32)
    rng = np.random.default_rng(1)
    columns = {_block_edge_column(global_motion(image.clip(0, 1), rng, config)) for _ in range(24)}
    assert len(columns) >= 5, columns
