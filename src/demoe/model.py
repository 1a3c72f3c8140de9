"""DeMoE and its NAFNet baseline, assembled from `demoe.nn` and built from a `ModelConfig`.

One class serves both: with `num_experts == 0` it is the dense NAFNet U-Net (optionally with
the router head, as in stage 1 of the recipe); with `num_experts > 0` the middle stage and every
decoder level end in a MoE block.

Legend: B batch, E experts (= blur classes), C channels, H/W image height/width.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from demoe.checkpoints import PretrainedNetwork, load_official_checkpoint, load_pretrained, map_official_state_dict
from demoe.config import ModelConfig, get_preset
from demoe.nn.blocks import expert_block
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.fftformer import FFTformer
from demoe.nn.layers import LocalStatistics, NAFBlock, StatisticsSource, channel_statistics
from demoe.nn.moe import ExpertGroup, MoEBlock, RoutingPlan, make_plan, top_k_weights
from demoe.nn.output import DeblurOutput  # re-exported: demoe.model.DeblurOutput
from demoe.nn.promptir import PromptIR
from demoe.nn.restormer import Restormer
from demoe.nn.router import BlurRouter
from demoe.nn.sfhformer import SFHformer
from demoe.nn.unet import PADDINGS, Padding  # re-exported: demoe.model.PADDINGS, demoe.model.Padding
from demoe.nn.unet import check_padding, encode_levels, pad_to_multiple

Task = str | torch.Tensor
# TLC's window as a multiple of the training crop side (NAFNet's NAFNetLocal: base_size =
# 1.5 x train_size).
TLC_WINDOW_FACTOR = 1.5


@dataclass
class EncoderOutput:
    """The encoder's result for x (B, 3, H, W).

    padded: (B, 3, H', W') x padded right/bottom to multiples of the size multiple.
    skips: per level, shallowest first, (B, C * 2**l, H' / 2**l, W' / 2**l) skip features.
    bottleneck: (B, C * 2**L, H' / 2**L, W' / 2**L), the router's and the middle stage's input.
    """

    padded: torch.Tensor
    skips: list[torch.Tensor]
    bottleneck: torch.Tensor


@dataclass
class RouterOutput:
    """logits: (B, E) the router's logits; probs: (B, E) their softmax (in training mode with
    Gaussian noise of std `router_noise_std` added to the logits first)."""

    logits: torch.Tensor
    probs: torch.Tensor


class DeblurUNet(PretrainedNetwork):
    """NAFNet U-Net with optional blur router and MoE decoder (the DeMoE architecture).

    Call: `model(x, task="auto", top_k=None, padding="zeros", tlc=False)` with x (B, 3, H, W),
    float in [0, 1], any H, W (padded right/bottom to a multiple of 2**levels, cropped back).
    Output image = network(x) + x. `task` is "auto" (router decides), a task name (that expert
    for every image), or a (B, E) weight tensor. `top_k` (1..E) applies to "auto" and weight
    tensors; None = the config's top_k for "auto" at inference, the given weights as they are for
    tensors. In training mode "auto" mixes all experts densely with the softmax weights (paper
    Eq. 2). `tlc=True` gives every NAFBlock's channel attention local statistics over a window of
    1.5 x `config.train_crop` pixels (TLC, see `demoe.nn.layers`) instead of global ones;
    `statistics` gives it other means (recorded ones, e.g. of the whole image for one of its
    tiles; see `demoe.nn.layers`).

    One encoder and router path serves every caller: `route(encode(x).bottleneck)` computes what
    the forward pass computes before its decoder (the same router probabilities).

    Example:
        >>> from demoe import create_model
        >>> model = create_model("demoe-tiny").eval()
        >>> out = model(torch.rand(2, 3, 37, 53))
        >>> out.image.shape, out.router_probs.shape
        (torch.Size([2, 3, 37, 53]), torch.Size([2, 5]))

    `save_pretrained(directory)` writes a model directory, `DeblurUNet.from_pretrained(path)`
    reads one back (`demoe.checkpoints.PretrainedNetwork`).
    """

    architecture = "demoe"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture != self.architecture:
            raise ValueError(
                f"DeblurUNet builds architecture 'demoe', not {config.architecture!r}: "
                "build any config with demoe.model.build_model"
            )
        self.config = config
        width = config.width
        self.intro = nn.Conv2d(config.image_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = width
        for num_blocks in config.encoder_blocks:
            self.encoders.append(nn.Sequential(*(NAFBlock(channels) for _ in range(num_blocks))))
            self.downs.append(nn.Conv2d(channels, channels * 2, 2, stride=2))
            channels *= 2
        bottleneck_channels = channels
        self.router = (
            BlurRouter(
                bottleneck_channels,
                config.num_classes,
                channels=config.router_channels,
                hidden=config.router_hidden,
                spatial_dropout=config.router_spatial_dropout,
                dropout=config.router_dropout,
            )
            if config.router
            else None
        )
        levels = len(config.encoder_blocks)
        self.middle = _level_blocks(config, channels, config.middle_blocks, levels)
        self.middle_moe = _moe_block(config, channels, levels) if config.is_moe else None
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.decoder_moes = nn.ModuleList()
        for index, num_blocks in enumerate(config.decoder_blocks):
            level = levels - 1 - index
            # 1x1 conv to 2C then PixelShuffle(2): half the channels, twice the resolution.
            self.ups.append(
                nn.Sequential(nn.Conv2d(channels, channels * 2, 1, bias=False), nn.PixelShuffle(2))
            )
            channels //= 2
            self.decoders.append(_level_blocks(config, channels, num_blocks, level))
            if config.is_moe:
                self.decoder_moes.append(_moe_block(config, channels, level))
        self.ending = nn.Conv2d(width, config.image_channels, 3, padding=1)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.config.task_names

    @property
    def tlc_window(self) -> int:
        """TLC's window side in input pixels: 1.5 x the training crop (`config.train_crop`)."""
        if not self.config.train_crop:
            raise ValueError(
                "TLC needs the side of the training crops to size its window, and this model's "
                "config does not record it: add train_crop to the model's config.json (e.g. "
                '"train_crop": 384 for training crops of 384 x 384 pixels)'
            )
        return round(TLC_WINDOW_FACTOR * self.config.train_crop)

    def encode(self, x: torch.Tensor, padding: Padding = "zeros", tlc: bool = False) -> EncoderOutput:
        """Pad, intro conv, encoder levels and downsamplings: (B, 3, H, W) in [0, 1] -> `EncoderOutput`."""
        self._check_input(x, padding)
        with self._statistics(x, tlc):
            return self._encode(x, padding)

    def route(self, bottleneck: torch.Tensor) -> RouterOutput:
        """The router head on bottleneck features (B, C_b, h, w) -> `RouterOutput`, (B, E) each."""
        if self.router is None:
            raise ValueError("this model has no router (config.router is False)")
        logits = self.router(bottleneck)  # (B, E)
        noisy = logits
        if self.training and self.config.router_noise_std > 0:
            noisy = logits + torch.randn_like(logits) * self.config.router_noise_std
        return RouterOutput(logits=logits, probs=torch.softmax(noisy, dim=1))

    def forward(
        self,
        x: torch.Tensor,
        task: Task = "auto",
        top_k: int | None = None,
        padding: Padding = "zeros",
        tlc: bool = False,
        statistics: StatisticsSource | None = None,
    ) -> DeblurOutput:
        self._check_input(x, padding)
        if tlc and statistics is not None:
            raise ValueError("give tlc=True or statistics, not both: TLC is a source of statistics")
        with self._statistics(x, tlc) if statistics is None else channel_statistics(statistics):
            return self._forward(x, task, top_k, padding)

    def _check_input(self, x: torch.Tensor, padding: str) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.image_channels:
            raise ValueError(
                f"expected x of shape (B, {self.config.image_channels}, H, W), got {tuple(x.shape)}"
            )
        check_padding(padding)

    def _statistics(self, x: torch.Tensor, tlc: bool):
        """The channel statistics of one call: TLC's local windows, or the global means."""
        if not tlc:
            return contextlib.nullcontext()
        multiple = self.config.size_multiple
        height, width = x.shape[-2:]
        return channel_statistics(
            LocalStatistics(self.tlc_window, height + -height % multiple, width + -width % multiple)
        )

    def _encode(self, x: torch.Tensor, padding: Padding) -> EncoderOutput:
        padded = pad_to_multiple(x, self.config.size_multiple, padding)
        features, skips = encode_levels(self.intro(padded), self.encoders, self.downs)
        return EncoderOutput(padded=padded, skips=skips, bottleneck=features)

    def _forward(self, x: torch.Tensor, task: Task, top_k: int | None, padding: Padding) -> DeblurOutput:
        height, width = x.shape[-2:]
        encoded = self._encode(x, padding)
        features, skips, padded = encoded.bottleneck, encoded.skips, encoded.padded

        router_logits = router_probs = None
        if self.router is not None:
            routed = self.route(features)
            router_logits, router_probs = routed.logits, routed.probs  # (B, E)

        expert_weights = routing = None
        if self.config.is_moe:
            expert_weights, routing = self._route(router_probs, task, top_k, x.shape[0])
        elif not (isinstance(task, str) and task == "auto"):
            raise ValueError("this model has no experts: call it with task='auto'")

        features = self.middle(features)
        if self.middle_moe is not None:
            features = self.middle_moe(features, routing)
        for index, (up, decoder, skip) in enumerate(zip(self.ups, self.decoders, reversed(skips))):
            features = decoder(up(features) + skip)
            if self.config.is_moe:
                features = self.decoder_moes[index](features, routing)

        restored = self.ending(features) + padded
        return DeblurOutput(
            image=restored[..., :height, :width],
            router_probs=router_probs,
            router_logits=router_logits,
            expert_weights=expert_weights,
            task_names=self.task_names,
        )

    def _route(
        self, router_probs: torch.Tensor, task: Task, top_k: int | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | RoutingPlan]:
        """Mixing weights (B, E) and how the MoE blocks apply them (dense or a plan)."""
        if isinstance(task, torch.Tensor):
            weights = self._check_weights(task, batch_size).to(router_probs)
            if top_k is not None:
                weights = top_k_weights(weights, top_k)
            return weights, self._dense_or_plan(weights)
        if task == "auto":
            if self.training and top_k is None:
                return router_probs, router_probs  # dense softmax mixture, Eq. 2
            weights = top_k_weights(router_probs, top_k or self.config.top_k)
            return weights, self._dense_or_plan(weights)
        expert = self.task_index(task)
        weights = torch.zeros_like(router_probs)
        weights[:, expert] = 1.0
        # A named task needs no look at the weights: the plan is known on the host, so there is
        # no device-to-host sync, and traced graphs (ONNX, torch.compile) hold only this expert.
        return weights, RoutingPlan((ExpertGroup(expert, None, None),), batch_size)

    def _dense_or_plan(self, weights: torch.Tensor) -> torch.Tensor | RoutingPlan:
        # Tracing (ONNX export, torch.compile graphs) cannot follow data-dependent sub-batches:
        # there every expert runs and zero weights switch it off arithmetically.
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return weights
        return make_plan(weights)

    def _check_weights(self, weights: torch.Tensor, batch_size: int) -> torch.Tensor:
        expected = (batch_size, self.config.num_experts)
        if tuple(weights.shape) != expected:
            raise ValueError(f"expert weights must have shape {expected}, got {tuple(weights.shape)}")
        if not torch.jit.is_tracing() and bool((weights < 0).any()):
            raise ValueError("expert weights must be non-negative")
        return weights

    def task_index(self, task: str) -> int:
        """Expert index of a task name; ValueError listing the valid names otherwise."""
        try:
            return self.task_names.index(task)
        except ValueError:
            raise ValueError(
                f"unknown task {task!r}; valid tasks: auto, {', '.join(self.task_names)}"
            ) from None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# Any network `build_model` returns; all are called alike and return a DeblurOutput.
