"""Training configuration: typed dataclasses parsed from YAML.

A training run is described by one `TrainConfig`. YAML files are parsed into it strictly: an
unknown key or a value of the wrong type is a `ConfigError` naming the key by its full dotted
path (e.g. `optim.betas`). `--set key=value` overrides use the same dotted paths, and values are
read by YAML's scalar rules (`1e-3` is a float, `true` a bool, `null` None, `[0.9, 0.9]` a list).

Example:
    >>> config = parse_config({"stage": "pretrain", "data": {"train": {"manifest": "aio_blur.jsonl"}},
    ...                        "optim": {"lr": 2e-4}})
    >>> config.optim.lr, config.train.batch_size, config.data.train.kind
    (0.0002, 32, 'manifest')
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from demoe.config import TASK_NAMES, ModelConfig, get_preset

Stage = Literal["pretrain", "experts"]
Trainable = Literal["all", "decoder", "router"]
DataKind = Literal["manifest", "synthetic", "synthetic_device"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PixelLoss = Literal["l1", "psnr"]
Routing = Literal["dense", "label"]


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the offending key."""


@dataclass
class ModelSpec:
    """Which network to train."""

    preset: str = "nafnet-baseline-router"  # a name from demoe.config.PRESETS
    # ModelConfig fields to change, e.g. {"router_noise_std": 0.1} (ablation: noisy router)
    overrides: dict[str, Any] = field(default_factory=dict)
    # Stage 2: a stage-1 run directory (its `last/` is used) or a model directory, whose
    # baseline initialises the DeMoE model (demoe.model.init_experts_from_baseline).
    # None = start from random weights (ablation: end-to-end training from scratch).
    init_from: str | None = None


@dataclass
class DataConfig:
    """One dataset: pairs from a manifest, or blur synthesised on the fly from photographs.

    Random crops and flips are the dataset's own (demoe.data); items are deterministic in
    (seed, epoch, index), which is what makes resumed runs exact. Kind "synthetic_device"
    (training only) synthesises whole batches on the training device
    (demoe.data.synthetic.SyntheticBlurBatches), each a function of (seed, step, rank).
    """

    kind: DataKind = "manifest"
    manifest: str | None = None  # kind "manifest": JSONL manifest (demoe.data.manifest)
    split: str = "train"  # kind "manifest": records of this split
    datasets: tuple[str, ...] = ()  # keep only these source datasets (empty = all)
    tasks: tuple[str, ...] = TASK_NAMES  # blur types to keep (manifest) or synthesise
    # kinds "synthetic", "synthetic_device": folder(s) of sharp photographs, searched recursively
    photos: str | tuple[str, ...] | None = None
    length: int | None = None  # synthetic kinds: items per epoch (None = photographs x tasks)
    # synthetic kinds: share of non-low-light items darkened to a dark but normally exposed
    # scene before blurring (demoe.data.synthetic.DarkSceneConfig), labelled with their blur
    dark_scenes: float = 0.0
    crop_size: int = 384  # square crop side in pixels


@dataclass
class DataSection:
    train: DataConfig = field(default_factory=DataConfig)
    val: DataConfig | None = None  # None = no validation


@dataclass
class OptimConfig:
    """AdamW with cosine annealing (paper App. C; NAFNet's GoPro width-32 recipe)."""

    lr: float = 1e-3  # initial learning rate
    min_lr: float = 1e-7  # cosine annealing ends here at the last step
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.0  # NAFNet-width32 GoPro recipe uses 0 (width64 uses 1e-3)
    eps: float = 1e-8
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping


@dataclass
class LossConfig:
    # "l1": L1 over the batch (the paper); "psnr": mean over the images of -PSNR (NAFNet's
    # PSNR loss), which weighs every image alike, so the large errors of low-light images do
    # not drown the small residuals of deblurring
    pixel: PixelLoss = "l1"
    pixel_weight: float = 1.0  # lambda_p, weight of the pixel loss
    class_weight: float = 0.001  # lambda_cl, weight of CrossEntropy(router logits, blur label)


