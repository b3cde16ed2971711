"""The plan: for every layer of a network, whether its input and its weights are binary.

Why: the paper's object of study is *where* to binarize. A plan is that decision written
down, separate from the model's code, so the same AlexNet can be trained float, wbin,
fbin or as any hybrid, and a hybrid found by ``binflax.select`` can be saved as JSON and
trained later with ``--config.plan=runs/.../plan.json`` (:meth:`Plan.save`, :meth:`Plan.load`).

    >>> names = ("conv1", "conv2", "conv3", "fc")
    >>> plan = Plan.preset("fbin", names)
    >>> plan["conv2"]
    LayerPrecision(name='conv2', input='binary', weight='binary')
    >>> Plan.hybrid(names, float_inputs=["conv3"])["conv3"].input
    'float'

Presets (docs/method.md section 2): ``float``; ``wbin`` (binary weights except the first
layer, float inputs); ``fbin`` (as wbin, plus binary inputs except first and last layer);
a *hybrid* is fbin with some inputs kept float. The last layer's weights are binary only
when ``binarize_last_weights`` is set.

Layer names are module paths (``conv3``, ``layer4_1/conv1``, ``Block_0/Conv_1``): a layer
finds its own entry by its scope path (:func:`precision_of`). Rules name layers by
pattern instead - ``(regex, input, weight)``, matched with ``re.fullmatch``, the first
match wins - and expand into the exhaustive plan over a network's layers:

    >>> rules = [("conv1|fc", "float", "float"), ("conv3", "float", "binary"),
    ...          (".*", "binary", "binary")]
    >>> Plan.from_rules(rules, names).float_inputs
    ('conv1', 'conv3', 'fc')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
from etils import epath

from binflax.errors import UserError

Precision = Literal["binary", "int2", "int4", "int8", "float"]
PRESETS = ("float", "wbin", "fbin", "fbin8")
# What a layer's input and its weights may be, by name, and each name's bit-width
# (float counts 32). The plan stores names; it accepts bit-widths (1, 2, 4, 8, 32) too,
# so ``("conv3", 4, "binary")`` is a rule and ``(1, 2, 4, 8, 32)`` a search space.
INPUT_PRECISIONS = ("binary", "int2", "int4", "int8", "float")
WEIGHT_PRECISIONS = ("binary", "int8", "float")
BITS = {"binary": 1, "int2": 2, "int4": 4, "int8": 8, "float": 32}
# The precisions the network's first and last layers may take: the paper keeps them
# float; 8 bits is the deployment convention ([choice]).
EDGE_INPUT_PRECISIONS = ("int8", "float")
FORMAT = "binflax.plan"
VERSION = 1


class LayerPrecision(NamedTuple):
    name: str
    input: Precision
    weight: Precision

    @property
    def binary_input(self) -> bool:
        return self.input == "binary"

    @property
    def binary_weight(self) -> bool:
        return self.weight == "binary"

    @property
    def xnor(self) -> bool:
        """Binary input and binary weights: the layer runs as XNOR + popcount."""
        return self.binary_input and self.binary_weight

    @property
    def quantized_input(self) -> bool:
        """The input is quantized (binary or k-bit): the layer takes the binary-input
        block, ``norm -> quantize -> layer`` (binflax.planned)."""
        return self.input != "float"

    @property
    def input_bits(self) -> int:
        return BITS[self.input]

    @property
    def weight_bits(self) -> int:
        return BITS[self.weight]


class PlanError(UserError, ValueError):
    """A plan that does not fit the network it is applied to."""


class Plan:
    """An immutable, hashable mapping from layer name to :class:`LayerPrecision`.

    Hashable so that a Flax module holding it can be a static argument of ``jax.jit``.
    """

    __slots__ = ("layers", "name")

    def __init__(self, layers: Iterable[LayerPrecision], name: str = "custom"):
        layers = tuple(
            LayerPrecision(name, *_canonical(f"layer {name!r}", inp, weight))
            for name, inp, weight in layers
        )
        names = [layer.name for layer in layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PlanError(f"the plan lists layer(s) {', '.join(duplicates)} more than once")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):
        raise AttributeError("Plan is immutable")

    # -- construction ----------------------------------------------------------------
    @classmethod
    def preset(
        cls, preset: str, layer_names: Sequence[str], *, binarize_last_weights: bool = False
    ) -> Plan:
        """``float``, ``wbin``, ``fbin`` or ``fbin8`` over the ordered layer names of a network.

        ``fbin8`` is fbin with an 8-bit first layer (8-bit input and weights), the
        deployment convention the export runs as integers (docs/export.md); the paper's
        networks keep the first layer float (fbin)."""
        if preset not in PRESETS:
            raise PlanError(f"unknown plan preset {preset!r}; presets: {', '.join(PRESETS)}")
        if preset == "float":
            return cls(((n, "float", "float") for n in layer_names), name="float")
        float_inputs = layer_names[1:-1] if preset == "wbin" else ()
        plan = cls.hybrid(layer_names, float_inputs, binarize_last_weights=binarize_last_weights)
        layers = plan.layers
        if preset == "fbin8":
            layers = (LayerPrecision(layer_names[0], "int8", "int8"), *layers[1:])
        return cls(layers, name=preset)

    @classmethod
    def hybrid(
        cls,
        layer_names: Sequence[str],
        float_inputs: Iterable[str],
        *,
        binarize_last_weights: bool = False,
        name: str = "hybrid",
    ) -> Plan:
        """fbin, except that the layers in ``float_inputs`` keep float inputs."""
        layer_names = tuple(layer_names)
        float_inputs = set(float_inputs)
        _check_known(float_inputs, layer_names)
        first, last = layer_names[0], layer_names[-1]
        layers = []
        for n in layer_names:
            edge = n in (first, last)
            inp = "float" if edge or n in float_inputs else "binary"
            weight = (
                "float" if n == first or (n == last and not binarize_last_weights) else "binary"
            )
            layers.append(LayerPrecision(n, inp, weight))
        return cls(layers, name=name)

    @classmethod
    def from_rules(
        cls, rules: Iterable[Sequence[str]], layer_names: Sequence[str], *, name: str = "rules"
    ) -> Plan:
        """The plan over ``layer_names`` that ordered ``(regex, input, weight)`` rules give.

        Each layer takes the precisions of the first rule whose regex ``re.fullmatch``-es
        its name. A layer that no rule matches, and a rule that decides no layer (it
        matches none, or only layers that earlier rules took), are errors: a rule that
        does nothing is almost always a typo.
        """
        compiled = []
        for index, rule in enumerate(rules):
            where = f"rule {index} {rule!r}"
            if not isinstance(rule, list | tuple) or len(rule) != 3:
                raise PlanError(f"{where} is not a (regex, input, weight) triple")
            pattern, inp, weight = rule
            try:
                regex = re.compile(pattern)
            except (re.error, TypeError) as e:
                raise PlanError(f"{where}: {pattern!r} is not a regular expression: {e}") from None
            inp, weight = _canonical(where, inp, weight)
            compiled.append((where, regex, inp, weight))
        layers, decided = [], {where: [] for where, *_ in compiled}
        for layer in layer_names:
            rule = next((r for r in compiled if r[1].fullmatch(layer)), None)
            if rule is None:
                raise PlanError(
                    f"no rule matches layer {layer!r}; end the rules with a catch-all such "
                    f"as ('.*', 'binary', 'binary'). The network's layers: "
                    f"{', '.join(layer_names)}"
                )
            layers.append((layer, rule[2], rule[3]))
            decided[rule[0]].append(layer)
        for where, regex, _, _ in compiled:
            if decided[where]:
                continue
            matched = [n for n in layer_names if regex.fullmatch(n)]
            if matched:
                raise PlanError(
                    f"{where} decides no layer: earlier rules take every layer it matches "
                    f"({', '.join(matched)})"
                )
            raise PlanError(
                f"{where} matches no layer; the network's layers: {', '.join(layer_names)}"
            )
        return cls(layers, name=name)

    # -- queries ---------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def __getitem__(self, name: str) -> LayerPrecision:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise PlanError(f"the plan has no layer {name!r}; its layers: {', '.join(self.names)}")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __eq__(self, other) -> bool:
        return isinstance(other, Plan) and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.layers)

    def __repr__(self) -> str:
        if self.mixed:
            layers = {layer.name: (layer.input, layer.weight) for layer in self.layers}
            return f"Plan({self.name!r}, {layers})"
        return f"Plan({self.name!r}, float_inputs={list(self.float_inputs)})"

    @property
    def float_inputs(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.input == "float")

    @property
    def binary_inputs(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.binary_input)

    @property
    def mixed_layers(self) -> tuple[LayerPrecision, ...]:
        """The layers with a k-bit input or 8-bit weights: beyond the paper's binary or
        float."""
        plain = ("binary", "float")
        return tuple(
            layer for layer in self.layers if layer.input not in plain or layer.weight not in plain
        )

    @property
    def mixed(self) -> bool:
        return bool(self.mixed_layers)

    def validate(self, layer_names: Sequence[str]) -> Plan:
        """Checks that the plan covers exactly ``layer_names`` and keeps the network's first
        and last layers' inputs float or 8-bit; returns it in network order.

        The edge rule is checked here, not in the constructor, because "first" and "last"
        belong to the network: a plan file may list its layers in any order.
        """
        _check_known(self.names, layer_names)
        missing = [n for n in layer_names if n not in self.names]
        if missing:
            raise PlanError(f"the plan does not cover layer(s) {', '.join(missing)}")
        for edge in dict.fromkeys((layer_names[0], layer_names[-1])):
            if self[edge].input not in EDGE_INPUT_PRECISIONS:
                raise PlanError(
                    f"layer {edge!r}: the network's first and last layers "
                    f"({layer_names[0]}, {layer_names[-1]}) keep float inputs (or 8-bit: "
                    f"'int8'), not {self[edge].input!r}"
                )
        return Plan((self[n] for n in layer_names), name=self.name)

    # -- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "layers": {
                layer.name: {"input": layer.input, "weight": layer.weight} for layer in self
            },
        }

    def save(self, path: epath.PathLike) -> None:
        """Writes :meth:`to_dict` as JSON to ``path`` (local, ``gs://``, ...)."""
        epath.Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        if data.get("format") != FORMAT:
            raise PlanError(f"not a binflax plan (format field is {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise PlanError(f"unsupported plan version {data.get('version')!r}; expected {VERSION}")
        try:
            layers = [(n, p["input"], p["weight"]) for n, p in data["layers"].items()]
        except (KeyError, TypeError, AttributeError) as e:
            raise PlanError(f"malformed plan layers: {e!r}") from None
        return cls(layers, name=data.get("name", "custom"))

    @classmethod
    def load(cls, path: epath.PathLike) -> Plan:
        """Reads a plan that :meth:`save` wrote."""
        try:
            text = epath.Path(path).read_text()
        except OSError as e:
            raise PlanError(f"cannot read plan file {path}: {e.strerror or e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"plan file {path} is not valid JSON: {e}") from None
        return cls.from_dict(data)


Rules = Sequence[tuple[str, Precision, Precision]]


def resolve(
    spec: str | Plan | Rules,
    layer_names: Sequence[str],
    *,
    binarize_last_weights: bool = False,
) -> Plan:
    """A plan from a preset name, a JSON path, a Plan or a list of ``(regex, input,
    weight)`` rules (:meth:`Plan.from_rules`), validated against the network.

    ``binarize_last_weights`` shapes the presets only: a Plan, a plan file and rules
    state every layer's weights themselves.
    """
    if isinstance(spec, Plan):
        plan = spec
    elif isinstance(spec, list | tuple):
        plan = Plan.from_rules(spec, layer_names)
    elif spec in PRESETS:
        plan = Plan.preset(spec, layer_names, binarize_last_weights=binarize_last_weights)
    elif str(spec).endswith(".json") or epath.Path(spec).exists():
        plan = Plan.load(spec)
    else:
        raise PlanError(
            f"plan {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a plan JSON file"
        )
    return plan.validate(layer_names)


def precision_of(plan: Plan | None, path: str) -> LayerPrecision:
    """The entry of the layer at module path ``path``; with no plan every layer is float
    (how :func:`binflax.tracing.layer_names` lists a network's layers)."""
    return LayerPrecision(path, "float", "float") if plan is None else plan[path]


def precision_name(value: str | int, field: str = "input", where: str = "") -> str:
    """The plan's name for an input (``field="input"``) or weight precision given by name
    (``"int4"``) or bit-width (``4``; 1 is ``"binary"``, 32 ``"float"``)."""
    allowed = INPUT_PRECISIONS if field == "input" else WEIGHT_PRECISIONS
    names = {BITS[name]: name for name in allowed}
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and value in names:
        return names[int(value)]
    if isinstance(value, str) and value in allowed:
        return value
    prefix = f"{where}: " if where else ""
    raise PlanError(
        f"{prefix}{field} precision must be one of {', '.join(allowed)} (or the bit-widths "
        f"{', '.join(str(BITS[name]) for name in allowed)}), got {value!r}"
    )


def _canonical(where: str, inp: str | int, weight: str | int) -> tuple[str, str]:
    return precision_name(inp, "input", where), precision_name(weight, "weight", where)


def _check_known(names: Iterable[str], layer_names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in layer_names]
    if unknown:
        raise PlanError(
            f"unknown layer(s) {', '.join(map(repr, unknown))}; "
            f"the network's layers: {', '.join(layer_names)}"
        )