DeblurNetwork = DeblurUNet | DenseDeblurNet


def _level_blocks(config: ModelConfig, channels: int, count: int, level: int) -> nn.Sequential:
    """The NAFBlocks of the middle stage or a decoder level. In a dense model whose experts are
    another block (`expert_block`, e.g. the stage-1 baseline of demoe-restormer) the last one
    is that block: the block stage 2 copies into the experts."""
    blocks = [NAFBlock(channels) for _ in range(count)]
    if blocks and not config.is_moe and config.expert_block != "nafblock":
        blocks[-1] = expert_block(config, channels, level)
    return nn.Sequential(*blocks)


def _moe_block(config: ModelConfig, channels: int, level: int) -> MoEBlock:
    return MoEBlock(channels, config.num_experts, config.fusion, lambda: expert_block(config, channels, level))


def build_model(config: ModelConfig) -> DeblurNetwork:
    """The network of any config: DeblurUNet for the DeMoE family (DeMoE, its NAFNet baselines,
    the Table 7 expert variants), the comparison network of `config.architecture` otherwise."""
    if config.architecture == "demoe":
        return DeblurUNet(config)
    if config.architecture == "restormer":
        return Restormer(config)
    if config.architecture == "promptir":
        return PromptIR(config)
    if config.architecture == "fftformer":
        return FFTformer(config)
    if config.architecture == "sfhformer":
        return SFHformer(config)
    raise ValueError(f"unknown architecture {config.architecture!r}")  # ModelConfig validates it


