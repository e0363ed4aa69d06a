"""`lsnet inspect`: what an LSNet's LS convolutions look at in one image: the per-token SKA aggregation weights
(LSNet supplementary Fig. 2) and the LKP / SKA feature maps (Fig. 3), overlaid on the image, with an index page.

    lsnet inspect                                                   # lsnet_t (random init) on the astronaut photo
    lsnet inspect --model lsnet_t --checkpoint runs/my-run/best.pth --image fashion-mnist:0
    lsnet inspect --model "lsnet_t:lkp_kernel_size=0" --image chelsea --layers 0 -1
    lsnet inspect --image ~/photos/dog.jpg --output results/inspect_dog

--image: a file, a bundled photo (astronaut, chelsea, coffee, rocket, motorcycle_left, hubble_deep_field), or
fashion-mnist:N (test image N). --layers: LS conv names or indices (default: the first LS conv and the last LS conv
of the third stage, as in the paper). Writes image.png, <layer>_{ska_weights,lkp,ska}.png,
<layer>_{lkp,ska}_channels.png, maps.npz, index.md, index.html and config.yaml.
"""
from __future__ import annotations

import argparse

from .arguments import model_spec, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("inspect", help="SKA aggregation weights and LKP/SKA feature maps on one image",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=model_spec, default="lsnet_t",
                        help="[LABEL=]NAME[:KEY=VALUE,...] of an LSNet (default lsnet_t)")
    parser.add_argument("--checkpoint", default=None, help="weights (.pth / .safetensors); default: random init")
    parser.add_argument("--image", default="astronaut", help="file, bundled photo name, or fashion-mnist:N")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the standard places)")
    parser.add_argument("--img-size", type=positive_int, default=None, help="input size (default: the model's)")
    parser.add_argument("--layers", nargs="+", default=None, help="LS conv names or indices (default: paper's)")
    parser.add_argument("--channels", type=positive_int, default=8, help="feature channels shown per grid")
    parser.add_argument("--seed", type=int, default=0, help="seeds random weights")
    parser.add_argument("--output", default="results/inspect", help="output folder (default: results/inspect)")
    return parser


def load_one_image(spec: str, data_dir: str | None = None):
    """A PIL image from a file path, a bundled photo name or 'fashion-mnist:N'."""
    from pathlib import Path

    from PIL import Image

    from lsnet.analysis.images import PHOTOS, photo_paths

    if spec.startswith("fashion-mnist"):
        from lsnet.data import FashionMNIST

        _, _, index = spec.partition(":")
        if not (index or "0").isdigit():
            raise ValueError(f"--image {spec!r}: expected fashion-mnist:N, N a test-image index (e.g. fashion-mnist:0)")
        index = int(index or 0)
        return FashionMNIST(data_dir, split="test", subset=index + 1)[index][0]
    names = {Path(p).stem: p for p in PHOTOS}
    if spec in names or spec in PHOTOS:
        stem = Path(spec).stem
        return Image.open(next(p for p in photo_paths() if p.stem == stem))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--image {spec!r}: not a file, a bundled photo ({', '.join(names)}) "
                                "or fashion-mnist:N")
    return Image.open(path)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    import yaml

    from lsnet.analysis.aggregation import inspect_lsnet, select_layers
    from lsnet.analysis.images import to_model_size
    from lsnet.analysis.models import load_model, model_input, parse_model_spec

    spec = parse_model_spec(args.model)
    torch.manual_seed(args.seed)
    model = load_model(spec, checkpoint=args.checkpoint or spec.checkpoint)
    settings = model_input(model)
    size = args.img_size or settings["img_size"]
    layers = select_layers(model, args.layers)
    image = np.asarray(to_model_size(load_one_image(args.image, args.data_dir), size, settings["in_chans"]))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.yaml").write_text(yaml.safe_dump({**config, "resolved_layers": layers}, sort_keys=False))
    weights = "checkpoint" if (args.checkpoint or spec.checkpoint) else "random init"
    page = inspect_lsnet(model, image, out, mean=settings["mean"], std=settings["std"], layers=layers,
                         num_channels=args.channels, title=f"{spec.label} ({weights}), {args.image}, {size} px")
    print(f"layers: {', '.join(layers)}")
    print(f"wrote {page} and {out / 'index.md'}")
    return 0
