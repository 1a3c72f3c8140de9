import json

import pytest
import torch

import demoe
from demoe.config import TASK_NAMES, ModelConfig, baseline_of, experts_config_of, get_preset
from demoe.model import DeblurUNet, init_experts_from_baseline
from demoe.nn.layers import NAFBlock
from demoe.nn.moe import MoEBlock, make_plan, top_k_weights

from random_weights import randomize_


def tiny(**overrides):
    return randomize_(demoe.create_model("demoe-tiny", **overrides)).eval()


def test_released_configuration_has_exact_parameter_count():
    assert demoe.create_model("demoe").num_parameters == 20_150_665


def test_baseline_has_paper_parameter_count():
    assert round(demoe.create_model("nafnet-baseline").num_parameters / 1e6, 2) == 10.08


@pytest.mark.parametrize("preset", ["demoe-tiny", "nafnet-tiny-router", "demoe-small"])
@pytest.mark.parametrize("size", [(37, 53), (1, 1), (16, 16), (5, 64)])
def test_any_input_size_comes_back_same_size(preset, size):
    model = randomize_(demoe.create_model(preset)).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert out.image.shape == x.shape
    assert out.router_probs.shape == (2, 5)
    torch.testing.assert_close(out.router_probs.sum(1), torch.ones(2))


def test_released_model_odd_size():
    model = demoe.create_model("demoe").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 37, 53))
    assert out.image.shape == (1, 3, 37, 53)


def _nafblock_changes(model: DeblurUNet, x: torch.Tensor) -> list[float]:
    """Largest |output - input| of every NAFBlock (experts included) in one forward pass."""
    changes = []

    def record(module, inputs, output):
        changes.append(float((output - inputs[0]).abs().max()))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, NAFBlock)]
    with torch.no_grad():
        model(x, task="auto", top_k=2)
    for handle in handles:
        handle.remove()
    return changes


def test_fresh_nafblocks_are_identity_because_layer_scales_start_at_zero():
    # beta = gamma = 0 at initialisation: each block returns its input exactly (the network as a
    # whole is not the identity: intro, down/up convolutions and ending are random)
    x = torch.rand(1, 3, 16, 16)
    fresh = _nafblock_changes(demoe.create_model("demoe-tiny").eval(), x)
    assert len(fresh) > 10 and max(fresh) == 0.0
    assert min(_nafblock_changes(tiny(), x)) > 1e-3  # the same probe sees trained-like blocks act


def test_top1_equals_manual_one_hot_of_argmax_expert():
    model = tiny()
    x = torch.rand(3, 3, 24, 20)
    with torch.no_grad():
        auto = model(x, task="auto", top_k=1)
        argmax = auto.router_probs.argmax(1)
        manual = model(x, task=torch.nn.functional.one_hot(argmax, 5).float())
    torch.testing.assert_close(auto.image, manual.image)
    for row, expert in zip(auto.experts_used, argmax.tolist()):
        assert row == [TASK_NAMES[expert]]


def test_manual_task_by_name_uses_that_expert_and_still_reports_router_probs():
    model = tiny()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        auto = model(x)
        for index, name in enumerate(TASK_NAMES):
            out = model(x, task=name)
            assert out.experts_used == [[name], [name]]
            torch.testing.assert_close(out.router_probs, auto.router_probs)
            weights = torch.zeros(2, 5)
            weights[:, index] = 1
            torch.testing.assert_close(out.image, model(x, task=weights).image)


def test_unknown_task_name_lists_valid_names():
    model = tiny()
    with pytest.raises(ValueError, match="valid tasks: auto, defocus, global_motion"):
        model(torch.rand(1, 3, 16, 16), task="motion")


def test_weight_tensor_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        tiny()(torch.rand(2, 3, 16, 16), task=torch.ones(1, 5))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_top_k_weights_keep_k_largest_renormalised(k):
    probs = torch.softmax(torch.randn(6, 5), dim=1)
    weights = top_k_weights(probs, k)
    assert ((weights > 0).sum(1) == k).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(6))
    kept = weights > 0
    for row in range(6):
        if k < 5:
            assert probs[row][kept[row]].min() >= probs[row][~kept[row]].max()
    ratio = weights[kept] / probs[kept]
    torch.testing.assert_close(ratio.view(6, k), ratio.view(6, k)[:, :1].expand(6, k))


