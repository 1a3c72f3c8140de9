"""MUSIQ: Multi-scale Image Quality Transformer (Ke et al., ICCV 2021), from a weights file.

The Real-LOLBlur column of the paper reports MUSIQ as computed by pyiqa (`pyiqa.create_metric
("musiq")`, the KonIQ-10k model). demoe implements the network and its multi-scale input so that
the weight files people already have score images the same way, without pyiqa (which needs
torchvision) and without downloading anything:

- pyiqa's converted checkpoints (`musiq_koniq_ckpt-*.pth`, `musiq_spaq_ckpt-*.pth`,
  `musiq_paq2piq_ckpt-*.pth`, `musiq_ava_ckpt-*.pth`), or the same state dict as
  `.safetensors`. The architecture is read from the tensor shapes; `load_musiq` names any key
  that does not fit.
- The input pipeline follows pyiqa's evaluation: RGB in [0, 1] mapped to [-1, 1]; the image at
  its own resolution plus aspect-preserving bicubic resizes to longer sides 224 and 384; 32x32
  patches with TF "SAME" zero padding; a hash-based spatial position (a 10x10 grid stretched
  over each scale's patch grid) and a scale index per patch. (The original TensorFlow code
  resizes with a Gaussian kernel; pyiqa, whose numbers the literature reports, uses bicubic.)
- The patch encoder is a ResNet stem with weight-standardised convolutions and GroupNorm, one
  bottleneck block, then a linear embedding of each patch's 8x8x256 features in (h, w, c) order
  (the TensorFlow layout the weights were trained with); a pre-norm transformer encoder (14
  layers, 384 wide, 6 heads) reads a class token, whose head gives the score: the MOS directly
  for one-output models, the expected rating sum_i i * softmax_i for distribution models (AVA,
  10 bins).

pyiqa pads every scale to a fixed sequence length and masks the padding out of the attention;
demoe scores one image at a time and leaves the padding out, which gives the same class token
(masked keys get zero weight either way) with less work.

Scores: KonIQ/SPAQ/PaQ-2-PiQ models about 0-100, AVA 1-10; higher is better.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from demoe.checkpoints import load_torch_file, strip_wrapper_prefixes
from demoe.imageio import as_rgb, to_float

# Letters in shape comments: N tokens, D hidden size, P patch size, G hash grid size.


@dataclass(frozen=True)
class MUSIQConfig:
    patch_size: int = 32  # P: side of the square patches the image is cut into
    hidden_size: int = 384  # D: transformer width
    mlp_dim: int = 1152  # transformer feed-forward width
    num_heads: int = 6  # attention heads (not visible in the weights; 6 in every released model)
    num_layers: int = 14  # transformer blocks
    grid_size: int = 10  # G: hash-based spatial embedding grid (G x G learnt positions)
    num_classes: int = 1  # 1: MOS regression; > 1: score distribution over 1..num_classes
    longer_sides: tuple[int, ...] = (224, 384)  # resized scales, before the native resolution
    stem_width: int = 64  # ResNet stem channels (the bottleneck outputs 4x this)

    @property
    def num_scales(self) -> int:
        """Resized scales plus the image at its own resolution."""
        return len(self.longer_sides) + 1


class MUSIQWeightsError(ValueError):
    """A MUSIQ weights file that cannot be used (unreadable, or not a MUSIQ state dict)."""


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    top, bottom = _same_padding(x.shape[-2], kernel, stride)
    left, right = _same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom))


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation (each filter to zero mean, unit std), TF padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        weight = weight / (weight.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        x = _pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, weight, self.bias, self.stride)


class Bottleneck(nn.Module):
    """ResNet-v1 bottleneck (1x1, 3x3, 1x1) with GroupNorm and a projected shortcut."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = StdConv2d(channels, channels, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, channels, eps=1e-4)
        self.conv2 = StdConv2d(channels, channels, 3, bias=False)
        self.gn2 = nn.GroupNorm(32, channels, eps=1e-4)
        self.conv3 = StdConv2d(channels, out_channels, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, out_channels, eps=1e-4)
        self.conv_proj = StdConv2d(channels, out_channels, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, out_channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + shortcut)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, heads, N, D / heads)
            return t.view(batch, tokens, self.num_heads, dim // self.num_heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)))
        return self.out(y.transpose(1, 2).reshape(batch, tokens, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PositionEmbedding(nn.Module):
    def __init__(self, grid_size: int, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, grid_size * grid_size, dim))


class _ScaleEmbedding(nn.Module):
    def __init__(self, num_scales: int, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(num_scales, dim))


class TransformerEncoder(nn.Module):
    def __init__(self, config: MUSIQConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.posembed_input = _PositionEmbedding(config.grid_size, dim)
        self.scaleembed_input = _ScaleEmbedding(config.num_scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.transformer = nn.ModuleDict(
            {f"encoderblock_{i}": EncoderBlock(dim, config.mlp_dim, config.num_heads) for i in range(config.num_layers)}
        )
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D), positions / scales (N,) int64 -> encoded class token (B, D)."""
        x = tokens + self.posembed_input.position_emb[0, positions] + self.scaleembed_input.scale_emb[scales]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        for block in self.transformer.values():
            x = block(x)
        return self.encoder_norm(x)[:, 0]


@dataclass(frozen=True)
class MultiScalePatches:
    """An image cut into patches at every scale of MUSIQ's multi-scale representation."""

    patches: torch.Tensor  # (N, 3, P, P) in [-1, 1]
    positions: torch.Tensor  # (N,) hash-based spatial position in [0, G * G)
    scales: torch.Tensor  # (N,) scale index: 0..len(longer_sides)-1 resized, last = native


def hashed_positions(grid_size: int, rows: int, cols: int) -> torch.Tensor:
    """Row-major (rows * cols,) indices into a G x G grid stretched over a rows x cols patch
    grid by nearest-neighbour sampling (torch's `nearest` rule, as pyiqa)."""
    grid = torch.arange(grid_size, dtype=torch.float32)[None, None]  # (1, 1, G)
    row_index = F.interpolate(grid, size=rows, mode="nearest")[0, 0].long()  # (rows,)
    col_index = F.interpolate(grid, size=cols, mode="nearest")[0, 0].long()  # (cols,)
    return (row_index[:, None] * grid_size + col_index[None, :]).reshape(-1)


def _patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(1, 3, H, W) -> (rows * cols, 3, P, P), row-major, TF "SAME" zero padding."""
    x = _pad_same(image, patch_size, patch_size)
    cols = F.unfold(x, patch_size, stride=patch_size)  # (1, 3 * P * P, rows * cols)
    return cols[0].T.reshape(-1, image.shape[1], patch_size, patch_size)


def multiscale_patches(image: torch.Tensor, config: MUSIQConfig) -> MultiScalePatches:
    """Patches of a (1, 3, H, W) image in [-1, 1] at the resized scales (sorted by longer side)
    and at its own resolution."""
    height, width = image.shape[-2:]
    views = []
    for longer in sorted(config.longer_sides):
        ratio = longer / max(height, width)
        size = (round(height * ratio), round(width * ratio))  # Python rounding, as pyiqa
        views.append(F.interpolate(image, size=size, mode="bicubic", align_corners=False))
    views.append(image)
    patches, positions, scales = [], [], []
    for scale, view in enumerate(views):
        rows = math.ceil(view.shape[-2] / config.patch_size)
        cols = math.ceil(view.shape[-1] / config.patch_size)
        patches.append(_patches(view, config.patch_size))
        positions.append(hashed_positions(config.grid_size, rows, cols))
        scales.append(torch.full((rows * cols,), scale, dtype=torch.long))
    return MultiScalePatches(torch.cat(patches), torch.cat(positions), torch.cat(scales))


class MUSIQ(nn.Module):
    """The MUSIQ network. Parameter names follow pyiqa's converted checkpoints.

    Shape: patches (N, 3, P, P) of one image -> score (). Use `musiq()` for images.
    """

    def __init__(self, config: MUSIQConfig = MUSIQConfig()) -> None:
        super().__init__()
        if config.patch_size % 4:
            raise ValueError(f"patch_size must be a multiple of 4 (the stem downsamples by 4), got {config.patch_size}")
        self.config = config
        width = config.stem_width
        self.conv_root = StdConv2d(3, width, 7, stride=2, bias=False)
        self.gn_root = nn.GroupNorm(32, width, eps=1e-6)
        self.block1 = Bottleneck(width, 4 * width)
        token_side = config.patch_size // 4
        self.embedding = nn.Linear(4 * width * token_side * token_side, config.hidden_size)
        self.transformer_encoder = TransformerEncoder(config)
        self.head = nn.Linear(config.hidden_size, config.num_classes)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 3, P, P) -> (N, D)."""
        x = F.relu(self.gn_root(self.conv_root(patches)))  # (N, C, P/2, P/2)
        x = F.max_pool2d(_pad_same(x, 3, 2), 3, stride=2)  # zero padding is safe after the ReLU
        x = self.block1(x)  # (N, 4C, P/4, P/4)
        return self.embedding(x.permute(0, 2, 3, 1).flatten(1))  # (h, w, c) order, as in TensorFlow

    def forward(self, inputs: MultiScalePatches) -> torch.Tensor:
        tokens = self.embed(inputs.patches)[None]  # (1, N, D)
        logits = self.head(self.transformer_encoder(tokens, inputs.positions, inputs.scales))[0]
        if self.config.num_classes == 1:
            return logits[0]
        bins = torch.arange(1, self.config.num_classes + 1, dtype=logits.dtype, device=logits.device)
        return (logits.softmax(-1) * bins).sum()


def _unwrap(state: object) -> Mapping[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: plain, or under params/state_dict/model."""
    while isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [state[k] for k in ("params", "params_ema", "state_dict", "model") if k in state]
        if not nested:
            break
        state = nested[0]
    if not isinstance(state, Mapping) or not state:
        raise MUSIQWeightsError("the file holds no state dict (a mapping of parameter names to tensors)")
    return state


def _clean_key(key: str) -> str:
    # Distribution models keep their linear layer at head.0 (head.1 is the softmax).
    return re.sub(r"^head\.0\.", "head.", strip_wrapper_prefixes(key))


def read_musiq_state_dict(path: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """Tensors of a MUSIQ weights file (.pth/.pt, loaded without running pickled code, or
    .safetensors), with wrapper prefixes removed."""
    if path is None:
        raise FileNotFoundError(
            "MUSIQ needs a trained weights file, e.g. pyiqa's musiq_koniq_ckpt-e95806b9.pth; "
            "demoe does not ship or download it"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MUSIQ weights not found: {path} is not a file. MUSIQ needs a trained weights file, e.g. "
            "pyiqa's musiq_koniq_ckpt-e95806b9.pth; demoe does not ship or download it"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = load_torch_file(path)
    except Exception as error:  # torch/safetensors raise many types for a damaged file
        raise MUSIQWeightsError(f"cannot read MUSIQ weights from {path}: {error}") from error
    try:
        return {_clean_key(str(k)): v for k, v in _unwrap(state).items() if isinstance(v, torch.Tensor)}
    except MUSIQWeightsError as error:
        raise MUSIQWeightsError(f"{path}: {error}") from None


def config_from_state_dict(state: Mapping[str, torch.Tensor], **overrides) -> MUSIQConfig:
    """The architecture a MUSIQ state dict was saved from, read from its tensor shapes.
    `overrides` (e.g. num_heads, longer_sides) set what the shapes cannot tell."""
    required = (
        "conv_root.weight",
        "embedding.weight",
        "head.weight",
        "transformer_encoder.posembed_input.position_emb",
        "transformer_encoder.scaleembed_input.scale_emb",
        "transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight",
    )
    missing = [key for key in required if key not in state]
    if missing:
        raise MUSIQWeightsError(f"not a MUSIQ state dict: missing {', '.join(missing)}")
    stem_width = state["conv_root.weight"].shape[0]
    hidden, embed_in = state["embedding.weight"].shape
    token_side = math.isqrt(embed_in // (4 * stem_width))
    grid = math.isqrt(state["transformer_encoder.posembed_input.position_emb"].shape[1])
    block = re.compile(r"transformer_encoder\.transformer\.encoderblock_(\d+)\.")
    layers = {int(m.group(1)) for key in state if (m := block.match(key))}
    num_scales = state["transformer_encoder.scaleembed_input.scale_emb"].shape[0]
    config = MUSIQConfig(
        patch_size=4 * token_side,
        hidden_size=hidden,
        mlp_dim=state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0],
        num_layers=max(layers) + 1,
        grid_size=grid,
        num_classes=state["head.weight"].shape[0],
        stem_width=stem_width,
    )
    config = replace(config, **overrides)
    if config.num_scales != num_scales:
        raise MUSIQWeightsError(
            f"the weights have {num_scales} scale embeddings but longer_sides={config.longer_sides} "
            f"gives {config.num_scales} scales (the resized ones plus the native resolution)"
        )
    return config


def load_musiq(
    path: str | os.PathLike, device: str | torch.device = "cpu", **overrides
) -> MUSIQ:
    """A MUSIQ network with the weights of `path`, in eval mode. The architecture is read from
    the weights; keys that are missing, unexpected or mis-shaped are named in the error."""
    state = read_musiq_state_dict(path)
    try:
        config = config_from_state_dict(state, **overrides)
    except MUSIQWeightsError as error:
        raise MUSIQWeightsError(f"{path}: {error}") from None
    model = MUSIQ(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                problems.append(f"{label}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        raise MUSIQWeightsError(f"{path} does not fit the MUSIQ architecture ({'; '.join(problems)})")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().to(device)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3|4) RGB(A) or (H, W[, 1|2]) gray(+alpha), uint8/uint16/float in [0, 1] ->
    (1, 3, H, W) in [-1, 1]; gray is repeated over RGB and alpha ignored, as pyiqa reads files."""
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) gray image, got shape {array.shape}")
    array = to_float(as_rgb(array))
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None] * 2 - 1


@torch.no_grad()
def musiq_score(image: np.ndarray, model: MUSIQ) -> float:
    """MUSIQ of one image with a loaded model (see `image_to_tensor` for accepted images)."""
    device = next(model.parameters()).device
    inputs = multiscale_patches(image_to_tensor(image).to(device), model.config)
    return float(model(inputs))


__all__: Sequence[str] = (
    "MUSIQ",
    "MUSIQConfig",
    "MUSIQWeightsError",
    "MultiScalePatches",
    "config_from_state_dict",
    "hashed_positions",
    "load_musiq",
    "multiscale_patches",
    "musiq_score",
    "read_musiq_state_dict",
)
