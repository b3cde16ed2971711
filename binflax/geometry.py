"""A planned layer's geometry: what a conv or dense layer computes, whoever wrote it.

Why one description: binflax plans two kinds of layer, its own
:class:`~binflax.layers.HBNConv` units and the ``nn.Conv``/``nn.Dense`` layers of a
network it binarizes, and four parts of binflax compute or count them: the fake-quantized
layer (:mod:`binflax.planned`), the cost model, the export's integer path and the
benchmarks. A :class:`Geometry` holds everything ``nn.Conv`` takes - kernel size,
strides, every padding (``SAME``, ``VALID``, ``CIRCULAR``, ``REFLECT``, ``CAUSAL``,
integer pairs), input and kernel dilation, feature groups - or marks a dense layer, and
computes the layer with float32 accumulation, so each of them reads the same numbers.

The export's integer arithmetic works on 2-D NHWC maps: :meth:`Geometry.as_2d` views a
dense layer as a 1x1 conv on a 1x1 map and a 1-D conv as a conv on a 1-row map.

    >>> g = Geometry.conv((3, 3), strides=(2, 2), padding="SAME")
    >>> g.kernel_shape(16, 32), g.output_shape((1, 8, 8, 16), 32)
    ((3, 3, 16, 32), (1, 4, 4, 32))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax.linen.linear import canonicalize_padding
from jax import lax

# Paddings that nn.Conv applies to its input itself before a VALID convolution.
PRE_PADDINGS = ("CIRCULAR", "REFLECT", "CAUSAL")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A conv (``kind="conv"``, channels last, kernel ``(*spatial, C_in/groups, C_out)``) or
    a dense layer (``kind="dense"``, kernel ``(C_in, C_out)`` on the last axis).

    ``padding`` is ``nn.Conv``'s, canonical: a string or one ``(lo, hi)`` pair per spatial
    axis. Hashable, so it can be a static argument of ``jax.jit``.
    """

    kind: str = "conv"
    kernel_size: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    padding: Any = "VALID"
    input_dilation: tuple[int, ...] = ()
    kernel_dilation: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def conv(
        cls,
        kernel_size: Sequence[int],
        strides: None | int | Sequence[int] = 1,
        padding: Any = "VALID",
        input_dilation: None | int | Sequence[int] = 1,
        kernel_dilation: None | int | Sequence[int] = 1,
        groups: int = 1,
    ) -> Geometry:
        """A conv as ``nn.Conv`` takes its arguments (ints broadcast over the axes)."""
        kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
        spatial = len(kernel_size)

        def per_axis(value: None | int | Sequence[int]) -> tuple[int, ...]:
            value = 1 if value is None else value
            return (value,) * spatial if isinstance(value, int) else tuple(value)

        padding = canonicalize_padding(padding, spatial)
        if not isinstance(padding, str):
            padding = tuple(tuple(int(p) for p in pair) for pair in padding)
        return cls(
            kind="conv",
            kernel_size=kernel_size,
            strides=per_axis(strides),
            padding=padding,
            input_dilation=per_axis(input_dilation),
            kernel_dilation=per_axis(kernel_dilation),
            groups=int(groups),
        )

    @classmethod
    def dense(cls) -> Geometry:
        return cls(kind="dense")

    @property
    def spatial(self) -> int:
        return len(self.kernel_size)

    def kernel_shape(self, in_features: int, features: int) -> tuple[int, ...]:
        """The kernel parameter's shape, as ``nn.Conv``/``nn.Dense`` create it."""
        if self.kind == "dense":
            return (in_features, features)
        if in_features % self.groups:
            raise ValueError(
                f"{in_features} input channels do not split into {self.groups} feature groups"
            )
        return (*self.kernel_size, in_features // self.groups, features)

    def apply(
        self,
        x: jax.Array,
        kernel: jax.Array,
        *,
        precision: Any = None,
        preferred_element_type: Any = jnp.float32,
    ) -> jax.Array:
        """The layer's linear map of ``x`` (any leading batch axes), without bias:
        ``nn.Conv``'s computation (flax/linen/linear.py) or ``nn.Dense``'s, accumulating
        in ``preferred_element_type`` (float32, or int32 for int8 +-1 operands)."""
        if self.kind == "dense":
            return lax.dot_general(
                x,
                kernel,
                (((x.ndim - 1,), (0,)), ((), ())),
                precision=precision,
                preferred_element_type=preferred_element_type,
            )
        batch_shape = x.shape[: x.ndim - self.spatial - 1]
        x = x.reshape((-1, *x.shape[x.ndim - self.spatial - 1 :]))
        x, padding = self.pre_pad(x)
        lhs = (0, x.ndim - 1, *range(1, x.ndim - 1))
        rhs = (x.ndim - 1, x.ndim - 2, *range(x.ndim - 2))
        y = lax.conv_general_dilated(
            x,
            kernel,
            self.strides,
            padding,
            lhs_dilation=self.input_dilation,
            rhs_dilation=self.kernel_dilation,
            dimension_numbers=lax.ConvDimensionNumbers(lhs, rhs, lhs),
            feature_group_count=self.groups,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
        return y.reshape((*batch_shape, *y.shape[1:]))

    def pre_pad(self, x: jax.Array) -> tuple[jax.Array, Any]:
        """``x`` (N, spatial..., C) with the padding ``nn.Conv`` applies itself (circular,
        reflect, causal), and the padding left for the convolution."""
        mode, widths, padding = self._own_padding()
        if mode is not None:
            x = jnp.pad(x, [(0, 0), *widths, (0, 0)], mode=mode)
        return x, padding

    def _own_padding(self) -> tuple[str | None, tuple[tuple[int, int], ...], Any]:
        """``(jnp.pad mode, widths per spatial axis, padding left for the conv)``."""
        if self.padding in ("CIRCULAR", "REFLECT"):
            dilated = [
                (k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation, strict=True)
            ]
            widths = tuple(((k - 1) // 2, k // 2) for k in dilated)
            return {"CIRCULAR": "wrap", "REFLECT": "reflect"}[self.padding], widths, "VALID"
        if self.padding == "CAUSAL":
            if self.spatial != 1:
                raise ValueError("CAUSAL padding is only defined for 1-D convolutions")
            return "constant", ((self.kernel_dilation[0] * (self.kernel_size[0] - 1), 0),), "VALID"
        return None, ((0, 0),) * self.spatial, self.padding

    def output_shape(self, input_shape: Sequence[int], features: int) -> tuple[int, ...]:
        """The layer's output shape for an input of ``input_shape``, from shapes alone.
        Remembered: every trace of a network asks it of every layer again."""
        return _output_shape(self, tuple(input_shape), features)

    # -- the 2-D view the integer path computes in -------------------------------------

    def as_2d(self, input_shape: Sequence[int]) -> Geometry2D:
        """This layer as a 2-D conv on NHWC maps, for inputs of ``input_shape`` (batch
        included): the map it reads, its circular or reflect pre-padding, and explicit
        zero padding (a causal conv's included)."""
        if self.kind == "dense":
            return Geometry2D((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, (1, 1))
        if self.spatial not in (1, 2) or any(d != 1 for d in self.input_dilation):
            raise ValueError(
                "the integer path runs dense layers and 1-D and 2-D convs without input "
                f"dilation; this conv is {self.spatial}-D with input_dilation "
                f"{self.input_dilation}"
            )
        mode, widths, padding = self._own_padding()
        input_spatial = tuple(int(n) for n in input_shape[len(input_shape) - 1 - self.spatial : -1])
        zero_pads = ((0, 0),) * self.spatial
        if mode == "constant":  # causal: zeros, which the conv's own padding gives
            zero_pads, widths, mode = widths, zero_pads, None
        prepadded = tuple(n + lo + hi for n, (lo, hi) in zip(input_spatial, widths, strict=True))
        dilated = [
            (k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation, strict=True)
        ]
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(prepadded, dilated, self.strides, padding)
        pads = tuple(
            (int(lo) + zlo, int(hi) + zhi)
            for (lo, hi), (zlo, zhi) in zip(padding, zero_pads, strict=True)
        )
        lift = (lambda t, one: (one, *t)) if self.spatial == 1 else (lambda t, one: tuple(t))
        return Geometry2D(
            kernel_size=lift(self.kernel_size, 1),
            strides=lift(self.strides, 1),
            padding=lift(pads, (0, 0)),
            dilation=lift(self.kernel_dilation, 1),
            groups=self.groups,
            input_spatial=lift(input_spatial, 1),
            pre_pad=mode,
            pre_pad_widths=lift(widths, (0, 0)),
        )

    def to_dict(self) -> dict:
        padding = self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding]
        return {
            "kind": self.kind,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": padding,
            "input_dilation": list(self.input_dilation),
            "kernel_dilation": list(self.kernel_dilation),
            "groups": self.groups,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        if data["kind"] == "dense":
            return cls.dense()
        padding = data["padding"]
        if not isinstance(padding, str):
            padding = tuple(tuple(pair) for pair in padding)
        return cls(
            kind="conv",
            kernel_size=tuple(data["kernel_size"]),
            strides=tuple(data["strides"]),
            padding=padding,
            input_dilation=tuple(data["input_dilation"]),
            kernel_dilation=tuple(data["kernel_dilation"]),
            groups=int(data["groups"]),
        )


@functools.lru_cache(maxsize=4096)
def _output_shape(
    geometry: Geometry, input_shape: tuple[int, ...], features: int
) -> tuple[int, ...]:
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    kernel = jax.ShapeDtypeStruct(geometry.kernel_shape(input_shape[-1], features), jnp.float32)
    return tuple(jax.eval_shape(geometry.apply, x, kernel).shape)


@dataclasses.dataclass(frozen=True)
class Geometry2D:
    """A layer as a 2-D conv on NHWC maps of ``input_spatial``: first padded by
    ``pre_pad`` (``jnp.pad``'s ``"wrap"`` or ``"reflect"``, None for none) with
    ``pre_pad_widths``, then convolved with explicit zero ``padding``. What the packed
    arithmetic takes."""

    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    groups: int
    input_spatial: tuple[int, int]
    pre_pad: str | None = None
    pre_pad_widths: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @property
    def spatial_shape(self) -> tuple[int, int]:
        """The map the convolution reads, after the pre-padding."""
        return tuple(
            n + lo + hi for n, (lo, hi) in zip(self.input_spatial, self.pre_pad_widths, strict=True)
        )

    def pad(self, x: jax.Array) -> jax.Array:
        """``x`` (N, H, W, anything) with the pre-padding: of floats, signs or packed words
        alike, as it only copies pixels."""
        if self.pre_pad is None:
            return x
        return jnp.pad(x, ((0, 0), *self.pre_pad_widths, (0, 0)), mode=self.pre_pad)

    @property
    def fully_connected(self) -> bool:
        """The kernel covers the whole unpadded map once: a dense layer written as a conv."""
        return (
            self.padding == ((0, 0), (0, 0))
            and self.pre_pad is None
            and tuple(self.kernel_size) == tuple(self.input_spatial)
            and self.groups == 1
        )

    def output_pixels(self) -> int:
        """Output pixels per image."""
        return math.prod(
            (size + lo + hi - (k - 1) * d - 1) // s + 1
            for size, (lo, hi), k, d, s in zip(
                self.spatial_shape,
                self.padding,
                self.kernel_size,
                self.dilation,
                self.strides,
                strict=True,
            )
        )
