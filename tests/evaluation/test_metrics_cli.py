import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from demoe.cli import main
from demoe.evaluation.folders import PairingError, match_pairs, mean_scores
from demoe.evaluation.lpips import BACKBONE_FILES, alexnet_features
from demoe.evaluation.no_reference import UnsupportedMetricError, musiq, nrqm
from demoe.imageio import write_image


def make_folders(tmp_path, bit_depth=8, count=3, size=(40, 52)):
    """restored/ and sharp/ with the same stems but different extensions."""
    rng = np.random.default_rng(0)
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    restored_dir, sharp_dir = tmp_path / "restored", tmp_path / "sharp"
    pairs = {}
    for index in range(count):
        sharp = (rng.random((*size, 3)) * peak).astype(dtype)
        noise = rng.normal(0, 0.03 * peak, sharp.shape)
        restored = np.clip(sharp + noise, 0, peak).astype(dtype)
        write_image(sharp_dir / f"img{index:02d}.png", sharp)
        write_image(restored_dir / f"img{index:02d}.tif", restored)
        pairs[f"img{index:02d}.tif"] = (restored, sharp)
    return restored_dir, sharp_dir, pairs


def run_json(capsys, *argv):
    assert main(["metrics", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_json_schema_and_values(tmp_path, capsys, bit_depth):
    restored_dir, sharp_dir, pairs = make_folders(tmp_path, bit_depth)
    report = run_json(capsys, restored_dir, sharp_dir)
    assert set(report) == {"per_image", "mean"}
    assert [record["name"] for record in report["per_image"]] == sorted(pairs)
    peak = 255 if bit_depth == 8 else 65535
    for record in report["per_image"]:
        assert {"name", "psnr", "ssim"} <= set(record)
        restored, sharp = pairs[record["name"]]
        assert record["psnr"] == pytest.approx(peak_signal_noise_ratio(sharp, restored, data_range=peak))
        expected_ssim = structural_similarity(
            restored, sharp, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            channel_axis=-1, data_range=peak,
        )
        assert record["ssim"] == pytest.approx(expected_ssim)
    assert report["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in report["per_image"]]))
    assert report["mean"]["ssim"] == pytest.approx(np.mean([r["ssim"] for r in report["per_image"]]))


def test_protocol_and_niqe_fields(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, 16, count=1, size=(100, 200))
    report = run_json(capsys, restored_dir, sharp_dir, "--protocol", "dpdd", "--niqe")
    record = report["per_image"][0]
    assert record["protocol"] == "dpdd"
    assert {"psnr", "ssim", "mae", "niqe"} <= set(record)
    assert {"psnr", "ssim", "mae", "niqe"} <= set(report["mean"])


def test_lpips_with_backbone_file(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=1, size=(64, 64))
    backbone = tmp_path / BACKBONE_FILES["alex"]
    torch.save({f"features.{k}": v for k, v in alexnet_features().state_dict().items()}, backbone)
    report = run_json(capsys, restored_dir, sharp_dir, "--lpips", "alex", "--lpips-backbone", backbone)
    assert report["per_image"][0]["lpips"] > 0
    assert "lpips" in report["mean"]


def test_missing_lpips_backbone_still_computes_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=2)
    assert main(["metrics", str(restored_dir), str(sharp_dir), "--json", "--lpips", "vgg"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "LPIPS skipped" in captured.err and "vgg16-397923af.pth" in captured.err
    assert "vgg16-397923af.pth" in report["skipped"]["lpips"]
    assert all("lpips" not in record and "psnr" in record for record in report["per_image"])


def test_table_output(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=2)
    assert main(["metrics", str(restored_dir), str(sharp_dir), "--protocol", "gopro"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "psnr", "ssim"]
    assert lines[-1].startswith("mean") and len(lines) == 4


def test_unmatched_files_are_named(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=2)
    (sharp_dir / "img00.png").rename(sharp_dir / "other.png")
    assert main(["metrics", str(restored_dir), str(sharp_dir)]) == 2
    error = capsys.readouterr().err
    assert "without ground truth: img00" in error and "without restored image: other" in error


def test_size_mismatch_is_reported(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=1)
    write_image(sharp_dir / "img00.png", np.zeros((30, 30, 3), np.uint8))
    assert main(["metrics", str(restored_dir), str(sharp_dir)]) == 2
    assert "img00.tif: restored is 52x40 but img00.png is 30x30" in capsys.readouterr().err


def test_duplicate_stems_and_empty_folders(tmp_path):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=1)
    write_image(restored_dir / "img00.png", np.zeros((40, 52, 3), np.uint8))
    with pytest.raises(PairingError, match="two images named img00"):
        match_pairs(restored_dir, sharp_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairingError, match="no images"):
        match_pairs(tmp_path / "empty", sharp_dir)
    with pytest.raises(PairingError, match="not a folder"):
        match_pairs(tmp_path / "missing", sharp_dir)


def test_masks_for_reloblur(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=2)
    for name in ("img00", "img01"):
        write_image(tmp_path / "masks" / f"{name}.png", np.full((40, 52), 255, np.uint8))
    report = run_json(capsys, restored_dir, sharp_dir, "--protocol", "reloblur", "--mask-dir", tmp_path / "masks")
    for record in report["per_image"]:
        assert record["psnr_masked"] == pytest.approx(record["psnr"])
    (tmp_path / "masks" / "img01.png").unlink()
    assert main(["metrics", str(restored_dir), str(sharp_dir), "--mask-dir", str(tmp_path / "masks")]) == 2
    assert "without a mask" in capsys.readouterr().err


def test_mean_scores_skips_text_fields():
    assert mean_scores([{"name": "a", "protocol": "x", "psnr": 10.0}, {"name": "b", "protocol": "x", "psnr": 20.0}]) == {
        "psnr": 15.0
    }


def test_musiq_and_nrqm_are_explicitly_unsupported(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(FileNotFoundError, match="weights"):
        musiq(image, None)
    with pytest.raises(FileNotFoundError, match="not a file"):
        nrqm(image, tmp_path / "NRQM_model.mat")
    weights = tmp_path / "musiq.pth"
    weights.write_bytes(b"0")
    with pytest.raises(UnsupportedMetricError, match="MUSIQ is not implemented.*niqe"):
        musiq(image, weights)
    with pytest.raises(NotImplementedError, match="NRQM"):
        nrqm(image, weights)
