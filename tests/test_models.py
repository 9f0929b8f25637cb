"""Registry models: forward passes, parameter counts, BN init, naming rule."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import models
from valley_jax.core import groups
from valley_jax.models import resnet

_TINY = {'vit': dict(depth=2, dim=16, heads=2)}


# The bottleneck ResNets (16 and 33 blocks) would add many seconds here; a
# two-block bottleneck ResNet with grouped convs runs in test_convert.py.
# The variables come from eval_shape and NumPy: compiling a ResNet18's
# random init takes 8 s on 2 cores (eager, 13 s), its forward pass under
# 1 s. Only the MLP runs in the fast tier.
@pytest.mark.parametrize('name', [
    n if n == 'mlp' else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(set(models.MODELS) - {'resnet50', 'resnext101_32x8d'})])
def test_forward_tiny(name):
  shape = (8, 8, 3) if name != 'vit' else (8, 8, 3)
  model = models.build_model(name, num_classes=7, width=0.0625,
                             **_TINY.get(name, {}))
  x = jnp.ones((2, *shape))
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.key(0), x)
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map_with_path(lambda path, s: jnp.asarray(
      np.abs(rng.standard_normal(s.shape)) + 1.0  # BN variances: positive.
      if 'var' in jax.tree_util.keystr(path) else
      0.1 * rng.standard_normal(s.shape), s.dtype), shapes)
  logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert logits.shape == (2, 7)
  assert np.all(np.isfinite(logits))
  # The classifier is always the top-level module 'head'.
  assert variables['params']['head']['kernel'].shape[-1] == 7


def test_reference_parameter_counts():
  vgg16 = models.build_model('vgg16', 10, bn=True)
  assert models.count_params(vgg16, (32, 32, 3)) == 15_253_578
  resnet20 = models.build_model('resnet20', 10)  # Option A shortcuts.
  assert models.count_params(resnet20, (32, 32, 3)) == 269_722
  resnet20_b = models.build_model('resnet20', 10, shortcut='B')
  assert models.count_params(resnet20_b, (32, 32, 3)) == 272_474


@pytest.mark.parametrize('name,count', [
    ('resnet18', 11_689_512), ('resnet50', 25_557_032),
    ('resnext101_32x8d', 88_791_336)])
def test_imagenet_counts_equal_torchvision(name, count):
  # Parameter shapes do not depend on the image size: eval_shape on 64x64.
  assert models.count_params(models.build_model(name, 1000),
                             (64, 64, 3)) == count


def test_fig6_groups_on_resnet50():
  """53 convs (stem, 3 per block x 16, 4 shortcuts), each followed by a BN;
  LAYER1 is the stem and layer1's three blocks (9 leaves each, plus the
  first block's shortcut conv and BN)."""
  p = models.abstract_variables(models.build_model('resnet50', 1000),
                                (64, 64, 3))['params']
  paths = ['/'.join(k.key for k in path)
           for path, _ in jax.tree_util.tree_leaves_with_path(p)]

  def selected(group):
    return {n for n, m in zip(paths, jax.tree.leaves(groups.mask(p, group)))
            if m}

  assert len(paths) == 161  # Torchvision's resnet50 has 161 tensors.
  assert selected('CLF') == {'head/kernel', 'head/bias'}
  assert selected('CONV') == {n for n in paths if '/conv' in '/' + n}
  assert len(selected('CONV')) == 53 and len(selected('BN')) == 2 * 53
  layer1 = selected('LAYER1')
  assert len(layer1) == 3 + 3 * 9 + 3
  assert {'conv_stem/kernel', 'bn_stem/scale',
          'layer1_0/conv_shortcut/kernel', 'layer1_2/bn3/bias'} <= layer1
  assert not any(n.startswith(('layer2', 'head')) for n in layer1)
  assert selected('FEAT') == set(paths) - selected('CLF')


def test_option_a_shortcut_by_hand():
  """ResNet20 option A minus option B: two 1x1 conv + BN shortcuts fewer,
  16·32 + 2·32 and 32·64 + 2·64 parameters."""
  assert 272_474 - 269_722 == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
  shapes = models.abstract_variables(models.build_model('resnet20', 10),
                                     (32, 32, 3))['params']
  assert not [b for b in shapes.values() if 'conv_shortcut' in b]
  # An option A block gives relu(x[::2, ::2] zero-padded + y); with all
  # weights and statistics zero, y = 0 and the output is the shortcut itself.
  blk = resnet.BasicBlock(8, 2, 'ones', shortcut='A')
  x = jnp.arange(4 * 4 * 4, dtype=jnp.float32).reshape(1, 4, 4, 4)
  bv = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(
      functools.partial(blk.init, train=False), jax.random.key(0), x))
  out = blk.apply(bv, x, train=False)
  want = np.zeros((1, 2, 2, 8), np.float32)
  want[..., 2:6] = np.asarray(x)[:, ::2, ::2, :]  # 2 zero channels each side.
  np.testing.assert_array_equal(out, want)


def test_mlp_count_by_hand():
  model = models.build_model('mlp', 10, hidden=(20,), bn=True)
  # 64*20 + 20 (dense1) + 2*20 (bn1 scale, bias) + 20*10 + 10 (head).
  assert models.count_params(model, (8, 8, 1)) == 64 * 20 + 20 + 40 + 210


