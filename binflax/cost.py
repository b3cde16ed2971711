"""The cost model: per-layer MACs, parameters, memory and the paper's equivalent FLOPs.

Why shapes only: a researcher asks "what would a hybrid of ResNet-18 cost?" before
training anything. Every figure here comes from :func:`binflax.models.trace_layers`,
which runs ``jax.eval_shape``: no data, no weights, no accelerator. It counts the planned
layers: binflax's units, or the ``nn.Conv`` and ``nn.Dense`` layers of a network passed
through ``binflax.binarize`` (with what binarization adds to them).

Definitions (docs/method.md section 6):
- MACs of a conv = H_out * W_out * C_out * C_in * kh * kw, with C_in per group in a
  grouped conv; a dense layer is a 1x1 conv on a 1x1 map, C_in * C_out;
- equivalent FLOPs = sum of MACs, where a layer with binary input *and* binary weights
  counts MACs / ``speedup`` (58, XNOR-Net's measured figure); binary weights with a
  float input save memory only. A layer whose input has ``b_x`` bits and weights
  ``b_w`` bits (both quantized) is ``b_x * b_w`` binary planes: it counts
  ``MACs * min(1, b_x * b_w / speedup)`` ([choice]: the paper's own constant extended by
  bit planes, so a 2-bit input on binary weights costs twice its XNOR twin and an
  8-bit x 8-bit layer, 64 planes, as much as a float one);
- BOPs (bit operations, the field's mixed-precision measure) = MACs * b_x * b_w, a float
  operand counting 32 bits;
- memory: a binary weight is 1 bit plus one float32 alpha per output channel, an 8-bit
  weight 8 bits plus one float32 scale per output channel, a float weight 32 bits, a
  k-bit input's learned step one float32, a bias 32 bits, batch norm 2 float32 per
  channel after folding, a learned input threshold (``input_norm="shift"``, RSign) 1
  float32 per input channel, an RPReLU (``activation="rprelu"``) 3 float32 per output channel;
- float ops besides the MACs (``float_ops``, not in the equivalent FLOPs, which are the
  paper's): one add per element of a real-valued shortcut onto a layer's output
  (``LayerInfo.shortcut_adds``) and :data:`~binflax.activations.RPRELU_OPS` per output
  element of an RPReLU. RSign costs none: its threshold takes the place of ``sign``'s
  comparison with zero.

The summary table reads as Larq's ``lq.models.summary`` does: one row per layer with
its input and weight precision, then totals.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn

from binflax.activations import RPRELU_OPS
from binflax.binarized_nnx import linen_view
from binflax.models import LayerInfo, trace_layers
from binflax.plan import BITS

XNOR_SPEEDUP = 58.0
FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    macs: int
    params: int
    input: str
    weight: str
    eq_flops: float
    memory_bytes: float
    output_shape: tuple[int, ...]
    float_ops: int = 0
    bops: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "macs": self.macs,
            "params": self.params,
            "input": self.input,
            "weight": self.weight,
            "eq_flops": self.eq_flops,
            "memory_bytes": self.memory_bytes,
            "output_shape": list(self.output_shape),
            "float_ops": self.float_ops,
            "bops": self.bops,
        }


def eq_flops_of(macs: float, input: str, weight: str, speedup: float = XNOR_SPEEDUP) -> float:
    """A layer's equivalent FLOPs at an input and weight precision (plan names)."""
    if input == "float" or weight == "float":
        return float(macs)
    return float(macs) * min(1.0, BITS[input] * BITS[weight] / speedup)


def bops_of(macs: int, input: str, weight: str) -> int:
    """A layer's bit operations: MACs times its input's and its weights' bits."""
    return int(macs) * BITS[input] * BITS[weight]


def kernel_bytes_of(kernel_params: int, out_channels: int, weight: str) -> float:
    """The stored bytes of a kernel: its weights at their bits, plus one float32 scale per
    output channel for binary (alpha) and 8-bit weights."""
    if weight == "float":
        return float(FLOAT_BYTES * kernel_params)
    return kernel_params * BITS[weight] / 8 + FLOAT_BYTES * out_channels


