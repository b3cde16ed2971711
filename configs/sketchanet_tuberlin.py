"""Sketch-A-Net on TU-Berlin, the paper's main table: float, wbin, Hybrid1, Hybrid2, fbin.

    python main.py --config=configs/sketchanet_tuberlin.py
    python main.py --config=configs/sketchanet_tuberlin.py --mode=summary     # costs, budgets
    python main.py --config=configs/sketchanet_tuberlin.py:runlocal   # smoke run, a few steps

The authors reached float 72.85, wbin 72.97, Hybrid1 73.09 (conv6, conv7 float inputs),
Hybrid2 70.95 (conv7), fbin 59.55 top-1 (10-crop, best test epoch). 600 epochs, batch
256; float Adam 5e-3 with weight decay 5e-4 and dropout 0.1, the binary variants Adam 2e-3
(dropout 0.1 for wbin, 0.2 for fbin and the hybrids), halved every 50 epochs.
Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("sketchanet", "tu_berlin", image_size=225)
    return default.finalize(config, arg)
