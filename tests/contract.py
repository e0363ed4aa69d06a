"""The timm model contract, shared by every family's tests (tests/models/test_<family>.py).

Each check takes a model name (any registered timm name) plus small sizes, so a tiny test variant keeps them fast.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import re
import warnings
from collections import Counter
from pathlib import Path

import timm
import torch
from timm.utils import reparameterize_model

import lsnet  # noqa: F401  (registers the models)

MANIFESTS = Path(__file__).resolve().parent / "fixtures" / "manifests"  # official key names and shapes
_SHAPE = re.compile(r"^(\S+)\t\((.*)\)$")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def read_manifest(name: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """Official key -> shape, and the trainable-parameter total from the header, of `fixtures/manifests/<name>.txt`."""
    path = MANIFESTS / f"{name}.txt"
    shapes, total = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("# total parameters (trainable):"):
            total = int(line.split(":")[1])
        match = _SHAPE.match(line)
        if match:
            dims = match.group(2).replace(" ", "").rstrip(",")
            shapes[match.group(1)] = tuple(int(d) for d in dims.split(",")) if dims else ()
    return shapes, total


def random_official_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the manifest's keys and shapes (int64 for index buffers and counters)."""
    generator = torch.Generator().manual_seed(seed)
    shapes, _ = read_manifest(name)
    state = {}
    for key, shape in shapes.items():
        if key.endswith(("num_batches_tracked", "_idxs")):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    return state


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-default statistics and affine parameters (so fusion bugs show)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)


def check_forward_backward(name: str, input_size: tuple[int, int, int], num_classes: int = 7, **kwargs) -> None:
    """Output shape, finite values, and a gradient for every parameter."""
    model = timm.create_model(name, num_classes=num_classes, **kwargs)
    model.train()
    x = torch.randn(2, *input_size)
    out = model(x)
    out = out[0] + out[1] if isinstance(out, tuple) else out
    assert out.shape == (2, num_classes), out.shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:10]}"


def check_features(name: str, input_size: tuple[int, int, int], out_indices=(0, 1, 2, 3), **kwargs) -> None:
    """features_only maps match feature_info channels and reductions (height and width: pass H != W);
    forward_intermediates agrees."""
    model = timm.create_model(name, features_only=True, out_indices=out_indices, **kwargs).eval()
    x = torch.randn(1, *input_size)
    feats = model(x)
    assert len(feats) == len(out_indices)
    for feat, chs, reduction in zip(feats, model.feature_info.channels(), model.feature_info.reduction()):
        assert feat.shape[1] == chs, (feat.shape, chs)
        for got, side in zip(feat.shape[-2:], input_size[-2:]):  # height and width: floor or ceil of side / reduction
            assert got in (side // reduction, -(-side // reduction)), (tuple(feat.shape), input_size, reduction)

    full = timm.create_model(name, **kwargs).eval()
    with torch.no_grad():
        final, inter = full.forward_intermediates(x, indices=list(out_indices))
        only = full.forward_intermediates(x, indices=list(out_indices), intermediates_only=True)
        reference = full.forward_features(x)
    assert len(inter) == len(only) == len(out_indices)
    torch.testing.assert_close(final, reference)
    for a, b in zip(inter, only):
        torch.testing.assert_close(a, b)


def check_state_dict_round_trip(name: str, input_size: tuple[int, int, int], tmp_path: Path, **kwargs) -> None:
    """torch.save/load (weights_only) and safetensors reproduce the same outputs."""
    from safetensors.torch import load_file, save_file

    model = timm.create_model(name, **kwargs).eval()
    randomize_batchnorm(model)
    x = torch.randn(1, *input_size)
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    for state in (torch.load(buffer, weights_only=True), None):
        if state is None:
            path = tmp_path / f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            state = load_file(str(path))
        clone = timm.create_model(name, **kwargs).eval()
        clone.load_state_dict(state, strict=True)
        with torch.no_grad():
            torch.testing.assert_close(clone(x), expected)


def check_fuse(name: str, input_size: tuple[int, int, int], rtol: float = 1e-5, **kwargs) -> None:
    """timm.utils.reparameterize_model output equals the unfused model's (eval, non-default BN stats)."""
    model = timm.create_model(name, **kwargs).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, *input_size)
    fused = reparameterize_model(model)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    scale = expected.abs().max().clamp_min(1e-6)
    assert ((got - expected).abs().max() / scale) < rtol, f"fused differs: {(got - expected).abs().max()} / {scale}"


def _fingerprint(tensor: torch.Tensor) -> tuple:
    """(dtype, numel, sha1 of the values): equal for equal values in any shape (a reshaped copy matches)."""
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return tensor.dtype, tensor.numel(), hashlib.sha1(data).hexdigest()


def check_same_tensors(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], expected_name: str,
                       got_name: str) -> None:
    """The floating tensors of both state dicts are the same multiset of values, whatever the keys.

    Random tensors are unique, so this proves every tensor was loaded unchanged (up to a reshape) somewhere and
    nothing in `got` kept its initialisation; names the first unmatched keys of each side.
    """
    want = {k: _fingerprint(v) for k, v in expected.items() if v.is_floating_point()}
    have = {k: _fingerprint(v) for k, v in got.items() if v.is_floating_point()}
    spare = Counter(have.values()) - Counter(want.values())
    lacking = Counter(want.values()) - Counter(have.values())
    missing = [k for k, f in want.items() if lacking[f] > 0]
    extra = [k for k, f in have.items() if spare[f] > 0]
    assert not missing and not extra, (
        f"{len(missing)} tensors of the {expected_name} not found by value in the {got_name} (first: {missing[:5]}); "
        f"{len(extra)} tensors of the {got_name} not from the {expected_name} (first: {extra[:5]})"
    )


def check_official_checkpoint(name: str, manifest: str, tmp_path: Path, input_size=(3, 224, 224),
                              container: str | None = "model", **kwargs) -> torch.nn.Module:
    """Random tensors of the official layout load strictly through timm's pretrained path (file overlay), and
    every floating tensor of the file is, by value, exactly one floating tensor of the model and vice versa."""
    state = random_official_state_dict(manifest)
    payload = {container: state, "epoch": 3} if container else state
    path = tmp_path / f"{manifest}.pth"
    torch.save(payload, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs).eval()
    check_same_tensors(state, model.state_dict(), "official file", "loaded model")
    with torch.no_grad():
        out = model(torch.randn(1, *input_size))
    assert torch.isfinite(out).all()
    return model


@contextlib.contextmanager
def onednn(enabled: bool):
    """Switch oneDNN (mkldnn) convolutions on or off; setting up a new shape costs ~1-2 s on tiny models."""
    flags = torch.backends.mkldnn.flags(enabled=enabled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a TF32-on-oneDNN notice emitted by flags()
        flags.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flags.__exit__(None, None, None)
