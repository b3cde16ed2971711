"""Config validation: a bad value is reported with the field's full name before any work.

Why up front: a typo in ``--config.hbn.method`` should not surface as a stack trace
after an hour of fbin training.
"""

from __future__ import annotations

import os

import ml_collections

from binflax import models, quantizers
from binflax.plan import PRESETS

MODES = ("train", "select", "hbn", "summary", "eval", "export")
DATASETS = ("digits", "tu_berlin", "sketchy", "imagenet2012", "quickdraw_bitmap")
METHODS = ("greedy", "exact", "partition")
METRICS = ("rmse", "relative", "one_minus_x2")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def validate(config: ml_collections.ConfigDict) -> None:
    _one_of(config, "mode", MODES)
    _one_of(config, "model", tuple(models.MODELS))
    _one_of(config, "dataset", DATASETS)
    _one_of(config, "input_quantizer", tuple(quantizers.QUANTIZERS))
    _one_of(config, "hbn.method", METHODS)
    _one_of(config, "hbn.error_metric", METRICS)
    plan = config.plan
    if plan not in PRESETS and not os.path.exists(str(plan)):
        raise ConfigError(
            f"config.plan={plan!r} is neither a preset ({', '.join(PRESETS)}) nor an "
            "existing plan JSON file"
        )
    for field in ("batch_size", "eval_batch_size", "num_classes", "image_size", "channels"):
        _positive(config, field)
    for field in ("learning_rate", "num_epochs", "log_every_steps", "checkpoint_every_steps"):
        _positive(config, field)
    if not 0.0 <= config.holdout_fraction < 1.0:
        raise ConfigError(f"config.holdout_fraction={config.holdout_fraction} must be in [0, 1)")
    if config.hbn.budget is not None and config.hbn.budget < 1.0:
        raise ConfigError(
            f"config.hbn.budget={config.hbn.budget} must be >= 1.0 (a multiple of fbin's cost)"
        )
    for baseline in config.hbn.baselines:
        if baseline not in ("float", "wbin"):
            raise ConfigError(f"config.hbn.baselines has {baseline!r}; allowed: float, wbin")


def _get(config, field):
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def _one_of(config, field, allowed):
    value = _get(config, field)
    if value not in allowed:
        raise ConfigError(f"config.{field}={value!r} is not one of: {', '.join(allowed)}")


def _positive(config, field):
    value = _get(config, field)
    if value is None or value <= 0:
        raise ConfigError(f"config.{field}={value!r} must be positive")