@dataclass
class TrainLoopConfig:
    batch_size: int = 32  # GLOBAL batch, split evenly across the distributed processes
    epochs: int = 400  # length of the run when total_steps is None
    total_steps: int | None = None  # optimizer steps; overrides epochs (and sets the schedule)
    # Stage 2: which parameters train. "decoder" freezes intro, encoders, downs and the router
    # (router kept in eval mode, so its BatchNorm statistics stay); "all" trains everything
    # (ablation: fine-tune the whole pre-trained network); "router" (with model.init_from, CE
    # only) trains the router head alone on a pre-trained network: router calibration.
    trainable: Trainable = "decoder"
    # Task-specific DeMoE* (ablation): route every image to this expert (a TASK_NAMES entry).
    forced_task: str | None = None
    # Stage 2: "dense" mixes every expert with the router's softmax weights (the paper, Eq. 2);
    # "label" sends each training image through its own blur class's expert only (faster, and
    # each expert sees only its blur; the router then only learns from the classification loss)
    routing: Routing = "dense"
    ema_decay: float = 0.0  # exponential moving average of the weights; 0 = off
    num_workers: int = 4  # DataLoader worker processes per rank


@dataclass
class RuntimeConfig:
    device: Device = "auto"  # auto = CUDA when available
    # auto = bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512-BF16 / AMX), fp32
    # elsewhere; master weights, loss and optimizer stay fp32, validation runs in fp32
    precision: Precision = "auto"
    channels_last: bool = True  # channels-last memory format for model and batches
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    cpu_threads: int = 0  # intra-op CPU threads (torch.set_num_threads); 0 = torch's default


@dataclass
class LogConfig:
    log_every: int = 50  # steps between TensorBoard scalar logs
    validate_every: int = 5000  # steps between validations (0 = only at the end)
    save_every: int = 5000  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 3  # newest checkpoints kept (0 = keep all)
    sample_images: int = 4  # validation images written to TensorBoard
    progress: bool = True  # tqdm progress bar with ETA (rank 0)
    tensorboard: bool = True


@dataclass
class TrainConfig:
    """Everything a training run needs. Stage "pretrain" trains a baseline with router
    (L1 + CE); stage "experts" trains DeMoE's MoE decoder (from a stage-1 run when
    model.init_from is set)."""

    stage: Stage = "pretrain"
    seed: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def model_config(self) -> ModelConfig:
        """The architecture to build: the preset with the overrides applied."""
        return get_preset(self.model.preset).replace(**self.model.overrides)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


# ---------------------------------------------------------------------------------------------
# YAML reading: PyYAML follows YAML 1.1, where `1e-3` is a string; we read it as a float.


class _Loader(yaml.SafeLoader):
    pass


_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789."))


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    # PyYAML keeps the last of two equal keys without a word; a recipe with `lr` twice is a mistake.
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key].start_mark
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                f"{first.line + 1}); each key may appear once per section"
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, source: str = "YAML") -> Any:
    """YAML text -> Python values (floats like `1e-3` included); ConfigError for a syntax
    error (with its line and column) or a key given twice in one mapping."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except ConfigError as error:  # a duplicate key
        raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config file, apply `key=value` overrides, and parse it strictly."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    values = parse_yaml(path.read_text(), source=str(path))
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(values).__name__}")
    for override in overrides:
        apply_override(values, override)
    return parse_config(values)


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set a dotted key in nested dicts from "a.b.c=value" (value parsed as YAML)."""
    key, separator, text = override.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"--set expects key=value with a dotted key, got {override!r}")
    value = parse_yaml(text, source=f"--set {key}") if text.strip() else None
    parts = key.split(".")
    node = values
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def parse_config(values: dict[str, Any]) -> TrainConfig:
    """Plain nested dicts (as read from YAML) -> a validated TrainConfig."""
    config = _parse_dataclass(TrainConfig, values, "")
    overrides = {name: _convert_model_override(name, value) for name, value in config.model.overrides.items()}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, overrides=overrides))
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Cross-field checks (the config is not changed); every error names the key to fix.

    In this order: the model, the stage's recipe, routing and losses, the data sections, the
    numbers (steps, rates, counts)."""
    model_config = _validated_model_config(config)
    if config.stage == "pretrain":
        _validate_pretrain(config, model_config)
    else:
        _validate_experts(config, model_config)
    _validate_routing_and_losses(config, model_config)
    for section_name, data in (("data.train", config.data.train), ("data.val", config.data.val)):
        if data is not None:
            _validate_data(section_name, data, model_config)
    _validate_numbers(config, model_config)


def _validated_model_config(config: TrainConfig) -> ModelConfig:
    for name, value in config.model.overrides.items():
        _convert_model_override(name, value)
    try:
        return config.model_config()
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None


def _validate_router_calibration(config: TrainConfig) -> None:
    """Router calibration (both stages): a pre-trained model's router head alone, trained with CE."""
    if config.train.trainable != "router":
        return
    if config.model.init_from is None:
        raise ConfigError("train.trainable: 'router' calibrates a pre-trained model's router; set model.init_from")
    if config.loss.class_weight <= 0 or config.loss.pixel_weight != 0:
        raise ConfigError("train.trainable 'router' trains with the classification loss only: "
                          "set loss.pixel_weight 0 and loss.class_weight > 0")


