import json
from pathlib import Path

import numpy as np
import pytest

from demoe.evaluation.niqe import PRISTINE_PARAMS_FILE, matlab_imresize, niqe, pristine_params, rgb_to_y
from demoe.imageio import read_array

# ../shared/reference next to the checkout (or next to the worktrees' folder), when present
_ROOT = Path(__file__).resolve().parents[2]
BABOON = next(
    (p for p in (_ROOT.parent / "shared/reference/baboon.png", _ROOT.parent.parent / "shared/reference/baboon.png") if p.is_file()),
    _ROOT.parent / "shared/reference/baboon.png",
)
BABOON_MATLAB = 5.72957338  # MATLAB R2021a `niqe`, as recorded by BasicSR
BABOON_DEMOE = 5.729574876943741  # measured with this implementation (docs/metrics.md)
GENERATED_DEMOE = 35.56020341758053  # regression value of `generated_image()` (docs/metrics.md)


def generated_image(height: int = 192, width: int = 288) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 image without a random generator: smooth waves plus an
    integer-hash texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    texture = ((x * 7919 + y * 104729 + x * y * 31) % 251) / 250.0
    smooth = 0.5 + 0.25 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.15 * np.sin((x + 2 * y) / 5.0)
    gray = 0.8 * smooth + 0.2 * texture
    rgb = np.stack([gray, 0.9 * gray + 0.05, np.clip(1.1 * gray - 0.05, 0, 1)], axis=2)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_pristine_model_is_shipped():
    assert PRISTINE_PARAMS_FILE.is_file()
    mu, cov, window = pristine_params()
    assert mu.shape == (1, 36) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert window.sum() == pytest.approx(1.0)


def test_niqe_regression_on_generated_image():
    image = generated_image()
    assert niqe(image) == pytest.approx(GENERATED_DEMOE, abs=2e-3)
    # the same pixels at another bit depth or as floats give the same value
    assert niqe(image.astype(np.uint16) * 257) == pytest.approx(niqe(image), abs=1e-9)
    assert niqe(image.astype(np.float32) / 255) == pytest.approx(niqe(image), abs=1e-9)


@pytest.mark.skipif(not BABOON.is_file(), reason="baboon.png (../shared/reference) not available")
def test_niqe_matches_matlab_on_baboon():
    value = niqe(read_array(BABOON))
    assert value == pytest.approx(BABOON_MATLAB, abs=1e-4)
    assert value == pytest.approx(BABOON_DEMOE, abs=1e-6)
    # blurring the baboon makes it less natural
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(read_array(BABOON).astype(np.float64), (2, 2, 0))
    assert niqe(np.round(blurred).astype(np.uint8)) > value + 1


# The reference code run independently of this implementation on images the project ships
# (public domain / CC0, src/demoe/assets/photos/README.md): how, in the JSON file.
OCTAVE_REFERENCE = json.loads((Path(__file__).with_name("niqe_octave_reference.json")).read_text())["images"]


@pytest.mark.parametrize("name", sorted(OCTAVE_REFERENCE))
def test_niqe_matches_the_reference_code_on_shipped_images(name):
    image = generated_image() if name == "generated_image()" else read_array(_ROOT / name)
    # the reference code runs in double precision: so does this implementation, on request
    assert niqe(image, precision=np.float64) == pytest.approx(OCTAVE_REFERENCE[name], abs=1e-4)
    # in single precision (MATLAB R2021a's, the default) flat regions' variances move it a little
    assert niqe(image) == pytest.approx(OCTAVE_REFERENCE[name], abs=2e-3)


def test_niqe_needs_two_blocks():
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(generated_image(96, 150))
    with pytest.raises(TypeError, match="unsupported pixel type"):
        niqe(generated_image().astype(np.int32))


def test_matlab_imresize_properties():
    constant = np.full((20, 30), 0.4)
    np.testing.assert_allclose(matlab_imresize(constant, 0.5), np.full((10, 15), 0.4), atol=1e-12)
    ramp = np.tile(np.arange(40, dtype=np.float64), (8, 1))
    half = matlab_imresize(ramp, 0.5)
    assert half.shape == (4, 20)
    # away from the borders a linear ramp is resampled exactly at the output pixel centres
    np.testing.assert_allclose(half[:, 4:16], np.tile(np.arange(4, 16) * 2 + 0.5, (4, 1)), atol=1e-9)
    odd = matlab_imresize(np.ones((7, 9)), 0.5)
    assert odd.shape == (4, 5)  # ceil, as MATLAB


def test_rgb_to_y_is_bt601():
    assert rgb_to_y(np.array([[[0.0, 0.0, 0.0]]]))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255.0, 255.0, 255.0]]]))[0, 0] == pytest.approx(235.0)
