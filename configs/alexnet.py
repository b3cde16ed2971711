"""AlexNet (BN variant) on ImageNet: fbin -> select -> hybrid, plus the wbin baseline.

    python main.py --config=configs/alexnet.py
    python main.py --config=configs/alexnet.py --mode=summary   # costs only, no data

The paper reports hybrids 3-4 points above fbin (XNOR-Net's fbin AlexNet: 44.2% top-1);
with the authors' layer choice (fc6, fc7 float inputs) equivalent FLOPs are 180.8 M vs
fbin's 127.2 M and wbin's 1135.3 M.
"""

from configs import default
from configs.imagenet_common import imagenet_config


def get_config(arg: str | None = None):
    config = imagenet_config("alexnet")
    return default.finalize(config, arg)
