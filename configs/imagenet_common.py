"""The ImageNet recipe shared by alexnet.py and resnet18.py (docs/method.md section 9).

The authors' ``imagenetscheduler`` with Adam (their code/utils.py and run_imagenet_3.sh):
90 epochs at batch 512; epoch 0 at lr 8e-5 without weight decay (their ``--maxlr``,
``--weightDecay=0``), then lr 1e-3 (epochs 1-18), 5e-4 (19-29), 1e-4 (30-43), 5e-5
(44-52), 2e-5 (53 on), with weight decay 5e-5 up to epoch 29 and 0 after. TFDS
``imagenet2012`` from the two manually downloaded ILSVRC tars; ILSVRC's validation set
is the test split, so the reported checkpoint is chosen on a held-out 5% of the training
split. Both splits are evaluated every epoch, as the authors did.
"""

import ml_collections

from configs import default


def imagenet_config(model: str) -> ml_collections.ConfigDict:
    config: ml_collections.ConfigDict = default.base()
    config.mode = "hbn"
    config.model = model
    config.dataset = "imagenet2012"
    config.num_classes = 1000
    config.image_size = 224
    config.half_precision = ml_collections.config_dict.placeholder(bool)  # None: bf16 on TPU/GPU
    config.channels = 3
    config.batch_size = 512
    config.eval_batch_size = 500
    config.num_epochs = 90
    config.lr_schedule = "imagenet"
    config.learning_rate = 8e-5  # epoch 0 only (run_imagenet_3.sh --maxlr)
    config.weight_decay = 0.0  # epoch 0 only (run_imagenet_3.sh --weightDecay)
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    config.eval_every_epochs = 1
    config.test_every_epochs = 1
    config.shuffle_buffer = 16_384
    config.hbn.baselines = ("wbin",)  # the authors trained no float ImageNet network
    return config
