"""Defaults every binflax config starts from; the experiment configs import and override it.

    python main.py --config=configs/default.py --config.plan=wbin

Field groups: model and plan, the training recipe, data, optimisation, the ``hbn``
pipeline, bookkeeping. Fields left ``None`` ("the recipe's") take their value from
``config.recipe`` (binflax.recipe_presets); set one to override the recipe there only.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The defaults; ``arg`` is what follows ``:`` in ``--config=...py:ARG`` (``runlocal``)."""
    return finalize(base(), arg)


def finalize(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies the ``:ARG`` switch of a config path; every config ends with this call."""
    if arg == "runlocal":
        return runlocal(config)
    if arg:
        raise ValueError(f"unknown config argument {arg!r}; the only one is 'runlocal'")
    return config


def base() -> ml_collections.ConfigDict:
    """Field defaults; experiment configs start from this and override."""
    config = ml_collections.ConfigDict()
    config.mode = "train"  # a mode of binflax.modes.MODES (docs/cli.md)

    # Model and plan.
    # A registry name in binflax.models.MODELS, or the import path "package.module:Class"
    # of a flax.linen network of your own: a class with a num_classes field, called as
    # model(images, train=...); binflax.binarize plans its nn.Conv and nn.Dense layers
    # (docs/byom.md), e.g. --config.model=tests.user_nets:VGG.
    config.model = "mini_sketchanet"
    config.model_kwargs = ml_collections.ConfigDict()  # the model's other fields (widths, ...)
    # ResNet's block: xnor | bireal | reactnet; unset: the recipe's (models without one: -)
    config.model_kwargs.block = ml_collections.config_dict.placeholder(str)
    config.plan = "fbin"  # float | wbin | fbin | path of a plan JSON written by `select`
    config.binarize_last_weights = False
    config.input_quantizer = ml_collections.config_dict.placeholder(str)  # ste_sign | approx_sign
    config.scale_inputs = False  # XNOR-Net K-map input scaling [choice, beyond the paper]
    # What a binary-input layer applies before sign, for binflax's models and a network of
    # your own alike: batchnorm (the authors') | shift (a learned per-channel threshold,
    # ReActNet's RSign) | none (binflax.planned.BinaryOptions).
    config.input_norm = ml_collections.config_dict.placeholder(str)
    # After a binary-input layer: relu (the network's own activation) | rprelu (ReActNet).
    config.activation = ml_collections.config_dict.placeholder(str)

    # The training recipe (binflax.recipe_presets): xnor (the paper's, XNOR-Net's) |
    # reactnet (RSign, approx_sign, RPReLU, Bi-Real shortcuts, distillation, two stages).
    config.recipe = "xnor"
    # Distillation from a float teacher: (1 - w) CE + w T^2 KL(teacher || student).
    config.distill = ml_collections.ConfigDict()
    config.distill.weight = ml_collections.config_dict.placeholder(float)  # 0: off
    config.distill.temperature = ml_collections.config_dict.placeholder(float)
    # float: the hbn pipeline's float variant (trained first) | the workdir of a float run
    config.distill.teacher = ml_collections.config_dict.placeholder(str)
    # Two stages: binary inputs with float weights, then binary weights from there.
    config.two_stage = ml_collections.ConfigDict()
    config.two_stage.enabled = ml_collections.config_dict.placeholder(bool)
    config.two_stage.first_fraction = ml_collections.config_dict.placeholder(float)
    config.stop_alpha_gradient = True  # alpha is a constant in the backward pass (authors)
    # bfloat16 compute, float32 parameters, statistics, loss and optimizer. None: on when
    # the backend is a TPU or GPU, off on a CPU (binflax.train.half_precision).
    config.half_precision = False
    config.dropout_rate = 0.5
    # Per-variant recipe overrides (binflax.variants): keys float, wbin, fbin, hybrid;
    # fields learning_rate, weight_decay, dropout_rate, batch_size, num_epochs.
    config.variants = ml_collections.ConfigDict()

    # Data.
    # digits | any TFDS image dataset (tu_berlin, sketchy, imagenet2012, mnist, cifar10,
    # fashion_mnist, ...) | folder:PATH with PATH/<train|test|val>/<class>/<image>
    config.dataset = "digits"
    config.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data dir
    config.manual_dir = ml_collections.config_dict.placeholder(str)  # manual downloads
    # Manual files whose checksums differ from TFDS's registry are accepted (and recorded
    # beside the prepared data, never in the TFDS package); docs/data.md.
    config.accept_checksums = False
    # none | flip | crop_flip | sketch | sketch_flip | imagenet; unset: the dataset's own
    config.augment = ml_collections.config_dict.placeholder(str)
    config.num_classes = 10  # must match the dataset; lets `summary` run without data
    config.image_size = 32
    config.channels = 1
    config.holdout_fraction = 0.05  # slice of train held out for `select` [choice]
    config.shuffle_buffer = 10_000
    config.cache = False

    # Optimisation (the authors': Adam, lr halved on a fixed interval, floored).
    config.seed = 0
    config.batch_size = 128  # global, over all devices and processes
    config.eval_batch_size = 256
    config.num_epochs = 15
    config.num_train_steps = -1  # > 0 overrides num_epochs (smoke runs)
    config.learning_rate = 2e-3
    config.lr_schedule = "decay"  # decay | imagenet (the authors' two schedulers)
    config.lr_decay_epochs = 40
    config.lr_decay_factor = 0.5
    config.lr_floor = 5e-5
    config.weight_decay = 0.0
    # After each step, binary latent kernels are: center_clip (the authors' mean-centring
    # over input channels, then clip to [-1, 1]) | clip (Larq's weight_clip) | none.
    config.kernel_projection = "center_clip"

    # The hbn pipeline: fbin -> select -> hybrid, plus baselines.
    config.hbn = ml_collections.ConfigDict()
    config.hbn.baselines = ("float", "wbin")
    config.hbn.error_metric = "rmse"  # rmse | relative | one_minus_x2
    config.hbn.score = "log_ratio"  # a score of binflax.select.SCORES
    config.hbn.method = "greedy"  # greedy | exact | partition
    config.hbn.budgets = (1.1,)  # x fbin's equivalent FLOPs; one hybrid per budget
    config.hbn.num_float = ml_collections.config_dict.placeholder(int)
    config.hbn.speedup = 58.0
    config.hbn.measure_batches = 20
    config.hbn.init_hybrid_from_fbin = False  # authors train the hybrid from scratch
    # Control hybrids beside each hybrid, float inputs chosen at its budget without the
    # metric (binflax.select.controls): any of random | cost_only | error_only.
    config.hbn.controls = ()
    config.hbn.num_random = 3  # random draws per hybrid when controls has "random"
    # The input bit-widths a candidate layer may take (32: float). (1, 32) is the paper's
    # binary-or-float HBN; more, e.g. (1, 2, 4, 8, 32), makes the hbn mode the
    # mixed-precision study (binflax.select.mixed): each hybrid gets a bit-width per
    # layer that minimises the summed hbn.sensitivity score within its budget, and
    # hbn.precision_controls (in place of hbn.controls) are trained beside it, any of
    # random | uniform | binary_float | error | fisher | hessian (a score: its pick).
    config.hbn.precisions = (1, 32)
    config.hbn.precision_controls = ("uniform", "binary_float", "random")
    config.hbn.sensitivity = "error"  # error | fisher | hessian (binflax.select.sensitivity)
    config.hbn.hutchinson_samples = 4  # Rademacher vectors per batch of the hessian score
    # The mixed-precision study's cost: "" for equivalent FLOPs, or the path of a latency
    # table measured on the export's kernels (binflax.export.latency_table), whose summed
    # layer times the budgets then multiply (fbin's, as for equivalent FLOPs).
    config.hbn.cost_table = ""

    # Bookkeeping.
    config.num_eval_batches = -1  # > 0 evaluates on that many batches only (smoke runs)
    config.log_every_steps = 50
    config.eval_every_epochs = 1  # holdout evaluation: chooses the reported checkpoint
    config.test_every_epochs = 0  # test evaluation (best-test figure); 0: at the end only
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 2
    return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks any config to a smoke run: a few small steps, tiny eval and measurement.

    Selected with ``--config=configs/NAME.py:runlocal`` (big_vision's switch).
    """
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 4
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.shuffle_buffer = 64
    config.hbn.measure_batches = 2
    config.hbn.baselines = ()
    config.num_eval_batches = 2
    return config
