"""Noise directions of the paper (Sect. 4.1) as pure functions of pytrees.

Keys: direction `index` of seed `seed` uses fold_in(fold_in(root, seed), index),
so it is the same whatever else is sampled. A tree is sampled as one flat
vector (jax.flatten_util.ravel_pytree) and cut back into leaves: one RNG call
per direction instead of one per leaf, which compiles and runs much faster.

>>> import jax, jax.numpy as jnp
>>> theta = {'w': jnp.array([0.5, -2.0, 1.0])}
>>> eps = sample('gaussian', jax.random.key(0), theta)
>>> sign_consistent(eps, theta)['w'].tolist() == [
...     abs(float(e)) * s for e, s in zip(eps['w'], [1, -1, 1])]
True
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import flatten_util

from valley_jax.core import groups, tree
from valley_jax.errors import InputError

PyTree = Any
Sampler = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


def _choice(values) -> Sampler:
  return lambda k, s, d: jax.random.choice(k, jnp.asarray(values, d), s)


# The seven common noises, in the order of the paper's Fig. 3.
NOISES: dict[str, Sampler] = {
    'gaussian': lambda k, s, d: jax.random.normal(k, s, d),  # G(0, 1)
    'uniform': lambda k, s, d: jax.random.uniform(k, s, d, -1.0, 1.0),
    'ternary': _choice([-1.0, 0.0, 1.0]),  # {-1, 0, 1}
    'gaussian_mean1': lambda k, s, d: 1.0 + jax.random.normal(k, s, d),
    'uniform01': lambda k, s, d: jax.random.uniform(k, s, d),  # U(0, 1)
    'binary': _choice([0.0, 1.0]),  # {0, 1}
    'ones': lambda k, s, d: jnp.ones(s, d),  # {1}
}
NOISE_LABELS = {
    'gaussian': 'G(0,1)', 'uniform': 'U(-1,1)', 'ternary': '{-1,0,1}',
    'gaussian_mean1': 'G(1,1)', 'uniform01': 'U(0,1)', 'binary': '{0,1}',
    'ones': '{1}',
}
# The six special directions of Fig. 5 (ε1..ε6).
SPECIAL = ('init', 'theta', 'sign', 'sign_centered', 'sgp', 'sgp_centered')


def direction_key(root: jax.Array, seed: int, index: int = 0) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, seed), index)


def check_noise(noise: str) -> None:
  if noise not in NOISES:
    raise InputError(f'Unknown noise direction {noise!r}; choose one of '
                     f'{tuple(NOISES)}.')


def check_special(name: str) -> None:
  if name not in SPECIAL:
    raise InputError(f'Unknown special direction {name!r}; choose one of '
                     f'{SPECIAL}.')


def sample(noise: str, key: jax.Array, like: PyTree) -> PyTree:
  """Elementwise noise with the shapes (and dtypes) of `like`.

  Args:
    noise: a name of NOISES: 'gaussian' G(0,1), 'uniform' U(-1,1),
      'ternary' {-1,0,1}, 'gaussian_mean1' G(1,1), 'uniform01' U(0,1),
      'binary' {0,1}, 'ones' {1} (NOISE_LABELS has the paper's labels).
    key: a typed PRNG key (jax.random.key; direction_key for the project's
      per-seed, per-direction keys).
    like: the tree whose structure, shapes and dtypes the noise takes.

  Returns:
    The noise tree (un-normalised: pass it through normalize.normalize).

  Raises:
    InputError: an unknown noise name.

  >>> import jax, jax.numpy as jnp
  >>> sample('ones', jax.random.key(0), {'w': jnp.zeros(3)})['w'].tolist()
  [1.0, 1.0, 1.0]
  """
  check_noise(noise)
  flat, unravel = flatten_util.ravel_pytree(like)
  return unravel(NOISES[noise](key, flat.shape, flat.dtype))


def sign_consistent(eps: PyTree, theta: PyTree) -> PyTree:
  """|ε|·sign(θ): the noise takes the sign of the converged point.

  The paper's sign-consistent noise (Sect. 4.1): along +λ it scales every
  weight away from zero, along −λ towards (and past) zero. sign(0) is +1.

  Args:
    eps: a noise tree (e.g. from `sample`).
    theta: the point whose signs the noise takes.

  Returns:
    A tree like `eps` with |ε| and θ's signs.

  >>> import jax.numpy as jnp
  >>> sign_consistent({'w': jnp.array([0.5, 2.0])},
  ...                 {'w': jnp.array([-1.0, 3.0])})['w'].tolist()
  [-0.5, 2.0]
  """
  return jax.tree.map(jnp.multiply, tree.sign(theta),
                      jax.tree.map(jnp.abs, eps))


def partial_sign_consistent(eps: PyTree, theta: PyTree, ratio: float,
                            key: jax.Array) -> PyTree:
  """A random fraction `ratio` of the elements takes θ's sign (Fig. 4).

  Each element is chosen independently with probability `ratio`, so ratio
  0 leaves ε as it is and ratio 1 is sign_consistent(ε, θ). `ratio` may be
  a traced scalar (one compiled builder for every ratio).
  """
  if not isinstance(ratio, jax.core.Tracer) and not 0.0 <= ratio <= 1.0:
    raise InputError(f'ratio must lie in [0, 1], got {ratio}.')
  flat, unravel = flatten_util.ravel_pytree(eps)
  chosen = jax.random.bernoulli(key, ratio, flat.shape)
  consistent, _ = flatten_util.ravel_pytree(sign_consistent(eps, theta))
  return unravel(jnp.where(chosen, consistent, flat))


def special(name: str, theta: PyTree, theta0: PyTree | None = None) -> PyTree:
  """ε1 = θ0, ε2 = θf, ε3 = sign(θf), ε4 = sign(θf − μ), ε5 = sgp(θf),
  ε6 = sgp(θf − μ), μ the mean of each parameter tensor."""
  check_special(name)
  if name == 'init':
    if theta0 is None:
      raise InputError('The init direction needs θ0: keep epoch 0 in the '
                       'training checkpoints.')
    return theta0
  return {
      'theta': lambda: theta,
      'sign': lambda: tree.sign(theta),
      'sign_centered': lambda: tree.sign(tree.centered(theta)),
      'sgp': lambda: tree.sgp(theta),
      'sgp_centered': lambda: tree.sgp(tree.centered(theta)),
  }[name]()


def difference(theta_a: PyTree, theta_b: PyTree) -> PyTree:
  """θB − θA: the line (1 − λ)θA + λθB is θA + λ(θB − θA)."""
  return jax.tree.map(jnp.subtract, theta_b, theta_a)


def restrict(direction: PyTree, params: PyTree, group: str) -> PyTree:
  """The direction on one parameter group, zero elsewhere."""
  return tree.masked(direction, groups.mask(params, group))


def pca(trajectory: list[PyTree], final: PyTree, k: int = 2
        ) -> tuple[list[PyTree], np.ndarray, np.ndarray]:
  """Principal directions of an optimiser's path (Li et al. 2018, Sect. 7).

  "Visualizing the Loss Landscape of Neural Nets" (Li, Xu, Taylor, Studer,
  Goldstein, NeurIPS 2018) plots the path on the plane of the top two
  principal components of the matrix whose rows are θ_e − θ_final over the
  kept epochs e. As PCA, the rows are centred before the decomposition
  (through the E × E Gram matrix in float64, E the number of epochs); the
  directions have unit norm and are orthogonal, so a checkpoint's plane
  coordinates are its dot products with them (θ_final is the origin). The
  sign of each direction makes the first checkpoint's coordinate ≥ 0.

  Args:
    trajectory: the parameters θ_e of the kept epochs, in order.
    final: θ_final.
    k: how many directions.

  Returns:
    (the k directions as pytrees like `final`, the fraction of the variance
    each explains [k], the coordinates of every θ_e [E, k]).

  >>> t = [{'w': jnp.array([2.0, 0.0])}, {'w': jnp.array([1.0, 0.1])}]
  >>> d, var, xy = pca(t, {'w': jnp.zeros(2)}, k=1)
  >>> [round(abs(float(v)), 3) for v in d[0]['w']], var.round(3).tolist()
  ([0.995, 0.1], [1.0])
  """
  if len(trajectory) < k + 1:
    raise InputError(f'PCA of a trajectory needs at least {k + 1} kept '
                     f'epochs besides the final one, got {len(trajectory)}.')
  flat_final, unravel = flatten_util.ravel_pytree(final)
  rows = np.stack([np.asarray(flatten_util.ravel_pytree(t)[0] - flat_final,
                              np.float64) for t in trajectory])
  centred = rows - rows.mean(axis=0)
  eig, vec = np.linalg.eigh(centred @ centred.T)
  order = np.argsort(eig)[::-1][:k]
  if eig[order[-1]] <= 1e-12 * max(eig.max(), 1e-300):
    raise InputError('The trajectory spans fewer than '
                     f'{k} directions; keep more distinct epochs.')
  basis = (centred.T @ vec[:, order]) / np.sqrt(eig[order])  # [n, k]
  coords = rows @ basis
  flip = np.where(coords[0] < 0, -1.0, 1.0)
  basis, coords = basis * flip, coords * flip
  dirs = [unravel(jnp.asarray(basis[:, i], flat_final.dtype))
          for i in range(k)]
  return dirs, eig[order] / eig.sum(), coords
