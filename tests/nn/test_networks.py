"""Every network family and expert block: the paper's comparison (Table 1 rivals, Table 7 expert
variants) built by the same builders in tiny configurations, and the full presets' sizes
counted without allocating (meta device)."""

import pytest
import torch

import demoe
from demoe.checkpoints import ModelDirectoryError
from demoe.config import PRESETS, ModelConfig, baseline_of, get_preset
from demoe.evaluation.cost import count_macs, count_macs_of_config, count_parameters_of_config, macs_by_operator
from demoe.model import DeblurUNet, build_model, init_experts_from_baseline
from demoe.nn.dense import DenseDeblurNet
from demoe.nn.fftformer import from_patches, to_patches
from demoe.nn.promptir import PromptIR
from demoe.nn.restormer import Restormer
from demoe.nn.wavelet import LearnableWaveletNetwork, dwt2, idwt2

from random_weights import randomize_

_TINY_UNET = dict(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1), router_channels=16, router_hidden=16)

# Tiny configurations of every preset family: same builders, a few thousand parameters.
TINY: dict[str, dict] = {
    "restormer": dict(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1), refinement_blocks=1,
                      attention_heads=(1, 2, 2)),
    "promptir": dict(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1), refinement_blocks=1,
                     attention_heads=(1, 2, 2), prompt_channels=(8, 12), prompt_sizes=(8, 4)),
    "fftformer": dict(width=8, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,), refinement_blocks=1),
    "sfhformer": dict(width=8, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,)),
    "demoe-darkir": _TINY_UNET,
    "demoe-wavelet": _TINY_UNET,
    "demoe-restormer": {**_TINY_UNET, "attention_heads": (1, 2, 2)},
    "demoe-plk": _TINY_UNET,
}
RIVALS = ["restormer", "promptir", "fftformer", "sfhformer"]
VARIANTS = ["demoe-darkir", "demoe-wavelet", "demoe-restormer", "demoe-plk"]


def tiny_config(name: str) -> ModelConfig:
    return get_preset(name).replace(**TINY[name])


