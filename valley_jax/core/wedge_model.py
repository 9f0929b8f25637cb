"""Fort & Jastrzebski's phenomenological model of the loss landscape, and
training restricted to a random affine subspace.

The model ("Large Scale Structure of Neural Network Loss Landscapes",
Fort & Jastrzebski 2019, as we read its section on the model): in D
dimensions the low-loss set is a union of N wedges. Wedge i is long in n
directions (a random set of n coordinate axes, its long subspace) and
narrow in the other D − n (its short axes S_i), where its half-width grows
with the distance from the origin: w(r) = w0 + ε·r, r = ‖θ‖. Its loss is
the mean squared excess of the short coordinates over that width,

  ℓ_i(θ) = (1 / |S_i|) Σ_{j ∈ S_i} max(0, |θ_j| − w(‖θ‖))²,

and the landscape's loss is L(θ) = min_i ℓ_i(θ) (zero exactly on the
union). With w0 = 0 the model is scale invariant, as a BatchNorm network
is in its scale-invariant weights: L(tθ) = t² L(θ) on a ray (so a ray
that starts in a wedge stays in it), and the width along a short axis at
a point of the long subspace at radius r is ε·r / √(1 − ε²) (`short_width`).

Random-subspace training (Li et al. 2018's intrinsic dimension, the
experiment Fort & Jastrzebski explain with the model): θ = θ0 + P·z with a
random D×d matrix P (orthonormal columns, `projection`), only z ∈ R^d
trained. A d-dimensional affine subspace meets an n-dimensional linear one
in general position once d + n ≥ D, so with w0 = 0 the loss can reach 0
for d ≥ D − n from any θ0; below that, only the wedges' width lets it in.

This module is config-free: arrays and pure functions.

>>> m = WedgeModel.random(jax.random.key(0), dim=6, n_long=4, n_wedges=2,
...                       eps=0.1)
>>> theta = jnp.zeros(6).at[m.long_axes[0]].set(1.0)
>>> float(m.loss(theta)), float(m.loss(2.0 * theta))
(0.0, 0.0)
"""

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from valley_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class WedgeModel:
  """N wedges in D dimensions (see the module doc).

  Attributes:
    long_axes: [N, n] the long coordinate axes of each wedge.
    short_mask: [N, D] True on each wedge's short axes.
    eps: ε, the width's growth with the radius.
    w0: the width at the origin.
  """

  long_axes: np.ndarray
  short_mask: np.ndarray
  eps: float
  w0: float = 0.0

  @classmethod
  def random(cls, key: jax.Array, dim: int, n_long: int, n_wedges: int,
             eps: float, w0: float = 0.0) -> 'WedgeModel':
    """N wedges whose long axes are n random distinct axes each.

    Args:
      key: draws the axes (fold_in by wedge).
      dim: D.
      n_long: n (< D).
      n_wedges: N.
      eps: ε ∈ [0, 1).
      w0: w0 ≥ 0.

    Returns:
      The model.
    """
    if not 0 < n_long < dim or n_wedges < 1:
      raise InputError(f'A wedge model needs 0 < n_long < dim and at least '
                       f'one wedge, got dim={dim}, n_long={n_long}, '
                       f'n_wedges={n_wedges}.')
    if not 0 <= eps < 1 or w0 < 0:
      raise InputError(f'eps must be in [0, 1) and w0 ≥ 0, got eps={eps}, '
                       f'w0={w0}.')
    axes = np.stack([np.sort(np.asarray(jax.random.permutation(
        jax.random.fold_in(key, i), dim))[:n_long]) for i in range(n_wedges)])
    mask = np.ones((n_wedges, dim), bool)
    for i, a in enumerate(axes):
      mask[i, a] = False
    return cls(axes, mask, float(eps), float(w0))

  @property
  def dim(self) -> int:
    return self.short_mask.shape[1]

  def width(self, radius):
    """w(r) = w0 + ε·r."""
    return self.w0 + self.eps * radius

  def wedge_losses(self, theta: jax.Array) -> jax.Array:
    """[N] ℓ_i(θ) of every wedge."""
    w = self.width(jnp.linalg.norm(theta))
    excess = jnp.maximum(jnp.abs(theta)[None] - w, 0.0) ** 2
    mask = jnp.asarray(self.short_mask, theta.dtype)
    return (excess * mask).sum(1) / mask.sum(1)

  def loss(self, theta: jax.Array) -> jax.Array:
    """L(θ) = min_i ℓ_i(θ)."""
    return self.wedge_losses(theta).min()

  def short_width(self, radius: float) -> float:
    """The half-width along one short axis at a point of the long subspace
    at radius r: the s with s = w0 + ε·√(r² + s²) (closed form).

    >>> m = WedgeModel(np.array([[0]]), np.array([[False, True]]), 0.6)
    >>> round(m.short_width(2.0), 6)  # 0.6·2 / √(1 − 0.36) = 1.5.
    1.5
    """
    e, w0, r = self.eps, self.w0, float(radius)
    # (s − w0)² = ε²(r² + s²)  ->  (1 − ε²)s² − 2 w0 s + w0² − ε² r² = 0.
    a, b, c = 1 - e * e, -2 * w0, w0 * w0 - e * e * r * r
    return float((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def projection(key: jax.Array, dim: int, d: int) -> jax.Array:
  """A random D×d matrix with orthonormal columns (QR of a Gaussian).

  >>> p = projection(jax.random.key(0), 5, 2)
  >>> p.shape, bool(jnp.allclose(p.T @ p, jnp.eye(2), atol=1e-5))
  ((5, 2), True)
  """
  if not 1 <= d <= dim:
    raise InputError(f'A subspace dimension d must be in [1, {dim}], got '
                     f'{d}.')
  q, _ = jnp.linalg.qr(jax.random.normal(key, (dim, d)))
  return q


def train_in_subspace(loss_fn: Callable[[jax.Array], jax.Array],
                      theta0: jax.Array, proj_DxD: jax.Array,
                      tx: optax.GradientTransformation, steps: int
                      ) -> tuple[jax.Array, jax.Array]:
  """Minimises loss_fn(θ0 + P·z) over z (from z = 0) for `steps` steps.

  Args:
    loss_fn: θ (flat, [D]) -> scalar loss (close over the data, or a
      minibatch schedule keyed by the step, outside).
    theta0: [D] where the subspace starts.
    proj_DxD: [D, d] the subspace's directions.
    tx: the optimiser of z.
    steps: full-batch steps.

  Returns:
    (θ at the end, the loss at every step [steps]).
  """
  z = jnp.zeros((proj_DxD.shape[1],), theta0.dtype)

  def step(carry, _):
    z, opt = carry
    loss, g = jax.value_and_grad(lambda z: loss_fn(theta0 + proj_DxD @ z))(z)
    upd, opt = tx.update(g, opt, z)
    return (optax.apply_updates(z, upd), opt), loss

  (z, _), losses = jax.lax.scan(step, (z, tx.init(z)), None, length=steps)
  return theta0 + proj_DxD @ z, losses
