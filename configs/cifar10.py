"""VGG-Small on CIFAR-10, the BinaryNet / XNOR-Net CIFAR benchmark: float, wbin, hybrids,
fbin.

    python -m binflax.data.prepare cifar10 --manual_dir DIR   # or let TFDS download it
    python main.py --config=configs/cifar10.py                # an accelerator's work
    python main.py --config=configs/cifar10.py:runlocal       # smoke run, a few steps

Network and data: BinaryNet's 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-1024FC-1024FC-10
(``vgg_small``, width 128), the CIFAR standard augmentation (zero-pad 4, random 32x32
crop, horizontal flip) and CIFAR-10's per-channel statistics. Recipe: Adam as in
BinaryNet's Train-time/cifar10.py (lr 3e-3 decayed towards 2e-6 over 500 epochs, batch 50),
here in the HBN authors' form (lr 2e-3 halved every 40 epochs, batch 128, 200 epochs).
Anchors: BinaryNet 89.85% top-1 with binary weights and activations (Courbariaux,
Hubara et al. 2016, table 2); XNOR-Net-style VGG-Small about 87-90%; the float network
about 92-93%. Budgets are x fbin's equivalent FLOPs (14.1 M): at 7.0 one of conv3 or
conv5 (6.2x each), or fc1 and fc2, or one conv with one fc fits; at 1.6 fc1 (1.58x) or
fc2 (1.07x) fits, not both (1.65x).
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.base()
    config.mode = "hbn"
    config.model = "vgg_small"
    config.model_kwargs.width = 128
    config.dataset = "cifar10"
    config.num_classes = 10
    config.image_size = 32
    config.channels = 3
    config.augment = "crop_flip"
    config.half_precision = None  # bfloat16 on a TPU or GPU
    config.dropout_rate = 0.0
    config.batch_size = 128
    config.num_epochs = 200
    config.learning_rate = 2e-3
    config.lr_decay_epochs = 40
    config.lr_decay_factor = 0.5
    config.lr_floor = 5e-6
    config.eval_every_epochs = 1
    config.test_every_epochs = 10
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    config.hbn.budgets = (7.0, 1.6)
    config.hbn.baselines = ("float", "wbin")
    return default.finalize(config, arg)
