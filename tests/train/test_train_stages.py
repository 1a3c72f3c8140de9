"""The two-stage recipe: stage-1 -> stage-2 initialisation, what stage 2 trains and freezes,
the ablation switches, and a non-finite loss stopping the run."""

import pytest
import torch
from safetensors.torch import load_file

from demoe import create_model, load_model
from demoe.train import NonFiniteLossError, RunDirError, build_training_model, parse_config, train
from demoe.train.checkpointing import list_checkpoints
from demoe.train.loop import ExponentialMovingAverage
from random_weights import randomize_
from train_fakes import FakePairs, tiny_config

FROZEN_PREFIXES = ("intro.", "encoders.", "downs.", "router.")


def stage2_config(init_from, **sections):
    values = tiny_config(
        stage="experts",
        model={"preset": "demoe-tiny", "init_from": str(init_from)},
        loss={"class_weight": 0.0},
        **sections,
    )
    return parse_config(values)


@pytest.fixture
def baseline_dir(tmp_path):
    """A stage-1 model directory with random (non-identity) weights."""
    directory = tmp_path / "baseline"
    randomize_(create_model("nafnet-tiny-router")).save_pretrained(str(directory))
    return directory


def test_stage1_run_initialises_stage2_that_equals_the_baseline_at_top1(tmp_path):
    run = tmp_path / "stage1"
    result = train(parse_config(tiny_config()), run, train_dataset=FakePairs(8))
    assert result.step == 4 and (run / "last" / "model.safetensors").is_file()
    baseline = load_model(run / "last")
    # the saved config records the training crop (TLC sizes its window from it) and no path of
    # this machine: a model directory is carried to others
    assert baseline.config.train_crop == 32 and baseline.tlc_window == 48
    assert str(tmp_path) not in (run / "last" / "config.json").read_text()
    demoe = build_training_model(stage2_config(run)).eval()  # init_from = the run directory
    images = torch.rand(3, 3, 32, 48)
    with torch.no_grad():
        expected = baseline(images).image
        for task in ("auto", "defocus", "low_light"):
            torch.testing.assert_close(demoe(images, task=task, top_k=1).image, expected, rtol=0, atol=1e-6)


def test_random_baseline_initialises_stage2_exactly(baseline_dir):
    baseline = load_model(baseline_dir)
    demoe = build_training_model(stage2_config(baseline_dir)).eval()
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(demoe(images, top_k=1).image, baseline(images).image, rtol=0, atol=1e-6)
        torch.testing.assert_close(demoe(images).router_probs, baseline(images).router_probs)


def _changed(before: dict, after: dict) -> set[str]:
    return {key for key in before if not torch.equal(before[key], after[key])}


def test_stage2_freezes_encoder_and_router_and_trains_the_decoder(tmp_path, baseline_dir):
    config = stage2_config(baseline_dir)
    before = build_training_model(config).state_dict()
    train(config, tmp_path / "run", train_dataset=FakePairs(8))
    after = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    changed = _changed(before, after)
    frozen = {key for key in before if key.startswith(FROZEN_PREFIXES)}
    assert any(key.endswith("running_mean") for key in frozen)  # BatchNorm statistics included
    assert not changed & frozen, f"frozen tensors changed: {sorted(changed & frozen)}"
    trainable_parts = ("middle.", "middle_moe.", "ups.", "decoders.", "decoder_moes.", "ending.")
    for part in trainable_parts:
        assert any(key.startswith(part) for key in changed), f"nothing in {part} was trained"
    for expert in range(5):  # the dense mixture trains every expert
        assert any(key.startswith(f"middle_moe.experts.{expert}.") for key in changed)


def test_trainable_all_also_trains_encoder_and_router(tmp_path, baseline_dir):
    config = stage2_config(baseline_dir, train={"trainable": "all", "total_steps": 2})
    before = build_training_model(config).state_dict()
    train(config, tmp_path / "run", train_dataset=FakePairs(8))
    changed = _changed(before, load_file(str(tmp_path / "run" / "last" / "model.safetensors")))
    for part in ("intro.", "encoders.", "router.", "decoder_moes."):
        assert any(key.startswith(part) for key in changed), part


