"""Restormer (Zamir et al., CVPR 2022), the paper's Table 1 rival and Table 7 expert block.

Written from the paper and the layer sizes of the authors' release (swz30/Restormer,
`restormer_arch.py`): a 4-level U-Net of transformer blocks, each block a multi-Dconv-head
transposed attention (MDTA: attention across channels, so its cost is linear in the pixels)
and a gated-Dconv feed-forward network (GDFN); no biases in convolutions; layer norm with bias
over the channels (NAFNet's LayerNorm2d with Restormer's eps 1e-5). Pixel-unshuffle down- and
pixel-shuffle up-sampling; skips are concatenated (then reduced by a 1x1 conv, except at full
resolution, where the decoder and the refinement blocks work on 2C channels).

Shape legend: B batch, C channels, N heads, H/W height/width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from demoe.config import ModelConfig
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.layers import LayerNorm2d
from demoe.nn.unet import encode_levels

LAYER_NORM_EPS = 1e-5  # Restormer's WithBias_LayerNorm


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: 1x1 + depthwise 3x3 convs make q, k, v; each head
    attends over its C/N channels (L2-normalised along the pixels, a learned temperature).

    Shape: (B, C, H, W) -> (B, C, H, W); C must be a multiple of `heads`.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"MDTA: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=False)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        shape = (batch, self.heads, channels // self.heads, height * width)
        q = F.normalize(q.reshape(shape), dim=-1)  # (B, N, C/N, HW)
        k = F.normalize(k.reshape(shape), dim=-1)
        attention = (q @ k.transpose(-2, -1)) * self.temperature  # (B, N, C/N, C/N)
        out = attention.softmax(dim=-1) @ v.reshape(shape)  # (B, N, C/N, HW)
        return self.project_out(out.reshape(batch, channels, height, width))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: 1x1 to 2 x hidden, depthwise 3x3, GELU(a) * b, 1x1
    back; hidden = int(C * expansion). Shape: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, expansion: float) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class RestormerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x)). Shape: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, heads: int, ffn_expansion: float = 2.66) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels, eps=LAYER_NORM_EPS)
        self.attn = MDTA(channels, heads)
        self.norm2 = LayerNorm2d(channels, eps=LAYER_NORM_EPS)
        self.ffn = GDFN(channels, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def restormer_blocks(channels: int, heads: int, count: int, ffn_expansion: float) -> nn.Sequential:
    return nn.Sequential(*(RestormerBlock(channels, heads, ffn_expansion) for _ in range(count)))


class Downsample(nn.Sequential):
    """3x3 conv to C/2 then pixel-unshuffle: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Upsample(nn.Sequential):
    """3x3 conv to 2C then pixel-shuffle: (B, C, H, W) -> (B, C/2, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


def restormer_encoder(config: ModelConfig) -> tuple[nn.Conv2d, nn.ModuleList, nn.ModuleList, nn.Sequential]:
    """Restormer's input embedding (3x3 conv to `width`), its encoder levels with their
    down-samplings, and its bottleneck (the release's `latent`, width * 2**L channels), built
    from `config` for Restormer and for PromptIR, which shares them."""
    width, heads, expansion = config.width, config.attention_heads, config.ffn_expansion
    levels = len(config.encoder_blocks)
    patch_embed = nn.Conv2d(config.image_channels, width, 3, padding=1, bias=False)
    encoders = nn.ModuleList()
    downs = nn.ModuleList()
    for level, count in enumerate(config.encoder_blocks):
        encoders.append(restormer_blocks(width * 2**level, heads[level], count, expansion))
        downs.append(Downsample(width * 2**level))
    latent = restormer_blocks(width * 2**levels, heads[levels], config.middle_blocks, expansion)
    return patch_embed, encoders, downs, latent


class Restormer(DenseDeblurNet):
    """Restormer from a ModelConfig (`architecture="restormer"`): level l has width * 2**l
    channels and `attention_heads[l]` heads; `encoder_blocks[l]` blocks down, `middle_blocks`
    at the bottleneck (the release's `latent`), `decoder_blocks` (deepest first) up, then
    `refinement_blocks` at full resolution. The release's standard configuration is the
    `restormer` preset (width 48, 4-6-6-8 blocks, 4 refinement blocks, heads 1-2-4-8,
    FFN expansion 2.66): 26.1 M parameters.
    """

    architecture = "restormer"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        width, heads, expansion = config.width, config.attention_heads, config.ffn_expansion
        levels = len(config.encoder_blocks)
        self.patch_embed, self.encoders, self.downs, self.latent = restormer_encoder(config)
        channels = width * 2**levels
        self.ups = nn.ModuleList()
        self.reduce = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for index, count in enumerate(config.decoder_blocks):
            level = levels - 1 - index
            self.ups.append(Upsample(channels))  # -> channels / 2, concatenated with the skip
            skip = width * 2**level
            if level > 0:
                self.reduce.append(nn.Conv2d(2 * skip, skip, 1, bias=False))
                channels = skip
            else:  # full resolution: no reduction, the decoder works on 2 * width channels
                self.reduce.append(nn.Identity())
                channels = 2 * skip
            self.decoders.append(restormer_blocks(channels, heads[level], count, expansion))
        self.refinement = restormer_blocks(channels, heads[0], config.refinement_blocks, expansion)
        self.output = nn.Conv2d(channels, config.image_channels, 3, padding=1, bias=False)

    def restore(self, padded: torch.Tensor) -> torch.Tensor:
        features, skips = encode_levels(self.patch_embed(padded), self.encoders, self.downs)
        features = self.latent(features)
        for up, reduce, decoder, skip in zip(self.ups, self.reduce, self.decoders, reversed(skips)):
            features = decoder(reduce(torch.cat([up(features), skip], dim=1)))
        return self.output(self.refinement(features)) + padded
