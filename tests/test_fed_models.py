"""Model options for the federated algorithms: FedPAN encodings, features."""

import doctest
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import fed, models
from valley_jax.models import layers

_TINY = {'vit': {'depth': 1, 'dim': 16, 'heads': 2}}
_IMAGE = (8, 8, 3)


def _init(model, shape=_IMAGE):
  x = jax.random.normal(jax.random.key(1), (2, *shape))
  return model.init(jax.random.key(0), x, train=False), x


# ResNet20, Table 1's network, and the VGG-style CNN; the MLP is done by hand.
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


# One model per architecture (VGG and AlexNet share the classifier code).
@pytest.mark.parametrize('name', ['mlp', 'cnn', 'resnet20', 'vit'])
def test_features_are_the_input_of_the_head(name):
  model = models.build_model(name, 7, width=0.0625, **_TINY.get(name, {}))
  v, x = _init(model)
  logits, _, feats = fed.apply_model(model, v['params'],
                                     v.get('batch_stats', {}), x,
                                     train=False, features=True)
  head = v['params']['head']
  np.testing.assert_allclose(feats @ head['kernel'] + head['bias'], logits,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(logits, model.apply(v, x, train=False))
  assert fed.feature_dim(model, _IMAGE) == head['kernel'].shape[0]


def test_masked_batch_norm_uses_real_rows_only():
  model = models.build_model('mlp', 3, hidden=(4,), bn=True)
  v, x = _init(model, (5,))
  padded = jnp.concatenate([x, 100.0 * jnp.ones((3, 5))])
  mask = jnp.array([True, True, False, False, False])
  got, stats, _ = fed.apply_model(model, v['params'], v['batch_stats'],
                                  padded, train=True, mask_B=mask)
  want, want_stats, _ = fed.apply_model(model, v['params'], v['batch_stats'],
                                        x, train=True)
  np.testing.assert_allclose(got[:2], want, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               stats, want_stats)


def test_model_without_features_has_no_representation():
  class Bare(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(2, name='head')(x)

  with pytest.raises(ValueError, match='representation'):
    fed.feature_dim(Bare(), (3,))


@pytest.mark.parametrize('name', [
    'valley_jax.fed', 'valley_jax.fed.fedavg', 'valley_jax.fed.fedprox',
    'valley_jax.fed.fedsign', 'valley_jax.fed.moon', 'valley_jax.fed.feddyn',
    'valley_jax.fed.scaffold', 'valley_jax.fed.fedpan',
    'valley_jax.fed.rounds', 'valley_jax.models.layers'])
def test_fed_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name),
                           optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
