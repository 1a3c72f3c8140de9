"""The paper's comparison through `demoe train`: a Table 1 rival as a single-stage run, and a
Table 7 expert variant with the two-stage recipe (stage-1 baseline upcycled into the experts)."""

import pytest
import torch

from demoe import load_model
from demoe.train import build_training_model, parse_config, train
from train_fakes import FakePairs, tiny_config

TINY_UNET = {"width": 8, "encoder_blocks": [1, 1], "router_channels": 16, "router_hidden": 16}


def test_a_dense_rival_trains_as_a_single_stage_run(tmp_path):
    overrides = {"width": 8, "encoder_blocks": [1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1],
                 "refinement_blocks": 1, "attention_heads": [1, 2, 2]}
    config = parse_config(tiny_config(model={"preset": "restormer", "overrides": overrides}, loss={"class_weight": 0.0}))
    result = train(config, tmp_path / "run", train_dataset=FakePairs(8))
    assert result.step == 4
    model = load_model(tmp_path / "run" / "last")
    assert model.config.architecture == "restormer" and model.router is None


def test_an_expert_variant_trains_with_the_two_stage_recipe(tmp_path):
    stage1 = parse_config(tiny_config(
        model={"preset": "nafnet-wavelet-router", "overrides": {**TINY_UNET, "middle_blocks": 2, "decoder_blocks": [2, 2]}},
    ))
    train(stage1, tmp_path / "stage1", train_dataset=FakePairs(8))
    baseline = load_model(tmp_path / "stage1" / "last")
    stage2 = parse_config(tiny_config(
        stage="experts",
        model={"preset": "demoe-wavelet", "init_from": str(tmp_path / "stage1"),
               "overrides": {**TINY_UNET, "middle_blocks": 1, "decoder_blocks": [1, 1]}},
        loss={"class_weight": 0.0},
        train={"total_steps": 2},
    ))
    model = build_training_model(stage2).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # upcycled: any one expert computes what the stage-1 baseline computes
        torch.testing.assert_close(model(images, task="low_light").image, baseline(images).image, rtol=0, atol=1e-6)
    result = train(stage2, tmp_path / "stage2", train_dataset=FakePairs(8))
    assert result.step == 2
    trained = load_model(tmp_path / "stage2" / "last")
    assert trained.config.expert_block == "wavelet" and trained.config.is_moe
