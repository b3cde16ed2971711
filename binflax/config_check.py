"""Config validation: a bad value is reported with the field's full name before any work.

Why up front: a typo in ``--config.hbn.score`` should not surface as a stack trace
after an hour of fbin training. Every allowed value comes from the registry the code
itself dispatches on (``binflax.modes.MODES``, ``binflax.data.DATASETS``,
``binflax.select.METHODS``/``METRICS``/``SCORES``, ...), so the check cannot drift.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from etils import epath

from binflax import (
    activations,
    data,
    models,
    modes,
    networks,
    optimizer,
    planned,
    quantizers,
    select,
    variants,
)
from binflax.errors import ConfigError
from binflax.plan import PRESETS


@networks.takes_config
def checked(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A user's config resolved (its recipe filled in, :func:`binflax.networks.resolved`)
    and checked field by field: the config the command line runs, everything downstream
    taking it as it is. Raises :class:`ConfigError` naming the first bad field."""
    _one_of(config, "mode", tuple(modes.MODES))
    _model(config)
    _recipe(config)
    _dataset(config)
    _one_of(config, "input_quantizer", tuple(quantizers.QUANTIZERS))
    _one_of(config, "hbn.method", select.METHODS)
    _one_of(config, "hbn.error_metric", select.METRICS)
    _one_of(config, "hbn.score", tuple(select.SCORES))
    plan = config.plan
    if plan not in PRESETS and not epath.Path(str(plan)).exists():
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
    _one_of(config, "lr_schedule", optimizer.SCHEDULES)
    _one_of(config, "kernel_projection", optimizer.KERNEL_PROJECTIONS)
    if config.half_precision not in (None, True, False):
        raise ConfigError(
            f"config.half_precision={config.half_precision!r} must be True, False or None "
            "(None: bfloat16 on a TPU or GPU, float32 on a CPU)"
        )
    if config.test_every_epochs < 0:
        raise ConfigError(f"config.test_every_epochs={config.test_every_epochs} must be >= 0")
    budgets = config.hbn.budgets
    if not isinstance(budgets, tuple | list) or not budgets:
        raise ConfigError(
            f"config.hbn.budgets={budgets!r} must be a non-empty tuple of multiples of "
            "fbin's equivalent FLOPs, e.g. (1.1,) or (1.43, 1.14)"
        )
    for budget in budgets:
        if not isinstance(budget, int | float) or budget < 1.0:
            raise ConfigError(
                f"config.hbn.budgets has {budget!r}; each budget must be a number >= 1.0 "
                "(a multiple of fbin's equivalent FLOPs)"
            )
    _controls(config)
    for baseline in config.hbn.baselines:
        if baseline not in ("float", "wbin"):
            raise ConfigError(f"config.hbn.baselines has {baseline!r}; allowed: float, wbin")
    for key, overrides in config.variants.items():
        if key not in variants.VARIANT_KEYS:
            raise ConfigError(
                f"config.variants.{key} is not a variant; allowed: "
                f"{', '.join(variants.VARIANT_KEYS)}"
            )
        for field in overrides:
            if field not in variants.OVERRIDABLE:
                raise ConfigError(
                    f"config.variants.{key}.{field} cannot be set per variant; allowed: "
                    f"{', '.join(variants.OVERRIDABLE)}"
                )
            if field in ("batch_size", "learning_rate", "num_epochs") and not (
                isinstance(overrides[field], int | float) and overrides[field] > 0
            ):
                raise ConfigError(
                    f"config.variants.{key}.{field}={overrides[field]!r} must be positive"
                )
    return config


def _model(config):
    """``config.model`` names a registered model or imports a network of your own, and
    ``config.model_kwargs`` are fields of it."""
    name = config.model
    if name in models.MODELS:
        cls = models.MODELS[name]
    else:
        try:
            cls = models.import_model(name)
        except models.ModelError as e:
            raise ConfigError(f"config.model: {e}") from None
    _one_of(config, "input_norm", planned.INPUT_NORMS)
    fields = set(models.model_fields(cls)) if name not in models.MODELS else None
    if fields is None:
        fields = {field.name for field in dataclasses.fields(cls)} - {"parent", "name"}
    for key in networks.model_kwargs(config):
        if key not in fields:
            raise ConfigError(f"config.model_kwargs.{key} is not a field of {cls.__name__}")


def _recipe(config):
    """The recipe's fields: a unit activation binflax has, a distillation weight in [0, 1]
    with a positive temperature and a teacher that exists, a first stage of some epochs."""
    _one_of(config, "activation", activations.ACTIVATIONS)
    weight, temperature = config.distill.weight, config.distill.temperature
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"config.distill.weight={weight} must be in [0, 1] (0: off)")
    if temperature <= 0:
        raise ConfigError(f"config.distill.temperature={temperature} must be positive")
    teacher = config.distill.teacher
    if weight > 0 and teacher != "float" and not epath.Path(teacher).is_dir():
        raise ConfigError(
            f"config.distill.teacher={teacher!r} is neither 'float' (the hbn pipeline's float "
            "variant) nor the workdir of a trained float run"
        )
    fraction = config.two_stage.first_fraction
    if config.two_stage.enabled and not 0.0 < fraction < 1.0:
        raise ConfigError(f"config.two_stage.first_fraction={fraction} must be in (0, 1)")


