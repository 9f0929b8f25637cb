"""models/layers.py: FedPAN's position encodings in the models."""

import jax
import numpy as np
import pytest
from conftest import IMAGE as _IMAGE, init_model as _init

from valley_jax import models
from valley_jax.models import layers


# ResNet20, Table 1's network, and the VGG-style CNN; the MLP is done by hand.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['cnn', 'resnet20'])
def test_fedpan_zero_amplitude_is_the_plain_model(name):
  plain = models.build_model(name, 5, width=0.0625)
  zero = models.build_model(name, 5, width=0.0625, pan_amplitude=0.0,
                            pan_periods=2.0)
  # Period 1: with 4 channels the encodings are 1 + 0.3·(0, 1, 0, -1).
  on = models.build_model(name, 5, width=0.0625, pan_amplitude=0.3,
                          pan_periods=1.0)
  v, x = _init(plain)
  def shapes(m):
    return jax.tree.map(lambda a: a.shape,
                        models.abstract_variables(m, _IMAGE))

  assert shapes(zero) == shapes(plain) == shapes(on)
  out = plain.apply(v, x, train=False)
  np.testing.assert_array_equal(zero.apply(v, x, train=False), out)
  assert not np.allclose(on.apply(v, x, train=False), out)


def test_fedpan_mlp_by_hand():
  model = models.build_model('mlp', 3, hidden=(4,), bn=False,
                             pan_amplitude=0.5, pan_periods=1.0)
  v, x = _init(model, (5,))
  p = jax.tree.map(np.asarray, v['params'])
  e = np.array([1.0, 1.5, 1.0, 0.5])  # 1 + 0.5·sin(2π·j/4).
  h = np.maximum((np.asarray(x) @ p['dense1']['kernel'] + p['dense1']['bias'])
                 * e, 0)
  want = h @ p['head']['kernel'] + p['head']['bias']
  np.testing.assert_allclose(model.apply(v, x), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layers.position_encoding(4, 0.5, 1.0), e,
                             atol=1e-7)


def test_fedpan_rejects_the_vit_and_bad_values():
  with pytest.raises(ValueError, match='pan_amplitude'):
    models.build_model('vit', 10, pan_amplitude=0.1)
  with pytest.raises(ValueError, match='pan_amplitude'):
    models.build_model('mlp', 10, pan_amplitude=-0.1)
