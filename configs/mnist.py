"""LeNet-5 on MNIST, the XNOR-Net MNIST experiment: float, wbin, a hybrid, fbin.

    python -m binflax.data.prepare mnist --manual_dir DIR     # or let TFDS download it
    python main.py --config=configs/mnist.py
    python main.py --config=configs/mnist.py:runlocal         # smoke run, a few steps

Recipe of jiecaoyu/XNOR-Net-PyTorch, MNIST/main.py: Adam lr 0.01, weight decay 1e-5,
batch 128, 60 epochs, the learning rate divided by 10 every 15 epochs; inputs normalized
with MNIST's mean 0.1307 and std 0.3081, no augmentation. Anchors, that repository's
README: LeNet-5 99.34% top-1 in float, 99.23% with binary weights and inputs (XNOR).
The budget is x fbin's equivalent FLOPs (0.33 M): at 6.0 either conv2 (5.8x) or fc1
(2.2x) keeps a float input, not both (6.9x), so the metric decides. LeNet-5 has only
these two candidates, so no other budget leaves a choice (`--mode=summary` lists them).
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.base()
    config.mode = "hbn"
    config.model = "lenet5"
    config.dataset = "mnist"
    config.num_classes = 10
    config.image_size = 28
    config.channels = 1
    config.augment = "none"
    config.dropout_rate = 0.0
    config.batch_size = 128
    config.num_epochs = 60
    config.learning_rate = 0.01
    config.weight_decay = 1e-5
    config.lr_decay_epochs = 15
    config.lr_decay_factor = 0.1
    config.lr_floor = 1e-5
    config.eval_every_epochs = 1
    config.test_every_epochs = 5
    config.log_every_steps = 100
    config.checkpoint_every_steps = 1000
    config.hbn.budgets = (6.0,)
    config.hbn.baselines = ("float", "wbin")
    return default.finalize(config, arg)
