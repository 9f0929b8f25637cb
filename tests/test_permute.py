"""Tests of valley_jax/core/permute.py: units permuted keep the function,
weight matching undoes a known permutation, and solves the assignment a
brute force over all permutations solves."""

import itertools

import jax
import numpy as np
import pytest

from valley_jax import models
from valley_jax.core import permute
from valley_jax.errors import InputError
from valley_jax.models import resnet

# (registry name, example shape, build options): tiny widths. VGG11-19 are
# the class of 'cnn' with longer chains (their full-size specs: below).
TINY = [
    ('mlp', (6,), dict(hidden=(5, 4), bn=True)),
    ('cnn', (8, 8, 1), dict(width=0.125)),
    ('cnn', (8, 8, 1), dict(width=0.125, bn=False, projection=3)),
    ('alexnet', (8, 8, 3), dict(width=0.05, bn=True)),
    ('resnet20', (8, 8, 3), dict(width=0.25)),  # Option A shortcuts.
    ('resnet20', (8, 8, 3), dict(width=0.25, shortcut='B')),
]


def _variables(model, x, seed=0):
  """Initial variables with BN statistics and biases made non-trivial, so a
  wrongly permuted statistic or bias changes the outputs."""
  v = model.init(jax.random.key(seed), x)
  rng = np.random.default_rng(seed + 100)
  v = jax.tree.map(lambda a: np.asarray(a) + 0.2 * rng.normal(
      size=a.shape).astype(np.float32), v)
  if 'batch_stats' in v:
    v['batch_stats'] = jax.tree.map(np.abs, v['batch_stats'])
  return v


@pytest.mark.parametrize('name,shape,kw', TINY,
                         ids=[f'{n}-{i}' for i, (n, _, _) in enumerate(TINY)])
def test_permuted_model_is_the_same_function_and_matching_undoes_it(
    name, shape, kw):
  model = models.build_model(name, 5, **kw)
  x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
  v = _variables(model, x)
  s = permute.spec(model, v['params'])
  perms = permute.random_perms(s, 1)
  assert any((p != np.arange(len(p))).any() for p in perms.values())
  w = permute.permute(s, v, perms)
  assert not all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(w), jax.tree.leaves(v)))
  np.testing.assert_allclose(model.apply(w, x), model.apply(v, x),
                             atol=1e-5, rtol=1e-5)
  found = permute.weight_matching(s, v['params'], w['params'])
  for k, p in permute.inverse(perms).items():
    np.testing.assert_array_equal(found[k], p, err_msg=k)
  back = permute.permute(s, w, found)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(v)):
    np.testing.assert_array_equal(a, b)


def test_bottleneck_resnet_is_the_same_function_and_matching_undoes_it():
  """ResNet50's blocks (bottleneck, projection shortcuts) at two stages of
  one block each: the registry's layout at a fraction of the compile."""
  model = resnet.ResNet(5, (1, 1), (2, 4), bottleneck=True, shortcut='B')
  x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
  v = _variables(model, x)
  s = permute.spec(model, v['params'])
  assert len(s.sizes) == 1 + 2 * 2 + 2
  perms = permute.random_perms(s, 2)
  w = permute.permute(s, v, perms)
  np.testing.assert_allclose(model.apply(w, x), model.apply(v, x),
                             atol=1e-5, rtol=1e-5)
  found = permute.weight_matching(s, v['params'], w['params'])
  for k, p in permute.inverse(perms).items():
    np.testing.assert_array_equal(found[k], p, err_msg=k)


def test_hidden_units_move_by_hand():
  """One hidden layer of 3 units: row/column moves written out."""
  model = models.build_model('mlp', 2, hidden=(3,), bn=False)
  v = _variables(model, np.ones((1, 2), np.float32))
  s = permute.spec(model, v['params'])
  w = permute.permute(s, v, {'dense1': np.array([2, 0, 1])})
  p, q = v['params'], w['params']
  np.testing.assert_array_equal(q['dense1']['kernel'],
                                p['dense1']['kernel'][:, [2, 0, 1]])
  np.testing.assert_array_equal(q['dense1']['bias'],
                                p['dense1']['bias'][[2, 0, 1]])
  np.testing.assert_array_equal(q['head']['kernel'],
                                p['head']['kernel'][[2, 0, 1], :])
  np.testing.assert_array_equal(q['head']['bias'], p['head']['bias'])