def init_experts_from_baseline(demoe: DeblurUNet, baseline: DeblurUNet) -> None:
    """Stage-2 initialisation: copy a stage-1 baseline (with router) into a DeMoE model.

    Shared parts (intro, encoder, router, ups, leading blocks, ending) are copied as they are;
    each MoE block's experts all start as copies of the baseline's last block at that level, so
    that DeMoE with top-1 routing computes exactly what the baseline computes.
    """
    if baseline.config.is_moe or not demoe.config.is_moe:
        raise ValueError("init_experts_from_baseline expects (DeMoE model, baseline model)")
    baseline_state = baseline.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    last_middle = baseline.config.middle_blocks - 1
    last_decoder = [n - 1 for n in baseline.config.decoder_blocks]
    expected_middle = demoe.config.middle_blocks
    if last_middle != expected_middle or last_decoder != list(demoe.config.decoder_blocks):
        raise ValueError(
            "baseline and DeMoE configs do not line up: the baseline needs one more block per "
            f"level (baseline middle {baseline.config.middle_blocks}, decoder "
            f"{baseline.config.decoder_blocks}; DeMoE middle {demoe.config.middle_blocks}, "
            f"decoder {demoe.config.decoder_blocks})"
        )
    for key, value in baseline_state.items():
        parts = key.split(".")
        if parts[0] == "middle" and int(parts[1]) == last_middle:
            rest = ".".join(parts[2:])
            for expert in range(demoe.config.num_experts):
                mapped[f"middle_moe.experts.{expert}.{rest}"] = value
        elif parts[0] == "decoders" and int(parts[2]) == last_decoder[int(parts[1])]:
            rest = ".".join(parts[3:])
            for expert in range(demoe.config.num_experts):
                mapped[f"decoder_moes.{parts[1]}.experts.{expert}.{rest}"] = value
        else:
            mapped[key] = value
    demoe.load_state_dict(mapped, strict=True)


