"""core/steps.py: the optimiser's semantics and its schedule."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from valley_jax.core import steps


def test_sgd_matches_torch_semantics():
  """Two steps of torch.optim.SGD(lr, momentum=.9, weight_decay) by hand."""
  cfg = ml_collections.ConfigDict(dict(name='sgd', lr=0.1, momentum=0.9,
                                       weight_decay=0.01))
  tx, _ = steps.make_optimizer(cfg, total_steps=10 ** 9)  # ~constant LR.
  p = jnp.array([1.0, -2.0])
  g = jnp.array([0.5, 0.5])
  state = tx.init(p)
  u, state = tx.update(g, state, p)
  p1 = optax.apply_updates(p, u)
  buf1 = g + 0.01 * p
  np.testing.assert_allclose(p1, p - 0.1 * buf1, rtol=1e-6)
  u, state = tx.update(g, state, p1)
  p2 = optax.apply_updates(p1, u)
  buf2 = 0.9 * buf1 + g + 0.01 * p1
  np.testing.assert_allclose(p2, p1 - 0.1 * buf2, rtol=1e-6)


def test_cosine_schedule_ends_at_zero():
  cfg = ml_collections.ConfigDict(dict(name='sgd', lr=0.03, momentum=0.9,
                                       weight_decay=0.0))
  _, sched = steps.make_optimizer(cfg, total_steps=100)
  assert float(sched(0)) == pytest.approx(0.03)
  assert float(sched(50)) == pytest.approx(0.015)
  assert float(sched(100)) == pytest.approx(0.0, abs=1e-9)
