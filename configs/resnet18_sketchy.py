"""ResNet-18 on Sketchy (official test split); the spec gives no authors' figure, compare variants
against each other.

    python main.py --config=configs/resnet18_sketchy.py
    python main.py --config=configs/resnet18_sketchy.py:runlocal   # smoke run, a few steps

Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("resnet18", "sketchy", num_classes=125, image_size=224)
    return default.finalize(config, arg)
