"""AlexNet (BN variant) on ImageNet: fbin -> select -> Hybrid1 and Hybrid2, plus wbin.

    python main.py --config=configs/alexnet.py
    python main.py --config=configs/alexnet.py --mode=summary   # costs and budgets, no data

The budgets admit the authors' hybrids: Hybrid1 (fc6, fc7 float inputs) at 180.8 M
equivalent FLOPs = 1.421 x fbin's 127.2 M, Hybrid2 (fc7) at 143.7 M = 1.130 x fbin; wbin
costs 1135.3 M. The paper reports hybrids 3-4 points above fbin (XNOR-Net's fbin AlexNet:
44.2% top-1). Dropout 0.5 after fc6 and fc7 (the authors' alexnethybridv2.py uses 0.0).
"""

from configs import default
from configs.imagenet_common import imagenet_config


def get_config(arg: str | None = None):
    config = imagenet_config("alexnet")
    config.dropout_rate = 0.5
    config.hbn.budgets = (1.43, 1.14)  # the authors' Hybrid1 (1.421 x fbin), Hybrid2 (1.130)
    return default.finalize(config, arg)
