"""ResNet-18 on TU-Berlin; the authors reached float 74.06, wbin 73.35, hybrid1 73.77, hybrid2
72.77, fbin 68.85 top-1 (10-crop).

    python main.py --config=configs/resnet18_tuberlin.py
    python main.py --config=configs/resnet18_tuberlin.py:runlocal   # smoke run, a few steps

Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("resnet18", "tu_berlin", num_classes=250, image_size=224)
    return default.finalize(config, arg)
