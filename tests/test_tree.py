"""core/tree.py: statistics of parameter pytrees."""

import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax.core import tree


def test_tree_statistics():
  a = {'w': jnp.array([1.0, -2.0, 3.0, -4.0])}
  b = {'w': jnp.array([1.0, 2.0, 3.0, 4.0])}
  assert tree.sign_consistency_ratio(a, b) == 0.5
  mean, std = tree.mean_std(b)
  assert mean == pytest.approx(2.5) and std == pytest.approx(np.std([1, 2, 3,
                                                                     4]))
