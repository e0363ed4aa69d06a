"""The timm model contract, shared by every family's tests (tests/models/test_<family>.py).

Each check takes a model name (any registered timm name) plus small sizes, so a tiny test variant keeps them fast.
"""
from __future__ import annotations

import collections
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


# ----------------------------------------------------------------------------- the rest of timm's model contract
# What timm's own suite (tests/test_models.py of pytorch-image-models) checks for every registered model, written
# for small inputs: default-cfg sanity, FX feature extraction and FX backward, TorchScript (plain and FX'd), meta /
# dtype builds, and gradient checkpointing that recomputes each block exactly once.

# models whose scripted form runs in-process but cannot be saved with torch.jit.save, and why (timm keeps such
# lists, EXCLUDE_JIT_FILTERS, for models that do not script at all; every family here scripts)
JIT_SAVE_EXCLUDE = {
    "uniconvnet_*": "the DCNv3 sampling (lsnet.ops.dcnv3) is not TorchScript-able; scripted models call it back in "
                    "Python (torch.jit.ignore), which torch.jit.save cannot serialise",
}


def _input(model: torch.nn.Module, input_size: tuple[int, int, int] | None, batch: int = 1) -> torch.Tensor:
    size = input_size or model.pretrained_cfg["input_size"]
    return torch.randn(batch, *size, generator=torch.Generator().manual_seed(0))


def check_default_cfg(name: str, **kwargs) -> None:
    """timm's test_model_default_cfgs (and _non_std for token outputs) at the cfg's input size, plus values.

    forward_features has the cfg's pool_size and num_features channels; pre_logits has head_hidden_size and equals
    the output after reset_classifier(0); reset_classifier(0, '') and create_model(num_classes=0, global_pool='')
    keep the unpooled map; the cfg's classifier and first_conv name real weights.
    """
    from timm.layers import get_channel_dim, get_spatial_dim

    model = timm.create_model(name, **kwargs).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg = model.pretrained_cfg
    state = model.state_dict()
    x = _input(model, None)
    fmt = getattr(model, "output_fmt", "NCHW")
    tokens = fmt == "NLC"  # timm's non-standard (token) models: no spatial checks
    feat_dim = getattr(model, "feature_dim", None) if tokens else get_channel_dim(fmt)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[feat_dim if feat_dim is not None else 1] == model.num_features, feats.shape
        if not tokens:
            spatial = get_spatial_dim(fmt)
            assert tuple(feats.shape[d] for d in spatial) == tuple(cfg["pool_size"]), (feats.shape, cfg["pool_size"])
        assert pre.shape == (1, model.head_hidden_size), pre.shape
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre)
        if not tokens:
            model.reset_classifier(0, "")
            unpooled = model(x)
            assert unpooled.ndim == 4 and tuple(unpooled.shape[d] for d in spatial) == tuple(cfg["pool_size"])
            bare = timm.create_model(name, num_classes=0, global_pool="", **kwargs).eval()
            assert bare(x).shape == unpooled.shape
    classifiers = cfg["classifier"] if isinstance(cfg["classifier"], (tuple, list)) else (cfg["classifier"],)
    first_convs = cfg["first_conv"] if isinstance(cfg["first_conv"], (tuple, list)) else (cfg["first_conv"],)
    for layer in (*classifiers, *first_convs):
        assert f"{layer}.weight" in state, f"{name}: cfg names {layer!r}, which has no weight"
    assert cfg.get("license"), f"{name}: the pretrained cfg names no licence"


def _fx_model(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    """The whole model as a torchvision FX feature extractor returning its final node (timm's _create_fx_model)."""
    from timm.layers import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=tracer_kwargs)


