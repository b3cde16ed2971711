"""VGG-Small on Fashion-MNIST, binflax's measured real-data experiment: float, wbin,
two hybrids with their control hybrids (random, cost_only, error_only), fbin.

    apt-get install dataset-fashion-mnist     # Debian's copy of the original four files
    python -m binflax.data.prepare fashion_mnist \\
        --manual_dir /usr/share/datasets/fashion-mnist --accept_checksums
    python main.py --config=configs/fashion_mnist.py
    python main.py --config=configs/fashion_mnist.py:runlocal   # smoke run, a few steps

Network: BinaryNet's CIFAR-10 VGG-Small (``vgg_small``) at 28x28x1 with width 16 (10 M
MACs, trainable on two CPU cores; width 128 is the paper-size network). Data: no
augmentation, Fashion-MNIST's mean 0.2860 and std 0.3530. Recipe: Adam lr 2e-3 halved
every 5 epochs, batch 128, 20 epochs (the HBN authors' optimizer and schedule form).
Anchors, Fashion-MNIST's benchmark (zalandoresearch/fashion-mnist README): small 2-conv
CNNs 0.92-0.93 top-1, ResNet-18 0.949; docs/reproduction.md has binflax's measured runs.

Budgets are x fbin's equivalent FLOPs (0.24 M), each admitting several sets of
float-input layers, so the error metric, not cost alone, decides: at 9.0 one of conv2,
conv4 or conv6 (+7.4x each) or both of conv3 and conv5 (+3.7x each), with fc1 and fc2
(+0.30x, +0.07x); at 5.0 one of conv3 or conv5 with fc1 or fc2, or fc1 and fc2 alone
(`--mode=summary` lists the costs). The control hybrids test that decision:
random sets costing at least 95% of the HBN
hybrid's equivalent FLOPs, the cheapest layers alone, the largest errors alone.
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.base()
    config.mode = "hbn"
    config.model = "vgg_small"
    config.model_kwargs.width = 16
    config.dataset = "fashion_mnist"
    config.num_classes = 10
    config.image_size = 28
    config.channels = 1
    config.augment = "none"
    config.dropout_rate = 0.0
    config.batch_size = 128
    config.num_epochs = 20
    config.learning_rate = 2e-3
    config.lr_decay_epochs = 5
    config.lr_decay_factor = 0.5
    config.lr_floor = 5e-5
    config.eval_every_epochs = 1
    config.test_every_epochs = 5
    config.log_every_steps = 100
    config.checkpoint_every_steps = 1000
    config.hbn.budgets = (9.0, 5.0)
    config.hbn.baselines = ("float", "wbin")
    config.hbn.controls = ("random", "cost_only", "error_only")
    config.hbn.num_random = 2
    return default.finalize(config, arg)
