#!/bin/sh
# The CPU table of issue 12: Semantic FPN (LSNet-T, EfficientViT-M4, ResNet-18) and UperNet (Conv2Former-N) on
# Fashion-scenes' label PNGs, 2 threads, one run after the other, every backbone from scratch with its BatchNorm
# trained. 128x128 training crops, whole 256 px scenes scored (test split once, best-val best.pth). Semantic FPN sees
# 1000 scenes x 3 epochs; UperNet's 512-channel stride-4 head costs several Semantic FPN steps, so it sees 500 x 2
# and validates once: the budget is about equal wall time, not equal images (the table gives both).
#   lsnet data fashion-scenes --out data/fashion-scenes
#   sh benchmarks/segmentation_cpu.sh
#   python benchmarks/fashion_scenes_table.py runs/fashion_scenes
set -e
COMMON="--data-dir data/fashion-scenes --threads 2 --quiet --output runs/fashion_scenes"
FPN="--config sem_fpn_lsnet_t_fashion_scenes $COMMON --train-subset 1000 --epochs 3 --val-subset 100 --test-subset 200"
lsnet train $FPN --model lsnet_t --experiment sem_fpn_lsnet_t_scratch
lsnet train $FPN --model efficientvit_m4 --experiment sem_fpn_efficientvit_m4_scratch
lsnet train $FPN --model resnet18 --experiment sem_fpn_resnet18_scratch
lsnet train --config upernet_conv2former_n_fashion_scenes $COMMON --train-subset 500 --epochs 2 --eval-every 2 \
  --val-subset 50 --test-subset 100 --experiment upernet_conv2former_n_scratch
