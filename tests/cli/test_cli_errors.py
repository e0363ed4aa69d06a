"""Every user error of the non-train verbs is one line on stderr (`error: ...` naming the problem and the fix), with
no traceback unless -v is given. Flag values are checked while parsing (exit 2), the rest when the verb runs (exit 1).
"""
from __future__ import annotations

import json
import re
import sys

import pytest

from lsnet.cli.main import main

MODEL = ["--models", "lsnet_test"]


def one_line_error(capsys, argv: list[str], code: int = 1) -> str:
    """Run `lsnet argv`; assert it fails with exit code `code` and exactly one stderr line; return that line."""
    if code == 2:  # argparse
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    else:
        assert main(argv) == code
    err = capsys.readouterr().err
    # torch's own log lines (glog style, e.g. cpp_extension's "No CUDA runtime is found" when the SKA C kernels load)
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"[WIEF]\d{4} ", line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def contains(line: str, *words: str) -> None:
    missing = [w for w in words if w not in line]
    assert not missing, f"{missing} not in {line!r}"


# ------------------------------------------------------------------------------------------ checked while parsing
@pytest.mark.parametrize("argv, words", [
    (["export", "no_such_model"], ["argument model", "unknown model 'no_such_model'", "timm.list_models"]),
    (["export", "lsnet_tt"], ["unknown model 'lsnet_tt'", "did you mean", "lsnet_t"]),
    (["export", "lsnet_test", "--img-size", "0"], ["--img-size", "positive integer", "'0'"]),
    (["export", "lsnet_test", "--img-size", "abc"], ["--img-size", "positive integer", "'abc'"]),
    (["export", "lsnet_test", "--in-chans", "0"], ["--in-chans", "positive integer"]),
    (["export", "lsnet_test", "--num-classes", "-1"], ["--num-classes", "integer >= 0"]),
    (["export", "lsnet_test", "--rtol", "0"], ["--rtol", "positive number"]),
    (["export", "lsnet_test", "--format", "tflite"], ["--format", "invalid choice: 'tflite'", "onnx", "torchscript"]),
    (["bench", "no_such_model"], ["argument models", "unknown model 'no_such_model'"]),
    (["bench", "lsnet_test", "--batch", "1", "0"], ["--batch", "positive integer", "'0'"]),
    (["bench", "lsnet_test", "--rounds", "0"], ["--rounds", "positive integer"]),
    (["bench", "lsnet_test", "--threads", "0"], ["--threads", "positive integer"]),
    (["bench", "lsnet_test", "--runtime", "eager,tensorrt"], ["--runtime", "'tensorrt' not among", "onnxruntime"]),
    (["bench", "lsnet_test", "--precision", "fp16"], ["--precision", "'fp16' not among", "bf16, int8"]),
    (["bench", "lsnet_test", "--onnxruntime"], ["unrecognized arguments: --onnxruntime"]),
    (["export", "lsnet_test", "--precision", "bf16"], ["--precision", "invalid choice: 'bf16'", "int8"]),
    (["export", "lsnet_test", "--min-agreement", "2"], ["--min-agreement", "between 0 and 1", "'2'"]),
    (["demo", "--models", "no_such_model"], ["--models", "unknown model 'no_such_model'"]),
    (["demo", "--batch", "0"], ["--batch", "positive integer"]),
    (["demo", "--rounds", "0"], ["--rounds", "positive integer"]),
    (["erf", "--models", "no_such_model"], ["--models", "model spec 'no_such_model'", "unknown model"]),
    (["erf", "--models", "lsnet_test:bogus"], ["--models", "'bogus' is not KEY=VALUE"]),
    (["erf", "--models", "label=:lkp_kernel_size=0"], ["--models", "expected [LABEL=]NAME[:KEY=VALUE,...]"]),
    (["erf", *MODEL, "--num-images", "0"], ["--num-images", "positive integer"]),
    (["erf", *MODEL, "--mode", "bogus"], ["--mode", "invalid choice: 'bogus'", "replknet"]),
    (["inspect", "--model", "no_such_model"], ["--model", "unknown model 'no_such_model'"]),
    (["inspect", "--img-size", "-3"], ["--img-size", "positive integer"]),
    (["robustness", "--models", "lsnet_test:oops"], ["--models", "'oops' is not KEY=VALUE"]),
    (["robustness", *MODEL, "--severities", "9"], ["--severities", "invalid choice: 9", "1, 2, 3, 4, 5"]),
    (["robustness", *MODEL, "--subset", "-1"], ["--subset", "integer >= 0"]),
    (["bogusverb"], ["invalid choice: 'bogusverb'", "export"]),
])
def test_bad_flag_values_are_one_line(capsys, argv, words):
    line = one_line_error(capsys, argv, code=2)
    contains(line, *words, "--help")


