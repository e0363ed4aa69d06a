#!/bin/sh
# The trials behind the `fashion_mnist_cpu` preset (docs/training.md, "How the preset was chosen").
#   sh benchmarks/fashion_mnist_trials.sh            # about 1 h on 2 cores; run folders under runs/trials/
# Short trials: 20k training images, 4 epochs, batch 128, two at a time with 1 thread each (2 cores). Trials decide
# on the held-out validation split and never read the test split (--test-split none); the full runs at the end do.
# Prints each run's final line at the end (the last line of runs/trials/<name>.log: val or test top-1, labelled).
set -eu
out=runs/trials
old="--scale 0.75 1 --ratio 0.85 1.18"          # the first preset's random-resized crop
none="--scale 1 1 --ratio 1 1"                  # no crop: resize and flip only
trial() {  # name, then extra flags
    name=$1; shift
    lsnet train --config fashion_mnist_cpu --train-subset 20000 --epochs 4 --batch-size 128 --threads 1 --quiet \
        --test-split none --output "$out" --experiment "$name" "$@" > "$out/$name.log" 2>&1
}
mkdir -p "$out"
trial crop_ls_lr2_64px $old --smoothing 0.1 --lr 2e-3 --img-size 64 &
trial crop_ls_lr2_96px $old --smoothing 0.1 --lr 2e-3 --img-size 96 &
wait
trial plain_lr2_64px $none --smoothing 0 --lr 2e-3 --img-size 64 &
trial plain_lr2_96px $none --smoothing 0 --lr 2e-3 --img-size 96 &
wait
trial plain_lr4_64px $none --smoothing 0 --lr 4e-3 --img-size 64 &
trial plain_lr8_64px $none --smoothing 0 --lr 8e-3 --img-size 64 &
wait
trial plain_ls_lr4_64px $none --smoothing 0.1 --lr 4e-3 --img-size 64 &
trial resnet18_crop_ls_lr2_64px $old --smoothing 0.1 --lr 2e-3 --img-size 64 --model resnet18 &
wait
# Full runs, alone on the machine (2 threads): the preset, and the preset for 12 epochs.
lsnet train --config fashion_mnist_cpu --output "$out" --experiment preset_6ep --quiet > "$out/preset_6ep.log" 2>&1
lsnet train --config fashion_mnist_cpu --output "$out" --experiment preset_12ep --epochs 12 --quiet \
    > "$out/preset_12ep.log" 2>&1
for log in "$out"/*.log; do echo "$log: $(tail -n 1 "$log")"; done
