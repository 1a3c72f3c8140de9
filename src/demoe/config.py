"""Model configuration: one typed dataclass, and the named presets as plain data.

A preset is a set of argument values handed to the one model builder (`demoe.model.DeblurUNet`);
variants never get a file of their own.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

# The five blur types, in the expert order of the authors' release (`expert_order` in their
# checkpoint): expert i of every MoE block restores blur type TASK_NAMES[i].
TASK_NAMES: tuple[str, ...] = (
    "defocus",
    "global_motion",
    "local_motion",
    "synth_global_motion",
    "low_light",
)

Fusion = Literal["sum", "residual", "attention"]
# Network family. "demoe": the NAFNet U-Net of DeMoE and of its NAFNet baselines (optionally with
# router and MoE decoder); the others are the dense networks the paper compares with (Table 1).
Architecture = Literal["demoe", "restormer", "promptir", "fftformer", "sfhformer"]
# Block of the MoE experts (paper Table 7): NAFNet's NAFBlock (DeMoE), DarkIR's frequency block,
# MLWNet's wavelet block (LWN), Restormer's transformer block, PLKSR's partial large-kernel block.
ExpertBlock = Literal["nafblock", "darkir", "wavelet", "restormer", "plk"]
ARCHITECTURES: tuple[str, ...] = typing.get_args(Architecture)
EXPERT_BLOCKS: tuple[str, ...] = typing.get_args(ExpertBlock)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a NAFNet U-Net, optionally with a blur router and MoE decoder blocks.

    With `num_experts == 0` the network is the plain NAFNet baseline: every level holds only
    NAFBlocks. With `num_experts > 0` the middle stage and every decoder level end in a MoE
    block of `num_experts` NAFBlock experts, all driven by the router's probabilities.
    """

    name: str = "custom"  # preset the config came from; informational
    image_channels: int = 3  # RGB in, RGB out
    width: int = 32  # channels at full resolution; doubled at every encoder level
    encoder_blocks: tuple[int, ...] = (2, 2, 2, 2)  # NAFBlocks per encoder level
    middle_blocks: int = 2  # NAFBlocks at the bottleneck (before its MoE block, if any)
    decoder_blocks: tuple[int, ...] = (2, 2, 2, 2)  # NAFBlocks per decoder level, deepest first
    num_experts: int = 5  # experts per MoE block; 0 = no MoE blocks (baseline)
    router: bool = True  # attach the blur-classification router head to the bottleneck
    num_classes: int = 5  # router outputs (blur types); equals num_experts when both are used
    router_channels: int = 256  # 1x1 bottleneck width of the router
    router_hidden: int = 128  # hidden units of the router's MLP
    router_spatial_dropout: float = 0.2  # Dropout2d after the router's 1x1 conv
    router_dropout: float = 0.3  # Dropout in the router's MLP
    router_noise_std: float = 0.0  # Gaussian noise on router logits in training (App. ablation)
    fusion: Fusion = "sum"  # how a MoE block combines experts: Eq. 2, Eq. 7 or Eq. 8
    top_k: int = 1  # experts used per image at inference when the caller gives no top_k
    task_names: tuple[str, ...] = TASK_NAMES  # router class i / expert i = task_names[i]
    # Side in pixels of the square crops the weights were trained on (the paper: 384); sizes the
    # window of TLC, the test-time local converter (1.5 x this); 0 = not recorded (no TLC).
    train_crop: int = 0
    architecture: Architecture = "demoe"  # network family (see `Architecture`)
    # Block the MoE experts are made of; in a dense baseline (num_experts 0) the last block of
    # the middle stage and of every decoder level: the block stage 2 copies into the experts
    expert_block: ExpertBlock = "nafblock"
    # Fields of the comparison networks (and of Restormer experts); unused ones keep defaults.
    refinement_blocks: int = 0  # restormer/promptir/fftformer: full-resolution blocks at the end
    # restormer/promptir/Restormer experts: attention heads per level, full resolution first,
    # the bottleneck last (len(encoder_blocks) + 1 values)
    attention_heads: tuple[int, ...] = ()
    ffn_expansion: float = 2.66  # restormer/promptir/fftformer/Restormer experts: FFN width / C
    # promptir: prompt channels and prompt side (pixels) per level 1..L, level 1 (half
    # resolution) first, the bottleneck last; prompt_length prompts are mixed per level
    prompt_channels: tuple[int, ...] = ()
    prompt_sizes: tuple[int, ...] = ()
    prompt_length: int = 5

    def __post_init__(self) -> None:
        for name in ("image_channels", "width", "num_classes", "router_channels", "router_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(n < 0 for n in (*self.encoder_blocks, *self.decoder_blocks, self.middle_blocks)):
            raise ValueError("block counts must be >= 0")
        for name in ("router_spatial_dropout", "router_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.router_noise_std < 0:
            raise ValueError(f"router_noise_std must be >= 0, got {self.router_noise_std}")
        if len(self.encoder_blocks) != len(self.decoder_blocks):
            raise ValueError(
                f"encoder_blocks {self.encoder_blocks} and decoder_blocks "
                f"{self.decoder_blocks} need the same number of levels"
            )
        if self.num_experts < 0:
            raise ValueError(f"num_experts must be >= 0, got {self.num_experts}")
        if self.num_experts > 0:
            if not self.router:
                raise ValueError("a model with MoE blocks (num_experts > 0) needs router=True")
            if self.num_experts != self.num_classes:
                raise ValueError(
                    f"num_experts ({self.num_experts}) must equal num_classes "
                    f"({self.num_classes}): expert i restores router class i"
                )
            if self.middle_blocks < 0 or any(n < 0 for n in self.decoder_blocks):
                raise ValueError("block counts must be >= 0")
            if not 1 <= self.top_k <= self.num_experts:
                raise ValueError(f"top_k must be in 1..{self.num_experts}, got {self.top_k}")
        if len(self.task_names) != self.num_classes:
            raise ValueError(
                f"task_names has {len(self.task_names)} names for {self.num_classes} classes"
            )
        if self.fusion not in ("sum", "residual", "attention"):
            raise ValueError(f"fusion must be 'sum', 'residual' or 'attention', got {self.fusion!r}")
        if self.train_crop < 0:
            raise ValueError(f"train_crop must be >= 0 (0 = not recorded), got {self.train_crop}")
        self._check_architecture()

    def _check_architecture(self) -> None:
        """The architecture-specific fields: set where they apply, at their defaults elsewhere."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; got {self.architecture!r}")
        if self.expert_block not in EXPERT_BLOCKS:
            raise ValueError(f"expert_block must be one of {', '.join(EXPERT_BLOCKS)}; got {self.expert_block!r}")
        levels = len(self.encoder_blocks)
        if levels < 1:
            raise ValueError(f"need at least one encoder level, got encoder_blocks {self.encoder_blocks}")
        uses_heads = self.architecture in ("restormer", "promptir") or self.expert_block == "restormer"
        uses_ffn = uses_heads or self.architecture == "fftformer"
        unused = [
            name
            for name, value, default, used in (
                ("refinement_blocks", self.refinement_blocks, 0, self.architecture in ("restormer", "promptir", "fftformer")),
                ("attention_heads", self.attention_heads, (), uses_heads),
                ("ffn_expansion", self.ffn_expansion, 2.66, uses_ffn),
                ("prompt_channels", self.prompt_channels, (), self.architecture == "promptir"),
                ("prompt_sizes", self.prompt_sizes, (), self.architecture == "promptir"),
                ("prompt_length", self.prompt_length, 5, self.architecture == "promptir"),
            )
            if not used and value != default
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} do not apply to architecture {self.architecture!r} with expert_block "
                f"{self.expert_block!r}; leave them at their defaults"
            )
        if uses_heads and (len(self.attention_heads) != levels + 1 or min(self.attention_heads) < 1):
            raise ValueError(
                f"attention_heads needs {levels + 1} positive values (one per level, the bottleneck last), "
                f"got {self.attention_heads}"
            )
        if uses_ffn and self.ffn_expansion <= 0:
            raise ValueError(f"ffn_expansion must be > 0, got {self.ffn_expansion}")
        if self.refinement_blocks < 0:
            raise ValueError(f"refinement_blocks must be >= 0, got {self.refinement_blocks}")
        if self.architecture == "demoe":
            return
        if self.is_moe or self.router:
            raise ValueError(f"architecture {self.architecture!r} is a dense network: set num_experts=0 and router=False")
        if self.expert_block != "nafblock":
            raise ValueError(f"expert_block only applies to architecture 'demoe', not {self.architecture!r}")
        if self.architecture == "promptir":
            if not len(self.prompt_channels) == len(self.prompt_sizes) == levels:
                raise ValueError(
                    f"promptir needs {levels} prompt_channels and prompt_sizes (levels 1..{levels}), got "
                    f"{self.prompt_channels} and {self.prompt_sizes}"
                )
            if min(self.prompt_channels + self.prompt_sizes) < 1 or self.prompt_length < 1:
                raise ValueError("prompt_channels, prompt_sizes and prompt_length must be positive")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def size_multiple(self) -> int:
        """Input sides are padded to a multiple of this (one halving per encoder level; FFTformer's
        8x8 FFT patches at every level add a factor 8)."""
        multiple = 2 ** len(self.encoder_blocks)
        return multiple * 8 if self.architecture == "fftformer" else multiple

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """A config from plain values (e.g. a config.json), each checked against its field's
        type: ValueError naming the field, e.g. "width: expected an integer, got str '16'"."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        fixed = {name: _checked_value(name, hints[name], value) for name, value in values.items()}
        return cls(**fixed)

    def replace(self, **overrides: Any) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return dataclasses.replace(self, **overrides)


def _checked_value(name: str, hint: Any, value: Any) -> Any:
    """`value` as the type `hint` (lists become tuples); ValueError naming the field otherwise."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_checked_value(f"{name}[{index}]", typing.get_args(hint)[0], item) for index, item in enumerate(value))
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(choice) for choice in typing.get_args(hint))
            raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
        return value
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{name}: unsupported field type {hint!r}")  # a bug in this module
    if not ok:
        expected = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[hint]
        raise ValueError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


# Presets: plain data. `demoe` is the authors' released configuration (20,150,665 parameters);
# `nafnet-baseline` is the paper's dense baseline (10.08 M); `*-router` variants carry the
# router head, as trained in stage 1 of the recipe. Small and tiny presets differ only by values.
# The value groups several presets share:
_DENSE: dict[str, Any] = {"num_experts": 0, "router": False}  # no experts, no router
# The stage-1 baselines: DeMoE's layout with every MoE block replaced by one more block.
_BASELINE_LAYOUT: dict[str, Any] = {"middle_blocks": 3, "decoder_blocks": (3, 3, 3, 3), "num_experts": 0}
# Restormer's standard configuration, which PromptIR's release keeps.
_RESTORMER_LAYOUT: dict[str, Any] = {
    "width": 48,
    "encoder_blocks": (4, 6, 6),
    "middle_blocks": 8,
    "decoder_blocks": (6, 6, 4),
    "refinement_blocks": 4,
    "attention_heads": (1, 2, 4, 8),
    "ffn_expansion": 2.66,
}
# The small and tiny sizes of DeMoE and of their baselines.
_SMALL: dict[str, Any] = {"width": 16, "encoder_blocks": (1, 1, 1, 2), "router_channels": 64, "router_hidden": 32}
_TINY: dict[str, Any] = {"width": 8, "encoder_blocks": (1, 1), "router_channels": 16, "router_hidden": 16}
_EXPERT_VARIANTS: dict[str, dict[str, Any]] = {
    "darkir": {},
    "wavelet": {},
    "restormer": {"attention_heads": (1, 2, 4, 8, 8), "ffn_expansion": 2.66},
    "plk": {},
}

PRESETS: dict[str, ModelConfig] = {
    "demoe": ModelConfig(name="demoe"),
    "nafnet-baseline": ModelConfig(name="nafnet-baseline", **_BASELINE_LAYOUT, router=False),
    "nafnet-baseline-router": ModelConfig(name="nafnet-baseline-router", **_BASELINE_LAYOUT, router=True),
    # Table 7: DeMoE with other expert blocks (same layout; see demoe.nn.blocks), and the
    # stage-1 baselines they are upcycled from (the last block of the middle stage and of every
    # decoder level is the expert block). Restormer experts: heads doubling per level as in
    # Restormer (1, 2, 4, 8), its maximum of 8 kept at DeMoE's fifth level, the bottleneck.
    **{
        f"demoe-{block}": ModelConfig(name=f"demoe-{block}", expert_block=block, **fields)
        for block, fields in _EXPERT_VARIANTS.items()
    },
    **{
        f"nafnet-{block}-router": ModelConfig(
            name=f"nafnet-{block}-router", **_BASELINE_LAYOUT, expert_block=block, **fields
        )
        for block, fields in _EXPERT_VARIANTS.items()
    },
    # Table 1's rivals in the standard configurations of their releases (demoe.nn.<name>).
    "restormer": ModelConfig(name="restormer", architecture="restormer", **_RESTORMER_LAYOUT, **_DENSE),
    "promptir": ModelConfig(
        name="promptir",
        architecture="promptir",
        **_RESTORMER_LAYOUT,
        prompt_channels=(64, 128, 320),
        prompt_sizes=(64, 32, 16),
        prompt_length=5,
        **_DENSE,
    ),
    "fftformer": ModelConfig(
        name="fftformer",
        architecture="fftformer",
        width=48,
        encoder_blocks=(6, 6),
        middle_blocks=12,
        decoder_blocks=(6, 6),
        refinement_blocks=4,
        ffn_expansion=3.0,
        **_DENSE,
    ),
    "sfhformer": ModelConfig(
        name="sfhformer",
        architecture="sfhformer",
        width=32,
        encoder_blocks=(6, 6),
        middle_blocks=10,
        decoder_blocks=(6, 6),
        **_DENSE,
    ),
    "demoe-small": ModelConfig(name="demoe-small", **_SMALL, middle_blocks=1, decoder_blocks=(1, 1, 1, 1)),
    "nafnet-small-router": ModelConfig(
        name="nafnet-small-router", **_SMALL, middle_blocks=2, decoder_blocks=(2, 2, 2, 2), num_experts=0
    ),
    "demoe-tiny": ModelConfig(name="demoe-tiny", **_TINY, middle_blocks=1, decoder_blocks=(1, 1)),
    "nafnet-tiny-router": ModelConfig(
        name="nafnet-tiny-router", **_TINY, middle_blocks=2, decoder_blocks=(2, 2), num_experts=0
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; presets: {', '.join(sorted(PRESETS))}"
        ) from None


def baseline_of(config: ModelConfig) -> ModelConfig:
    """The dense baseline (with router) whose weights initialise `config` in stage 2.

    Each MoE block replaces the last NAFBlock of its level, so the baseline has one more block
    per level than the DeMoE model has before its MoE block.
    """
    if not config.is_moe:
        return config
    return config.replace(
        name=f"{config.name}-baseline",
        middle_blocks=config.middle_blocks + 1,
        decoder_blocks=tuple(n + 1 for n in config.decoder_blocks),
        num_experts=0,
        router=True,
    )


def experts_config_of(baseline: ModelConfig, num_experts: int = 5) -> ModelConfig:
    """The DeMoE config that a stage-1 baseline (with router) initialises in stage 2."""
    if baseline.is_moe:
        raise ValueError("experts_config_of expects a baseline config (num_experts == 0)")
    if baseline.middle_blocks < 1 or any(n < 1 for n in baseline.decoder_blocks):
        raise ValueError("every baseline level needs at least one block to become a MoE block")
    return baseline.replace(
        name=baseline.name.removesuffix("-router").replace("nafnet", "demoe"),
        middle_blocks=baseline.middle_blocks - 1,
        decoder_blocks=tuple(n - 1 for n in baseline.decoder_blocks),
        num_experts=num_experts,
        router=True,
    )


__all__ = [
    "TASK_NAMES",
    "ModelConfig",
    "PRESETS",
    "get_preset",
    "baseline_of",
    "experts_config_of",
]
