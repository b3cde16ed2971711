"""The authors' sketch recipe (HBN-METHOD.md section 8), shared by the sketch configs.

Adam 2e-3, halved every 40 epochs down to 5e-5, no weight decay, batch 256, 500 epochs,
10-crop evaluation; the full HBN pipeline with float and wbin baselines, budget 1.1x
fbin (the authors' "Hybrid1" on Sketch-A-Net).
"""

import ml_collections

from configs import default


def sketch_config(model: str, dataset: str, num_classes: int, image_size: int):
    config: ml_collections.ConfigDict = default.base()
    config.mode = "hbn"
    config.model = model
    config.dataset = dataset
    config.num_classes = num_classes
    config.image_size = image_size
    config.channels = 1
    config.batch_size = 256
    config.eval_batch_size = 256
    config.num_epochs = 500
    config.learning_rate = 2e-3
    config.lr_decay_epochs = 40
    config.lr_decay_factor = 0.5
    config.lr_floor = 5e-5
    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    config.eval_every_epochs = 10
    config.hbn.budget = 1.1
    config.hbn.baselines = ("float", "wbin")
    return config
