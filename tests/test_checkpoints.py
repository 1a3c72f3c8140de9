"""Official checkpoint import, checked against an independent re-implementation.

`OfficialDeMoE` below is written from the release's description (the key layout in
shared/reference/official_demoe_state_dict.json and the paper), with the release's module names
(`modules_list`, `experts`, `mlp_branch`) and its own plain loop over experts. A random
checkpoint in that layout is converted by demoe and both models must agree.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import demoe
from demoe.checkpoints import (
    CheckpointMismatchError,
    WeightsNotFoundError,
    convert_official,
    official_key_to_demoe,
)
from demoe.config import TASK_NAMES


class RefLayerNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return self.weight.view(1, -1, 1, 1) * (x - mu) / (var + 1e-6).sqrt() + self.bias.view(1, -1, 1, 1)


class RefNAFBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = RefLayerNorm(c)
        self.norm2 = RefLayerNorm(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp):
        x = self.conv2(self.conv1(self.norm1(inp)))
        a, b = x.chunk(2, dim=1)
        x = a * b
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        a, b = self.conv4(self.norm2(y)).chunk(2, dim=1)
        return y + self.conv5(a * b) * self.gamma


class RefSequence(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.modules_list = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.modules_list:
            x = block(x)
        return x


class RefMoE(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.experts = nn.ModuleList(RefNAFBlock(c) for _ in range(n))

    def forward(self, x, weights):
        out = 0
        for i, expert in enumerate(self.experts):
            for b in range(x.shape[0]):  # deliberately naive: per image, per expert
                if weights[b, i] != 0:
                    contribution = torch.zeros_like(x)
                    contribution[b] = weights[b, i] * expert(x[b : b + 1])[0]
                    out = out + contribution
        return out


class RefRouter(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_bottleneck = nn.Sequential(nn.Conv2d(c, 256, 1), nn.BatchNorm2d(256), nn.ReLU(), nn.Dropout2d(0.2))
        self.attention = nn.Sequential(nn.Conv2d(256, 1, 1), nn.Sigmoid())
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 128), nn.BatchNorm1d(128),
            nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 5),
        )

    def forward(self, x):
        x = self.conv_bottleneck(x)
        return self.classifier(x * self.attention(x))


class OfficialDeMoE(nn.Module):
    def __init__(self, width=32, middle=2, enc=(2, 2, 2, 2), dec=(2, 2, 2, 2), n=5):
        super().__init__()
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        c = width
        for num in enc:
            self.encoders.append(RefSequence([RefNAFBlock(c) for _ in range(num)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, 2))
            c *= 2
        self.mlp_branch = RefRouter(c)
        self.middle_blks = RefSequence([RefNAFBlock(c) for _ in range(middle)])
        self.experts = nn.ModuleList([RefMoE(c, n)])
        for num in dec:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(RefSequence([RefNAFBlock(c) for _ in range(num)]))
            self.experts.append(RefMoE(c, n))
        self.padder = 2 ** len(enc)

    def forward(self, inp, manual=None):
        _, _, h, w = inp.shape
        x = F.pad(inp, (0, (self.padder - w % self.padder) % self.padder, 0, (self.padder - h % self.padder) % self.padder))
        padded = x
        x = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        probs = torch.softmax(self.mlp_branch(x), dim=1)
        if manual is None:
            weights = F.one_hot(probs.argmax(1), 5).float()
        else:
            weights = F.one_hot(torch.full((inp.shape[0],), manual), 5).float()
        x = self.experts[0](self.middle_blks(x), weights)
        for i, (decoder, up, skip) in enumerate(zip(self.decoders, self.ups, skips[::-1])):
            x = self.experts[i + 1](decoder(up(x) + skip), weights)
        return (self.ending(x) + padded)[..., :h, :w], probs


def random_official_state(model, seed=0, scale=0.1):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.dtype == torch.long:
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=generator) * scale
    return state


@pytest.fixture(scope="module")
def official_tiny():
    reference = OfficialDeMoE(width=8, middle=1, enc=(1, 2), dec=(2, 1))
    reference.load_state_dict(random_official_state(reference))
    return reference.eval()


def tiny_config():
    return demoe.create_model("demoe-tiny").config.replace(
        encoder_blocks=(1, 2), middle_blocks=1, decoder_blocks=(2, 1), router_channels=256, router_hidden=128
    )


def test_reference_and_demoe_have_exactly_the_released_keys_and_shapes():
    release = json.loads((Path(__file__).parent / "data" / "official_demoe_keys.json").read_text())
    reference = {k: list(v.shape) for k, v in OfficialDeMoE().state_dict().items()}
    assert reference == release["keys"]
    assert release["expert_order"] == list(TASK_NAMES)
    ours = {k: list(v.shape) for k, v in demoe.create_model("demoe").state_dict().items()}
    assert {official_key_to_demoe(k): shape for k, shape in release["keys"].items()} == ours


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_converted_checkpoint_equals_reference_for_auto_and_every_task(tmp_path, official_tiny, prefix, monkeypatch):
    import demoe.checkpoints as checkpoints

    monkeypatch.setitem(demoe.config.PRESETS, "test-official", tiny_config())
    state = {prefix + k: v for k, v in official_tiny.state_dict().items()}
    torch.save({"params": state, "iter": 123}, tmp_path / "DeMoE.pt")
    checkpoints.convert_official(tmp_path / "DeMoE.pt", tmp_path / "out", preset="test-official")
    model = demoe.load_model(tmp_path / "out")
    assert model.config.train_crop == 384 and model.tlc_window == 576  # the paper's crops: --tlc works
    x = torch.rand(3, 3, 37, 53)
    with torch.no_grad():
        expected, expected_probs = official_tiny(x)
        out = model(x, task="auto")
        torch.testing.assert_close(out.router_probs, expected_probs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=1e-5)
        for index, task in enumerate(TASK_NAMES):
            expected, _ = official_tiny(x, manual=index)
            torch.testing.assert_close(model(x, task=task).image, expected, atol=1e-5, rtol=1e-5)


def test_full_size_official_checkpoint_converts_with_cli(tmp_path):
    reference = OfficialDeMoE()
    reference.load_state_dict(random_official_state(reference, seed=3, scale=0.03))
    reference.eval()
    torch.save({"params": {"module." + k: v for k, v in reference.state_dict().items()}}, tmp_path / "DeMoE.pt")
    result = subprocess.run(
        [sys.executable, "-m", "demoe", "convert-official", str(tmp_path / "DeMoE.pt"), str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "20,150,665 parameters" in result.stdout
    model = demoe.load_model(tmp_path / "out")
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        expected, probs = reference(x)
        assert expected.abs().max() < 50  # activations stay in a range where 1e-5 is meaningful
        torch.testing.assert_close(model(x).image, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x, task="defocus").image, reference(x, manual=0)[0], atol=1e-5, rtol=1e-5)


def test_mismatched_checkpoint_names_missing_unexpected_and_misshaped_keys(tmp_path):
    state = OfficialDeMoE().state_dict()
    state.pop("ending.bias")
    state["extra.weight"] = torch.zeros(1)
    state["intro.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save({"params": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError) as error:
        convert_official(tmp_path / "bad.pt", tmp_path / "out")
    message = str(error.value)
    assert "missing keys (1): ending.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "intro.weight: checkpoint (16, 3, 3, 3), expected (32, 3, 3, 3)" in message
    assert not (tmp_path / "out").exists()


def test_non_checkpoint_file_is_explained(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointMismatchError, match="expected torch.save"):
        convert_official(tmp_path / "list.pt", tmp_path / "out")


def test_load_model_without_weights_says_what_is_missing(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="convert-official"):
        demoe.load_model("no-such-weights")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="missing model.safetensors"):
        demoe.load_model(tmp_path)


class TrainerState:
    """A custom class a training script might pickle next to the weights."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