@pytest.mark.parametrize("content, words", [
    (None, ["--accuracy", "is not a file", "JSON"]),
    ("{bad", ["--accuracy", "is not valid JSON"]),
    ("[1, 2]", ["--accuracy", "holds a list, not an object"]),
])
def test_bench_accuracy_file(capsys, tmp_path, content, words):
    path = tmp_path / "acc.json"
    if content is not None:
        path.write_text(content)
    contains(one_line_error(capsys, ["bench", "lsnet_test", "--accuracy", str(path)], code=2), *words)


# ---------------------------------------------------------------------------------------- checked while running
def test_export_size_the_model_cannot_take(capsys, tmp_path):
    line = one_line_error(capsys, ["export", "lsnet_test", "--img-size", "4", "--output", str(tmp_path / "m.pt"),
                                   "--format", "torchscript", "--no-latency"])
    contains(line, "too small", "need H, W >= 8")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("target, words", [
    ("missing/m.onnx", ["--output", "folder", "missing", "does not exist", "create it"]),
    ("", ["--output", "is a folder", "pass a file path inside it"]),
])
def test_export_output_that_cannot_be_written(capsys, tmp_path, target, words):
    output = tmp_path / target if target else tmp_path
    contains(one_line_error(capsys, ["export", "lsnet_test", "--output", str(output)], code=2), *words)


def test_bench_output_under_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    line = one_line_error(capsys, ["bench", "lsnet_test", "--batch", "1", "--img-size", "32", "--rounds", "1",
                                   "--no-memory", "--no-fuse", "--out", str(tmp_path / "file" / "bench")])
    contains(line, "not a folder", "check the path")


