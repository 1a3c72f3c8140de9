"""The perf fast paths (channels_last LayerNorm2d, addcmul residuals, static named-task plans)
compute what the original NAFNet formulation computes, to 1e-5."""

import pytest
import torch

from demoe import create_model
from demoe.nn import layers
from demoe.nn.layers import LayerNorm2d, NAFBlock


def reference_layernorm2d(norm: LayerNorm2d, x: torch.Tensor) -> torch.Tensor:
    """The original element-wise LayerNorm2d (NAFNet's LayerNormFunction)."""
    mean = x.mean(1, keepdim=True)
    centered = x - mean
    var = centered.pow(2).mean(1, keepdim=True)
    normed = centered * torch.rsqrt(var + norm.eps)
    return normed * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def reference_nafblock(block: NAFBlock, x: torch.Tensor) -> torch.Tensor:
    """The original NAFBlock forward (separate multiply and add for the layer scales)."""
    mixed = block.conv3(block.sca(block.gate(block.conv2(block.conv1(block.norm1(x))))))
    x = x + mixed * block.beta
    ffn = block.conv5(block.gate(block.conv4(block.norm2(x))))
    return x + ffn * block.gamma


def trained_looking_(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial layer scales and norm weights, so every block changes its input (a fresh
    block is the identity), while the network stays well conditioned."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            elif name.endswith(("norm1.weight", "norm2.weight")):
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            elif name.endswith(("norm1.bias", "norm2.bias")):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 32, 16, 16), (3, 4, 1, 1)])
def test_channels_last_layernorm_equals_reference(shape):
    norm = trained_looking_(LayerNorm2d(shape[1]))
    with torch.no_grad():
        norm.weight.copy_(torch.randn(shape[1]))
    x = torch.randn(*shape) * 3 + 1
    expected = reference_layernorm2d(norm, x)
    fast = norm(channels_last(x))
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)  # NCHW path


def test_channels_last_layernorm_gradients_equal_reference():
    norm = LayerNorm2d(8)
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    reference_layernorm2d(norm, x).square().sum().backward()
    expected = (x.grad.clone(), norm.weight.grad.clone(), norm.bias.grad.clone())
    x.grad = norm.weight.grad = norm.bias.grad = None
    norm(channels_last(x)).square().sum().backward()
    for got, want in zip((x.grad, norm.weight.grad, norm.bias.grad), expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_nafblock_equals_reference_in_both_layouts():
    block = trained_looking_(NAFBlock(16))
    x = torch.randn(2, 16, 12, 9)
    with torch.no_grad():
        expected = reference_nafblock(block, x)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block(channels_last(x)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task", ["auto", "low_light"])
def test_whole_model_channels_last_equals_original_formulation(monkeypatch, task):
    model = trained_looking_(create_model("demoe-tiny")).eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.inference_mode():
        fast_nchw = model(x, task=task)
        fast_cl = model.to(memory_format=torch.channels_last)(x, task=task)
        with monkeypatch.context() as patch:
            patch.setattr(layers.LayerNorm2d, "forward", reference_layernorm2d)
            patch.setattr(layers.NAFBlock, "forward", reference_nafblock)
            expected = model.to(memory_format=torch.contiguous_format)(x, task=task)
    assert expected.image.abs().max() > 0.1  # the check is not vacuous
    for got in (fast_nchw, fast_cl):
        torch.testing.assert_close(got.image, expected.image, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.router_probs, expected.router_probs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.expert_weights, expected.expert_weights)


def test_channels_last_keeps_the_state_dict_layout():
    model = create_model("demoe-tiny")
    before = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    after = {name: tuple(t.shape) for name, t in model.to(memory_format=torch.channels_last).state_dict().items()}
    assert before == after


def test_named_task_uses_a_static_plan_equal_to_one_hot_weights():
    model = trained_looking_(create_model("demoe-tiny")).eval()
    x = torch.rand(3, 3, 32, 32)
    one_hot = torch.zeros(3, 5)
    one_hot[:, 2] = 1.0
    with torch.inference_mode():
        by_name = model(x, task="local_motion")
        by_weights = model(x, task=one_hot)
    torch.testing.assert_close(by_name.image, by_weights.image, atol=0, rtol=0)
    torch.testing.assert_close(by_name.expert_weights, one_hot)


def test_mixed_batch_in_channels_last_equals_nchw_and_experts_see_channels_last():
    model = trained_looking_(create_model("demoe-tiny")).eval()
    weights = torch.eye(5)[[0, 3, 3, 1]]  # a batch spread over three experts
    x = torch.rand(4, 3, 32, 40)
    with torch.inference_mode():
        expected = model(x, task=weights).image
        model.to(memory_format=torch.channels_last)
        layouts = []
        hooks = [
            expert.register_forward_pre_hook(
                lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
            )
            for block in [model.middle_moe, *model.decoder_moes]
            for expert in block.experts
        ]
        got = model(x, task=weights).image
        for hook in hooks:
            hook.remove()
    assert layouts and all(layouts)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sparse_mixing_in_place_keeps_gradients_equal_to_dense():
    from demoe.nn.moe import MoEBlock, make_plan

    block = trained_looking_(MoEBlock(8, num_experts=5))
    weights = torch.tensor([[0.0, 0.7, 0.0, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    x = torch.randn(3, 8, 6, 7, requires_grad=True)
    block(x, weights).square().sum().backward()
    dense_grad = x.grad.clone()
    dense_param_grads = [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad()
    block(x, make_plan(weights)).square().sum().backward()
    torch.testing.assert_close(x.grad, dense_grad, atol=1e-5, rtol=1e-5)
    for parameter, expected in zip(block.parameters(), dense_param_grads):
        got = parameter.grad if parameter.grad is not None else torch.zeros_like(expected)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
