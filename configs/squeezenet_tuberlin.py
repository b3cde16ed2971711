"""SqueezeNet v1.0 (+BN) on TU-Berlin: float, wbin, Hybrid1-3, fbin; binary classifier weights.

    python main.py --config=configs/squeezenet_tuberlin.py
    python main.py --config=configs/squeezenet_tuberlin.py:runlocal   # smoke run, a few steps

The authors' logs: float 71.17, wbin 66.68, Hybrid1 64.85, Hybrid2 61.63, Hybrid3 59.26,
fbin 56.75 top-1 (best test epoch). 400 epochs, batch 128, Adam 2e-3 halved every 40,
dropout 0.2 before conv10 (run_tuberlin_4.sh, run_tuberlin_hybrid_3.sh).
Needs the data set prepared or its archives in --config.manual_dir (docs/data.md).
"""

from configs import default
from configs.sketch_common import sketch_config


def get_config(arg: str | None = None):
    config = sketch_config("squeezenet", "tu_berlin", image_size=224)
    return default.finalize(config, arg)
