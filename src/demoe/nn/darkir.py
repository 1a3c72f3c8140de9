"""DarkIR's block (Feijoo et al., CVPR 2025, "DarkIR: robust low-light image restoration"), one
of the expert blocks of the paper's Table 7.

Written from the paper and the authors' release (cidautai/DarkIR, `archs/arch_model.py`,
`EBlock` with `extra_depth_wise=True`). DarkIR's encoder block, the one that handles the
illumination, is a NAFBlock with an extra depthwise 3x3 conv in front of its 1x1 expansion and,
instead of the gated FFN, a frequency MLP: the amplitude of rfft2(x) goes through 1x1 conv ->
LeakyReLU(0.1) -> 1x1 conv while the phase is kept, irfft2 gives a map that multiplies the
features. Why this block and not DarkIR's decoder block (dilated depthwise branches): Table 7's
21.9 M parameters for DeMoE with DarkIR experts is what this block gives (21.95 M), while the
decoder block, a NAFBlock with dilated branches, would give 20.54 M (DeMoE: 20.15 M); see
docs/model.md. The release's `adapter` (an optional fine-tuning branch its forward pass only
runs on request) is left out.

Shape legend: B batch, C channels, H/W height/width, W' = W // 2 + 1.
"""

from __future__ import annotations

import torch
from torch import nn

from demoe.nn.layers import LayerNorm2d, SimpleGate, SimplifiedChannelAttention


class FrequencyMLP(nn.Module):
    """The amplitude spectrum through a 1x1-conv MLP, the phase kept: (B, C, H, W) -> same."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        self.process = nn.Sequential(
            nn.Conv2d(channels, channels * expansion, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels * expansion, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfft2(x.float())  # (B, C, H, W') complex
        amplitude = self.process(spectrum.abs().to(x.dtype)).float()
        phase = spectrum.angle()
        # amplitude * e^(i phase), written out: the processed amplitude may be negative
        filtered = torch.complex(amplitude * torch.cos(phase), amplitude * torch.sin(phase))
        return torch.fft.irfft2(filtered, s=(height, width)).to(x.dtype)


class DarkIRBlock(nn.Module):
    """x + beta * [1x1 (SCA(gate(dw3x3(1x1(dw3x3(LN(x)))))))], then
    y + gamma * y * FrequencyMLP(LN(y)). Layer scales start at zero: a fresh block is the identity.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels * 2
        self.norm1 = LayerNorm2d(channels)
        self.extra_conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.gate = SimpleGate()
        self.sca = SimplifiedChannelAttention(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.freq = FrequencyMLP(channels)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.conv3(self.sca(self.gate(self.conv2(self.conv1(self.extra_conv(self.norm1(x)))))))
        y = x + mixed * self.beta
        return y + y * self.freq(self.norm2(y)) * self.gamma

