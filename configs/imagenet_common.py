"""The ImageNet recipe shared by alexnet.py and resnet18.py (HBN-METHOD.md section 8).

Adam 1e-3 with XNOR-Net's step regime (x0.1 every 30 epochs; [choice]: the authors'
exact ImageNet recipe is uncertain), 90 epochs, batch 512, no weight decay; TFDS
``imagenet2012`` from the two manually downloaded ILSVRC tars.
"""

import ml_collections

from configs import default


def imagenet_config(model: str):
    config: ml_collections.ConfigDict = default.base()
    config.mode = "hbn"
    config.model = model
    config.dataset = "imagenet2012"
    config.num_classes = 1000
    config.image_size = 224
    config.channels = 3
    config.batch_size = 512
    config.eval_batch_size = 500
    config.num_epochs = 90
    config.learning_rate = 1e-3
    config.lr_decay_epochs = 30
    config.lr_decay_factor = 0.1
    config.lr_floor = 1e-6
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    config.eval_every_epochs = 5
    config.shuffle_buffer = 16_384
    config.hbn.budget = 1.1
    config.hbn.baselines = ("wbin",)
    return config