def test_bench_missing_optional_package(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    line = one_line_error(capsys, ["bench", "lsnet_test", "--batch", "1", "--img-size", "32", "--rounds", "1",
                                   "--runtime", "onnxruntime", "--out", str(tmp_path)])
    contains(line, "onnxruntime", "pip install")


@pytest.mark.parametrize("argv, words", [
    (["bench", "lsnet_test", "--runtime", "onnxruntime", "--precision", "int8"],
     ["onnxruntime int8 needs calibration images", "--calibration fashion-mnist"]),
    (["bench", "lsnet_test", "--calibration", "fashion-mnist"], ["--calibration is for int8", "--precision"]),
    (["export", "lsnet_test", "--precision", "int8"], ["--precision int8 needs calibration images", "--calibration"]),
    (["export", "lsnet_test", "--precision", "int8", "--format", "torchscript", "--calibration", "fashion-mnist"],
     ["--precision int8 exports ONNX", "drop --format torchscript"]),
    (["export", "lsnet_test", "--calibration", "fashion-mnist"], ["--calibration is for --precision int8"]),
    (["export", "lsnet_test", "--precision", "int8", "--calibration", "{tmp}/missing", "--output", "{tmp}/m.onnx"],
     ["--calibration", "neither a data set", "nor an image folder"]),
])
def test_bad_precision_combinations_are_one_line(capsys, tmp_path, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    contains(one_line_error(capsys, [*argv, *(["--out", str(tmp_path)] if argv[0] == "bench" else [])]), *words)


def test_demo_size_the_model_cannot_take(capsys):
    contains(one_line_error(capsys, ["demo", "--models", "lsnet_test", "--img-size", "4", "--rounds", "1"]),
             "too small", "need H, W >= 8")


@pytest.mark.parametrize("argv, words", [
    (["--models", "lsnet_test:no_such_kw=3"], ["unexpected keyword argument 'no_such_kw'", "model spec"]),
    ([*MODEL, "--images", "{tmp}/missing"], ["image folder", "not found", "pass 'photos'"]),
    ([*MODEL, "--images", "{tmp}"], ["no images", "under"]),
    ([*MODEL, "--stage", "s7"], ["stage 's7'", "strides"]),
    ([*MODEL, "--stage", "9"], ["stage 9 out of range"]),
])
def test_erf_run_errors(capsys, tmp_path, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    line = one_line_error(capsys, ["erf", *argv, "--num-images", "1", "--output", str(tmp_path / "out")])
    contains(line, *words)


@pytest.mark.parametrize("argv, words", [
    (["--model", "resnet10t"], ["no LSConv layers", "LSNet"]),
    (["--image", "{tmp}/missing.png"], ["--image", "not a file", "fashion-mnist:N"]),
    (["--layers", "no_such_layer"], ["no LS conv named 'no_such_layer'", "choose"]),
    (["--layers", "99"], ["index 99 out of range"]),
    (["--image", "fashion-mnist:x"], ["--image 'fashion-mnist:x'", "fashion-mnist:0"]),
    (["--image", "{tmp}/not_an_image.png"], ["cannot identify image file", "pass an image file"]),
])
def test_inspect_run_errors(capsys, tmp_path, argv, words):
    (tmp_path / "not_an_image.png").write_text("{}")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    defaults = [] if "--model" in argv else ["--model", "lsnet_test"]
    line = one_line_error(capsys, ["inspect", *defaults, *argv, "--output", str(tmp_path / "out")])
    contains(line, *words)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """An ImageFolder tree with two classes of one 16x16 RGB image each, in train/ and val/."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "val"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            color = (200, 10, 10) if label == "a" else (10, 10, 200)
            Image.new("RGB", (16, 16), color).save(root / split / label / "x.png")
    return root


@pytest.mark.parametrize("argv, words", [
    ([*MODEL, "--corruptions", "bogus"], ["unknown corruption", "bogus", "gaussian_noise"]),
    ([*MODEL, "--dataset", "bogus"], ["unknown dataset 'bogus'", "choose"]),
    ([*MODEL, "--dataset", "folder", "--data-dir", "{tmp}/missing"], ["{tmp}/missing"]),
    ([*MODEL, "--baseline", "nobody"], ["--baseline 'nobody'", "labels"]),
    (["--models", "lsnet_test", "lsnet_test"], ["share the label", "LABEL=NAME"]),
])
def test_robustness_run_errors(capsys, tmp_path, image_folder, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    data = [] if "--dataset" in argv else ["--dataset", "folder", "--data-dir", str(image_folder)]
    corruptions = [] if "--corruptions" in argv else ["--corruptions", "fog", "--severities", "1"]
    line = one_line_error(capsys, ["robustness", *argv, *data, *corruptions, "--subset", "2",
                                   "--output", str(tmp_path / "out")])
    contains(line, *[w.replace("{tmp}", str(tmp_path)) for w in words])


def test_verbose_keeps_the_traceback(capsys):
    with pytest.raises(ValueError, match="too small"):
        main(["-v", "demo", "--models", "lsnet_test", "--img-size", "4", "--rounds", "1"])


def test_json_mapping_reads_an_object(tmp_path):
    from lsnet.cli.arguments import json_mapping

    path = tmp_path / "acc.json"
    path.write_text(json.dumps({"lsnet_t": 74.9}))
    assert json_mapping(str(path)) == {"lsnet_t": 74.9}
