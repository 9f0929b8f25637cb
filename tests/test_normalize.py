"""core/normalize.py: none, NS, filter, layer and adaptive normalisation by
hand and against numpy; ASAM's adaptive normalisation as the paper has it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import flat as _flat, random_theta as _theta

from valley_jax.core import directions, normalize, tree


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


# ----------------------------------------------- ASAM's adaptive normalisation


def test_adaptive_uses_filter_norms_for_conv_kernels_only():
  """T_θ ε by hand, then NS (here ||T_θ ε|| = ||θ|| = 13, so NS is 1).

  conv kernel [1, 1, 2, 1]: θ = (3, 4), one filter of norm 5; ε = (1, 0)
    -> T_θ ε = (5, 0).
  dense kernel [2, 1]: θ = (0, 12), ε = (1, 1) -> element-wise |θ|:
    T_θ ε = (0, 12); a filter norm (12) would have given (12, 12). The
    zero weight's coordinate is not perturbed.
  ||θ||² = 9 + 16 + 0 + 144 = 169 = ||T_θ ε||².
  """
  theta = {'conv1': {'kernel': jnp.array([3.0, 4.0]).reshape(1, 1, 2, 1)},
           'dense1': {'kernel': jnp.array([[0.0], [12.0]])}}
  eps = {'conv1': {'kernel': jnp.array([1.0, 0.0]).reshape(1, 1, 2, 1)},
         'dense1': {'kernel': jnp.array([[1.0], [1.0]])}}
  d = normalize.normalize(eps, theta, 'adaptive')
  np.testing.assert_allclose(np.ravel(d['conv1']['kernel']), [5.0, 0.0],
                             rtol=1e-6)
  np.testing.assert_allclose(np.ravel(d['dense1']['kernel']), [0.0, 12.0],
                             rtol=1e-6)


def test_adaptive_biases_use_their_own_magnitude():
  """θ = (-3, 0, 4), ε = (1, 1, 1): T_θ ε = (3, 0, 4), norm 5 = ||θ||."""
  d = normalize.normalize({'b': jnp.ones(3)}, {'b': jnp.array([-3., 0., 4.])},
                          'adaptive')
  np.testing.assert_allclose(d['b'], [3.0, 0.0, 4.0], rtol=1e-6)