# ---------------------------------------------------------------------------------------------
# Networks from presets, model directories and the authors' checkpoint. The file format is
# demoe.checkpoints'; these build the network a config names.


def load_model(path_or_name: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> DeblurNetwork:
    """Load a model directory or bundled weights by name (None = the default weights).

    The network of its config (any architecture, `build_model`) is rebuilt, its weights are
    loaded strictly, and it is returned on `device` in eval mode.
    """
    return load_pretrained(path_or_name, build_model, device)


def create_model(name: str, **overrides) -> DeblurNetwork:
    """A freshly initialised model of a preset, with config fields overridden by keyword."""
    config = get_preset(name)
    if overrides:
        config = config.replace(**overrides)
    return build_model(config)


OFFICIAL_TRAIN_CROP = 384  # "We randomly cropped 384x384 patches" (the paper, Sec. 4 / App. C)


def convert_official_state_dict(official: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Map an official DeMoE state dict onto the DeblurUNet of `config`, checking every key and
    shape (`demoe.checkpoints.map_official_state_dict`)."""
    return map_official_state_dict(official, DeblurUNet(config).state_dict(), config.name)


def convert_official(
    checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "demoe", trust: bool = False
) -> DeblurUNet:
    """Convert `DeMoE.pt` into a demoe model directory and return the loaded model.
    trust: also load Python objects other than weights from the file (trusted files only).
    The directory's config records the paper's 384 x 384 training crops (`train_crop`, which
    `--tlc` needs) unless the preset names another."""
    config = get_preset(preset)
    if not config.train_crop:
        config = config.replace(train_crop=OFFICIAL_TRAIN_CROP)
    state = convert_official_state_dict(load_official_checkpoint(checkpoint_path, trust=trust), config)
    model = DeblurUNet(config)
    model.load_state_dict(state, strict=True)
    model.eval().save_pretrained(out_dir, extra={"converted_from": str(Path(checkpoint_path).name)})
    return model