def test_top5_equals_dense_softmax_mixture():
    model = tiny()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        top5 = model(x, top_k=5)
        dense = model(x, task=top5.router_probs)
    torch.testing.assert_close(top5.image, dense.image, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion", ["sum", "residual", "attention"])
def test_dense_mixture_is_weighted_sum_of_experts(fusion):
    block = randomize_(MoEBlock(8, 5, fusion)).eval()
    x = torch.randn(3, 8, 6, 7)
    weights = torch.softmax(torch.randn(3, 5), dim=1)
    with torch.no_grad():
        mixed = sum(weights[:, i].view(-1, 1, 1, 1) * block.experts[i](x) for i in range(5))
        expected = {"sum": mixed, "residual": x + mixed, "attention": x * mixed}[fusion]
        torch.testing.assert_close(block(x, weights), expected, atol=1e-5, rtol=1e-5)
        # the sparse plan computes the same mixture
        torch.testing.assert_close(block(x, make_plan(weights)), expected, atol=1e-5, rtol=1e-5)


def _count_expert_calls(model):
    calls = []
    for moe_index, moe in enumerate([model.middle_moe, *model.decoder_moes]):
        for expert_index, expert in enumerate(moe.experts):
            expert.register_forward_hook(
                lambda module, inputs, output, e=expert_index, m=moe_index: calls.append((m, e, inputs[0].shape[0]))
            )
    return calls


def test_each_chosen_expert_runs_once_on_its_sub_batch_and_others_never():
    model = tiny()
    calls = _count_expert_calls(model)
    x = torch.rand(4, 3, 16, 16)
    weights = torch.zeros(4, 5)
    weights[0, 1] = weights[1, 1] = weights[2, 4] = 1.0
    weights[3, 4] = 0.25
    weights[3, 0] = 0.75
    with torch.no_grad():
        model(x, task=weights)
    per_block = {}
    for moe_index, expert, batch in calls:
        per_block.setdefault(moe_index, []).append((expert, batch))
    assert len(per_block) == 1 + len(model.decoder_moes)
    for entries in per_block.values():
        assert sorted(entries) == [(0, 1), (1, 2), (4, 2)]


def test_mixed_batch_equals_images_run_one_by_one():
    model = tiny()
    x = torch.rand(5, 3, 20, 24)
    tasks = torch.tensor([0, 3, 3, 4, 1])
    weights = torch.nn.functional.one_hot(tasks, 5).float()
    weights[4] = torch.tensor([0.1, 0.6, 0.0, 0.3, 0.0])
    with torch.no_grad():
        batched = model(x, task=weights).image
        single = torch.cat([model(x[i : i + 1], task=weights[i : i + 1]).image for i in range(5)])
        auto_batched = model(x, top_k=2).image
        auto_single = torch.cat([model(x[i : i + 1], top_k=2).image for i in range(5)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(auto_batched, auto_single, atol=1e-5, rtol=1e-5)


def _grads(model):
    return {name: p.grad for name, p in model.named_parameters()}


def test_dense_training_sends_gradients_to_every_expert_and_the_router():
    model = randomize_(demoe.create_model("demoe-tiny")).train()
    out = model(torch.rand(3, 3, 16, 16))
    out.image.abs().mean().backward()
    for name, grad in _grads(model).items():
        assert grad is not None and grad.abs().sum() > 0, name


def test_forced_routing_trains_only_the_used_experts():
    model = randomize_(demoe.create_model("demoe-tiny")).train()
    out = model(torch.rand(3, 3, 16, 16), task="low_light")
    out.image.abs().mean().backward()
    used = TASK_NAMES.index("low_light")
    for name, grad in _grads(model).items():
        if ".experts." in name:
            expert = int(name.split(".experts.")[1].split(".")[0])
            assert (grad is not None and grad.abs().sum() > 0) == (expert == used), name
        elif name.startswith("router."):
            assert grad is None, name  # the restoration loss does not reach a bypassed router


def test_router_in_eval_mode_accepts_batch_of_one_and_training_mode_explains():
    model = tiny()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16)).router_probs.shape == (1, 5)
    model.train()
    with pytest.raises(ValueError, match="at least 2 images in training mode"):
        model(torch.rand(1, 3, 16, 16))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = tiny(fusion="residual", top_k=2)
    model.save_pretrained(tmp_path / "m")
    loaded = demoe.load_model(tmp_path / "m")
    assert loaded.config == model.config
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).image, model(x).image, rtol=0, atol=0)
        torch.testing.assert_close(loaded(x).router_probs, model(x).router_probs, rtol=0, atol=0)


def test_from_pretrained_reads_back_what_save_pretrained_wrote(tmp_path):
    model = tiny(fusion="residual", top_k=2)
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    loaded = DeblurUNet.from_pretrained(tmp_path / "m", device="cpu")
    assert type(loaded) is DeblurUNet and not loaded.training
    assert loaded.config == model.config
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]
    assert ModelConfig.from_dict(saved) == model.config
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        expected, restored = model(x), loaded(x)
    torch.testing.assert_close(restored.image, expected.image, rtol=0, atol=0)
    torch.testing.assert_close(restored.router_probs, expected.router_probs, rtol=0, atol=0)


def test_baseline_is_called_without_task_and_rejects_manual_tasks():
    model = randomize_(demoe.create_model("nafnet-baseline", width=8)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out.image.shape == (1, 3, 16, 16) and out.router_probs is None
    with pytest.raises(ValueError, match="no experts"):
        model(torch.rand(1, 3, 16, 16), task="defocus")


def test_stage2_initialisation_makes_top1_demoe_equal_the_baseline():
    demoe_config = get_preset("demoe-tiny")
    baseline = randomize_(DeblurUNet(baseline_of(demoe_config))).eval()
    assert experts_config_of(baseline.config).middle_blocks == demoe_config.middle_blocks
    model = DeblurUNet(demoe_config).eval()
    init_experts_from_baseline(model, baseline)
    x = torch.rand(3, 3, 20, 28)
    with torch.no_grad():
        expected = baseline(x)
        for task in ["auto", *TASK_NAMES]:
            out = model(x, task=task)
            torch.testing.assert_close(out.image, expected.image, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.router_probs, expected.router_probs)


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="unknown model config keys: bogus"):
        demoe.create_model("demoe-tiny", bogus=1)
    with pytest.raises(ValueError, match="num_experts"):
        demoe.create_model("demoe-tiny", num_experts=3)
    with pytest.raises(ValueError, match="unknown model preset"):
        demoe.create_model("demoe-huge")
