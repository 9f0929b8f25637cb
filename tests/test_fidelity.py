"""Fidelity to the paper: ASAM's adaptive normalisation, Fig. 8's groups."""

import jax
import jax.numpy as jnp
import numpy as np

from valley_jax.core import groups, normalize


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


def _named_groups(params):
  return {'/'.join(k.key for k in path): groups.stats_group(
      tuple(k.key for k in path))
          for path, _ in jax.tree_util.tree_leaves_with_path(params)}


def test_fig8_statistics_groups_leave_out_bn_biases():
  z = jnp.zeros(2)
  params = {'conv1': {'kernel': jnp.zeros((3, 3, 1, 2)), 'bias': z},
            'bn1': {'scale': z, 'bias': z},
            'dense1': {'kernel': jnp.zeros((2, 2)), 'bias': z},
            'head': {'kernel': jnp.zeros((2, 2)), 'bias': z}}
  assert _named_groups(params) == {
      'conv1/kernel': 'Other Weight', 'conv1/bias': 'Other Bias',
      'bn1/scale': 'BN Weight', 'bn1/bias': None,
      'dense1/kernel': 'Other Weight', 'dense1/bias': 'Other Bias',
      'head/kernel': 'CLF Weight', 'head/bias': 'CLF Bias'}
  # 'Other Bias' holds the conv and dense biases only (2 + 2 numbers).
  sizes = {g: sum(int(np.size(x)) for x, m in zip(
      jax.tree.leaves(params), jax.tree.leaves(groups.stats_mask(params, g)))
                  if m) for g in groups.STATS_GROUPS}
  assert sizes == {'BN Weight': 2, 'CLF Weight': 4, 'CLF Bias': 2,
                   'Other Weight': 22, 'Other Bias': 4}
