"""The block a MoE expert is made of (paper Table 7), chosen by `ModelConfig.expert_block`.

| expert_block | block | module |
|---|---|---|
| `nafblock` | NAFNet's NAFBlock (DeMoE) | `demoe.nn.layers.NAFBlock` |
| `darkir` | DarkIR's frequency block | `demoe.nn.darkir.DarkIRBlock` |
| `wavelet` | MLWNet's wavelet block (LWN) | `demoe.nn.wavelet.WaveletBlock` |
| `restormer` | Restormer's transformer block | `demoe.nn.restormer.RestormerBlock` |
| `plk` | PLKSR's partial large-kernel block | `demoe.nn.plk.PLKBlock` |
"""

from __future__ import annotations

from torch import nn

from demoe.config import ModelConfig
from demoe.nn.darkir import DarkIRBlock
from demoe.nn.layers import NAFBlock
from demoe.nn.plk import PLKBlock
from demoe.nn.restormer import RestormerBlock
from demoe.nn.wavelet import WaveletBlock


def expert_block(config: ModelConfig, channels: int, level: int) -> nn.Module:
    """A fresh block of kind `config.expert_block` working on `channels` channels at `level`
    (0 = full resolution, len(config.encoder_blocks) = the bottleneck; it picks the Restormer
    block's `config.attention_heads[level]`). Shape: (B, C, H, W) -> (B, C, H, W)."""
    kind = config.expert_block
    if kind == "nafblock":
        return NAFBlock(channels)
    if kind == "darkir":
        return DarkIRBlock(channels)
    if kind == "wavelet":
        return WaveletBlock(channels)
    if kind == "restormer":
        return RestormerBlock(channels, config.attention_heads[level], config.ffn_expansion)
    if kind == "plk":
        return PLKBlock(channels)
    raise ValueError(f"unknown expert_block {kind!r}")  # ModelConfig validates it: a bug if reached
