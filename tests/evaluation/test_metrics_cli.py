import json

import numpy as np
import pytest
import torch
from musiq_reference import save_random_musiq
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from demoe.cli import main
from demoe.evaluation.folders import PairingError, match_pairs, mean_scores
from demoe.evaluation.lpips import BACKBONE_FILES, alexnet_features
from demoe.evaluation.musiq import load_musiq, musiq_score
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


def small_musiq_file(tmp_path):
    # 6 heads and 3 scales (the defaults): loads without overrides
    return save_random_musiq(tmp_path / "musiq.pth", 3, hidden_size=48, mlp_dim=64, num_layers=1)


def textured(seed, size=(200, 240)):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]] / 50
    base = 0.5 + 0.3 * np.sin(x + seed)[..., None] * np.cos(y)[..., None]
    return (np.clip(base + 0.1 * rng.standard_normal((*size, 3)), 0, 1) * 255).astype(np.uint8)


def test_no_reference_only_folder(tmp_path, capsys):
    from demoe.evaluation.niqe import niqe

    weights = small_musiq_file(tmp_path)
    images = {"a.png": textured(0), "sub/b.png": textured(1, (210, 230)), "tiny.png": textured(2, (60, 70))}
    for name, image in images.items():
        write_image(tmp_path / "restored" / name, image)
    report = run_json(capsys, tmp_path / "restored", "--niqe", "--musiq-weights", weights)
    rows = {row["name"]: row for row in report["per_image"]}
    assert list(rows) == ["a.png", "sub/b.png", "tiny.png"]
    model = load_musiq(weights)
    for name, image in images.items():
        assert rows[name]["musiq"] == pytest.approx(musiq_score(image, model), abs=1e-5)
    assert rows["a.png"]["niqe"] == pytest.approx(niqe(images["a.png"]))
    # NIQE cannot score a 60x70 image: None with the reason, left out of the mean.
    assert rows["tiny.png"]["niqe"] is None and "niqe_error" in rows["tiny.png"]
    assert report["mean"]["niqe"] == pytest.approx((rows["a.png"]["niqe"] + rows["sub/b.png"]["niqe"]) / 2)
    assert report["mean"]["musiq"] == pytest.approx(np.mean([row["musiq"] for row in rows.values()]))
    assert main(["metrics", str(tmp_path / "restored"), "--niqe"]) == 0  # the plain table prints too
    table = capsys.readouterr().out
    assert "tiny.png" in table and "mean" in table


def test_no_reference_metric_added_to_pairs(tmp_path, capsys):
    restored_dir, sharp_dir, pairs = make_folders(tmp_path, count=2)
    weights = small_musiq_file(tmp_path)
    report = run_json(capsys, restored_dir, sharp_dir, "--musiq-weights", weights)
    model = load_musiq(weights)
    for record in report["per_image"]:
        assert record["musiq"] == pytest.approx(musiq_score(pairs[record["name"]][0], model), abs=1e-5)
        assert "psnr" in record and "niqe" not in record


def test_nrqm_from_its_model_file(tmp_path, capsys):
    from pathlib import Path

    from demoe.evaluation.nrqm import load_nrqm_model, nrqm

    model_file = Path(__file__).parents[1] / "data" / "nrqm_synthetic_model.mat"  # see test_nrqm.py
    images = {"a.png": textured(3, (96, 120)), "b.png": textured(4, (100, 90)), "small.png": textured(5, (40, 200))}
    for name, image in images.items():
        write_image(tmp_path / "restored" / name, image)
    report = run_json(capsys, tmp_path / "restored", "--nrqm-weights", model_file)
    rows = {row["name"]: row for row in report["per_image"]}
    model = load_nrqm_model(model_file)
    for name in ("a.png", "b.png"):
        assert rows[name]["nrqm"] == pytest.approx(nrqm(images[name], model))
    assert rows["small.png"]["nrqm"] is None and "at least" in rows["small.png"]["nrqm_error"]
    assert report["mean"]["nrqm"] == pytest.approx((rows["a.png"]["nrqm"] + rows["b.png"]["nrqm"]) / 2)
    broken = tmp_path / "NRQM_model.mat"
    broken.write_bytes(b"MATLAB 5.0 MAT-file, broken")
    report = run_json(capsys, tmp_path / "restored", "--niqe", "--nrqm-weights", broken)
    assert "nrqm" in report["skipped"] and "nrqm" not in report["per_image"][0]


def test_missing_musiq_weights_skip_only_musiq(tmp_path, capsys):
    restored_dir, sharp_dir, _ = make_folders(tmp_path, count=1)
    report = run_json(capsys, restored_dir, sharp_dir, "--musiq-weights", tmp_path / "musiq_koniq_ckpt-e95806b9.pth")
    assert "does not ship or download" in report["skipped"]["musiq"]
    assert "psnr" in report["mean"] and "musiq" not in report["mean"]
    # Without ground truth and nothing else to compute: an error, not an empty report.
    assert main(["metrics", str(restored_dir), "--musiq-weights", str(tmp_path / "missing.pth")]) == 2
    assert "no metric left to compute" in capsys.readouterr().err


def test_no_reference_mode_argument_errors(tmp_path, capsys):
    restored_dir, _, _ = make_folders(tmp_path, count=1)
    assert main(["metrics", str(restored_dir)]) == 2
    assert "ask for a no-reference metric" in capsys.readouterr().err
    assert main(["metrics", str(restored_dir), "--niqe", "--lpips", "alex"]) == 2
    assert "--lpips need(s) SHARP_DIR" in capsys.readouterr().err
    assert main(["metrics", str(tmp_path / "nowhere"), "--niqe"]) == 2
    assert "not a folder" in capsys.readouterr().err
