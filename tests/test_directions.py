"""core/directions.py: noises, sign-consistent and partial directions,
special directions: hand-derivable expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import flat as _flat, random_theta as _theta

from valley_jax.core import directions, tree


@pytest.mark.parametrize('noise,support', [
    ('ternary', {-1.0, 0.0, 1.0}), ('binary', {0.0, 1.0}), ('ones', {1.0})])
def test_discrete_noises_support(noise, support):
  eps = _flat(directions.sample(noise, jax.random.key(0), _theta()))
  assert set(np.unique(eps)) == support


def test_continuous_noises_moments():
  k = jax.random.key(1)
  big = {'w': jnp.zeros((200_000,))}
  g = _flat(directions.sample('gaussian', k, big))
  g1 = _flat(directions.sample('gaussian_mean1', k, big))
  u = _flat(directions.sample('uniform', k, big))
  u01 = _flat(directions.sample('uniform01', k, big))
  assert abs(g.mean()) < 0.01 and abs(g.std() - 1) < 0.01
  assert abs(g1.mean() - 1) < 0.01 and abs(g1.std() - 1) < 0.01
  assert u.min() >= -1 and u.max() <= 1 and abs(u.var() - 1 / 3) < 0.01
  assert u01.min() >= 0 and u01.max() <= 1 and abs(u01.mean() - .5) < 0.01


def test_direction_keys_independent_of_other_draws():
  root, theta = jax.random.key(0), _theta()
  a = directions.sample('gaussian', directions.direction_key(root, 3, 2), theta)
  directions.sample('uniform', directions.direction_key(root, 3, 1), theta)
  b = directions.sample('gaussian', directions.direction_key(root, 3, 2), theta)
  c = directions.sample('gaussian', directions.direction_key(root, 4, 2), theta)
  np.testing.assert_array_equal(_flat(a), _flat(b))
  assert not np.allclose(_flat(a), _flat(c))


def test_sign_consistent_agrees_with_theta():
  theta = _theta()
  eps = directions.sample('gaussian', jax.random.key(0), theta)
  sc = _flat(directions.sign_consistent(eps, theta))
  t = _flat(theta)
  nz = sc != 0
  assert np.all(np.sign(sc[nz]) == np.sign(t[nz]))
  np.testing.assert_allclose(np.abs(sc), np.abs(_flat(eps)))


@pytest.mark.parametrize('r', [0.0, 0.3, 1.0])
def test_ratio_gives_expected_agreement(r):
  theta = {'w': jax.random.normal(jax.random.key(5), (200_000,))}
  eps = directions.sample('gaussian', jax.random.key(6), theta)
  mixed = directions.partial_sign_consistent(eps, theta, r, jax.random.key(7))
  # A fraction r agrees by construction, the rest by chance (1/2).
  expected = r + (1 - r) / 2
  assert abs(tree.sign_consistency_ratio(mixed, theta) - expected) < 0.005
  with pytest.raises(ValueError, match='ratio'):
    directions.partial_sign_consistent(eps, theta, 1.5, jax.random.key(7))


def test_special_directions_by_hand():
  # Mean 0.9: every pair of formulas (centred or not, sign or sgp, and
  # sign(0) = +1) gives a different direction here.
  theta = {'w': jnp.array([2.0, -1.0, 0.5, 3.0, 0.0])}
  theta0 = {'w': jnp.array([9.0, 9.0, 9.0, 9.0, 9.0])}

  def sp(n):
    return directions.special(n, theta, theta0)['w'].tolist()

  assert sp('init') == [9.0] * 5
  assert sp('theta') == [2.0, -1.0, 0.5, 3.0, 0.0]
  assert sp('sign') == [1.0, -1.0, 1.0, 1.0, 1.0]
  assert sp('sign_centered') == [1.0, -1.0, -1.0, 1.0, -1.0]
  assert sp('sgp') == [1.0, 0.0, 1.0, 1.0, 0.0]
  assert sp('sgp_centered') == [1.0, 0.0, 0.0, 1.0, 0.0]
  with pytest.raises(ValueError, match='θ0'):
    directions.special('init', theta)
  with pytest.raises(ValueError, match='Unknown special'):
    directions.special('grad', theta)


def test_difference_is_the_interpolation_line():
  a, b = {'w': jnp.array([1.0, 2.0])}, {'w': jnp.array([3.0, -2.0])}
  d = directions.difference(a, b)
  mid = tree.combine(a, [d], jnp.array([0.5]))
  np.testing.assert_allclose(mid['w'], [2.0, 0.0])


def test_unknown_noise():
  with pytest.raises(ValueError, match='Unknown noise'):
    directions.sample('cauchy', jax.random.key(0), _theta())


def test_pca_of_a_trajectory_matches_sklearn():
  """Li et al.'s PCA directions: scikit-learn's PCA of θ_e − θ_final (it
  centres the rows too), equal up to each component's sign."""
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  final = {'a': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
           'b': jnp.asarray(rng.normal(size=5), jnp.float32)}
  path = [jax.tree.map(lambda x, s=s: x + jnp.asarray(
      rng.normal(size=x.shape) * (5 - s), jnp.float32), final)
          for s in range(5)]
  dirs, var, xy = directions.pca(path, final, k=2)
  rows = np.stack([_flat(t) - _flat(final) for t in path]).astype(np.float64)
  ref = decomposition.PCA(n_components=2, svd_solver='full').fit(rows)
  got = np.stack([_flat(d) for d in dirs])
  sign = np.sign(np.sum(got * ref.components_, axis=1))[:, None]
  np.testing.assert_allclose(got, sign * ref.components_, atol=1e-5)
  np.testing.assert_allclose(var, ref.explained_variance_ratio_, rtol=1e-6)
  np.testing.assert_allclose(xy, rows @ got.T, rtol=1e-5, atol=1e-5)
  assert (xy[0] >= 0).all()  # The sign convention.
  np.testing.assert_allclose(got @ got.T, np.eye(2), atol=1e-6)


def test_pca_needs_enough_distinct_epochs():
  t = {'w': jnp.ones(3)}
  with pytest.raises(ValueError, match='at least 3'):
    directions.pca([t, t], t, k=2)
  with pytest.raises(ValueError, match='fewer than'):
    directions.pca([t, t, t], jax.tree.map(jnp.zeros_like, t), k=2)
