"""ResNet-18 on Sketchy (official test split): float, wbin, two hybrids, fbin.

    python main.py --config=configs/resnet18_sketchy.py
    python main.py --config=configs/resnet18_sketchy.py:runlocal   # smoke run, a few steps

The spec gives no authors' figure for Sketchy: compare the variants with each other.
Binary classifier weights; 400 epochs, Adam 2e-3 halved every 40; batch 128 for the
binary variants and 256 for float (run_sketchy_2.sh).
Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("resnet18", "sketchy", image_size=224)
    return default.finalize(config, arg)
