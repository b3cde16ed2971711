"""SqueezeNet v1.0 (+BN) on TU-Berlin; the paper reports no table for it here, so compare variants
against each other.

    python main.py --config=configs/squeezenet_tuberlin.py
    python main.py --config=configs/squeezenet_tuberlin.py:runlocal   # smoke run, a few steps

Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("squeezenet", "tu_berlin", num_classes=250, image_size=224)
    return default.finalize(config, arg)
