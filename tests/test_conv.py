"""The CPU-friendly convolution: same values and gradients as lax, canonical
gradient convolutions inside loops (models/conv.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import models
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
  got = jax.value_and_grad(loss(conv_lib.conv_general_dilated), (0, 1))(x, w)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def _dim_labels(hlo: str) -> set[str]:
  return set(re.findall(r'convolution\(.*dim_labels=([^,\s]+)', hlo))


def test_gradients_inside_a_scan_compile_to_canonical_convolutions():
  """XLA:CPU runs a non-canonical conv in a loop body as a naive loop (70x
  slower); the kernel gradient of lax's rule is one (f01b_i01o->01bf)."""
  model = models.build_model('resnet20', 10, width=0.125)
  x = jnp.zeros((4, 16, 16, 3), jnp.float32)
  params = model.init(jax.random.key(0), x, train=False)
  params, stats = params['params'], params['batch_stats']

  def loss(p):
    out, _ = model.apply({'params': p, 'batch_stats': stats}, x, train=True,
                         mutable=['batch_stats'])
    return jnp.sum(out ** 2)

  def steps(p):
    body = lambda p, _: (jax.tree.map(  # noqa: E731
        lambda a, g: a - 0.1 * g, p, jax.grad(loss)(p)), None)
    return jax.lax.scan(body, p, jnp.arange(2))[0]

  hlo = jax.jit(steps).lower(params).compile().as_text()
  assert _dim_labels(hlo) == {'b01f_01io->b01f'}
