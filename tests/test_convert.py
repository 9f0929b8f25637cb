"""Torchvision state dicts -> Flax ResNets: layouts, errors, logit parity."""

import json

import jax
import numpy as np
import pytest
from etils import epath

from valley_jax import convert, data, defaults, models
from valley_jax.models import resnet
from valley_jax.probe import runner as probe_runner


def _tiny_resnext():
  """A two-stage bottleneck ResNet with grouped 3x3 convs (ResNeXt-like)."""
  return resnet.ResNet(5, (1, 1), (4, 8), imagenet_stem=True,
                       bottleneck=True, groups=2, width_per_group=64)


def _random_variables(model, seed=0):
  """Random params and BN running statistics in [0.5, 1.5) (no init run)."""
  rng = np.random.default_rng(seed)
  shapes = models.abstract_variables(model, (32, 32, 3))
  return jax.tree.map(
      lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)


def _parity(module: str):
  """`module`, or a skip that says how to run the parity tests (CI does)."""
  return pytest.importorskip(module, reason=(
      f'{module} is not installed; pip install -e ".[parity]" runs the '
      "converter's parity tests against torchvision (.ci/run does)"))


def test_npz_round_trip_and_torchvision_layout(tmp_path):
  model = _tiny_resnext()
  v = _random_variables(model)
  sd = convert.to_state_dict(v)
  # Torchvision layouts, checked on single entries.
  k = np.asarray(v['params']['layer2_0']['conv2']['kernel'])  # [H, W, I/g, O]
  assert sd['layer2.0.conv2.weight'].shape == (k.shape[3], k.shape[2], 3, 3)
  assert sd['layer2.0.conv2.weight'][5, 1, 0, 2] == k[0, 2, 1, 5]
  np.testing.assert_array_equal(sd['fc.weight'],
                                np.asarray(v['params']['head']['kernel']).T)
  np.testing.assert_array_equal(sd['layer1.0.downsample.1.running_var'],
                                v['batch_stats']['layer1_0']['bn_shortcut'][
                                    'var'])
  sd['bn1.num_batches_tracked'] = np.array(3)  # Ignored.
  path = tmp_path / 'tiny.npz'
  np.savez(path, **sd)
  back = convert.load_variables(str(path), model, (32, 32, 3))
  jax.tree.map(np.testing.assert_array_equal, back, v)
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3))
  apply = jax.jit(model.apply)
  logits = apply(v, x)
  assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
  np.testing.assert_array_equal(apply(back, x), logits)


def test_errors_name_the_keys_and_shapes():
  model = _tiny_resnext()
  sd = convert.to_state_dict(_random_variables(model))
  sd['classifier.weight'] = sd.pop('fc.weight')
  sd['bn1.weight'] = np.ones(7, np.float32)
  with pytest.raises(ValueError) as e:
    convert.convert(sd, model, (32, 32, 3), where='w.npz')
  msg = str(e.value)
  assert 'w.npz' in msg and '1 missing keys: fc.weight' in msg
  assert '1 unexpected keys: classifier.weight' in msg
  assert 'bn1.weight has shape (7,), the model needs (4,)' in msg
  with pytest.raises(FileNotFoundError, match='does not exist'):
    convert.load_state_dict('/nonexistent/w.npz')
  with pytest.raises(ValueError, match='Unknown weights format'):
    convert.load_state_dict(__file__)


def _torch_model(name, seed):
  torch = _parity('torch')
  tv = _parity('torchvision')
  torch.manual_seed(seed)
  net = getattr(tv.models, name)(weights=None)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  return net.eval()


# Only where torchvision is installed: 5-30 s each on 2 shared CPU cores.
@pytest.mark.parametrize('name',
                         ['resnet18', 'resnet50', 'resnext101_32x8d'])
