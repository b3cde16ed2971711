"""From trained variables to the arrays an integer engine runs: packed signs, folded norms.

Why fold: at inference a batch norm is an affine map per channel, ``BN(x) = x * m + s``
with ``m = gamma / sqrt(var + eps)`` and ``s = beta - mean * m``, so it need not be
stored as four arrays nor computed as such. Where it goes depends on the unit
(docs/method.md section 4, binflax.layers.HBNConv):

- **binary input** (``BN(in) -> sign -> conv``): only the sign of ``BN(x)`` matters, and
  ``BN(x) >= 0`` is ``x >= tau`` where ``m > 0`` and ``x <= tau`` where ``m < 0``, with
  ``tau = mean - beta / m``. It becomes a ``threshold`` (tau, float32) and a
  ``direction`` (+1 or -1, int8) per input channel; the sign is
  ``+1 iff direction * x >= direction * threshold`` - the tie ``x == tau`` gives
  ``BN(x) == 0`` and so +1, as ``sign(0) = +1``. Where ``m == 0`` the sign is that of
  beta: tau is -inf (always +1) or +inf (always -1).
- **float input, float weights** (``conv -> BN(out)``): folded into the kernel and bias.
- **float input, binary weights**: the kernel stays +-1, so BN and alpha become one
  per-channel ``scale`` (``alpha * m``) and a ``bias``.
- **binary input with a learned threshold** (``input_norm="shift"``, ReActNet's RSign):
  ``x - t >= 0`` is the ``threshold`` t with direction +1.
- **k-bit input** (``BN(in) -> Q_k -> conv``, 2, 4 or 8 bits): the integer level
  ``floor(BN(x) / step)`` has 2**k - 1 boundaries per channel where the sign has one, so
  a folded affine, which rounds differently from the trained network's batch norm, would
  move inputs across them; the norm is stored unfolded (``norm_mean``, ``norm_var``,
  ``norm_scale``, ``norm_bias``; ``input_shift`` for a learned shift) with the learned
  ``input_step``, and the export normalises and quantizes with the model's own operations.
- **8-bit weights**: ``kernel_int8`` (OHWI, ``round(W / s_o)``) and ``scale`` ``s_o``
  (times the folded BN where the input is float).

Kernels are stored in the layer's 2-D view (:meth:`binflax.geometry.Geometry.as_2d`): a
dense kernel ``(C_in, C_out)`` as a 1x1 one, a 1-D conv's ``(k, C_in, C_out)`` as
``(1, k, C_in, C_out)``.

Per layer the fields are (shapes with C_in, C_out, kernel OHWI as Larq Compute Engine):
``kernel_bits`` uint32 (C_out, kh, kw, ceil(C_in / 32)) or ``kernel`` float32
(C_out, kh, kw, C_in); ``scale`` float32 (C_out) for binary weights (alpha, times the
folded BN where the input is float); ``bias`` float32 (C_out) where there is one;
``threshold``/``direction`` (C_in) for binary inputs with a norm or a threshold;
``bn_scale`` and ``bn_shift`` (C_in) only when the layer scales its output by XNOR-Net's
K map, which needs the normalised input itself; ``rprelu_gamma``, ``rprelu_beta`` and
``rprelu_zeta`` (C_out) where a binary-input layer ends in ReActNet's RPReLU, which has
no integer form and runs in float32 as trained. The layer computes
``y = conv(in, kernel) [* K] [* scale] [+ bias]``, then ``[RPReLU(y)]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from binflax.export.format import ExportError
from binflax.models import LayerInfo
from binflax.packing import pack_signs
from binflax.planned import BN_EPSILON, INPUT_STEP
from binflax.quantizers import int8_weight_codes

RPRELU_PARAMS = ("gamma", "beta", "zeta")


def subtree(tree: Mapping, path: str, what: str) -> Mapping:
    """``tree[a][b]...`` for the layer path ``a/b/...``; a clear error when absent."""
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise ExportError(f"the {what} have no entry for layer {path!r} (missing {part!r})")
        node = node[part]
    return node


def batch_norm_affine(
    params: Mapping, stats: Mapping, epsilon: float = BN_EPSILON
) -> tuple[np.ndarray, np.ndarray]:
    """``(m, s)`` in float64 with ``BN(x) = x * m + s`` for a unit's ``bn`` variables."""
    gamma = np.asarray(params["scale"], np.float64)
    beta = np.asarray(params["bias"], np.float64)
    mean = np.asarray(stats["mean"], np.float64)
    var = np.asarray(stats["var"], np.float64)
    m = gamma / np.sqrt(var + epsilon)
    return m, beta - mean * m


