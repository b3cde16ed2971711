"""ResNet-18 on ImageNet: fbin -> select -> hybrid, plus the wbin baseline.

    python main.py --config=configs/resnet18.py
    python main.py --config=configs/resnet18.py --mode=summary   # costs only, no data

The paper reports hybrids 3-4 points above fbin (XNOR-Net's fbin ResNet-18: 51.2% top-1).
"""

from configs import default
from configs.imagenet_common import imagenet_config


def get_config(arg: str | None = None):
    config = imagenet_config("resnet18")
    config.dropout_rate = 0.0
    return default.finalize(config, arg)
