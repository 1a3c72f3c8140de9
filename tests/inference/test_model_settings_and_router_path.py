"""One image, one answer: the same router probabilities from every command; the model's own
settings (top_k, task names) honoured; the caller's model left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import demoe
from demoe.analysis.features import bottleneck_features, load_image_tensor, router_probs_from_features
from demoe.cli import main
from demoe.data.manifest import PairRecord, write_manifest
from demoe.imageio import write_image
from demoe.inference import Deblurrer
from demoe.inference.pipeline import router_view
from demoe.model import DeblurUNet

from inference_testing import photo, quantized, random_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # demoe-small pads 37 x 53 to 48 x 64: with zero instead of replicate padding its router
    # probabilities move by 0.2, so the test tells paths with another padding apart.
    directory = tmp_path_factory.mktemp("weights") / "small"
    random_model("demoe-small").save_pretrained(str(directory))
    return directory


@pytest.mark.parametrize("size", [(37, 53), (48, 64)])  # odd sides: the padding matters
def test_one_image_gets_the_same_router_probabilities_from_every_command(model_dir, tmp_path, capsys, size):
    pixels = quantized(photo(*size, 3, seed=5), np.uint8)
    path = tmp_path / "photo.png"
    write_image(path, pixels)
    model = demoe.load_model(model_dir)
    x = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = model(x, task="auto").router_probs[0].tolist()
        assert router_probs_from_features(model, bottleneck_features(model, x))[0].tolist() == pytest.approx(expected, abs=1e-6)

    weights = ["--weights", str(model_dir), "--device", "cpu"]
    capsys.readouterr()
    assert main(["classify", str(path), "--json", *weights]) == 0
    classify = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["task_probs"]
    report = tmp_path / "report.jsonl"
    assert main(["deblur", str(path), "-o", str(tmp_path / "out"), "--report", str(report), "--quiet", *weights]) == 0
    deblur = json.loads(report.read_text().splitlines()[0])["task_probs"]
    manifest = write_manifest(tmp_path / "one.jsonl", [PairRecord(str(path), None, "defocus", "photos", "test")])
    capsys.readouterr()
    assert main(["analyze", "router", "--weights", str(model_dir), "--manifest", str(manifest), "--max-side", "0",
                 "--json", "--device", "cpu"]) == 0
    analyze = json.loads(capsys.readouterr().out)["datasets"][0]["mean_output"]
    for probs in (classify, deblur, analyze):
        assert list(probs) == list(model.task_names)
        assert list(probs.values()) == pytest.approx(expected, abs=1e-4)


def test_encode_and_route_are_the_forward_pass_for_both_paddings():
    model = random_model("demoe-tiny")
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        for padding in ("zeros", "replicate"):
            encoded = model.encode(x, padding=padding)
            assert encoded.padded.shape == (2, 3, 24, 32) and len(encoded.skips) == 2
            assert encoded.bottleneck.shape == (2, 32, 6, 8)
            routed = model.route(encoded.bottleneck)
            output = model(x, task="auto", padding=padding)
            torch.testing.assert_close(routed.probs, output.router_probs)
            torch.testing.assert_close(routed.logits, output.router_logits)
        zeros, replicate = model(x, padding="zeros").image, model(x, padding="replicate").image
        assert not torch.allclose(zeros, replicate)  # the padding reaches the (cropped) output
        with pytest.raises(ValueError, match="padding must be one of zeros, replicate"):
            model(x, padding="reflect")


def test_router_view_is_the_one_downscaling_policy(tmp_path):
    pixels = quantized(photo(300, 451, 3), np.uint8)
    assert router_view(pixels) is pixels and router_view(pixels, max_pixels=300 * 451) is pixels
    assert router_view(pixels, max_side=200).shape == (133, 200, 3)
    small = router_view(pixels, max_pixels=100 * 100)
    assert small.shape[0] * small.shape[1] <= 100 * 100 and small.dtype == np.uint8
    assert router_view(pixels[:, :, :1], max_side=50).shape == (33, 50, 1)
    # demoe analyze (max_side) reads through the same policy
    write_image(tmp_path / "wide.png", pixels)
    analysed = load_image_tensor(str(tmp_path / "wide.png"), max_side=200)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(analysed, router_view(pixels, max_side=200).astype(np.float32) / 255, atol=1e-6)


def _top2_model() -> DeblurUNet:
    model = random_model("demoe-tiny")
    model.config = model.config.replace(top_k=2)
    return model


def test_the_models_top_k_is_the_default_everywhere(tmp_path, capsys):
    image = quantized(photo(24, 32, 3), np.uint8)
    model = _top2_model()
    deblurrer = Deblurrer(model, device="cpu")
    assert len(deblurrer.restore(image).experts_used) == 2
    assert len(deblurrer.restore(image, tile=16, tile_overlap=4).experts_used) == 2
    assert len(deblurrer.restore(image, top_k=1).experts_used) == 1
    np.testing.assert_array_equal(demoe.deblur(image, model=model, device="cpu"), deblurrer.restore(image).image)
    model.save_pretrained(str(tmp_path / "top2"))
    write_image(tmp_path / "in.png", image)
    report = tmp_path / "report.jsonl"
    assert main(["deblur", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "top2"),
                 "--device", "cpu", "--report", str(report), "--quiet"]) == 0
    assert len(json.loads(report.read_text())["experts_used"]) == 2


def test_deblurrer_leaves_the_callers_model_as_it_was():
    model = random_model("demoe-tiny").train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    deblurrer = Deblurrer(model, device="cpu")
    deblurrer.restore(quantized(photo(20, 24, 3), np.uint8))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.is_contiguous() for p in model.parameters())  # not turned channels_last
    assert deblurrer.model is not model and not deblurrer.model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_tlc_needs_a_model_with_its_training_crop(tmp_path, capsys, model_dir):
    write_image(tmp_path / "in.png", quantized(photo(20, 24, 3), np.uint8))
    args = ["--weights", str(model_dir), "--device", "cpu"]
    assert main(["deblur", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--tlc", *args]) == 2
    assert "train_crop" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "in.png"), "--tlc", *args]) == 2  # refused before any input
    assert capsys.readouterr().err.startswith("demoe classify: --tlc:")
    model = demoe.load_model(model_dir)
    model.config = model.config.replace(train_crop=16)
    model.save_pretrained(str(tmp_path / "with-crop"))
    report = tmp_path / "report.jsonl"
    assert main(["deblur", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--tlc", "--report", str(report),
                 "--weights", str(tmp_path / "with-crop"), "--device", "cpu", "--quiet"]) == 0
    assert json.loads(report.read_text())["task_probs"] is not None
    assert main(["classify", str(tmp_path / "in.png"), "--tlc", "--json", "--weights", str(tmp_path / "with-crop"),
                 "--device", "cpu"]) == 0
