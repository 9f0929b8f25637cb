"""Training: optimiser semantics, checkpoints, exact resume, devices, errors."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from conftest import tiny_train_config

from valley_jax import checkpoint, defaults, models
from valley_jax.core import steps
from valley_jax.train import runner as train_runner


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


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


def test_smoke_run_metrics_and_checkpoints(trained_mlp):
  rows = [json.loads(l) for l in open(f'{trained_mlp}/metrics.jsonl')]
  assert [r['epoch'] for r in rows] == [1, 2, 3]
  assert rows[-1]['test_accuracy'] > 0.5
  assert set(rows[0]) >= {'train_loss', 'train_accuracy', 'test_loss',
                          'test_accuracy', 'lr', 'seconds'}
  # θ0, the keep-list {1, 2} and the last epoch.
  assert checkpoint.epochs(trained_mlp) == [0, 1, 2, 3]


def test_restore_model_round_trip(trained_mlp):
  v0, cfg = checkpoint.restore_model(trained_mlp, 0)
  v3, _ = checkpoint.restore_model(trained_mlp, 'last')
  assert cfg['model']['name'] == 'mlp'
  assert set(v3) == {'params', 'batch_stats'}
  # Epoch 0 is the initialisation: BN scales are still ones.
  np.testing.assert_array_equal(v0['params']['bn1']['scale'], 1.0)
  assert not np.allclose(v3['params']['head']['kernel'],
                         v0['params']['head']['kernel'])
  # The restored model reproduces the logged test accuracy.
  rows = [json.loads(l) for l in open(f'{trained_mlp}/metrics.jsonl')]
  from valley_jax import data, sharding  # pylint: disable=g-import-not-at-top
  c = tiny_train_config()
  ds = data.from_config(c.data)
  model = models.from_config(c.model, ds.num_classes, ds.input_shape)
  acc = steps.evaluate(
      jax.jit(steps.make_eval_step(model, ds.mean, ds.std)),
      sharding.make_mesh(1), v3['params'], v3['batch_stats'], ds.x_test,
      ds.y_test, 120)['accuracy']
  assert acc == pytest.approx(rows[-1]['test_accuracy'])


def test_missing_epoch_is_a_clear_error(trained_mlp, tmp_path):
  with pytest.raises(FileNotFoundError, match=r'kept epochs: \[0, 1, 2, 3\]'):
    checkpoint.restore_model(trained_mlp, 7)
  with pytest.raises(FileNotFoundError, match='train first'):
    checkpoint.restore_model(str(tmp_path), 'last')


def test_exact_resume_after_interruption(tmp_path):
  c = tiny_train_config('cnn', epochs=4)
  c.data.n_train = 256
  c.train.keep_epochs = (1,)
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  train_runner.run(c, full)
  train_runner.run(c, cut, stop_after=2)  # "Killed" after epoch 2.
  assert checkpoint.epochs(cut) == [0, 1, 2]
  last = train_runner.run(c, cut)  # Same command again.
  assert last['epoch'] == 4
  assert train_runner.run(c, cut) == last  # A finished run trains nothing more.
  a, _ = checkpoint.restore_model(full)
  b, _ = checkpoint.restore_model(cut)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  lines = open(f'{cut}/metrics.jsonl').read().splitlines()
  assert [json.loads(l)['epoch'] for l in lines] == [1, 2, 3, 4]


def test_other_config_refused_then_overwritten(trained_mlp, tmp_path):
  c = tiny_train_config(epochs=1)
  workdir = str(tmp_path / 'w')
  train_runner.run(c, workdir)
  c2 = tiny_train_config(epochs=1)
  c2.optim.lr = 0.01
  with pytest.raises(ValueError, match=r"different config.*optim\.lr"):
    train_runner.run(c2, workdir)
  train_runner.run(c2, workdir, overwrite=True)
  _, stored = checkpoint.restore_model(workdir)
  assert stored['optim']['lr'] == 0.01


def test_one_device_equals_eight(tmp_path):
  runs = []
  for n in (1, 8):
    c = tiny_train_config(epochs=2)
    c.num_devices = n
    train_runner.run(c, str(tmp_path / str(n)))
    runs.append(checkpoint.restore_model(str(tmp_path / str(n)))[0])
  _close(runs[0], runs[1], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('key,value,match', [
    ('model.name', 'resnet7', 'Unknown model'),
    ('data.name', 'cifar11', 'Unknown dataset'),
    ('optim.name', 'lion', 'Unknown optimizer'),
    ('train.batch_size', 0, r'train\.batch_size=0 must be an integer ≥ 1'),
    ('optim.lr', -0.1, r'optim\.lr=-0.1 must be a finite number > 0'),
])
def test_bad_config_fails_before_compile(tmp_path, key, value, match):
  c = tiny_train_config()
  section, name = key.split('.')
  c[section][name] = value
  with pytest.raises(ValueError, match=match):
    train_runner.run(c, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


def test_model_cannot_take_input_shape(tmp_path):
  c = defaults.train_config('cnn', 'mnist1d')
  c.data.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match='needs image inputs'):
    train_runner.run(c, str(tmp_path / 'w'))


def test_batch_not_divisible_by_devices(tmp_path):
  c = tiny_train_config()
  c.train.batch_size = 60
  with pytest.raises(ValueError, match='divisible by the 8 devices'):
    train_runner.run(c, str(tmp_path))


def test_variants():
  c = defaults.apply_variant(defaults.train_config('vgg16', 'cifar10'),
                             'lr0.003,bs2048,wd1e-5,bninit_uniform')
  assert (c.optim.lr, c.train.batch_size, c.optim.weight_decay,
          c.model.bn_init) == (0.003, 2048, 1e-5, 'uniform')
  with pytest.raises(ValueError, match='Unknown config variant'):
    defaults.apply_variant(c, 'momentum0.5')