def layer_cost(info: LayerInfo, speedup: float = XNOR_SPEEDUP) -> LayerCost:
    """The cost of one traced layer."""
    cin, cout = info.input_shape[-1], info.kernel_shape[-1]
    kernel_params = math.prod(info.kernel_shape)
    bias_params = cout if info.use_bias else 0
    precision = info.precision
    # The unit's batch norm acts on its input when the input is quantized, else on its output.
    bn_channels = (cin if precision.quantized_input else cout) if info.norm else 0
    other_params = (
        bias_params
        + 2 * bn_channels
        + (cin if info.input_threshold else 0)
        + (3 * cout if info.rprelu else 0)
        + (1 if precision.quantized_input and not precision.binary_input else 0)  # step
    )
    params = kernel_params + other_params
    kernel_bytes = kernel_bytes_of(kernel_params, cout, precision.weight)
    memory = kernel_bytes + FLOAT_BYTES * other_params
    macs = info.macs
    eq_flops = eq_flops_of(macs, precision.input, precision.weight, speedup)
    outputs = math.prod(info.output_shape[1:])
    float_ops = info.shortcut_adds + (RPRELU_OPS * outputs if info.rprelu else 0)
    return LayerCost(
        name=info.name,
        macs=macs,
        params=params,
        input=info.precision.input,
        weight=info.precision.weight,
        eq_flops=eq_flops,
        memory_bytes=memory,
        output_shape=info.output_shape[1:],
        float_ops=float_ops,
        bops=bops_of(macs, precision.input, precision.weight),
    )


def layer_costs(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    speedup: float = XNOR_SPEEDUP,
) -> tuple[LayerCost, ...]:
    """Per-layer costs of ``model`` (a binarized NNX module too) under its plan, from
    shapes alone."""
    model, _ = linen_view(model)
    return tuple(layer_cost(info, speedup) for info in trace_layers(model, input_shape))


def totals(costs: Sequence[LayerCost]) -> dict:
    """Whole-network totals; ``float32_memory_bytes`` is the same net all in float32."""
    return {
        "macs": sum(c.macs for c in costs),
        "params": sum(c.params for c in costs),
        "eq_flops": sum(c.eq_flops for c in costs),
        "memory_bytes": sum(c.memory_bytes for c in costs),
        "float32_memory_bytes": FLOAT_BYTES * sum(c.params for c in costs),
        "float_ops": sum(c.float_ops for c in costs),
        "bops": sum(c.bops for c in costs),
        "binary_input_layers": sum(c.input == "binary" for c in costs),
        "binary_weight_layers": sum(c.weight == "binary" for c in costs),
    }


def summary(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    speedup: float = XNOR_SPEEDUP,
) -> dict:
    """``summary.json``'s content: ``{"layers": [...], "total": {...}}`` (docs/cli.md)."""
    model, _ = linen_view(model)
    costs = layer_costs(model, input_shape, speedup=speedup)
    return {
        "model": type(model).__name__,
        "plan": model.plan.name if model.plan is not None else "float",
        "speedup": speedup,
        "layers": [c.to_dict() for c in costs],
        "total": totals(costs),
    }


def format_summary(data: dict) -> str:
    """A Larq-style text table of :func:`summary`'s output."""
    header = ("layer", "output", "input", "weight", "params", "MACs", "eq. FLOPs", "BOPs", "memory")
    rows = [
        (
            layer["name"],
            "x".join(map(str, layer["output_shape"])),
            layer["input"],
            layer["weight"],
            f"{layer['params']:,}",
            _mega(layer["macs"]),
            _mega(layer["eq_flops"]),
            _giga(layer["bops"]),
            _bytes(layer["memory_bytes"]),
        )
        for layer in data["layers"]
    ]
    total = data["total"]
    footer = (
        "total",
        "",
        f"{total['binary_input_layers']} bin",
        f"{total['binary_weight_layers']} bin",
        f"{total['params']:,}",
        _mega(total["macs"]),
        _mega(total["eq_flops"]),
        _giga(total["bops"]),
        _bytes(total["memory_bytes"]),
    )
    widths = [max(len(r[i]) for r in [header, *rows, footer]) for i in range(len(header))]

    def line(row):
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    rule = "-" * len(line(header))
    ratio = total["float32_memory_bytes"] / max(total["memory_bytes"], 1)
    notes = (
        f"{data['model']} with plan {data['plan']!r}: equivalent FLOPs count binary-input, "
        f"binary-weight MACs at 1/{data['speedup']:g}\n"
        f"(b_x * b_w of them where inputs and weights have more bits); BOPs = MACs * b_x * b_w.\n"
        f"memory {_bytes(total['memory_bytes'])} vs {_bytes(total['float32_memory_bytes'])} "
        f"in float32 ({ratio:.1f}x smaller); speedup over float "
        f"{total['macs'] / max(total['eq_flops'], 1):.1f}x"
    )
    if total["float_ops"]:
        notes += (
            f"\nfloat ops besides the MACs (shortcut adds, RPReLU): {_mega(total['float_ops'])}"
        )
    return "\n".join([rule, line(header), rule, *map(line, rows), rule, line(footer), rule, notes])


def _giga(value: float) -> str:
    """Bit operations, in G where they reach it (a float layer has 1024 per MAC)."""
    return f"{value / 1e9:.2f} G" if value >= 1e9 else _mega(value)


def _mega(value: float) -> str:
    return f"{value / 1e6:.2f} M"


def _bytes(value: float) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"
