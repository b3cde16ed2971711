"""The authors' hybrids, as layer sets in binflax's names (docs/method.md section 10).

Why in the library: a paper config's budgets are set so that the authors' hybrids fit
(each budget sits just above one hybrid's cost, as a multiple of fbin's equivalent
FLOPs), and ``--mode=summary`` shows, before anything is trained, which of the authors'
hybrids each budget admits. The costs are not stored: they follow from these layer sets
and the cost model, at the config's own input shape and classes.

    >>> [h.name for h in AUTHORS_HYBRIDS["alexnet"]]
    ['Hybrid1', 'Hybrid2']
    >>> AUTHORS_HYBRIDS["sketchanet"][1].float_inputs
    ('conv7',)
"""

from __future__ import annotations

from typing import NamedTuple


class AuthorsHybrid(NamedTuple):
    """One of the authors' hybrids: its float-input layers besides the first and the last."""

    name: str  # the paper's name
    float_inputs: tuple[str, ...]
    source: str  # the authors' model file (erilyth/HybridBinaryNetworks-WACV18)


_RESNET_DOWNSAMPLES = ("layer2_0/downsample", "layer3_0/downsample", "layer4_0/downsample")
_FIRES = tuple(f"fire{i}" for i in range(2, 10))
_FIRE_CONVS = ("squeeze", "expand1x1", "expand3x3")


def _convs(blocks: tuple[str, ...], convs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{block}/{conv}" for block in blocks for conv in convs)


AUTHORS_HYBRIDS: dict[str, tuple[AuthorsHybrid, ...]] = {
    "alexnet": (
        AuthorsHybrid("Hybrid1", ("fc6", "fc7"), "code/models/alexnethybrid.py"),
        AuthorsHybrid("Hybrid2", ("fc7",), "code/models/alexnethybridv2.py"),
    ),
    "sketchanet": (
        AuthorsHybrid("Hybrid1", ("conv6", "conv7"), "code/models/sketchanethybrid.py"),
        AuthorsHybrid("Hybrid2", ("conv7",), "code/models/sketchanethybridv2.py"),
    ),
    "resnet18": (
        AuthorsHybrid(
            "Hybrid1",
            _convs(("layer3_1", "layer4_0", "layer4_1"), ("conv1", "conv2")) + _RESNET_DOWNSAMPLES,
            "code/models/resnethybridv2.py",
        ),
        AuthorsHybrid(
            "Hybrid2",
            _convs(("layer4_1",), ("conv1", "conv2")) + _RESNET_DOWNSAMPLES,
            "code/models/resnethybrid.py",
        ),
    ),
    "squeezenet": (
        AuthorsHybrid(
            "Hybrid1",
            tuple(
                f"{fire}/{conv}"
                for fire in _FIRES
                for conv in _FIRE_CONVS
                if conv != "expand3x3" or fire in ("fire2", "fire9")
            ),
            "code/models/squeezenethybridv3.py",
        ),
        AuthorsHybrid(
            "Hybrid2",
            _convs(("fire2", "fire9"), _FIRE_CONVS) + _convs(_FIRES[1:-1], ("expand1x1",)),
            "code/models/squeezenethybridv2.py",
        ),
        AuthorsHybrid(
            "Hybrid3",
            _convs(("fire2",), _FIRE_CONVS) + _convs(_FIRES[1:], ("expand1x1",)),
            "code/models/squeezenethybrid.py",
        ),
    ),
}