def check_fx(name: str, input_size: tuple[int, int, int], **kwargs) -> None:
    """torch.fx: the traced model equals the eager one (eval), trains (every parameter gets a gradient), and the
    FX feature extractors (timm feature_cls='fx', torchvision create_feature_extractor) equal forward_intermediates.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    model = timm.create_model(name, **kwargs).eval()
    x = _input(model, input_size)
    traced = _fx_model(model)
    with torch.no_grad():
        torch.testing.assert_close(next(iter(traced(x).values())), model(x), rtol=0, atol=0)
        reference = model.forward_intermediates(x, intermediates_only=True)

    model = timm.create_model(name, num_classes=7, **kwargs).train()
    traced = _fx_model(model, train=True)
    out = next(iter(traced(_input(model, input_size, batch=2)).values()))
    out = torch.cat(out) if isinstance(out, tuple) else out
    assert out.shape[-1] == 7
    out.mean().backward()
    missing = [n for n, p in traced.named_parameters() if p.grad is None]
    assert not missing, f"FX-traced {name}: parameters without gradient: {missing[:10]}"

    if getattr(timm.create_model(name, **kwargs), "output_fmt", "NCHW") == "NCHW":  # stage maps, not tokens
        n = len(reference)
        torch.manual_seed(0)
        features = timm.create_model(name, features_only=True, feature_cls="fx", out_indices=tuple(range(n)),
                                     **kwargs).eval()
        torch.manual_seed(0)  # the same initial weights
        full = timm.create_model(name, **kwargs).eval()
        with torch.no_grad():
            reference = full.forward_intermediates(x, intermediates_only=True)
            for got, want in zip(features(x), reference):
                torch.testing.assert_close(got, want)
            # plain torchvision, no timm tracer settings: our shape checks and ops must trace on their own
            last = full.feature_info[-1]["module"]
            plain = create_feature_extractor(full, return_nodes={last: "out"})
            torch.testing.assert_close(plain(x)["out"], reference[-1])


def check_torchscript(name: str, input_size: tuple[int, int, int], tmp_path: Path | None = None, **kwargs) -> None:
    """TorchScript as timm's suite scripts models (set_scriptable, eval): torch.jit.script of the model and of its
    FX trace equal eager outputs; a saved and reloaded script too, unless the model is in JIT_SAVE_EXCLUDE."""
    import fnmatch

    from timm import set_scriptable

    with set_scriptable(True):
        model = timm.create_model(name, **kwargs).eval()
    x = _input(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated upstream
        scripted = torch.jit.script(model)
        fx_scripted = torch.jit.script(_fx_model(model))
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(scripted(x), expected)
        torch.testing.assert_close(next(iter(fx_scripted(x).values())), expected)
    if tmp_path is not None and not any(fnmatch.fnmatch(name, p) for p in JIT_SAVE_EXCLUDE):
        path = tmp_path / f"{name}.pt"
        torch.jit.save(scripted, str(path))
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.load(str(path))(x), expected)


def check_device_dtype(name: str, **kwargs) -> None:
    """timm.create_model(device='meta') builds (nothing data-dependent at build time) with the same parameters and
    buffers as a CPU build; dtype=torch.float64 reaches every floating parameter and buffer."""
    cpu = timm.create_model(name, **kwargs)
    meta = timm.create_model(name, device="meta", **kwargs)
    tensors = lambda m: {**dict(m.named_parameters()), **dict(m.named_buffers())}  # noqa: E731
    assert {k: v.shape for k, v in tensors(meta).items()} == {k: v.shape for k, v in tensors(cpu).items()}
    on_cpu = [k for k, v in tensors(meta).items() if v.device.type != "meta"]
    assert not on_cpu, f"{name}: built off the meta device: {on_cpu[:5]}"
    double = timm.create_model(name, dtype=torch.float64, **kwargs)
    wrong = [k for k, v in tensors(double).items() if v.is_floating_point() and v.dtype != torch.float64]
    assert not wrong, f"{name}: dtype=float64 did not reach {wrong[:5]}"


def check_grad_checkpointing(name: str, input_size: tuple[int, int, int], **kwargs) -> None:
    """set_grad_checkpointing recomputes each block exactly once in backward (forward pre-hooks count the calls of every
    `blocks.<i>` module: 1 per step without, 2 with), and gives the same outputs and gradients."""
    x = _input(timm.create_model(name, **kwargs), input_size, batch=2)
    runs = []
    for enable in (False, True):
        torch.manual_seed(0)
        model = timm.create_model(name, **kwargs).train()
        model.set_grad_checkpointing(enable)
        blocks = {n: m for n, m in model.named_modules() if re.search(r"(^|\.)blocks\.\d+$", n)}
        assert blocks, f"{name}: no blocks.<i> modules found"
        calls = collections.Counter(dict.fromkeys(blocks, 0))
        for block_name, block in blocks.items():
            block.register_forward_pre_hook(lambda *_, key=block_name, counter=calls: counter.update([key]))
        out = model(x)
        out = out[0] + out[1] if isinstance(out, tuple) else out
        out.square().mean().backward()
        expected = 2 if enable else 1
        wrong = {k: v for k, v in calls.items() if v != expected}
        assert not wrong, f"{name} (checkpointing={enable}): block forward counts {wrong}, expected {expected} each"
        runs.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(runs[1][0], runs[0][0])
    for key, grad in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][key], grad, msg=lambda m, key=key: f"{key}: {m}")
