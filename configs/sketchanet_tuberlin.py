"""Sketch-A-Net on TU-Berlin; the authors reached float 72.85, wbin 72.97, hybrid1 73.09
(conv6+conv7 float inputs), hybrid2 70.95, fbin 59.55 top-1 (10-crop).

    python main.py --config=configs/sketchanet_tuberlin.py
    python main.py --config=configs/sketchanet_tuberlin.py:runlocal   # smoke run, a few steps

Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("sketchanet", "tu_berlin", num_classes=250, image_size=225)
    return default.finalize(config, arg)
