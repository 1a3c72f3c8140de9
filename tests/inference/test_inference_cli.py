"""`demoe deblur` and `demoe classify` end to end: every image kind, every error, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from demoe.cli import main
from demoe.inference import batch
from demoe.imageio import encode_png16, read_image

from inference_testing import photo, quantized, tiny_model, tree_hashes

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
REPORT_FIELDS = {"input", "output", "task_probs", "experts_used", "entropy", "seconds"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights") / "tiny"
    tiny_model().save_pretrained(str(directory))
    return directory


def _deblur(model_dir, *args):
    return main(["deblur", *map(str, args), "--weights", str(model_dir), "--device", "cpu"])


def _kinds(folder: Path) -> dict[str, dict]:
    """Writes one file of every kind; returns name -> expected (shape, dtype, alpha or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb8 = quantized(photo(21, 30, 3), np.uint8)
    rgba8 = quantized(photo(21, 30, 4, seed=1), np.uint8)
    gray16 = quantized(photo(19, 23, 1, seed=2)[..., 0], np.uint16)
    rgb16 = quantized(photo(19, 23, 3, seed=3), np.uint16)
    la16 = quantized(photo(17, 9, 2, seed=4), np.uint16)
    Image.fromarray(rgb8).save(folder / "photo.jpg", quality=95, icc_profile=SRGB_ICC)
    Image.fromarray(rgba8).save(folder / "logo.png")
    Image.fromarray(rgb8[..., 0]).save(folder / "gray.png")
    Image.fromarray(rgba8[..., [0, 3]], "LA").save(folder / "gray_alpha.png")
    Image.fromarray(rgb8).quantize(32).save(folder / "palette.png")
    Image.fromarray(gray16).save(folder / "gray16.png")
    (folder / "color16.png").write_bytes(encode_png16(rgb16, icc_profile=SRGB_ICC))
    tifffile.imwrite(folder / "scan16.tif", rgb16, photometric="rgb")
    tifffile.imwrite(folder / "ga16.tiff", la16, photometric="minisblack", extrasamples=["unassalpha"])
    Image.fromarray(rgba8).save(folder / "web.webp", quality=90)
    Image.fromarray(rgb8).save(folder / "old.bmp")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    return {
        "photo.jpg": ((21, 30, 3), np.uint8, None),
        "logo.png": ((21, 30, 4), np.uint8, rgba8[..., 3]),
        "gray.png": ((21, 30), np.uint8, None),
        "gray_alpha.png": ((21, 30, 2), np.uint8, rgba8[..., 3]),
        "palette.png": ((21, 30, 3), np.uint8, None),
        "gray16.png": ((19, 23), np.uint16, None),
        "color16.png": ((19, 23, 3), np.uint16, None),
        "scan16.tif": ((19, 23, 3), np.uint16, None),
        "ga16.tiff": ((17, 9, 2), np.uint16, la16[..., 1]),
        "web.webp": ((21, 30, 4), np.uint8, None),
        "old.bmp": ((21, 30, 3), np.uint8, None),
        "dot.png": ((1, 1, 3), np.uint8, None),
    }


def test_every_image_kind_round_trips(tmp_path, model_dir, capsys):
    expected = _kinds(tmp_path / "in")
    before = tree_hashes(tmp_path / "in")
    status = _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert status == 0, capsys.readouterr().err
    assert tree_hashes(tmp_path / "in") == before  # inputs untouched
    for name, (shape, dtype, alpha) in expected.items():
        out = tmp_path / "out" / f"{Path(name).stem}_deblurred{Path(name).suffix}"
        image = read_image(out)
        assert image.pixels.shape == shape, name
        assert image.pixels.dtype == dtype, name
        if alpha is not None:
            np.testing.assert_array_equal(image.pixels[..., -1], alpha)
    assert read_image(tmp_path / "out" / "photo_deblurred.jpg").icc_profile == SRGB_ICC
    assert read_image(tmp_path / "out" / "color16_deblurred.png").icc_profile == SRGB_ICC
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == len(expected)
    for record in records:
        assert set(record) == REPORT_FIELDS
        assert set(record["task_probs"]) == {
            "defocus", "global_motion", "local_motion", "synth_global_motion", "low_light"
        }
        assert record["experts_used"] and Path(record["output"]).is_file()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files


def test_exif_orientation_is_applied(tmp_path, model_dir):
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "in").mkdir()
    Image.fromarray(quantized(photo(12, 20, 3), np.uint8)).save(tmp_path / "in" / "r.jpg", exif=exif.tobytes())
    assert _deblur(model_dir, tmp_path / "in" / "r.jpg", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "r_deblurred.jpg") as out:
        assert out.size == (12, 20) and 0x0112 not in out.getexif()


