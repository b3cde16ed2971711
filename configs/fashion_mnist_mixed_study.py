"""The mixed-precision Fashion-MNIST study: configs/fashion_mnist_study.py's runs, with a
bit-width per layer in place of binary-or-float (docs/method.md section 12).

    python main.py --config=configs/fashion_mnist_mixed_study.py --config.seed=0 \\
        --workdir=runs/mixed/xnor_s0
    python -m binflax.results runs/mixed/*/results.json     # mean, std, paired intervals

What differs from configs/fashion_mnist_study.py, and why (docs/reproduction.md):

- ``hbn.precisions = (1, 2, 4, 8, 32)``: the search space, binary a choice among them;
- ``hbn.budgets = (1.53, 2.58)``: just above the cost of every candidate at 2 bits
  (1.525x fbin on VGG-Small width 16) and at 4 bits (2.575x), so the ``uniform``
  control is uniform 2-bit at the first budget and uniform 4-bit at the second;
- ``hbn.num_random = 1``: one random bit-width draw per hybrid (beside ``uniform`` and
  the paper's ``binary_float`` search space, ``hbn.precision_controls``' default).

fbin and float are the binary study's (same config, same seed): scripts/
fashion_mnist_mixed_study.sh copies them from its run when they are there, since
training is deterministic and they would be trained again to the same weights.
"""

from configs import default, fashion_mnist_study


def get_config(arg: str | None = None):
    config = fashion_mnist_study.get_config()
    config.hbn.precisions = (1, 2, 4, 8, 32)
    config.hbn.budgets = (1.53, 2.58)
    config.hbn.num_random = 1
    return default.finalize(config, arg)