def test_option_a_stream_sits_in_the_middle_of_the_padded_one():
  """ResNet20 at width 0.25: stage 1 has 4 channels, stage 2 has 8, the old
  stream at channels 2..5 (resnet._shortcut pads 2 before, 2 after)."""
  model = models.build_model('resnet20', 3, width=0.25)
  p = models.abstract_variables(model, (8, 8, 3))['params']
  s = permute.spec(model, p)
  axis = s.leaf_axes(('layer2_0', 'bn2', 'scale'))[0]
  segs = {name: pos.tolist() for name, pos in axis}
  assert segs == {'stem': [2, 3, 4, 5], 'layer2_0/pad': [0, 1, 6, 7]}


def _brute_force(wa1, wa2, wb1, wb2):
  """max over P of <Wa1, Wb1 P> + <Wa2, P^T Wb2>: every permutation."""
  best, arg = -np.inf, None
  for perm in itertools.permutations(range(wa1.shape[1])):
    p = list(perm)
    val = np.sum(wa1 * wb1[:, p]) + np.sum(wa2 * wb2[p, :])
    if val > best:
      best, arg = val, p
  return np.array(arg)


def test_weight_matching_equals_brute_force_on_one_hidden_layer():
  """Two independent inits (5 hidden units, no biases' ties): the matching
  maximises the inner product over all 120 permutations."""
  model = models.build_model('mlp', 3, hidden=(5,), bn=False)
  x = np.ones((1, 4), np.float32)
  a, b = (_variables(model, x, seed)['params'] for seed in (0, 1))
  s = permute.spec(model, a)
  found = permute.weight_matching(s, a, b)['dense1']
  # The biases are units' rows too: stack them under the kernels.
  wa1 = np.vstack([a['dense1']['kernel'], a['dense1']['bias']])
  wb1 = np.vstack([b['dense1']['kernel'], b['dense1']['bias']])
  expect = _brute_force(wa1, a['head']['kernel'], wb1, b['head']['kernel'])
  np.testing.assert_array_equal(found, expect)


# Full-size models: spec only, from jax.eval_shape (no compile). The count of
# permutations by hand: one per hidden conv/dense layer (chains); ResNets:
# the stem, each block's inner layers (1 basic, 2 bottleneck), and a new
# stream at each stage change (a padded segment in option A, a projection
# in option B; ResNet50's first block projects 64 -> 256 too).
FULL = [('mlp', (64,), 2), ('cnn', (8, 8, 1), 4 + 2),
        ('vgg16', (32, 32, 3), 13 + 2), ('alexnet', (32, 32, 3), 5 + 2),
        ('resnet20', (32, 32, 3), 1 + 9 + 2),
        ('resnet56', (32, 32, 3), 1 + 27 + 2),
        ('resnet18', (224, 224, 3), 1 + 8 + 3),
        ('resnet50', (224, 224, 3), 1 + 2 * 16 + 4)]


@pytest.mark.parametrize('name,shape,count', FULL,
                         ids=[f[0] for f in FULL])
def test_full_size_specs_cover_every_permuted_axis(name, shape, count):
  model = models.build_model(name, 10)
  p = models.abstract_variables(model, shape)['params']
  s = permute.spec(model, p)  # spec() runs permute.check.
  assert len(s.sizes) == count


def test_check_refuses_a_wrong_spec():
  model = models.build_model('mlp', 3, hidden=(4,), bn=False)
  p = models.abstract_variables(model, (2,))['params']
  s = permute.spec(model, p)
  bad = permute.PermSpec({'dense1': 3}, s.axes)
  with pytest.raises(InputError, match='has 3 units'):
    permute.check(bad, p)


@pytest.mark.parametrize('name,kw,match', [
    ('vit', dict(depth=1, dim=8, heads=2), 'attention'),
    ('cnn', dict(pan_amplitude=0.1), 'FedPAN'),
    ('resnext101_32x8d', dict(width=0.125), 'grouped'),
])
def test_unsupported_models_are_refused(name, kw, match):
  model = models.build_model(name, 3, **kw)
  with pytest.raises(InputError, match=match):
    permute.spec(model, {})