def test_logits_equal_torchvision(name, tmp_path):
  torch = _parity('torch')
  net = _torch_model(name, 0)
  path = tmp_path / f'{name}.pth'
  torch.save(net.state_dict(), path)
  x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    want = net(x).numpy()
  model = models.build_model(name, 1000)
  v = convert.load_variables(str(path), model)
  got = np.asarray(jax.jit(model.apply)(v, x.numpy().transpose(0, 2, 3, 1)))
  # Random BN weights let the logits grow (resnet50: ~350), so the absolute
  # tolerance is relative to the largest logit.
  scale = np.abs(want).max()
  print(f'{name}: max |Δlogit| = {np.abs(got - want).max():.3g} '
        f'(max |logit| {scale:.3g})')
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_safetensors_round_trip(tmp_path):
  st = _parity('safetensors.numpy')
  model = _tiny_resnext()
  v = _random_variables(model)
  path = tmp_path / 'tiny.safetensors'
  st.save_file(convert.to_state_dict(v), str(path))
  back = convert.load_variables(str(path), model, (32, 32, 3))
  jax.tree.map(np.testing.assert_array_equal, back, v)
  assert convert.provenance(str(path)) == {
      'weights': str(path), 'sha256': convert.sha256(str(path))}


def _weights_probe():
  """A 'groups' probe of config.weights (set by the test) in a ResNet18 of
  width 1/16 on 32 synthetic 16x16 images; and that dataset and model."""
  c = defaults.probe_config(checkpoint_dir='')
  c.kind = 'groups'
  c.train = defaults.train_config('resnet18', 'synthetic')
  c.train.model.width = 0.0625
  c.train.data.kwargs.update(shape=(16, 16, 3), n_train=32, n_test=32)
  c.sweep.update(num_points=3, recal='off', eval_batch_size=32)
  ds = data.from_config(c.train.data)
  return c, ds, models.from_config(c.train.model, ds.num_classes,
                                   ds.input_shape)


@pytest.mark.slow
def test_probe_measures_a_weights_file(tmp_path):
  """groups on a state dict (npz): provenance is the file's SHA-256, and the
  curve at λ = 0 is the cross-entropy of the converted model itself."""
  c, ds, model = _weights_probe()
  c.groups.groups = ('CLF',)
  v = _random_variables(model)
  c.weights = str(tmp_path / 'w.npz')
  np.savez(c.weights, **convert.to_state_dict(v))
  res = json.loads(epath.Path(
      probe_runner.run(c, str(tmp_path / 'probe'))['groups']).read_text())
  assert res['provenance'] == [{'weights': c.weights,
                                'sha256': convert.sha256(c.weights)}]
  assert res['checkpoint'] == {'weights': c.weights}
  assert res['model'] == 'resnet18' and len(res['curves']) == 2
  logits = jax.jit(model.apply)(v, ds.x_test)
  ce = -np.mean(jax.nn.log_softmax(logits)[np.arange(32), ds.y_test])
  for curve in res['curves']:
    assert curve['loss'][1] == pytest.approx(float(ce), rel=1e-4)


@pytest.mark.slow
def test_probe_refuses_non_finite_weights(tmp_path):
  c, _, model = _weights_probe()
  sd = convert.to_state_dict(_random_variables(model))
  sd['fc.weight'][0, 0] = np.nan
  sd['bn1.running_var'][1] = np.inf
  c.weights = str(tmp_path / 'w.npz')
  np.savez(c.weights, **sd)
  with pytest.raises(ValueError, match=r'non-finite.*2 array\(s\): '
                     r"batch_stats/bn_stem/var, params/head/kernel"):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'probe' / 'groups').exists()


def test_bad_weights_files_are_clear_errors(tmp_path):
  (tmp_path / 'garbage.npz').write_bytes(b'not a zip file')
  np.savez(tmp_path / 'empty.npz')
  np.savez(tmp_path / 'objects.npz', a=np.array([{'x': 1}], dtype=object))
  (tmp_path / 'folder.npz').mkdir()
  for name, match in (('garbage.npz', 'cannot be read'),
                      ('empty.npz', 'holds no arrays'),
                      ('objects.npz', 'cannot be read'),
                      ('folder.npz', 'is a folder')):
    with pytest.raises(ValueError, match=match) as e:
      convert.load_state_dict(str(tmp_path / name))
    assert 'allow_pickle' not in str(e.value)