def test_training_leftovers_in_the_checkpoint(tmp_path, official_tiny, monkeypatch):
    """Numpy scalars and argparse options load without running code; other objects are
    refused by name unless the user trusts the file."""
    import argparse

    import numpy as np

    from demoe.checkpoints import UntrustedCheckpointError, load_torch_file

    monkeypatch.setitem(demoe.config.PRESETS, "test-official", tiny_config())
    state = official_tiny.state_dict()
    extras = {"best_psnr": np.float64(31.5), "psnr_curve": np.arange(3.0), "args": argparse.Namespace(lr=1e-3)}
    torch.save({"params": state, **extras}, tmp_path / "DeMoE.pt")
    model = convert_official(tmp_path / "DeMoE.pt", tmp_path / "out", preset="test-official")
    torch.testing.assert_close(model.state_dict()["intro.weight"], state["intro.weight"])

    torch.save({"params": state, "trainer": TrainerState(3)}, tmp_path / "custom.pt")
    with pytest.raises(UntrustedCheckpointError, match="TrainerState.*--trust-checkpoint"):
        convert_official(tmp_path / "custom.pt", tmp_path / "refused", preset="test-official")
    assert not (tmp_path / "refused").exists()
    assert load_torch_file(tmp_path / "custom.pt", trust=True)["trainer"].epoch == 3
    with pytest.raises(ValueError, match="cannot read"):
        (tmp_path / "garbage.pt").write_bytes(b"garbage")
        load_torch_file(tmp_path / "garbage.pt")


def test_foreign_checkpoint_message_is_short(tmp_path):
    torch.save({"params": {f"layer{i}.weight": torch.zeros(1) for i in range(50)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError) as error:
        convert_official(tmp_path / "other.pt", tmp_path / "out")
    message = str(error.value)
    assert "(0 of its 808 keys found)" in message and "not a DeMoE/NAFNet checkpoint" in message
    assert "... and 796 more" in message and "... and 38 more" in message
    assert len(message) < 2500
