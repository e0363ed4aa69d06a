#!/bin/sh
# Make Fashion-MNIST available for `make run`: Debian's `dataset-fashion-mnist` package (gzipped IDX files in
# /usr/share/datasets/fashion-mnist) when apt-get is available and we are root (or have password-less sudo).
# Otherwise print how to point at the data; `lsnet train --download` then tries torchvision's downloader.
DIR=/usr/share/datasets/fashion-mnist
if [ -n "$LSNET_FASHION_MNIST" ]; then
    echo "Fashion-MNIST: using \$LSNET_FASHION_MNIST=$LSNET_FASHION_MNIST"
    exit 0
fi
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; then
    echo "Fashion-MNIST: $DIR"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != none ]; then
    echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist (30 MB)"
    export DEBIAN_FRONTEND=noninteractive
    if $SUDO apt-get install -y -q dataset-fashion-mnist || \
       { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }; then
        [ -f "$DIR/train-images-idx3-ubyte.gz" ] && echo "Fashion-MNIST: $DIR" && exit 0
    fi
    echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist" >&2
fi
cat >&2 <<MSG
Fashion-MNIST is not installed and could not be installed here (needs apt-get and root).
  - Debian/Ubuntu:  sudo apt-get install dataset-fashion-mnist      (files land in $DIR)
  - any machine:    export LSNET_FASHION_MNIST=/path/to/folder     (holding train-images-idx3-ubyte.gz,
                    train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)
                    or: make run RUN_ARGS="--data-dir /path/to/folder"
Trying torchvision's downloader next (needs network).
MSG
exit 0
