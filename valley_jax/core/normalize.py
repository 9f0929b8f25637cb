"""Direction normalisations: none, NS, filter NS, layer, adaptive.

* ``ns``: ε·||θ||/||ε|| over the whole tree (the paper's default), so
  θ + λ·s·ε has ||λ·s·ε|| = |λ|·s·||θ||.
* ``filter`` (Li et al. 2018): every filter of ε gets the norm of the same
  filter of θ. A filter is one output unit: the last axis of a kernel
  ([H, W, I, O] conv, [I, O] dense), i.e. ε[..., j] ← ε[..., j]/||ε[..., j]||
  · ||θ[..., j]||. One-dimensional tensors (biases, BN scale/bias) are treated
  as a single filter each: rescaled to the norm of the same tensor of θ.
* ``layer``: every tensor of ε gets the norm of the same tensor of θ.
* ``adaptive`` (ASAM, Kwon et al. 2021): ε ← T_θ ε, then NS. T_θ uses
  filter norms only for convolution filters: every element of a conv kernel
  ([H, W, I, O], ndim 4) is scaled by its filter's norm ||θ[..., j]||; every
  other parameter (dense kernels, biases, BN scale/bias, embeddings) is
  scaled element-wise by its own |θ|. At θ = 0 (a zero weight, or a whole
  zero filter) that element of T_θ ε is 0: the coordinate is not perturbed,
  and NS then spreads the norm ||θ|| over the other coordinates.
A zero filter/tensor of ε stays zero (no division by zero).

>>> import jax.numpy as jnp
>>> theta, eps = {'w': jnp.array([3.0, 4.0])}, {'w': jnp.array([1.0, 0.0])}
>>> normalize(eps, theta, 'ns')['w'].tolist()
[5.0, 0.0]
"""

from typing import Any

import jax
import jax.numpy as jnp

from valley_jax.core import tree
from valley_jax.errors import InputError

NORMALIZATIONS = ('none', 'ns', 'filter', 'layer', 'adaptive')


def _axes(x: jax.Array) -> tuple[int, ...]:
  """Axes that make up one filter: all but the last for kernels."""
  return tuple(range(x.ndim - 1)) if x.ndim >= 2 else tuple(range(x.ndim))


def _rescale(d, t, axes):
  dn = jnp.sqrt(jnp.sum(jnp.square(d), axes, keepdims=True))
  tn = jnp.sqrt(jnp.sum(jnp.square(t), axes, keepdims=True))
  return jnp.where(dn > 0, d * tn / jnp.where(dn > 0, dn, 1.0), 0.0)


def _ns(d: Any, t: Any) -> Any:
  dn = tree.norm(d)
  scale = jnp.where(dn > 0, tree.norm(t) / jnp.where(dn > 0, dn, 1.0), 0.0)
  return jax.tree.map(lambda x: x * scale, d)


def _adaptive(d: Any, t: Any) -> Any:
  def scale(x, th):
    if th.ndim == 4:  # A conv kernel [H, W, I, O]: one norm per filter.
      return x * jnp.sqrt(jnp.sum(jnp.square(th), _axes(th), keepdims=True))
    return x * jnp.abs(th)
  return _ns(jax.tree.map(scale, d, t), t)


def check_normalization(method: str) -> None:
  if method not in NORMALIZATIONS:
    raise InputError(f'Unknown normalization {method!r}; choose one of '
                     f'{NORMALIZATIONS}.')


def normalize(direction: Any, theta: Any, method: str = 'ns') -> Any:
  """Normalises `direction` relative to `theta` (see module docstring).

  Args:
    direction: a tree with the structure and shapes of `theta`.
    theta: the point the direction perturbs (its norms set the scale).
    method: one of NORMALIZATIONS: 'none', 'ns' (whole-tree norm, the
      paper's default), 'filter' (Li et al. 2018), 'layer' (per tensor) or
      'adaptive' (ASAM's T_θ, then NS).

  Returns:
    The normalised direction (same structure as `direction`).

  Raises:
    InputError: an unknown method.

  >>> import jax.numpy as jnp
  >>> t = {'k': jnp.array([[3.0, 0.0], [4.0, 1.0]])}
  >>> d = {'k': jnp.array([[1.0, 2.0], [0.0, 0.0]])}
  >>> normalize(d, t, 'filter')['k'].tolist()  # column j gets ‖θ[:, j]‖
  [[5.0, 1.0], [0.0, 0.0]]
  """
  check_normalization(method)
  if method == 'none':
    return direction
  if method == 'ns':
    return _ns(direction, theta)
  if method == 'adaptive':
    return _adaptive(direction, theta)
  if method == 'layer':
    return jax.tree.map(lambda d, t: _rescale(d, t, tuple(range(d.ndim))),
                        direction, theta)
  return jax.tree.map(lambda d, t: _rescale(d, t, _axes(d)), direction, theta)