def _validate_pretrain(config: TrainConfig, model_config: ModelConfig) -> None:
    if model_config.is_moe:
        raise ConfigError(
            f"model.preset: stage 'pretrain' trains a baseline (num_experts == 0); "
            f"{config.model.preset!r} has experts — use stage 'experts' or a baseline preset"
        )
    _validate_router_calibration(config)
    # Otherwise model.init_from in stage 1 is a warm start: training continues from the
    # weights of a model directory of the same architecture (new optimizer and schedule).
    if config.train.forced_task is not None:
        raise ConfigError("train.forced_task needs a model with experts (stage 'experts')")


def _validate_experts(config: TrainConfig, model_config: ModelConfig) -> None:
    _validate_router_calibration(config)
    if not model_config.is_moe and config.model.init_from is None:
        # A dense model in stage 2 is only the same-budget baseline continued from stage 1.
        raise ConfigError(
            f"model.preset: stage 'experts' trains a model with MoE blocks; "
            f"{config.model.preset!r} has none (a dense model needs model.init_from: it "
            "continues a stage-1 run as the same-budget baseline)"
        )
    if config.model.init_from is None and config.train.trainable == "decoder":
        raise ConfigError(
            "train.trainable: 'decoder' freezes the encoder and router, which only makes "
            "sense when they are pre-trained; set model.init_from to a stage-1 run, or use "
            "train.trainable: all (end-to-end training from scratch)"
        )
    if config.train.trainable == "decoder" and config.loss.class_weight != 0:
        raise ConfigError(
            "loss.class_weight must be 0 when train.trainable is 'decoder' (the router is "
            "frozen, so the classification loss has nothing to train)"
        )
    if config.train.routing == "label" and config.train.forced_task is not None:
        raise ConfigError("train.routing 'label' and train.forced_task exclude each other")
    if config.train.forced_task is not None and config.train.forced_task not in model_config.task_names:
        raise ConfigError(
            f"train.forced_task: unknown task {config.train.forced_task!r}; valid tasks: "
            f"{', '.join(model_config.task_names)}"
        )


def _validate_routing_and_losses(config: TrainConfig, model_config: ModelConfig) -> None:
    if config.train.routing == "label" and not model_config.is_moe:
        raise ConfigError("train.routing: 'label' needs a model with experts (stage 'experts')")
    if config.loss.class_weight > 0 and not model_config.router:
        raise ConfigError("loss.class_weight > 0 needs a model with a router (model.preset)")
    if config.loss.pixel_weight < 0 or config.loss.class_weight < 0:
        raise ConfigError("loss.pixel_weight and loss.class_weight must be >= 0")