def test_forced_task_trains_one_expert_only(tmp_path, baseline_dir):
    """Task-specific DeMoE*: every image goes to one expert; the other experts stay as they were."""
    config = stage2_config(baseline_dir, train={"forced_task": "low_light", "total_steps": 2})
    before = build_training_model(config).state_dict()
    train(config, tmp_path / "run", train_dataset=FakePairs(8))
    changed = _changed(before, load_file(str(tmp_path / "run" / "last" / "model.safetensors")))
    expert = 4  # low_light
    assert any(key.startswith(f"decoder_moes.0.experts.{expert}.") for key in changed)
    others = [key for key in changed if ".experts." in key and f".experts.{expert}." not in key]
    assert not others, others


def test_end_to_end_from_scratch_with_router_noise(tmp_path):
    values = tiny_config(
        stage="experts",
        model={"preset": "demoe-tiny", "overrides": {"router_noise_std": 0.5}},
        train={"trainable": "all", "total_steps": 2},
    )
    config = parse_config(values)
    assert config.loss.class_weight == 0.001
    result = train(config, tmp_path / "run", train_dataset=FakePairs(8))
    assert load_model(result.last_dir).config.router_noise_std == 0.5


def test_validation_and_ema(tmp_path):
    config = parse_config(tiny_config(train={"ema_decay": 0.9}, log={"validate_every": 2}))
    result = train(config, tmp_path / "run", train_dataset=FakePairs(8), val_dataset=FakePairs(4, seed=5))
    assert set(result.validation.psnr) == {"fake_a", "fake_b"}
    assert all(10 < value < 60 for value in result.validation.psnr.values())
    assert all(0 < value <= 1 for value in result.validation.ssim.values())
    # the validation at the last step ran the EMA weights that last/ holds: recompute it by hand
    evaluated = load_model(tmp_path / "run" / "last").eval()
    items = [FakePairs(4, seed=5)[index] for index in range(4)]
    blurry, sharp = torch.stack([i["blurry"] for i in items]), torch.stack([i["sharp"] for i in items])
    labels = torch.stack([i["label"] for i in items])
    with torch.no_grad():
        output = evaluated(blurry)
    accuracy = float((output.router_logits.argmax(1) == labels).float().mean())
    assert result.validation.router_accuracy == pytest.approx(accuracy)
    image_psnr = -10 * torch.log10((output.image.clamp(0, 1) - sharp).pow(2).mean((1, 2, 3)))
    assert result.validation.psnr["fake_a"] == pytest.approx(float(image_psnr[0::2].mean()), abs=1e-4)
    assert set(result.validation.psnr_by_task) <= {"defocus", "global_motion", "local_motion", "synth_global_motion", "low_light"}
    assert len(result.validation.psnr_by_task) == 4  # labels 0..3 of FakePairs(4)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000004"
    assert (checkpoint / "ema.safetensors").is_file()
    last = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    ema = load_file(str(checkpoint / "ema.safetensors"))
    raw = load_file(str(checkpoint / "model.safetensors"))
    assert all(torch.equal(last[key], ema[key]) for key in last)  # last/ holds the EMA weights
    assert any(not torch.equal(raw[key], ema[key]) for key in raw)


class NaNAfterFirstEpoch(FakePairs):
    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.epoch >= 1:
            item["blurry"] = torch.full_like(item["blurry"], float("nan"))
        return item


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = parse_config(tiny_config(train={"total_steps": 6}))
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"nan at step 3 .*step-000002"):
        train(config, run, train_dataset=NaNAfterFirstEpoch(8))  # 2 steps per epoch
    assert [step for step, _ in list_checkpoints(run)] == [2]
    assert load_model(run / "last").config.name == "nafnet-tiny-router"
    assert all(torch.isfinite(t).all() for t in load_file(str(run / "last" / "model.safetensors")).values())


def test_existing_run_needs_resume(tmp_path):
    config = parse_config(tiny_config(train={"total_steps": 2}))
    train(config, tmp_path / "run", train_dataset=FakePairs(8))
    with pytest.raises(RunDirError, match="--resume"):
        train(config, tmp_path / "run", train_dataset=FakePairs(8))


