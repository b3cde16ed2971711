"""binflax: Hybrid Binary Networks (Prabhu et al., WACV 2018) in JAX/Flax."""

__version__ = "0.1.0"