def _validate_data(section_name: str, data: DataConfig, model_config: ModelConfig) -> None:
    """One data section (`data.train` or `data.val`)."""
    if data.kind == "manifest" and data.manifest is None:
        raise ConfigError(f"{section_name}.manifest: required when {section_name}.kind is 'manifest'")
    if data.kind in ("synthetic", "synthetic_device") and data.photos is None:
        raise ConfigError(f"{section_name}.photos: required when {section_name}.kind is {data.kind!r}")
    if section_name == "data.val" and data.kind == "synthetic_device":
        raise ConfigError("data.val.kind: 'synthetic_device' is for training; validate on the reference "
                          "generator with kind 'synthetic' (the same photographs and blur models)")
    if data.crop_size < model_config.size_multiple or data.crop_size % model_config.size_multiple:
        raise ConfigError(
            f"{section_name}.crop_size: must be a positive multiple of "
            f"{model_config.size_multiple} for this model, got {data.crop_size}"
        )
    unknown = [task for task in data.tasks if task not in TASK_NAMES]
    if unknown or not data.tasks:
        raise ConfigError(
            f"{section_name}.tasks: unknown tasks {unknown} (valid: {', '.join(TASK_NAMES)})"
        )
    if not 0.0 <= data.dark_scenes <= 1.0:
        raise ConfigError(f"{section_name}.dark_scenes: must be in [0, 1], got {data.dark_scenes}")
    if data.length is not None and data.length < 1:
        raise ConfigError(f"{section_name}.length: must be >= 1")


def _validate_numbers(config: TrainConfig, model_config: ModelConfig) -> None:
    """Steps, rates and counts: each in its range."""
    positive = {
        "train.batch_size": config.train.batch_size,
        "train.epochs": config.train.epochs,
        "optim.lr": config.optim.lr,
        "log.log_every": config.log.log_every,
        "log.save_every": config.log.save_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    if config.train.total_steps is not None and config.train.total_steps <= 0:
        raise ConfigError(f"train.total_steps: must be > 0, got {config.train.total_steps}")
    if model_config.router and config.train.batch_size < 2:
        raise ConfigError("train.batch_size: the router's BatchNorm needs a batch of at least 2")
    if not 0 <= config.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {config.train.ema_decay}")
    if config.optim.min_lr < 0 or config.optim.min_lr > config.optim.lr:
        raise ConfigError("optim.min_lr: must be in [0, optim.lr]")
    if not all(0 <= beta < 1 for beta in config.optim.betas):
        raise ConfigError(f"optim.betas: each must be in [0, 1), got {config.optim.betas}")
    for key, value in (
        ("optim.weight_decay", config.optim.weight_decay),
        ("optim.grad_clip", config.optim.grad_clip),
        ("train.num_workers", config.train.num_workers),
        ("runtime.cpu_threads", config.runtime.cpu_threads),
        ("log.validate_every", config.log.validate_every),
        ("log.keep_checkpoints", config.log.keep_checkpoints),
        ("log.sample_images", config.log.sample_images),
    ):
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")


def _convert_model_override(name: str, value: Any) -> Any:
    hints = typing.get_type_hints(ModelConfig)
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(ModelConfig))
        raise ConfigError(f"unknown key model.overrides.{name} (ModelConfig fields: {known})")
    return _convert(hints[name], value, f"model.overrides.{name}")


# ---------------------------------------------------------------------------------------------
# Strict conversion of plain values into annotated types.


def _parse_dataclass(cls: type, values: Any, path: str) -> Any:
    where = path or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_describe(values)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in hints:
            dotted = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"unknown key {dotted} (valid keys in {where}: {', '.join(names)})")
    kwargs = {}
    for name in names:
        if name in values:
            dotted = f"{path}.{name}" if path else name
            kwargs[name] = _convert(hints[name], values[name], dotted)
    return cls(**kwargs)


def _convert(annotation: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, path)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{path}: expected {_name(annotation)}, got {_describe(value)}")
    if dataclasses.is_dataclass(annotation):
        return _parse_dataclass(annotation, value, path)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{path}: expected one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list ({_name(annotation)}), got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):  # NaN passes every `<= 0` check below
            raise ConfigError(f"{path}: expected a finite number, got {value}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"{path}: unsupported annotation {annotation!r}")  # a bug in this module


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    return value


def dump_config(config: TrainConfig) -> str:
    """The resolved configuration as YAML (what RUN_DIR/config.yaml holds)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