def test_router_calibration_trains_only_the_router_head(tmp_path, baseline_dir):
    config = parse_config(tiny_config(
        model={"preset": "nafnet-tiny-router", "init_from": str(baseline_dir)},
        loss={"pixel_weight": 0.0, "class_weight": 1.0},
        train={"trainable": "router"},
    ))
    train(config, tmp_path / "router", train_dataset=FakePairs(8))
    before = load_file(str(baseline_dir / "model.safetensors"))
    after = load_file(str(tmp_path / "router" / "last" / "model.safetensors"))
    changed = _changed(before, after)
    assert changed and all(key.startswith("router.") for key in changed)
    assert any(key.endswith(".weight") and "classifier" in key for key in changed)


def test_router_calibration_stops_the_forward_at_the_router_with_the_same_result(tmp_path, baseline_dir, monkeypatch):
    """In one process router calibration runs only encoder + router head (the decoder's output
    enters no loss); the trained weights equal those of the full forward pass."""
    import demoe.train.loop as loop

    demoe_dir = tmp_path / "demoe"
    randomize_(build_training_model(stage2_config(baseline_dir))).save_pretrained(str(demoe_dir))
    config = parse_config(tiny_config(
        stage="experts",
        model={"preset": "demoe-tiny", "init_from": str(demoe_dir)},
        loss={"pixel_weight": 0.0, "class_weight": 1.0},
        train={"trainable": "router", "routing": "label"},
    ))
    decoder_calls = []
    model_class = type(create_model("demoe-tiny"))
    real_forward = model_class._forward
    monkeypatch.setattr(model_class, "_forward", lambda self, *a, **k: decoder_calls.append(1) or real_forward(self, *a, **k))
    train(config, tmp_path / "fast", train_dataset=FakePairs(8))
    calls_fast = len(decoder_calls)
    monkeypatch.setattr(loop, "_router_only", lambda run: False)
    train(config, tmp_path / "full", train_dataset=FakePairs(8))
    fast = load_file(str(tmp_path / "fast" / "last" / "model.safetensors"))
    full = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    # the full path runs the whole network once per training step; the fast one only outside them
    assert len(decoder_calls) - 2 * calls_fast == config.train.total_steps
    changed = _changed(load_file(str(demoe_dir / "model.safetensors")), fast)
    assert changed and all(key.startswith("router.") for key in changed)
    for key in full:
        torch.testing.assert_close(fast[key], full[key], rtol=0, atol=1e-6)


def test_router_calibration_needs_a_pretrained_model_and_the_classification_loss_only(baseline_dir):
    from demoe.train.config import ConfigError

    with pytest.raises(ConfigError, match="model.init_from"):
        parse_config(tiny_config(loss={"pixel_weight": 0.0, "class_weight": 1.0}, train={"trainable": "router"}))
    with pytest.raises(ConfigError, match="classification loss only"):
        parse_config(tiny_config(model={"preset": "nafnet-tiny-router", "init_from": str(baseline_dir)},
                                 train={"trainable": "router"}))


def test_stage1_warm_start_continues_from_a_model_directory(tmp_path, baseline_dir):
    config = parse_config(tiny_config(model={"preset": "nafnet-tiny-router", "init_from": str(baseline_dir)}))
    model = build_training_model(config)
    expected = load_file(str(baseline_dir / "model.safetensors"))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_ema_averages_weights_and_batchnorm_statistics_and_copies_the_batch_counter():
    model = create_model("demoe-tiny")
    ema = ExponentialMovingAverage(model, decay=0.75)
    before = {key: value.clone() for key, value in ema.model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
        for buffer in model.buffers():
            buffer.add_(4 if buffer.is_floating_point() else 3)
    ema.update(model)
    current = model.state_dict()
    for key, value in ema.model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * before[key] + 0.25 * current[key], atol=1e-6), key
        else:
            assert torch.equal(value, current[key]), key
    names = dict(model.named_buffers())
    assert any("running_var" in name for name in names) and any("num_batches_tracked" in name for name in names)
