"""ResNet-18 on ImageNet: fbin -> select -> two hybrids, plus wbin; binary classifier weights.

    python main.py --config=configs/resnet18.py
    python main.py --config=configs/resnet18.py --mode=summary   # costs and budgets, no data

The authors published no ResNet-18 ImageNet script: this runs their AlexNet ImageNet
regime (configs/imagenet_common.py). The budgets admit the layer sets of their sketch
hybrids, which cost 5.357 x (Hybrid1) and 2.666 x (Hybrid2) fbin at 224x224x3 with 1000
classes (10.37 x and 4.58 x on the 1-channel, 250-class sketches: the float stem and
classifier weigh more here). The paper reports hybrids 3-4 points above fbin (XNOR-Net's
fbin ResNet-18: 51.2% top-1).
"""

from configs import default
from configs.imagenet_common import imagenet_config


def get_config(arg: str | None = None):
    config = imagenet_config("resnet18")
    config.dropout_rate = 0.0
    config.binarize_last_weights = True
    config.hbn.budgets = (5.42, 2.7)
    return default.finalize(config, arg)
