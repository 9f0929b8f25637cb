"""Pytree math for parameter trees, on top of optax.tree.

>>> import jax.numpy as jnp
>>> t = {'a': jnp.array([3.0, -4.0])}
>>> float(norm(t)), sign(t)['a'].tolist()
(5.0, [1.0, -1.0])
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def norm(t: PyTree) -> jax.Array:
  """Frobenius norm of the whole flattened tree."""
  return optax.tree.norm(t)


def sign(t: PyTree) -> PyTree:
  """+1 / -1 elementwise; the paper defines no zero case, we map 0 to +1."""
  return jax.tree.map(lambda x: jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype),
                      t)


def sgp(t: PyTree) -> PyTree:
  """sgp(x) = 1 for x > 0 else 0."""
  return jax.tree.map(lambda x: (x > 0).astype(x.dtype), t)


def centered(t: PyTree) -> PyTree:
  """x - mean(x) per tensor (μ of the paper's special directions)."""
  return jax.tree.map(lambda x: x - jnp.mean(x), t)


def combine(params: PyTree, directions: list[PyTree],
            coeffs_K: jax.Array) -> PyTree:
  """θ + Σ_k c_k d_k."""
  out = params
  for k, d in enumerate(directions):
    out = optax.tree.add_scale(out, coeffs_K[k], d)
  return out


def masked(t: PyTree, mask: PyTree) -> PyTree:
  """Keeps leaves whose (Python bool) mask is True, zeros elsewhere."""
  return jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), t, mask)


def size(t: PyTree, mask: PyTree | None = None) -> int:
  leaves = jax.tree.leaves(t if mask is None else masked_leaves(t, mask))
  return sum(int(x.size) for x in leaves)


def masked_leaves(t: PyTree, mask: PyTree) -> list[jax.Array]:
  return [x for x, m in zip(jax.tree.leaves(t), jax.tree.leaves(mask)) if m]


def sign_consistency_ratio(a: PyTree, b: PyTree,
                           mask: PyTree | None = None) -> float:
  """Fraction of elements (in `mask`) where sign(a) == sign(b)."""
  keep = mask if mask is not None else jax.tree.map(lambda _: True, a)
  sa, sb = masked_leaves(sign(a), keep), masked_leaves(sign(b), keep)
  same = sum(float(jnp.sum(x == y)) for x, y in zip(sa, sb))
  count = sum(int(x.size) for x in sa)
  return same / count if count else float('nan')


def mean_std(t: PyTree, mask: PyTree | None = None) -> tuple[float, float]:
  """Mean and std over all elements (in `mask`) of a tree."""
  leaves = (jax.tree.leaves(t) if mask is None else masked_leaves(t, mask))
  if not leaves:
    return float('nan'), float('nan')
  flat = jnp.concatenate([x.ravel().astype(jnp.float32) for x in leaves])
  return float(flat.mean()), float(flat.std())
