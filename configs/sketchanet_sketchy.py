"""Sketch-A-Net on Sketchy (official test split): float, wbin, Hybrid1, Hybrid2, fbin.

    python main.py --config=configs/sketchanet_sketchy.py
    python main.py --config=configs/sketchanet_sketchy.py:runlocal   # smoke run, a few steps

The spec gives no authors' figure for Sketchy: compare the variants with each other.
The authors' Sketchy recipe is their TU-Berlin one over 400 epochs, the float network
without weight decay (run_sketchy_1.sh).
Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("sketchanet", "sketchy", image_size=225)
    return default.finalize(config, arg)
