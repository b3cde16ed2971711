"""binflax: Hybrid Binary Networks (Prabhu et al., WACV 2018) in JAX/Flax.

``binflax.binarize(model, plan, input_shape=...)`` applies a plan to a ``flax.linen``
network of your own (:mod:`binflax.binarized`, docs/byom.md).
"""

from binflax.binarized import binarize

__version__ = "0.1.0"

__all__ = ["binarize"]