def sign_threshold(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(threshold, direction)`` with ``x*m + s >= 0  iff  direction*x >= direction*tau``."""
    direction = np.where(m < 0, -1, 1).astype(np.int8)
    tau = np.full(m.shape, -np.inf)
    np.divide(-s, m, out=tau, where=m != 0)
    tau = np.where((m == 0) & (s < 0), np.inf, tau)
    return tau.astype(np.float32), direction


def fold_layer(info: LayerInfo, params: Mapping, stats: Mapping) -> dict[str, np.ndarray]:
    """The exported fields of one traced layer (see the module docstring)."""
    kernel = np.asarray(params["kernel"], np.float32)
    if kernel.shape != tuple(info.kernel_shape):
        raise ExportError(
            f"layer {info.name!r}: kernel of shape {kernel.shape} in the variables, "
            f"the model has {info.kernel_shape}"
        )
    out: dict[str, np.ndarray] = {}
    bias = np.asarray(params["bias"], np.float64) if info.use_bias else None
    post_norm = None
    input_map = None  # (m, s) of the binary input's normalisation, for the K map
    k_bit = info.precision.quantized_input and not info.precision.binary_input
    if info.norm:
        bn_stats = subtree(stats, "bn", "batch_stats")
        m, s = batch_norm_affine(params["bn"], bn_stats)
        if info.precision.binary_input:
            out["threshold"], out["direction"] = sign_threshold(m, s)
            input_map = m, s
        elif k_bit:  # unfolded: the export normalises as the model does (see above)
            for field, value in (*bn_stats.items(), *params["bn"].items()):
                out[f"norm_{field}"] = np.asarray(value, np.float32)
            input_map = m, s
        else:
            post_norm = m, s
            bias = (0.0 if bias is None else bias) * m + s
    elif info.input_threshold:
        threshold = np.asarray(params["threshold"], np.float64)
        if k_bit:
            out["input_shift"] = threshold.astype(np.float32)
        else:
            out["threshold"], out["direction"] = sign_threshold(np.ones_like(threshold), -threshold)
        input_map = np.ones_like(threshold), -threshold
    if k_bit:
        out["input_step"] = np.asarray(params[INPUT_STEP], np.float32).reshape(1)
    if info.scale_inputs:
        m, s = input_map or (np.ones(info.input_shape[-1]), np.zeros(info.input_shape[-1]))
        out["bn_scale"], out["bn_shift"] = m.astype(np.float32), s.astype(np.float32)
    ohwi = kernel_2d(info, kernel).transpose(3, 0, 1, 2)
    if info.precision.binary_weight:
        out["kernel_bits"] = np.asarray(pack_signs(ohwi))
        # alpha = mean |W| per output channel (quantizers.weight_scale), in NumPy so
        # that exporting compiles nothing.
        scale = np.mean(np.abs(kernel, dtype=np.float64), axis=tuple(range(kernel.ndim - 1)))
        out["scale"] = (scale if post_norm is None else scale * post_norm[0]).astype(np.float32)
    elif info.precision.weight == "int8":
        codes, scale = int8_weight_codes(kernel_2d(info, kernel))
        out["kernel_int8"] = codes.transpose(3, 0, 1, 2)
        out["scale"] = (scale if post_norm is None else scale * post_norm[0]).astype(np.float32)
    else:
        folded = ohwi if post_norm is None else ohwi * post_norm[0][:, None, None, None]
        out["kernel"] = folded.astype(np.float32)
    if bias is not None:
        out["bias"] = np.asarray(bias, np.float32)
    if info.rprelu:
        for name in RPRELU_PARAMS:
            out[f"rprelu_{name}"] = np.asarray(params["rprelu"][name], np.float32)
    return out


def kernel_2d(info: LayerInfo, kernel: np.ndarray) -> np.ndarray:
    """A layer's kernel in its 2-D view, HWIO (``I`` per group)."""
    if info.geometry is not None and info.geometry.kind == "dense":
        return kernel.reshape(1, 1, *kernel.shape)
    if kernel.ndim == 3:  # a 1-D conv: one row
        return kernel[None]
    return kernel


def fold_variables(layers: tuple[LayerInfo, ...], variables: Mapping) -> dict[str, np.ndarray]:
    """Every layer's fields, keyed ``<layer path>/<field>``."""
    if "params" not in variables:
        raise ExportError(
            f"variables need a 'params' collection; got {', '.join(variables) or 'none'}"
        )
    params, stats = variables["params"], variables.get("batch_stats", {})
    arrays = {}
    for info in layers:
        layer_stats = subtree(stats, info.name, "batch_stats") if info.norm else {}
        fields = fold_layer(info, subtree(params, info.name, "params"), layer_stats)
        arrays.update({f"{info.name}/{field}": value for field, value in fields.items()})
    return arrays
