"""Directions, normalisations, tree statistics: hand-derivable expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax.core import directions, normalize, tree


def _theta():
  k1, k2, k3 = jax.random.split(jax.random.key(42), 3)
  return {'conv': {'kernel': jax.random.normal(k1, (3, 3, 4, 8))},
          'dense': {'kernel': jax.random.normal(k2, (50, 20)),
                    'bias': jax.random.normal(k3, (20,))}}


def _flat(t):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])


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
  theta = {'w': jnp.array([2.0, -1.0, 0.0, 3.0])}  # mean 1.0
  theta0 = {'w': jnp.array([9.0, 9.0, 9.0, 9.0])}

  def sp(n):
    return directions.special(n, theta, theta0)['w'].tolist()

  assert sp('init') == [9.0] * 4
  assert sp('theta') == [2.0, -1.0, 0.0, 3.0]
  assert sp('sign') == [1.0, -1.0, 1.0, 1.0]
  assert sp('sign_centered') == [1.0, -1.0, -1.0, 1.0]
  assert sp('sgp') == [1.0, 0.0, 0.0, 1.0]
  assert sp('sgp_centered') == [1.0, 0.0, 0.0, 1.0]
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


# ------------------------------------------------------------ normalisation


def _eps(theta):
  return directions.sample('gaussian', jax.random.key(9), theta)


def test_ns_gives_norm_s_theta():
  theta = _theta()
  d = normalize.normalize(_eps(theta), theta, 'ns')
  assert float(tree.norm(d)) == pytest.approx(float(tree.norm(theta)),
                                              rel=1e-5)
  s = 0.2
  moved = tree.combine(theta, [d], jnp.array([s]))
  step = jax.tree.map(jnp.subtract, moved, theta)
  assert float(tree.norm(step)) == pytest.approx(s * float(tree.norm(theta)),
                                                 rel=1e-5)
  # NS keeps the direction.
  e = _flat(_eps(theta))
  cos = np.dot(e, _flat(d)) / np.linalg.norm(e) / np.linalg.norm(_flat(d))
  assert cos == pytest.approx(1.0, abs=1e-6)


def test_filter_ns_matches_theta_filters():
  theta = _theta()
  d = normalize.normalize(_eps(theta), theta, 'filter')
  ck, tk = np.asarray(d['conv']['kernel']), np.asarray(theta['conv']['kernel'])
  for j in range(ck.shape[-1]):  # Every output filter of the conv.
    assert np.linalg.norm(ck[..., j]) == pytest.approx(
        np.linalg.norm(tk[..., j]), rel=1e-5)
  dk, tk = np.asarray(d['dense']['kernel']), np.asarray(
      theta['dense']['kernel'])
  np.testing.assert_allclose(np.linalg.norm(dk, axis=0),
                             np.linalg.norm(tk, axis=0), rtol=1e-5)
  # 1D tensors (biases, BN) are one filter each.
  assert np.linalg.norm(d['dense']['bias']) == pytest.approx(
      np.linalg.norm(theta['dense']['bias']), rel=1e-5)


def test_layer_normalisation():
  theta = _theta()
  d = normalize.normalize(_eps(theta), theta, 'layer')
  for x, t in zip(jax.tree.leaves(d), jax.tree.leaves(theta)):
    assert np.linalg.norm(x) == pytest.approx(np.linalg.norm(t), rel=1e-5)


def test_adaptive_matches_plain_numpy():
  theta = _theta()
  eps = _eps(theta)
  d = normalize.normalize(eps, theta, 'adaptive')
  parts = []
  for e, t in zip(jax.tree.leaves(eps), jax.tree.leaves(theta)):
    e, t = np.asarray(e, np.float64), np.asarray(t, np.float64)
    if t.ndim == 4:  # T_θ: each conv filter element times the filter norm.
      fn = np.sqrt((t.reshape(-1, t.shape[-1]) ** 2).sum(0))
      parts.append((e * fn).ravel())
    else:  # |w| for parameters outside conv filters (dense kernels too).
      parts.append((e * np.abs(t)).ravel())
  te = np.concatenate(parts)
  expected = te / np.linalg.norm(te) * np.linalg.norm(_flat(theta))
  np.testing.assert_allclose(_flat(d), expected, rtol=1e-4, atol=1e-6)


def test_zero_filters_stay_zero():
  theta = {'k': jnp.ones((2, 3))}
  eps = {'k': jnp.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])}
  for method in ('filter', 'ns', 'layer', 'adaptive'):
    d = np.asarray(normalize.normalize(eps, theta, method)['k'])
    assert np.all(np.isfinite(d)) and np.all(d[:, [0, 2]] == 0)


def test_none_and_unknown():
  theta = _theta()
  eps = _eps(theta)
  np.testing.assert_array_equal(
      _flat(normalize.normalize(eps, theta, 'none')), _flat(eps))
  with pytest.raises(ValueError, match='Unknown normalization'):
    normalize.normalize(eps, theta, 'batch')


def test_tree_statistics():
  a = {'w': jnp.array([1.0, -2.0, 3.0, -4.0])}
  b = {'w': jnp.array([1.0, 2.0, 3.0, 4.0])}
  assert tree.sign_consistency_ratio(a, b) == 0.5
  mean, std = tree.mean_std(b)
  assert mean == pytest.approx(2.5) and std == pytest.approx(np.std([1, 2, 3,
                                                                     4]))
