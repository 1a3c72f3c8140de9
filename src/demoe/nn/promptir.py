"""PromptIR (Potlapalli et al., NeurIPS 2023), the paper's canonical all-in-one rival (Table 1).

Written from the paper and the layer sizes of the authors' release (va1shn9v/PromptIR,
`net/model.py`, with `decoder=True`, its all-in-one setting): Restormer's U-Net
(`demoe.nn.restormer`) whose decoder, at each level below full resolution, asks a prompt block
for a degradation-aware prompt. A prompt block holds `prompt_length` learned prompts of
(P, S, S); a linear layer on the globally pooled features gives softmax weights, the weighted
sum of the prompts is resized to the features' size (bilinear) and passed through a 3x3 conv.
The prompt is concatenated to the features, mixed by one transformer block (the release gives
all three of them the heads of level L-1) and reduced by a 1x1 conv.

The release reduces the bottleneck to half its channels before up-sampling (its `up4_3`
up-samples 4C, not 8C, channels), which this keeps. It also builds six 1x1 convs its forward
pass never calls (`chnl_reduce1..3`, `reduce_noise_channel_1..3`, 0.22 M parameters); they
are left out here: 35,376,967 parameters here, 35,592,263 (35.59 M) in the release.

Shape legend: B batch, C channels, K prompts, P prompt channels, S prompt side, H/W height/width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from demoe.config import ModelConfig
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.restormer import RestormerBlock, Upsample, restormer_blocks, restormer_encoder
from demoe.nn.unet import encode_levels


class PromptBlock(nn.Module):
    """A prompt for features x: (B, C, H, W) -> (B, P, H, W).

    weights = softmax(Linear(mean_HW(x))) (B, K); prompt = sum_k weights_k prompts_k, bilinearly
    resized to (H, W), then a 3x3 conv. The prompts start uniform in [0, 1) as in the release.
    """

    def __init__(self, in_channels: int, prompt_channels: int, prompt_size: int, prompt_length: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.rand(prompt_length, prompt_channels, prompt_size, prompt_size))
        self.linear = nn.Linear(in_channels, prompt_length)
        self.conv = nn.Conv2d(prompt_channels, prompt_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.linear(x.mean(dim=(-2, -1))), dim=1)  # (B, K)
        prompt = torch.einsum("bk,kpij->bpij", weights, self.prompts.to(weights.dtype))  # (B, P, S, S)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)


class PromptStage(nn.Module):
    """Features + prompt -> transformer block -> 1x1 conv: (B, C, H, W) -> (B, C_out, H, W)."""

    def __init__(
        self, channels: int, out_channels: int, prompt_channels: int, prompt_size: int, prompt_length: int,
        heads: int, ffn_expansion: float,
    ) -> None:
        super().__init__()
        self.prompt = PromptBlock(channels, prompt_channels, prompt_size, prompt_length)
        self.block = RestormerBlock(channels + prompt_channels, heads, ffn_expansion)
        self.reduce = nn.Conv2d(channels + prompt_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.block(torch.cat([x, self.prompt(x)], dim=1)))


class PromptIR(DenseDeblurNet):
    """PromptIR from a ModelConfig (`architecture="promptir"`): Restormer's fields plus
    `prompt_channels` / `prompt_sizes` (levels 1..L, the bottleneck last) and `prompt_length`.
    The standard configuration is the `promptir` preset (Restormer's, prompts of 64/128/320
    channels and 64/32/16 pixels, 5 per level).
    """

    architecture = "promptir"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        width, heads, expansion = config.width, config.attention_heads, config.ffn_expansion
        levels = len(config.encoder_blocks)
        self.patch_embed, self.encoders, self.downs, self.latent = restormer_encoder(config)
        channels = width * 2**levels
        prompt_heads = heads[levels - 1]
        self.prompt_stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.reduce = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for index, count in enumerate(config.decoder_blocks):
            level = levels - index  # the level the prompt stage works at: the bottleneck first
            # The bottleneck's prompt stage halves its channels (the release's reduce_noise_level3).
            stage_out = channels // 2 if index == 0 else channels
            self.prompt_stages.append(
                PromptStage(
                    channels, stage_out, config.prompt_channels[level - 1], config.prompt_sizes[level - 1],
                    config.prompt_length, prompt_heads, expansion,
                )
            )
            self.ups.append(Upsample(stage_out))  # -> stage_out / 2, concatenated with the skip
            skip = width * 2 ** (level - 1)
            if level - 1 > 0:
                self.reduce.append(nn.Conv2d(stage_out // 2 + skip, skip, 1, bias=False))
                channels = skip
            else:
                self.reduce.append(nn.Identity())
                channels = stage_out // 2 + skip
            self.decoders.append(restormer_blocks(channels, heads[level - 1], count, expansion))
        self.refinement = restormer_blocks(channels, heads[0], config.refinement_blocks, expansion)
        self.output = nn.Conv2d(channels, config.image_channels, 3, padding=1, bias=False)

    def restore(self, padded: torch.Tensor) -> torch.Tensor:
        features, skips = encode_levels(self.patch_embed(padded), self.encoders, self.downs)
        features = self.latent(features)
        stages = zip(self.prompt_stages, self.ups, self.reduce, self.decoders, reversed(skips))
        for prompt_stage, up, reduce, decoder, skip in stages:
            features = decoder(reduce(torch.cat([up(prompt_stage(features)), skip], dim=1)))
        return self.output(self.refinement(features)) + padded