def _broken(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("hello")
    Image.fromarray(quantized(photo(64, 64, 3), np.uint8)).save(folder / "full.png")
    data = (folder / "full.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 3])
    (folder / "full.png").unlink()
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(folder / "bomb.png")
    tifffile.imwrite(folder / "float.tif", np.zeros((4, 4), np.float32))
    Image.fromarray(quantized(photo(8, 8, 3), np.uint8)).save(folder / "good.png")
    return {
        "empty.png": "empty file",
        "notes.jpg": "not an image file",
        "cut.png": "truncated or corrupt",
        "bomb.png": "exceeds the limit of 50,000",
        "float.tif": "unsupported TIFF sample type float32",
    }


def test_broken_inputs_get_one_line_each_and_the_batch_goes_on(tmp_path, model_dir, capsys):
    reasons = _broken(tmp_path / "in")
    before = tree_hashes(tmp_path / "in")
    status = _deblur(
        model_dir, tmp_path / "in", tmp_path / "missing.png", "-o", tmp_path / "out",
        "--max-pixels", "50000", "--report", tmp_path / "r.jsonl",
    )
    err = capsys.readouterr().err
    assert status == 1
    assert tree_hashes(tmp_path / "in") == before
    for name, reason in reasons.items():
        lines = [line for line in err.splitlines() if line.startswith(f"error: {tmp_path / 'in' / name}:")]
        assert len(lines) == 1 and reason in lines[0], (name, err)
    assert f"error: {tmp_path / 'missing.png'}: no such file or folder" in err
    assert "1 deblurred, 0 skipped, 6 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_deblurred.png"]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    errors = [r for r in records if "error" in r]
    assert len(errors) == 6 and all(set(r) == {"input", "error"} for r in errors)


def test_output_equal_to_an_input_is_refused(tmp_path, model_dir, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(quantized(photo(8, 8, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(quantized(photo(8, 8, 3, seed=1), np.uint8)).save(folder / "a_x.png")
    before = tree_hashes(folder)
    status = _deblur(model_dir, folder / "a.png", "-o", folder, "--suffix", "")
    assert status == 1
    assert "refusing to write" in capsys.readouterr().err
    # a.png -> a_x.png would overwrite the other input of this run
    status = _deblur(model_dir, folder / "a.png", folder / "a_x.png", "-o", folder, "--suffix", "_x")
    assert status == 1
    assert "it is an input of this run" in capsys.readouterr().err
    assert tree_hashes(folder) == {**before, "a_x_x.png": tree_hashes(folder)["a_x_x.png"]}


def test_two_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, model_dir, capsys):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        Image.fromarray(quantized(photo(8, 8, 3), np.uint8)).save(tmp_path / sub / "same.png")
    status = _deblur(model_dir, tmp_path / "one" / "same.png", tmp_path / "two" / "same.png", "-o", tmp_path / "out")
    assert status == 1
    assert "already written for" in capsys.readouterr().err


def test_interrupted_run_leaves_no_partial_files_and_skip_existing_resumes(tmp_path, model_dir, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(quantized(photo(16, 16, 3, seed=index), np.uint8)).save(folder / f"{index}.png")
    real_write = batch.write_image
    calls = []

    def write_then_interrupt(path, pixels, *args):
        calls.append(path)
        if len(calls) == 2:  # interrupted in the middle of writing the second output
            def explode(*a, **k):
                Path(a[0]).write_bytes(b"half an image")
                raise KeyboardInterrupt
            monkeypatch.setattr("demoe.imageio._write_with_pillow", explode)
        real_write(path, pixels, *args)

    monkeypatch.setattr(batch, "write_image", write_then_interrupt)
    assert _deblur(model_dir, folder, "-o", tmp_path / "out") == 130
    assert "interrupted" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0_deblurred.png"]
    first = tree_hashes(tmp_path / "out")

    monkeypatch.undo()
    assert _deblur(model_dir, folder, "-o", tmp_path / "out", "--skip-existing", "--report", tmp_path / "r.jsonl") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i}_deblurred.png" for i in range(3)]
    assert tree_hashes(tmp_path / "out")["0_deblurred.png"] == first["0_deblurred.png"]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert records[0] == {"input": str(folder / "0.png"), "output": str(tmp_path / "out" / "0_deblurred.png"), "skipped": True}
    assert "1 skipped" in capsys.readouterr().err


def test_formats_folders_globs_and_recursion(tmp_path, model_dir, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(quantized(photo(8, 8, 4), np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(quantized(photo(8, 8, 3), np.uint8)).save(tmp_path / "in" / "sub" / "b.jpg")
    Image.fromarray(quantized(photo(8, 8, 3), np.uint8)).save(tmp_path / "in" / ".hidden.png")
    assert _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "flat") == 0
    assert sorted(p.name for p in (tmp_path / "flat").rglob("*")) == ["a_deblurred.png"]

    out = tmp_path / "in" / "restored"  # an output folder inside the input folder
    assert _deblur(model_dir, tmp_path / "in", "--recursive", "-o", out, "--format", "tiff") == 0
    assert _deblur(model_dir, tmp_path / "in", "--recursive", "-o", out, "--format", "tiff") == 0  # not re-read
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.tif")) == ["a_deblurred.tif", "sub/b_deblurred.tif"]
    assert read_image(out / "a_deblurred.tif").pixels.shape == (8, 8, 4)

    assert _deblur(model_dir, str(tmp_path / "in" / "**" / "*.jpg"), "--recursive", "-o", tmp_path / "g", "--format", "png") == 0
    assert [p.name for p in (tmp_path / "g").iterdir()] == ["b_deblurred.png"]

    capsys.readouterr()
    assert _deblur(model_dir, tmp_path / "in" / "a.png", "-o", tmp_path / "j", "--format", "jpg") == 1
    assert "JPEG cannot store the alpha channel" in capsys.readouterr().err


def test_sixteen_bit_to_jpeg_is_quantised_to_eight_bits(tmp_path, model_dir):
    (tmp_path / "c16.png").write_bytes(encode_png16(quantized(photo(10, 12, 3), np.uint16)))
    assert _deblur(model_dir, tmp_path / "c16.png", "-o", tmp_path / "out", "--format", "jpg") == 0
    assert read_image(tmp_path / "out" / "c16_deblurred.jpg").pixels.dtype == np.uint8


def test_options_reach_the_pipeline(tmp_path, model_dir, capsys):
    Image.fromarray(quantized(photo(40, 56, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["-o", tmp_path / "out", "--report", tmp_path / "r.jsonl", "--tile", "32", "--tile-overlap", "8",
            "--task", "low_light", "--min-confidence", "0.99", "--uncertain", "soft", "--top-k", "2"]
    assert _deblur(model_dir, tmp_path / "a.png", *args) == 0
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["experts_used"] == ["low_light"]  # a named task is not second-guessed
    assert record["low_confidence"] is True
    assert "low confidence" in capsys.readouterr().err
    args[args.index("low_light")] = "auto"
    assert _deblur(model_dir, tmp_path / "a.png", *args) == 0
    assert len(json.loads((tmp_path / "r.jsonl").read_text())["experts_used"]) == 2


def test_usage_errors_exit_2_with_a_clear_message(tmp_path, model_dir, capsys, monkeypatch):
    import demoe.checkpoints

    monkeypatch.setattr(demoe.checkpoints, "BUNDLED_DIR", tmp_path / "no-bundle")  # none shipped
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "convert-official" in capsys.readouterr().err  # no bundled weights
    assert _deblur(model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--precision", "fp16") == 2
    assert "needs a GPU" in capsys.readouterr().err
    assert _deblur(model_dir, tmp_path / "nothing", "-o", tmp_path / "out") == 2
    assert "no images or videos to deblur" in capsys.readouterr().err
    assert _deblur(model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--tile", "16", "--tile-overlap", "16") == 2
    assert _deblur(model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--top-k", "6") == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_classify_prints_the_routers_verdict(tmp_path, model_dir, capsys):
    Image.fromarray(quantized(photo(24, 24, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_text("x")
    status = main(["classify", str(tmp_path / "a.png"), str(tmp_path / "bad.png"), "--json",
                   "--weights", str(model_dir), "--device", "cpu"])
    assert status == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["input"] == str(tmp_path / "a.png")
    assert abs(sum(lines[0]["task_probs"].values()) - 1) < 1e-5
    assert lines[0]["top"] == max(lines[0]["task_probs"], key=lines[0]["task_probs"].get)
    assert lines[1] == {"input": str(tmp_path / "bad.png"), "error": "not an image file (no PNG, JPEG, TIFF, WebP or BMP data)"}
    assert main(["classify", str(tmp_path / "a.png"), "--weights", str(model_dir), "--device", "cpu"]) == 0
    assert "a.png: " in capsys.readouterr().out
