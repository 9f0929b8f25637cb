"""train/runner.py: metrics, exact resume, devices, bad numbers and bad
input, train.init_from."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from conftest import half_train_config as _tiny, tiny_train_config

from valley_jax import checkpoint, defaults, rundir
from valley_jax.train import runner as train_runner


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def _strict_json(text):
  def bad(token):
    raise ValueError(f'non-JSON token {token}')
  return json.loads(text, parse_constant=bad)


def _equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
def test_smoke_run_metrics_and_checkpoints(trained_mlp):
  rows = [json.loads(l) for l in open(f'{trained_mlp}/metrics.jsonl')]
  assert [r['epoch'] for r in rows] == [1, 2, 3]
  assert rows[-1]['test_accuracy'] > 0.5
  assert set(rows[0]) >= {'train_loss', 'train_accuracy', 'test_loss',
                          'test_accuracy', 'lr', 'seconds'}
  # θ0, the keep-list {1, 2} and the last epoch.
  assert checkpoint.epochs(trained_mlp) == [0, 1, 2, 3]


@pytest.mark.slow
def test_exact_resume_after_interruption(tmp_path):
  c = tiny_train_config('cnn', epochs=3)
  c.data.n_train = 256
  c.train.keep_epochs = (1,)
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  train_runner.run(c, full)
  train_runner.run(c, cut, stop_after=2)  # "Killed" after epoch 2.
  assert checkpoint.epochs(cut) == [0, 1, 2]
  last = train_runner.run(c, cut)  # Same command again.
  assert last['epoch'] == 3
  assert train_runner.run(c, cut) == last  # A finished run trains nothing more.
  a, _ = checkpoint.restore_model(full)
  b, _ = checkpoint.restore_model(cut)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  lines = open(f'{cut}/metrics.jsonl').read().splitlines()
  assert [json.loads(l)['epoch'] for l in lines] == [1, 2, 3]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------------------- damaged metrics


@pytest.mark.slow
def test_torn_or_emptied_metrics_are_rebuilt_on_resume(tmp_path):
  c = tiny_train_config(epochs=3)
  c.data.n_train = 256
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  train_runner.run(c, full)
  for damage in ('{"epoch": 1, "train_lo', ''):
    shutil.rmtree(cut, ignore_errors=True)
    train_runner.run(c, cut, stop_after=2)
    pathlib.Path(cut, 'metrics.jsonl').write_text(damage)
    train_runner.run(c, cut)
    rows = [_strict_json(line) for line in
            pathlib.Path(cut, 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]
    ref = [_strict_json(line) for line in
           pathlib.Path(full, 'metrics.jsonl').read_text().splitlines()]
    assert [r['test_loss'] for r in rows] == [r['test_loss'] for r in ref]
  a, _ = checkpoint.restore_model(full)
  b, _ = checkpoint.restore_model(cut)
  jax.tree.map(np.testing.assert_array_equal, a, b)  # Resume stays exact.


# ----------------------------------------------------------------- bad numbers


@pytest.mark.slow
def test_nonfinite_loss_stops_training(tmp_path):
  c = tiny_train_config(epochs=2)
  c.optim.lr = 1e38
  w = str(tmp_path / 'w')
  with pytest.raises(train_runner.NonFiniteLossError,
                     match=r'epoch 1\b.*config\.optim\.lr=1e\+38'):
    train_runner.run(c, w)
  assert checkpoint.epochs(w) == [0]  # The bad epoch is not saved.


@pytest.mark.slow
def test_nonfinite_policy_continue_writes_null(tmp_path):
  c = tiny_train_config(epochs=2)
  c.optim.lr = 1e38
  c.train.on_nonfinite = 'continue'
  w = tmp_path / 'w'
  train_runner.run(c, str(w))
  text = (w / 'metrics.jsonl').read_text()
  rows = [_strict_json(line) for line in text.splitlines()]
  assert [r['epoch'] for r in rows] == [1, 2]
  assert rows[-1]['train_loss'] is None  # 4. null, never a bare NaN token.


def test_nan_learning_rate_rejected_before_work(tmp_path):
  c = tiny_train_config()
  c.optim.lr = float('nan')
  with pytest.raises(ValueError, match=r'config\.optim\.lr=nan must be a '
                     'finite number'):
    train_runner.run(c, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


# ---------------------------------------------------------------- output paths


def test_train_workdir_that_is_a_file_is_a_clear_error(tmp_path):
  (tmp_path / 'file').write_text('x')
  for bad in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
    with pytest.raises(ValueError, match='--workdir='):
      train_runner.run(tiny_train_config(epochs=1), str(bad))


# ------------------------------------------------------------ train.init_from


@pytest.mark.slow
def test_init_from_is_epoch_0_and_resumes_exactly(tmp_path):
  src, full, cut = (str(tmp_path / k) for k in ('src', 'full', 'cut'))
  train_runner.run(_tiny(1, seed=1), src)
  c = _tiny(0, init_from=f'{src}@1')  # A kept epoch other than the last.
  train_runner.run(c, full)
  _equal(checkpoint.restore_model(full, 0)[0],
         checkpoint.restore_model(src, 1)[0])
  train_runner.run(c, cut, stop_after=1)  # Killed after epoch 1, then again.
  assert train_runner.run(c, cut)['epoch'] == 2
  _equal(checkpoint.restore_model(cut)[0], checkpoint.restore_model(full)[0])


@pytest.mark.slow
def test_init_from_refusals_and_a_fresh_head(tmp_path):
  src = _tiny(epochs=1)  # Same input shape, 5 classes: another head.
  src.data.name, src.data.n_train, src.data.n_test = 'synthetic', None, None
  src.data.kwargs.update(shape=(8, 8, 1), num_classes=5, n_train=128,
                         n_test=64)
  train_runner.run(src, str(tmp_path / 'src'))
  c = _tiny(0, init_from=str(tmp_path / 'src'), epochs=1)
  with pytest.raises(ValueError, match="params/head.*init_fresh='CLF'"):
    train_runner.run(c, str(tmp_path / 'no'))
  assert checkpoint.epochs(str(tmp_path / 'no')) == []  # Refused: no save.
  with pytest.raises(FileNotFoundError, match='init_from.*Epoch 3'):
    train_runner.run(_tiny(0, init_from=f"{tmp_path / 'src'}@3"),
                     str(tmp_path / 'x'))
  c.train.init_fresh = 'CLF'
  c.model.width = 0.25
  with pytest.raises(ValueError, match=r'architecture: \S+ has shape \(32,\)'
                     r' float32 there and \(64,\) float32 in this config'):
    train_runner.run(c, str(tmp_path / 'wide'))
  c.model.width = 0.125
  train_runner.run(c, str(tmp_path / 'ft'))
  got = checkpoint.restore_model(str(tmp_path / 'ft'), 0)[0]
  old = checkpoint.restore_model(str(tmp_path / 'src'), 1)[0]
  _equal(got['batch_stats'], old['batch_stats'])
  for k in got['params']:
    if k != 'head':
      _equal(got['params'][k], old['params'][k])
  assert got['params']['head']['kernel'].shape[-1] == 10


def test_stored_config_without_init_from_still_resumes():
  new = _tiny().to_dict()
  old = json.loads(json.dumps(new))
  del old['train']['init_from'], old['train']['init_fresh']
  assert rundir.config_diff(old, new) == []
  new['train']['init_from'] = 'runs/pre'
  assert rundir.config_diff(old, new) == ['train.init_from']
