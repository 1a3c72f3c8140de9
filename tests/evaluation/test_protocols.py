import cv2
import numpy as np
import pytest
from scipy import ndimage

from demoe.evaluation import metrics
from demoe.evaluation.protocols import (
    PROTOCOLS,
    AlignmentError,
    align_to_reference,
    evaluate_pair,
    mask_weights,
    protocol_for,
)


def textured_image(height=120, width=150, seed=0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] with structure at several scales, so ECC has a gradient."""
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random((height, width, 3)), (2.0, 2.0, 0)) * 0.7
    image += ndimage.gaussian_filter(rng.random((height, width, 3)), (6.0, 6.0, 0)) * 0.3
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32)


def test_ecc_recovers_a_known_translation():
    sharp = textured_image()
    dx, dy = 2.5, -1.5
    translation = np.float32([[1, 0, dx], [0, 1, dy]])
    # restored(x) = sharp(x - d), slightly darker: the gain matching must undo the 0.9
    restored = cv2.warpAffine(sharp, translation, (sharp.shape[1], sharp.shape[0]), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT) * 0.9
    alignment = align_to_reference(restored, sharp)
    warp = alignment.warp / alignment.warp[2, 2]
    assert warp[0, 2] == pytest.approx(dx, abs=0.1)
    assert warp[1, 2] == pytest.approx(dy, abs=0.1)
    np.testing.assert_allclose(warp[:2, :2], np.eye(2), atol=5e-3)
    assert alignment.gain == pytest.approx(1 / 0.9, rel=0.03)
    assert 0.9 < alignment.valid.mean() < 1.0  # the uncovered border is masked out

    unaligned = metrics.psnr(restored, sharp, data_range=1.0)
    aligned = evaluate_pair(restored, sharp, "RealBlur-J")
    assert aligned["protocol"] == "realblur"
    assert aligned["psnr"] > unaligned + 15
    assert aligned["ssim"] > 0.99


def test_ecc_recovers_a_known_homography():
    sharp = textured_image(seed=1)
    homography = np.array([[1.01, 0.004, 1.2], [-0.003, 0.995, -0.8], [2e-5, -1e-5, 1.0]], np.float32)
    # restored(x) = sharp(H x); aligning restored needs W with restored(W x) = sharp(x): W = H^-1
    restored = cv2.warpPerspective(sharp, homography, (sharp.shape[1], sharp.shape[0]),
                                   flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    alignment = align_to_reference(restored, sharp)
    expected = np.linalg.inv(homography)
    expected /= expected[2, 2]
    warp = alignment.warp / alignment.warp[2, 2]
    np.testing.assert_allclose(warp[:2, :2], expected[:2, :2], atol=3e-3)
    np.testing.assert_allclose(warp[:2, 2], expected[:2, 2], atol=0.15)
    assert evaluate_pair(restored, sharp, "rsblur")["psnr"] > metrics.psnr(restored, sharp, data_range=1.0) + 10


def test_alignment_accepts_8_bit_and_reports_gain():
    sharp = textured_image()
    sharp8 = np.round(sharp * 255).astype(np.uint8)
    result = evaluate_pair(sharp8, sharp8, "realblur")
    assert result["gain"] == pytest.approx(1.0)
    assert result["psnr"] > 60


def test_alignment_failure_is_a_specific_error():
    flat = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(AlignmentError, match="ECC"):
        align_to_reference(flat, flat)


@pytest.mark.parametrize(
    "dataset, protocol",
    [
        ("GoPro", "gopro"),
        ("HIDE", "gopro"),
        ("RealBlur-J", "realblur"),
        ("realblur_r", "realblur"),
        ("RSBlur", "realblur"),
        ("DPDD", "dpdd"),
        ("RealDOF", "dpdd"),
        ("ReLoBlur", "reloblur"),
        ("LOLBlur", "default"),
        ("Real-LOLBlur", "default"),  # not RealBlur, despite the letters
        ("my_folder", "default"),
        ("realblur", "realblur"),
    ],
)
def test_protocol_for_dataset_names(dataset, protocol):
    assert protocol_for(dataset).name == protocol


def test_gopro_uses_matlab_ssim_and_default_uses_gaussian_ssim():
    sharp = np.round(textured_image(40, 50) * 255).astype(np.uint8)
    restored = np.clip(sharp.astype(int) + np.random.default_rng(0).integers(-20, 20, sharp.shape), 0, 255).astype(np.uint8)
    gopro = evaluate_pair(restored, sharp, "GoPro")
    default = evaluate_pair(restored, sharp, "LOLBlur")
    assert gopro["ssim"] == pytest.approx(metrics.matlab_ssim(restored, sharp))
    assert default["ssim"] == pytest.approx(metrics.ssim(restored, sharp))
    assert gopro["psnr"] == default["psnr"] == pytest.approx(metrics.psnr(restored, sharp))
    assert set(default) == {"protocol", "psnr", "ssim"}


def test_dpdd_keeps_16_bit_and_reports_mae():
    sharp = np.round(textured_image(40, 50) * 65535).astype(np.uint16)
    restored = sharp.copy()
    restored[..., 1] = np.clip(restored[..., 1].astype(int) + 100, 0, 65535)  # invisible in 8 bit
    result = evaluate_pair(restored, sharp, "DPDD")
    assert result["mae"] == pytest.approx(metrics.mae(restored, sharp))
    assert 0 < result["mae"] < 100 / 65535
    assert result["psnr"] == pytest.approx(metrics.psnr(restored, sharp))
    assert result["psnr"] > 60  # 8-bit quantisation would have capped it far lower


def test_mixed_bit_depths_are_compared_as_floats():
    sharp16 = np.round(textured_image(40, 50) * 65535).astype(np.uint16)
    sharp8 = np.round(sharp16 / 257).astype(np.uint8)
    result = evaluate_pair(sharp8, sharp16, "default")
    assert result["psnr"] > 50


def test_reloblur_masked_metrics():
    sharp = np.round(textured_image(40, 50) * 255).astype(np.uint8)
    restored = np.clip(sharp.astype(int) + 10, 0, 255).astype(np.uint8)
    without_mask = evaluate_pair(restored, sharp, "ReLoBlur")
    assert "psnr_masked" not in without_mask
    all_ones = evaluate_pair(restored, sharp, "ReLoBlur", mask=np.full((40, 50), 255, np.uint8))
    assert all_ones["psnr_masked"] == pytest.approx(all_ones["psnr"])
    assert all_ones["ssim_masked"] == pytest.approx(all_ones["ssim"])
    mask = np.zeros((40, 50, 3), np.uint8)
    mask[10:30, 10:40] = 255
    partial = evaluate_pair(restored, sharp, "ReLoBlur", mask=mask)
    expected = metrics.psnr(restored[10:30, 10:40], sharp[10:30, 10:40])
    assert partial["psnr_masked"] == pytest.approx(expected)


def test_mask_weights():
    np.testing.assert_array_equal(mask_weights(np.array([[0, 3], [255, 0]], np.uint8)), [[0, 1], [1, 0]])
    np.testing.assert_allclose(mask_weights(np.array([[0.25, 2.0]])), [[0.25, 1.0]])


def test_every_protocol_runs_and_rejects_size_mismatch():
    sharp = textured_image(48, 56)
    for name in PROTOCOLS:
        result = evaluate_pair(sharp, sharp, name)
        assert result["protocol"] == name and result["ssim"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_pair(sharp[:-2], sharp, "GoPro")
