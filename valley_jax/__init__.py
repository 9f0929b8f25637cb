"""valley_jax: the asymmetric valleys of deep networks in JAX/Flax.

The public library API (docs/api.md): valley_jax.tree, .directions,
.normalize, .landscape (re-exports of valley_jax.core) and .checkpoint.
The layout: docs/architecture.md.
"""
