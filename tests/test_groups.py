"""core/groups.py: parameter groups partition every registry model's
parameters; the statistics groups of Fig. 8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import models
from valley_jax.core import groups

_KW = {'vit': dict(depth=2, dim=16, heads=2)}


def _params(name):
  model = models.build_model(name, 10, width=0.0625, **_KW.get(name, {}))
  return models.abstract_variables(model, (32, 32, 3))['params']


def _leaves(mask):
  return jax.tree.leaves(mask)


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_partitions_cover_each_parameter_once(name):
  p = _params(name)
  n = len(jax.tree.leaves(p))
  clf, feat = _leaves(groups.mask(p, 'CLF')), _leaves(groups.mask(p, 'FEAT'))
  assert all(a + b == 1 for a, b in zip(clf, feat))
  assert sum(clf) == 2  # head kernel and bias.
  stats = [_leaves(groups.stats_mask(p, g)) for g in groups.STATS_GROUPS]
  bn_bias = [k[-1].key == 'bias' and k[-2].key.startswith('bn') for k, _ in
             jax.tree_util.tree_leaves_with_path(p)]
  # Every leaf in exactly one statistics group, BN biases in none.
  assert [sum(col) for col in zip(*stats)] == [1 - b for b in bn_bias]
  assert len(stats[0]) == n
  conv, bn = _leaves(groups.mask(p, 'CONV')), _leaves(groups.mask(p, 'BN'))
  assert not any(a and b for a, b in zip(conv, bn))
  layer1 = _leaves(groups.mask(p, 'LAYER1'))
  assert 0 < sum(layer1) < n
  assert not any(a and b for a, b in zip(layer1, clf))
  assert all(_leaves(groups.mask(p, 'ALL')))


def test_groups_on_resnet20_by_name():
  p = _params('resnet20')
  flat = {'/'.join(k.key for k in path): m for path, m in
          jax.tree_util.tree_leaves_with_path(groups.mask(p, 'LAYER1'))}
  assert flat['conv_stem/kernel'] and flat['layer1_2/conv2/kernel']
  assert not flat['layer2_0/conv1/kernel']
  bn = dict(zip([jax.tree_util.keystr(k) for k, _ in
                 jax.tree_util.tree_leaves_with_path(p)],
                _leaves(groups.mask(p, 'BN'))))
  assert sum(bn.values()) == 2 * 19  # 19 BN layers (option A: no shortcut BN).
  sg = groups.stats_group
  assert sg(('bn_stem', 'scale')) == 'BN Weight'
  assert sg(('bn_stem', 'bias')) is None  # In none of the five (Fig. 8).
  assert sg(('head', 'kernel')) == 'CLF Weight'
  assert sg(('layer1_0', 'conv1', 'kernel')) == 'Other Weight'


def test_no_bn_group_without_bn():
  p = models.abstract_variables(
      models.build_model('vgg11', 10, bn=False, width=0.0625),
      (32, 32, 3))['params']
  assert not any(_leaves(groups.mask(p, 'BN')))


def test_unknown_group():
  with pytest.raises(ValueError, match='Unknown parameter group'):
    groups.mask({'head': {'bias': 0}}, 'EMBED')


def _named(p, group):
  return {'/'.join(k.key for k in path): m for path, m in
          jax.tree_util.tree_leaves_with_path(groups.mask(p, group))}


def test_layer1_is_the_first_stage():
  vgg = _named(_params('vgg16'), 'LAYER1')
  assert vgg['conv1_1/kernel'] and vgg['bn1_2/scale']
  assert not vgg['conv2_1/kernel'] and not vgg['dense1/kernel']
  mlp = models.abstract_variables(models.build_model('mlp', 10, bn=True),
                                  (8, 8, 1))['params']
  named = _named(mlp, 'LAYER1')
  assert named['dense1/kernel'] and named['bn1/scale']
  assert not named['dense2/kernel']
  vit = _named(_params('vit'), 'LAYER1')
  assert vit['conv_patch/kernel'] and vit['pos_embedding']
  assert vit['block1/dense_qkv/kernel'] and not vit['block2/dense_qkv/kernel']


# -------------------------------------------------- Fig. 8's statistics groups


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
