"""MUSIQ: parity with pyiqa's implementation, weight loading, input handling."""

import json

import numpy as np
import pytest
import torch
from musiq_reference import CASES, REFERENCE_FILE, random_state_dict, reference_images

from demoe.evaluation.musiq import (
    MUSIQ,
    MUSIQConfig,
    MUSIQWeightsError,
    config_from_state_dict,
    hashed_positions,
    load_musiq,
    multiscale_patches,
    musiq_score,
)
from demoe.evaluation.no_reference import musiq

REFERENCE = json.loads(REFERENCE_FILE.read_text())["cases"]


def reference_weights(case: str) -> dict[str, torch.Tensor]:
    shapes = {k: v.shape for k, v in MUSIQ(MUSIQConfig(**CASES[case][0])).state_dict().items()}
    return random_state_dict(shapes, REFERENCE[case]["seed"])


def save_like_pyiqa(state: dict[str, torch.Tensor], path, num_classes: int, wrap: bool = False):
    """The layout of pyiqa's .pth files: distribution heads at head.0 (+ optional wrappers)."""
    if num_classes > 1:
        state = {("head.0." + k[5:] if k.startswith("head.") else k): v for k, v in state.items()}
    if wrap:
        state = {"params": {f"module.{k}": v for k, v in state.items()}}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_scores_match_pyiqa(tmp_path, case):
    overrides = CASES[case][0]
    config = MUSIQConfig(**overrides)
    path = save_like_pyiqa(reference_weights(case), tmp_path / "musiq.pth", config.num_classes, wrap=case == "ava-like")
    # What the shapes cannot tell (heads, scales) is passed; the rest is read from the file.
    model = load_musiq(path, **{k: v for k, v in overrides.items() if k in ("num_heads", "longer_sides")})
    assert model.config == config
    for name, image in reference_images().items():
        expected = REFERENCE[case]["scores"][name]
        assert musiq_score(image, model) == pytest.approx(expected, abs=2e-5 * max(1.0, abs(expected)))


def test_reference_scores_differ_between_images():
    """The parity test can fail: the reference scores are not one constant."""
    for case in CASES:
        scores = list(REFERENCE[case]["scores"].values())
        assert max(scores) - min(scores) > 1e-2


def test_defaults_are_the_released_architecture():
    state = reference_weights("koniq-like")
    assert config_from_state_dict(state) == MUSIQConfig()
    model = MUSIQ(MUSIQConfig())
    assert sum(p.numel() for p in model.parameters()) == 27_125_825  # pyiqa's MUSIQ(num_class=1)


def test_hashed_positions():
    assert torch.equal(hashed_positions(10, 10, 10), torch.arange(100))
    grid = hashed_positions(10, 5, 20).reshape(5, 20)
    assert grid[:, 0].tolist() == [0, 20, 40, 60, 80]  # rows sample every other grid row
    assert grid[0].tolist() == [c // 2 for c in range(20)]  # columns repeat each grid column
    assert hashed_positions(10, 3, 4).max() < 100


def test_multiscale_patches_layout():
    image = torch.rand(1, 3, 100, 50) * 2 - 1
    config = MUSIQConfig()
    inputs = multiscale_patches(image, config)
    # 224 x 112 -> 7 x 4 patches; 384 x 192 -> 12 x 6; native 100 x 50 -> 4 x 2
    counts = [7 * 4, 12 * 6, 4 * 2]
    assert inputs.patches.shape == (sum(counts), 3, 32, 32)
    assert inputs.scales.tolist() == [0] * counts[0] + [1] * counts[1] + [2] * counts[2]
    native = inputs.patches[-8:]  # 4 x 2 patches, row-major
    # TF "SAME": 28 rows of zeros split 14 / 14, 14 columns split 7 / 7.
    padded = torch.nn.functional.pad(image, (7, 7, 14, 14))
    torch.testing.assert_close(native[0], padded[0, :, 0:32, 0:32])
    torch.testing.assert_close(native[-1], padded[0, :, 96:128, 32:64])
    assert torch.equal(native[-1][:, 18:, :], torch.zeros(3, 14, 32))
    assert torch.equal(native[0][:, :14, :], torch.zeros(3, 14, 32))


def test_input_types_agree(tmp_path):
    model = MUSIQ(MUSIQConfig(**CASES["two-scales"][0]))
    model.load_state_dict(reference_weights("two-scales"))
    model.eval()
    image = reference_images()["landscape"]
    score = musiq_score(image, model)
    assert musiq_score(image.astype(np.uint16) * 257, model) == pytest.approx(score, abs=1e-6)
    assert musiq_score(image / 255.0, model) == pytest.approx(score, abs=1e-6)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    assert musiq_score(rgba, model) == pytest.approx(score, abs=1e-6)
    gray = image[..., 1]
    assert musiq_score(gray, model) == pytest.approx(musiq_score(np.repeat(gray[..., None], 3, -1), model), abs=1e-6)
    with pytest.raises(ValueError, match="expected an"):
        musiq_score(np.zeros((4, 5, 6, 3), np.uint8), model)
    # From a file, through the one-call entry point.
    path = save_like_pyiqa(reference_weights("two-scales"), tmp_path / "m.pth", 1)
    assert musiq(image, load_musiq(path, num_heads=3, longer_sides=(160,))) == pytest.approx(score, abs=1e-6)


def test_missing_and_broken_files(tmp_path):
    image = reference_images()["landscape"]
    with pytest.raises(FileNotFoundError, match="does not ship or download"):
        musiq(image, tmp_path / "musiq_koniq_ckpt-e95806b9.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MUSIQWeightsError, match="cannot read MUSIQ weights"):
        load_musiq(broken)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(MUSIQWeightsError, match="not a MUSIQ state dict: missing conv_root.weight"):
        load_musiq(other)


def test_mismatched_weights_are_named(tmp_path):
    state = reference_weights("two-scales")
    overrides = dict(num_heads=3, longer_sides=(160,))
    with pytest.raises(MUSIQWeightsError, match="gives 3 scales"):
        load_musiq(save_like_pyiqa(state, tmp_path / "a.pth", 1), num_heads=3)
    dropped = dict(state)
    del dropped["transformer_encoder.transformer.encoderblock_1.norm2.bias"]
    with pytest.raises(MUSIQWeightsError, match="missing: transformer_encoder.transformer.encoderblock_1.norm2.bias"):
        load_musiq(save_like_pyiqa(dropped, tmp_path / "b.pth", 1), **overrides)
    extra = dict(state, **{"block2.conv1.weight": torch.zeros(1)})
    with pytest.raises(MUSIQWeightsError, match="unexpected: block2.conv1.weight"):
        load_musiq(save_like_pyiqa(extra, tmp_path / "c.pth", 1), **overrides)
    bad = dict(state, **{"block1.gn2.weight": torch.zeros(7)})
    with pytest.raises(MUSIQWeightsError, match="mis-shaped: block1.gn2.weight"):
        load_musiq(save_like_pyiqa(bad, tmp_path / "d.pth", 1), **overrides)


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    state = reference_weights("ava-like")
    path = tmp_path / "musiq.safetensors"
    save_file(state, str(path))
    model = load_musiq(path, num_heads=4)
    image = reference_images()["strip"]
    assert musiq_score(image, model) == pytest.approx(REFERENCE["ava-like"]["scores"]["strip"], abs=1e-4)
