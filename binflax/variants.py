"""The variants an HBN run trains, their names, and each one's own recipe.

Why a module of its own: the paper compares float, wbin, one or more hybrids and fbin,
and the authors trained them with different recipes: their float Sketch-A-Net has its
own learning rate and weight decay, their binary nets a larger dropout, their float
ResNet-18 a larger batch (docs/method.md section 9). A config states the shared recipe
once and overrides, per variant, only what differs:

    config.variants.float = ml_collections.ConfigDict({"learning_rate": 5e-3})
    config.variants.hybrid = ml_collections.ConfigDict({"dropout_rate": 0.2})

``hybrid`` applies to every hybrid (``hybrid`` with one budget, ``hybrid1``, ``hybrid2``,
... with several, in the order of ``config.hbn.budgets``).

    >>> hybrid_names((1.43, 1.14))
    ('hybrid1', 'hybrid2')
    >>> hybrid_names((1.5,))
    ('hybrid',)

A control hybrid (``config.hbn.controls``: float inputs chosen at a hybrid's budget
without the paper's metric, :mod:`binflax.select.controls`) is named after its hybrid
and trains with the ``hybrid`` recipe. A name is what a run directory and
``results.json`` know a variant by; :func:`parse` reads what it encodes into a
:class:`Variant`, and :attr:`Variant.name` writes it back, the one pair that reads and
writes the encoding:

    >>> parse("hybrid1.random0")
    Variant(kind='control', base='hybrid1', control='random', draw=0)
    >>> parse("hybrid1").control_of("cost_only").name
    'hybrid1.cost_only'

Tables and figures over seeds set each row apart by its kind:

    >>> [parse(name).kind for name in ("float", "hybrid2", "hybrid2.cost_only", "fbin")]
    ['baseline', 'hybrid', 'control', 'baseline']
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import ml_collections

from binflax.select.controls import CONTROLS
from binflax.select.mixed import MIXED_CONTROLS

PRESET_VARIANTS = ("float", "wbin", "fbin")
# What a variant is: a preset (the paper's baselines and fbin), an HBN hybrid, a control.
KINDS = ("baseline", "hybrid", "control")
# The keys of config.variants: the presets, and "hybrid" for every hybrid.
VARIANT_KEYS = (*PRESET_VARIANTS, "hybrid")
# The recipe fields a variant may override.
OVERRIDABLE = ("learning_rate", "weight_decay", "dropout_rate", "batch_size", "num_epochs")

# A hybrid's name: "hybrid" alone, or numbered from 1 in the order of config.hbn.budgets.
_HYBRID = r"hybrid(?P<number>[1-9]\d*)?"
# A control's label: its rule, numbered by draw for the random one (random0, random1, ...).
_LABELS = tuple(dict.fromkeys((*CONTROLS, *MIXED_CONTROLS)))
_LABEL = "|".join(rf"(?P<{c}>{c})(?P<draw>\d+)" if c == "random" else c for c in _LABELS)
_NAME = re.compile(rf"(?P<hybrid>{_HYBRID})(?:\.(?P<label>{_LABEL}))?")


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a variant's name encodes; :func:`parse` reads it, :attr:`name` writes it.

    Why a record: the name ``hybrid1.random0`` is what the run directory and
    ``results.json`` store (``RunDir.variant``, the keys of ``variants``), and the code
    that needs its parts (a control's hybrid, its rule, its draw) reads them here rather
    than splitting the name again.
    """

    kind: str  # one of KINDS
    base: str  # a baseline's preset (float, wbin, fbin), else the hybrid (hybrid, hybrid1, ...)
    control: str | None = None  # a control's rule: select.CONTROLS or select.MIXED_CONTROLS
    draw: int | None = None  # a random control's draw

    @property
    def name(self) -> str:
        """The name a run directory and ``results.json`` know the variant by."""
        return self.base if self.label is None else f"{self.base}.{self.label}"

    @property
    def hybrid(self) -> str | None:
        """The hybrid this variant is or controls; ``None`` for a baseline."""
        return None if self.kind == "baseline" else self.base

    @property
    def label(self) -> str | None:
        """A control's label (``random0``, ``cost_only``, ...), as ``select.control_sets``
        keys its sets; ``None`` for any other variant."""
        if self.control is None:
            return None
        return self.control if self.draw is None else f"{self.control}{self.draw}"

    @property
    def recipe_key(self) -> str:
        """The ``config.variants`` key that holds this variant's overrides."""
        return self.base if self.kind == "baseline" else "hybrid"

    def control_of(self, label: str) -> Variant:
        """The control ``label`` (a key of ``select.control_sets``) of this hybrid."""
        if self.kind != "hybrid":
            raise ValueError(f"{self.name} is not a hybrid: only a hybrid has controls")
        return parse(f"{self.name}.{label}")


def parse(name: str) -> Variant:
    """The variant ``name`` stands for; ValueError when it names no variant."""
    if name in PRESET_VARIANTS:
        return Variant("baseline", name)
    found = _NAME.fullmatch(name)
    if found is None:
        raise ValueError(
            f"{name!r} names no variant: {', '.join(PRESET_VARIANTS)}, hybrid, hybrid<i> "
            f"or a hybrid's control <hybrid>.<{'|'.join(_LABELS)}>"
        )
    if found["label"] is None:
        return Variant("hybrid", found["hybrid"])
    control = "random" if found["random"] else found["label"]
    draw = int(found["draw"]) if found["draw"] else None
    return Variant("control", found["hybrid"], control, draw)


def hybrid_names(budgets: Sequence[float]) -> tuple[str, ...]:
    """``("hybrid",)`` for one budget, ``("hybrid1", "hybrid2", ...)`` for several."""
    if len(budgets) == 1:
        return ("hybrid",)
    return tuple(f"hybrid{i}" for i in range(1, len(budgets) + 1))


def report_order(trained: Iterable[str]) -> tuple[str, ...]:
    """The paper's row order: float, wbin, the hybrids (most float inputs first, as
    numbered), fbin.

    Each hybrid is followed by its controls, in the order they appear in ``trained``.
    """
    names = list(trained)
    baselines = {"float": 0, "wbin": 1, "fbin": 3}

    def position(name: str) -> tuple:
        variant = parse(name)
        if variant.kind == "baseline":
            return (baselines[name],)
        number = _NAME.fullmatch(variant.base)["number"]
        return (2, int(number or 0), variant.kind == "control", names.index(name))

    return tuple(sorted(names, key=position))


def of_plan(plan: object) -> str:
    """The variant a ``train`` run of ``config.plan`` is: the preset's name, else ``hybrid``."""
    return plan if plan in PRESET_VARIANTS else "hybrid"


def variant_config(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``variant``'s overrides applied (``config`` is unchanged)."""
    resolved = config.copy_and_resolve_references()
    overrides = config.get("variants", {}).get(parse(variant).recipe_key, {})
    for field, value in overrides.items():
        resolved[field] = value
    return resolved
