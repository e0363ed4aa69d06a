#!/bin/sh
# The CPU table of issue 11: detectors on Fashion-scenes at an equal budget per detector (RetinaNet: 2000 training
# images seen; Mask R-CNN: 800), 160 px, 2 threads, one run after the other. Every row trains its backbone BatchNorm
# (--no-freeze-bn): the `make run` classifier saw 64 px images, so its stride-64 stage only ever had a 1x1 grid and
# the border taps of its 3x3 depthwise kernels never trained; with frozen statistics they blow stage 4 up (feature
# std ~700 at 160 px, initial focal loss ~200) -- batch statistics keep it at ~1.5. Needs the scenes and, for the
# "from make run" rows, the `make run` LSNet-T classifier:
#   lsnet data fashion-scenes --out data/fashion-scenes && make run
#   sh benchmarks/detection_cpu.sh runs/<make-run folder>/best.pth [all|retinanet|mask_rcnn]
# Mask R-CNN trains at ~1 img/s here (its 4-conv mask head on every positive RoI dominates), so it sees 400 scenes
# twice with 64 sampled RoIs per image; RetinaNet ~4 img/s.
set -e
CLS=${1:?pass the make-run classifier checkpoint, e.g. runs/<run>/best.pth}
ROWS=${2:-all}
COMMON="--data-dir data/fashion-scenes --min-size 160 --max-size 160 --train-subset 1000 --epochs 2
        --val-subset 200 --test-subset 500 --threads 2 --quiet --output runs/fashion_scenes"
RETINA="--config retinanet_lsnet_t_fashion_scenes $COMMON"
MASK="--config mask_rcnn_lsnet_t_fashion_scenes $COMMON --train-subset 400 --epochs 2 --val-subset 100 --test-subset 200
      --detector-kwargs box_batch_size_per_image=64 box_detections_per_img=20"
if [ "$ROWS" != mask_rcnn ]; then
  lsnet train $RETINA --model lsnet_t --no-freeze-bn --backbone-checkpoint "$CLS" --experiment retinanet_lsnet_t_from_make_run
  lsnet train $RETINA --model lsnet_t --no-freeze-bn --experiment retinanet_lsnet_t_scratch
  lsnet train $RETINA --model efficientvit_m4 --no-freeze-bn --experiment retinanet_efficientvit_m4_scratch
  lsnet train $RETINA --model resnet18 --no-freeze-bn --experiment retinanet_resnet18_scratch
fi
if [ "$ROWS" != retinanet ]; then
  lsnet train $MASK --model lsnet_t --no-freeze-bn --backbone-checkpoint "$CLS" --experiment mask_rcnn_lsnet_t_from_make_run
  lsnet train $MASK --model lsnet_t --no-freeze-bn --experiment mask_rcnn_lsnet_t_scratch
  lsnet train $MASK --model efficientvit_m4 --no-freeze-bn --experiment mask_rcnn_efficientvit_m4_scratch
  lsnet train $MASK --model resnet18 --no-freeze-bn --experiment mask_rcnn_resnet18_scratch
fi