def tiny_model(name: str):
    return randomize_(build_model(tiny_config(name)), scale=0.1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size", [(19, 23), (5, 3)])
def test_forward_keeps_any_size(name, size):
    model = tiny_model(name).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert out.image.shape == x.shape
    assert torch.isfinite(out.image).all()
    if name in RIVALS:
        assert out.router_probs is None and out.expert_weights is None
    else:
        assert out.router_probs.shape == (2, 5)


@pytest.mark.parametrize("name", list(TINY))
def test_gradients_reach_every_parameter(name):
    model = tiny_model(name).train()
    out = model(torch.rand(2, 3, 16, 32))
    loss = out.image.square().mean()
    if out.router_logits is not None:
        loss = loss + out.router_logits.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip(name, tmp_path):
    model = tiny_model(name).eval()
    model.save_pretrained(tmp_path / name)
    loaded = demoe.load_model(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config
    again = type(model).from_pretrained(tmp_path / name)
    assert type(again) is type(model) and again.config == model.config and not again.training
    x = torch.rand(1, 3, 17, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).image, model(x).image)
        torch.testing.assert_close(again(x).image, model(x).image, rtol=0, atol=0)


def test_from_pretrained_of_another_class_is_refused(tmp_path):
    tiny_model("restormer").save_pretrained(tmp_path / "restormer")
    build_model(get_preset("demoe-tiny")).save_pretrained(tmp_path / "demoe")
    with pytest.raises(ModelDirectoryError, match="'restormer' network, and DeblurUNet builds architecture 'demoe'"):
        DeblurUNet.from_pretrained(tmp_path / "restormer")
    with pytest.raises(ModelDirectoryError, match="PromptIR builds architecture 'promptir': load it with demoe.load_model"):
        PromptIR.from_pretrained(tmp_path / "restormer")
    with pytest.raises(ModelDirectoryError, match="DenseDeblurNet is a base class"):
        DenseDeblurNet.from_pretrained(tmp_path / "restormer")
    with pytest.raises(ModelDirectoryError, match="'demoe' network, and Restormer"):
        Restormer.from_pretrained(tmp_path / "demoe")


@pytest.mark.parametrize("name", VARIANTS)
def test_stage_one_baseline_upcycles_into_the_experts(name):
    """Stage 2 starts where stage 1 ended: each expert copies the baseline's last block of its
    level (which is already the expert block), so DeMoE with any one expert = the baseline."""
    config = tiny_config(name)
    baseline = randomize_(build_model(baseline_of(config)), scale=0.1).eval()
    assert type(baseline.decoders[0][-1]) is type(build_model(config).decoder_moes[0].experts[0])
    model = build_model(config).eval()
    init_experts_from_baseline(model, baseline)
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        expected = baseline(x).image
        for task in ("defocus", "low_light"):
            torch.testing.assert_close(model(x, task=task).image, expected)


def test_expert_variants_differ_from_demoe_only_in_the_experts():
    demoe_keys = {k for k in build_model(get_preset("demoe-tiny")).state_dict() if ".experts." not in k}
    for name in VARIANTS:
        config = get_preset(name).replace(**TINY[name], name="x")
        keys = {k for k in build_model(config).state_dict() if ".experts." not in k}
        assert keys == demoe_keys, name


# Sizes at 256 x 256 in the paper (params M, MACs G) and the tolerances of issue 17: Table 1's
# rivals 3 % / 20 %, Table 7's expert variants 10 % / 25 % (top-1 routing).
PAPER = {
    "restormer": (26.13, 141.24, 0.03, 0.20),
    "promptir": (35.59, 158.4, 0.03, 0.20),
    "fftformer": (16.56, 131.75, 0.03, 0.20),
    "sfhformer": (7.67, 52.32, 0.03, 0.20),
    "demoe-darkir": (21.9, 11.05, 0.10, 0.25),
    "demoe-wavelet": (101.89, 14.64, 0.10, 0.25),
    "demoe-restormer": (29.06, 13.25, 0.10, 0.25),
    "demoe-plk": (119.64, 30.46, 0.10, 0.25),
}
# Parameters as measured (the releases' counts less the layers they build but never call, docs/model.md).
MEASURED = {
    "restormer": 26_126_644,
    "promptir": 35_376_967,
    "fftformer": 16_542_042,
    "sfhformer": 7_670_539,
    "demoe-darkir": 21_946_185,
    "demoe-wavelet": 101_891_665,
    "demoe-restormer": 29_060_820,
    "demoe-plk": 119_639_585,
}


@pytest.mark.parametrize("name", list(PAPER))
def test_full_presets_match_the_paper_parameter_counts(name):
    # MACs of the full presets are checked by benchmarks/comparison_sizes.py (tracing a
    # 150 G-MAC network takes seconds); their counting is checked on tiny models below.
    params_m, _, params_tolerance, _ = PAPER[name]
    params = count_parameters_of_config(get_preset(name))
    assert params == MEASURED[name]
    assert abs(params / 1e6 - params_m) <= params_tolerance * params_m


@pytest.mark.parametrize("name", ["restormer", "sfhformer", "demoe-restormer"])
def test_mac_count_without_allocating_equals_the_real_count(name):
    config = tiny_config(name)
    by_operator = macs_by_operator(config, size=32)
    real = count_macs(build_model(config), size=32, top_k=1)
    assert count_macs_of_config(config, size=32) == pytest.approx(real, rel=1e-9)
    assert by_operator["matmul"] > 0  # attention maps (MDTA) and einsum mixing are products of activations
    assert sum(by_operator.values()) == pytest.approx(real, rel=1e-9)


def test_presets_are_the_released_architectures():
    assert isinstance(build_model(tiny_config("restormer")), DenseDeblurNet)
    assert get_preset("restormer").attention_heads == (1, 2, 4, 8)
    assert get_preset("fftformer").size_multiple == 32  # 8x8 FFT patches at the quarter-size level
    assert get_preset("sfhformer").size_multiple == 4
    for name in VARIANTS:
        stage_one = PRESETS[name.replace("demoe-", "nafnet-") + "-router"]
        assert baseline_of(get_preset(name)).replace(name=stage_one.name) == stage_one


def test_wavelet_transform_is_perfect_reconstruction_with_haar_filters():
    lwn = LearnableWaveletNetwork(3)
    x = torch.randn(2, 3, 10, 14)
    bands = dwt2(x, lwn.dec_lo, lwn.dec_hi)
    assert bands.shape == (2, 4, 3, 5, 7)
    torch.testing.assert_close(idwt2(bands, lwn.rec_lo, lwn.rec_hi), x)
    # LL of Haar is 2 x the mean of each 2x2 block
    torch.testing.assert_close(bands[:, 0], 2 * torch.nn.functional.avg_pool2d(x, 2))
    odd = torch.randn(1, 3, 7, 9)  # padded by a replicated row/column, cropped back by LWN
    assert idwt2(dwt2(odd, lwn.dec_lo, lwn.dec_hi), lwn.rec_lo, lwn.rec_hi)[..., :7, :9].allclose(odd, atol=1e-6)


def test_fft_patches_round_trip():
    x = torch.randn(2, 3, 16, 24)
    patches = to_patches(x)
    assert patches.shape == (2, 3, 2, 3, 8, 8)
    torch.testing.assert_close(patches[0, 1, 1, 2], x[0, 1, 8:16, 16:24])
    torch.testing.assert_close(from_patches(patches), x)


@pytest.mark.parametrize("name", ["fftformer", "sfhformer", "demoe-darkir"])
def test_fourier_blocks_run_under_bf16_autocast(name):
    model = tiny_model(name).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 16, 16))
    assert torch.isfinite(out.image.float()).all()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(prompt_channels=(1, 2, 3)), "do not apply"),
        (dict(router=True), "dense network"),
        (dict(attention_heads=(1, 2)), "attention_heads needs 4"),
        (dict(architecture="restormers"), "architecture must be one of"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_preset("restormer").replace(**overrides)


def test_expert_block_errors():
    with pytest.raises(ValueError, match="attention_heads needs 5"):
        get_preset("demoe").replace(expert_block="restormer")
    with pytest.raises(ValueError, match="expert_block must be one of"):
        get_preset("demoe").replace(expert_block="swin")


def test_dense_networks_refuse_experts_and_tlc():
    model = tiny_model("sfhformer").eval()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="no experts"):
        model(x, task="defocus")
    with pytest.raises(ValueError, match="TLC"):
        model(x, tlc=True)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 4, 8, 8))
