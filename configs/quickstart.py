"""The quickstart: the whole HBN pipeline on scikit-learn's embedded digits, ~2 min on 2 cores.

    python main.py --config=configs/quickstart.py --workdir=runs/quickstart

Trains fbin, measures input-binarization errors on a held-out slice, keeps the inputs of
the selected layers float (budget 1.5x fbin's equivalent FLOPs), trains that hybrid and
the float and wbin baselines, and writes results.json / results.md. Expect float ~ wbin
above hybrid above fbin (docs/reproduction.md has the measured spread over seeds). A
smoke-scale demonstration, not the paper's benchmark.
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.base()
    config.mode = "hbn"
    config.model = "mini_sketchanet"
    config.dataset = "digits"
    config.num_classes = 10
    config.image_size = 16
    config.channels = 1
    config.dropout_rate = 0.0
    config.batch_size = 64
    config.num_epochs = 15
    config.learning_rate = 2e-3
    config.lr_decay_epochs = 40
    config.eval_every_epochs = 1  # the holdout, which chooses the reported checkpoint
    config.test_every_epochs = 5
    config.log_every_steps = 100
    config.checkpoint_every_steps = 100
    config.hbn.budgets = (1.5,)
    config.hbn.baselines = ("float", "wbin")
    return default.finalize(config, arg)