def _precisions(config) -> None:
    """``config.hbn.precisions`` are distinct input bit-widths, at least two;
    ``config.hbn.sensitivity`` a score; ``config.hbn.precision_controls`` named in
    ``binflax.select.MIXED_CONTROLS``, each once."""
    precisions = config.hbn.precisions
    allowed = select.sensitivity.INPUT_BITS
    if (
        not isinstance(precisions, tuple | list)
        or len(precisions) < 2
        or any(isinstance(b, bool) or b not in allowed for b in precisions)
        or len(set(precisions)) < len(precisions)
    ):
        raise ConfigError(
            f"config.hbn.precisions={precisions!r} must be two or more distinct input "
            f"bit-widths among {', '.join(map(str, allowed))} (32 is float), e.g. (1, 2, 4, 8, 32)"
        )
    _one_of(config, "hbn.sensitivity", select.SENSITIVITIES)
    samples = config.hbn.hutchinson_samples
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"config.hbn.hutchinson_samples={samples!r} must be an integer >= 1")
    _names(config, "hbn.precision_controls", select.MIXED_CONTROLS)
    table = config.hbn.get("cost_table", "")
    if not isinstance(table, str):
        raise ConfigError(f"config.hbn.cost_table={table!r} must be a path or ''")
    if table and not select.is_mixed(precisions):
        raise ConfigError(
            f"config.hbn.cost_table={table!r} prices bit-widths: it applies to the "
            "mixed-precision study (config.hbn.precisions beyond (1, 32))"
        )
    if table and not epath.Path(table).exists():
        raise ConfigError(
            f"config.hbn.cost_table={table!r} does not exist; write one with "
            "binflax.export.latency_table(model).save(path) (docs/export.md)"
        )


def _controls(config):
    """``config.hbn.controls`` names each control of ``binflax.select.CONTROLS`` at most
    once (a repeat would train one row twice), and ``num_random`` is a count."""
    _names(config, "hbn.controls", select.CONTROLS)
    _precisions(config)
    num_random = config.hbn.num_random
    if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 1:
        raise ConfigError(f"config.hbn.num_random={num_random!r} must be an integer >= 1")


def _names(config, field: str, known: tuple[str, ...]) -> None:
    controls = _get(config, field)
    if not isinstance(controls, tuple | list):
        raise ConfigError(
            f"config.{field}={controls!r} must be a tuple of control names, e.g. "
            f"('random', '{known[1]}'); controls: {', '.join(known)}"
        )
    for control in controls:
        if control not in known:
            raise ConfigError(f"config.{field} has {control!r}; controls: {', '.join(known)}")
    if len(set(controls)) < len(controls):
        raise ConfigError(f"config.{field}={tuple(controls)!r} names a control twice")


def _get(config, field):
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def _dataset(config: ml_collections.ConfigDict) -> None:
    """digits, folder:PATH, idx:DIR, or a TFDS dataset that TFDS knows, whose channels and
    classes (where TFDS knows them without the data) are the config's."""
    dataset = config.dataset
    if not isinstance(dataset, str) or not dataset.strip():
        raise ConfigError(
            f"config.dataset={dataset!r} must be digits, a TFDS dataset name "
            f"({', '.join(data.DATASETS[1:])}, mnist, cifar10, ...), folder:PATH or idx:DIR"
        )
    if dataset == data.FOLDER_PREFIX:
        raise ConfigError("config.dataset='folder:' needs a path: folder:PATH")
    if dataset == data.idx_files.PREFIX:
        raise ConfigError("config.dataset='idx:' needs a directory: idx:DIR")
    augment = data.recipes.augment_of(config)  # names config.augment if not a transform
    if data.idx_files.directory(dataset) is not None:
        if augment != "none":
            raise ConfigError(
                f"config.augment={augment!r}: an idx:DIR dataset is read without "
                "augmentation (binflax.data.idx_files); set config.augment='none'"
            )
        return  # its files say their shape and classes
    if dataset in data.EMBEDDED or data.recipes.folder_path(dataset) is not None:
        return
    from binflax.data import tfds_metadata  # TFDS only where a TFDS dataset is named

    known = tfds_metadata.metadata(dataset, config.data_dir)
    if known.channels is not None and config.channels != known.channels:
        raise ConfigError(
            f"config.channels={config.channels} but {dataset}'s images have "
            f"{known.channels} channels"
        )
    if known.num_classes is not None and config.num_classes != known.num_classes:
        raise ConfigError(
            f"config.num_classes={config.num_classes} but {dataset} has {known.num_classes} classes"
        )


def _one_of(config, field, allowed):
    value = _get(config, field)
    if value not in allowed:
        raise ConfigError(f"config.{field}={value!r} is not one of: {', '.join(allowed)}")


def _positive(config, field):
    value = _get(config, field)
    if value is None or value <= 0:
        raise ConfigError(f"config.{field}={value!r} must be positive")