def test_vgg_without_bn_has_no_batch_stats():
  model = models.build_model('vgg11', 100, bn=False, width=0.0625)
  v = models.abstract_variables(model, (32, 32, 3))
  assert 'batch_stats' not in v
  assert not any('bn' in k for k in v['params'])


def _bn_scales(bn_init):
  model = models.build_model('mlp', 10, hidden=(4000,), bn=True,
                             bn_init=bn_init)
  v = model.init(jax.random.key(1), jnp.ones((1, 4)), train=False)
  return np.asarray(v['params']['bn1']['scale'])


@pytest.mark.slow
def test_bn_init_options():
  np.testing.assert_array_equal(_bn_scales('ones'), 1.0)
  u = _bn_scales('uniform')
  assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.03
  g = _bn_scales('gaussian')
  assert abs(g.mean()) < 0.01 and abs(g.std() - 0.1) < 0.01
  assert (g < 0).any()


def test_naming_rule_for_resnet():
  model = models.build_model('resnet20', 10, width=0.25)
  params = models.abstract_variables(model, (32, 32, 3))['params']
  flat = flax.traverse_util.flatten_dict(params)
  for path, leaf in flat.items():
    module, name = path[-2], path[-1]
    if module.startswith('conv'):
      assert name == 'kernel' and len(leaf.shape) == 4
    elif module.startswith('bn'):
      assert name in ('scale', 'bias') and len(leaf.shape) == 1
    else:
      assert module == 'head'


def test_projection_option_by_hand():
  """MOON's head in the model: logits = head(dense2(relu(dense1(f)))) with
  f = relu(x V + c), and that projection z is the sown representation."""
  model = models.build_model('mlp', 3, hidden=(4,), bn=False, projection=2)
  x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
  v = model.init(jax.random.key(0), x[:1], train=False)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v['params'])
  assert jax.tree.map(np.shape, p['projection']) == {
      'dense1': {'bias': (4,), 'kernel': (4, 4)},
      'dense2': {'bias': (2,), 'kernel': (4, 2)}}
  for d in ('dense1', 'dense2'):  # PyTorch's Linear bias: U(±1/√4).
    b = p['projection'][d]['bias']
    assert np.all(b != 0) and np.all(np.abs(b) <= 0.5)
  f = np.maximum(x @ p['dense1']['kernel'] + p['dense1']['bias'], 0)
  q = p['projection']
  h = np.maximum(f @ q['dense1']['kernel'] + q['dense1']['bias'], 0)
  z = h @ q['dense2']['kernel'] + q['dense2']['bias']
  logits, state = model.apply(v, x, train=False, mutable=['intermediates'])
  np.testing.assert_allclose(logits, z @ p['head']['kernel'] +
                             p['head']['bias'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state['intermediates']['features'][0], z,
                             rtol=1e-5, atol=1e-6)


_PROJ_SHAPES = {'mlp': (6,), 'vit': (8, 8, 3)}


@pytest.mark.parametrize('name', sorted(
    set(models.MODELS) - {'resnet50', 'resnext101_32x8d'}))
def test_projection_zero_changes_no_model(name):
  """projection=0 is the plain model (same tree; same values and outputs
  for the dense-only MLP); projection=P adds the module 'projection' (d→d,
  d→P) before a head of P inputs."""
  shape = _PROJ_SHAPES.get(name, (8, 8, 3))
  kw = dict(num_classes=7, width=0.0625, **_TINY.get(name, {}))
  plain = models.build_model(name, **kw)
  zero = models.build_model(name, projection=0, **kw)
  want = models.abstract_variables(plain, shape)
  assert models.abstract_variables(zero, shape) == want
  proj = models.abstract_variables(models.build_model(name, projection=5,
                                                      **kw), shape)['params']
  d = want['params']['head']['kernel'].shape[0]
  assert jax.tree.map(lambda a: a.shape, proj['projection']) == {
      'dense1': {'bias': (d,), 'kernel': (d, d)},
      'dense2': {'bias': (5,), 'kernel': (d, 5)}}
  assert proj['head']['kernel'].shape == (5, 7)
  if name == 'mlp':
    x = jnp.ones((2, *shape))
    v0 = plain.init(jax.random.key(0), x, train=False)
    v1 = zero.init(jax.random.key(0), x, train=False)
    jax.tree.map(np.testing.assert_array_equal, v0, v1)
    np.testing.assert_array_equal(plain.apply(v0, x), zero.apply(v1, x))


@pytest.mark.parametrize('kwargs,match', [
    (dict(name='vgg17', num_classes=10), 'Unknown model'),
    (dict(name='mlp', num_classes=10, bn_init='zeros'), 'bn_init'),
    (dict(name='resnet20', num_classes=10, bn=False), 'always has BatchNorm'),
    (dict(name='mlp', num_classes=1), 'num_classes'),
    (dict(name='mlp', num_classes=10, projection=-1), 'projection'),
    (dict(name='mlp', num_classes=10, projection=2.5), 'projection'),
])
def test_bad_model_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.build_model(**kwargs)


def test_bad_input_shapes():
  cnn = models.build_model('cnn', 10)
  with pytest.raises(ValueError, match='needs image inputs'):
    models.check_input_shape('cnn', cnn, (40,))
  vit = models.build_model('vit', 10, patch_size=5)
  with pytest.raises(ValueError, match='patch size'):
    models.check_input_shape('vit', vit, (32, 32, 3))
  models.check_input_shape('mlp', models.build_model('mlp', 10), (40,))
