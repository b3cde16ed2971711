"""What a binflax export holds inside its archive: member names, and layers and links as
the header writes them.

Why a module of its own: :mod:`~binflax.export.writer` encodes these and
:mod:`~binflax.export.loaded` decodes them, and with each encoding beside its decoding
the two cannot drift apart. The archive around them (header, checksum, version) is
:mod:`~binflax.export.format`'s; docs/export.md describes both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from binflax.export import chain as chain_lib
from binflax.geometry import Geometry
from binflax.plan import LayerPrecision
from binflax.tracing import LayerInfo

PROGRAM_PREFIX = "__program__/"
NETWORK_PREFIX = "__network__/"  # the network's variables outside its planned layers
# The variant name of the float32 network of the same shape, latency's baseline.
FLOAT_BASELINE = "float_baseline"


def grouped(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``<layer path>/<field>`` keys as ``{layer path: {field: array}}``."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        layer, field = key.rsplit("/", 1)
        layers.setdefault(layer, {})[field] = array
    return layers


def layer_to_dict(info: LayerInfo) -> dict:
    return {
        "name": info.name,
        "input": info.precision.input,
        "weight": info.precision.weight,
        "kernel_shape": list(info.kernel_shape),
        "input_shape": list(info.input_shape),
        "output_shape": list(info.output_shape),
        "use_bias": info.use_bias,
        "norm": info.norm,
        "input_threshold": info.input_threshold,
        "scale_inputs": info.scale_inputs,
        "geometry": info.geometry.to_dict(),
    }


def layer_from_dict(entry: Mapping) -> LayerInfo:
    return LayerInfo(
        name=entry["name"],
        precision=LayerPrecision(entry["name"], entry["input"], entry["weight"]),
        kernel_shape=tuple(entry["kernel_shape"]),
        input_shape=tuple(entry["input_shape"]),
        output_shape=tuple(entry["output_shape"]),
        use_bias=bool(entry["use_bias"]),
        norm=bool(entry["norm"]),
        input_threshold=bool(entry["input_threshold"]),
        geometry=Geometry.from_dict(entry["geometry"]),
        scale_inputs=bool(entry["scale_inputs"]),
    )


def link_to_dict(link: chain_lib.Link) -> dict:
    pool = link.pool
    return {
        "producer": link.producer,
        "consumer": link.consumer,
        "relu": link.relu,
        "pool": None if pool is None else [list(pool.window), list(pool.strides),
                                            [list(p) for p in pool.padding]],
    }  # fmt: skip


def link_from_dict(entry: Mapping) -> chain_lib.Link:
    pool = entry["pool"]
    if pool is not None:
        window, strides, padding = pool
        pool = chain_lib.Pool(tuple(window), tuple(strides), tuple(tuple(p) for p in padding))
    return chain_lib.Link(entry["producer"], entry["consumer"], bool(entry["relu"]), pool)
