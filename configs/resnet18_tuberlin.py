"""ResNet-18 on TU-Berlin: float, wbin, Hybrid1, Hybrid2, fbin; binary classifier weights.

    python main.py --config=configs/resnet18_tuberlin.py
    python main.py --config=configs/resnet18_tuberlin.py:runlocal   # smoke run, a few steps

The authors reached float 74.06, wbin 73.35, Hybrid1 73.77 (layer3_1, layer4_0, layer4_1
and the downsamples float), Hybrid2 72.77 (layer4_1 and the downsamples), fbin 68.85
top-1 (10-crop, best test epoch). 400 epochs, Adam 2e-3 halved every 40; batch 160 for
the binary variants and 256 for float (run_tuberlin_2.sh).
Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("resnet18", "tu_berlin", image_size=224)
    return default.finalize(config, arg)
