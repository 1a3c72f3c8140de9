import torch

from demoe.nn.layers import LayerNorm2d, NAFBlock, SimpleGate


def test_layernorm2d_normalises_over_channels():
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(6.0))
        norm.bias.copy_(torch.ones(6))
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, eps=1e-6)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)


def test_simple_gate_multiplies_halves():
    x = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(SimpleGate()(x), x[:, :2] * x[:, 2:])


def test_fresh_nafblock_is_identity_and_scales_start_at_zero():
    block = NAFBlock(8)
    assert torch.count_nonzero(block.beta) == 0 and torch.count_nonzero(block.gamma) == 0
    x = torch.randn(2, 8, 9, 11)
    torch.testing.assert_close(block(x), x)


def test_nafblock_parameter_count_matches_nafnet():
    # conv1 c->2c, dw 3x3 on 2c, sca c->c, conv3 c->c, conv4 c->2c, conv5 c->c, 2 norms, 2 scales
    c = 32
    expected = (c * 2 * c + 2 * c) + (2 * c * 9 + 2 * c) + (c * c + c) + (c * c + c)
    expected += (c * 2 * c + 2 * c) + (c * c + c) + 4 * c + 2 * c
    assert sum(p.numel() for p in NAFBlock(c).parameters()) == expected
