"""core/tree.py: statistics of parameter pytrees."""

import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax.core import tree


def test_tree_statistics():
  a = {'w': jnp.array([1.0, -2.0, 3.0, -4.0])}
  b = {'w': jnp.array([1.0, 2.0, 3.0, 4.0])}
  assert tree.sign_consistency_ratio(a, b) == 0.5
  # Not 1/2, where "agree" and "disagree" cannot be told apart: 1 of 4
  # elements agree in sign; with the leaf mask, 1 of the 3 kept ones.
  c = {'w': jnp.array([1.0, -1.0, 2.0]), 'v': jnp.array([0.5])}
  d = {'w': jnp.array([3.0, 4.0, -5.0]), 'v': jnp.array([-1.0])}
  assert tree.sign_consistency_ratio(c, d) == 0.25
  assert tree.sign_consistency_ratio(c, d, {'w': True, 'v': False}) == (
      pytest.approx(1 / 3))
  mean, std = tree.mean_std(b)
  assert mean == pytest.approx(2.5) and std == pytest.approx(np.std([1, 2, 3,
                                                                     4]))
