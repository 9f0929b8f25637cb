"""The CPU-friendly convolution: same values and gradients as lax, canonical
gradient convolutions inside loops (models/conv.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import fed, models
from valley_jax.fed import local
from valley_jax.models import conv as conv_lib

_DN = ('NHWC', 'HWIO', 'NHWC')


@pytest.mark.parametrize('size,k,s,pad', [
    (8, 3, 1, 'SAME'), (9, 3, 2, 'SAME'), (8, 1, 2, 'SAME'),
    (11, 5, 3, 'VALID'), (12, 7, 2, ((3, 3), (3, 3))),
    (9, 3, 2, ((0, 1), (1, 0)))])
def test_values_and_gradients_equal_lax(size, k, s, pad):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, size, size, 2)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 2, 4)), jnp.float32)

  def loss(fn):
    return lambda x, w: jnp.sum(jnp.sin(fn(
        x, w, (s, s), pad, dimension_numbers=_DN)))

  want = jax.value_and_grad(loss(jax.lax.conv_general_dilated), (0, 1))(x, w)
  with conv_lib.fast_cpu_gradients():
    got = jax.value_and_grad(loss(conv_lib.conv_general_dilated), (0, 1))(
        x, w)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def _dim_labels(hlo: str) -> set[str]:
  return set(re.findall(r'convolution\(.*dim_labels=([^,\s]+)', hlo))


def _tiny_resnet():
  model = models.build_model('resnet20', 10, width=0.125)
  x = jnp.zeros((4, 16, 16, 3), jnp.float32)
  v = model.init(jax.random.key(0), x, train=False)
  return model, x, v['params'], v['batch_stats']


@pytest.mark.slow
def test_fed_local_steps_compile_to_canonical_convolutions():
  """XLA:CPU runs a non-canonical conv in a loop body as a naive loop (70x
  slower); lax's kernel gradient is one (f01b_i01o->01bf). The FedSim local
  steps, a scan, must compile to canonical convolutions only."""
  model, x, params, stats = _tiny_resnet()
  tx, _ = local.client_optimizer(fed.SGD())
  step = local.make_local_step(model, fed.build_algorithm('fedavg'), tx)
  y, w = jnp.zeros(4, jnp.int32), jnp.ones(4)
  tr = {'params': params, 'extra': {}}

  def steps(tr):
    body = lambda c, _: step(c, x, y, w, jax.random.key(0), None)  # noqa: E731
    return jax.lax.scan(body, (tr, stats, tx.init(tr)), jnp.arange(2))[0]

  hlo = jax.jit(steps).lower(tr).compile().as_text()
  assert _dim_labels(hlo) == {'b01f_01io->b01f'}


@pytest.mark.slow
def test_forward_mode_works_outside_the_context():
  """Hessian-vector products (jvp of grad) of a conv net, as curvature.py
  computes them, need the plain lax convolution."""
  model, x, params, stats = _tiny_resnet()

  def f(p):
    return jnp.sum(model.apply({'params': p, 'batch_stats': stats}, x) ** 2)

  v = jax.tree.map(jnp.ones_like, params)
  hv = jax.jvp(jax.grad(f), (params,), (v,))[1]
  assert all(np.isfinite(a).all() for a in jax.tree.leaves(hv))
