"""Failure behaviour shared by the mains: atomic outputs, provenance,
non-finite detection, checksums, range checks, early path checks."""

import glob
import json
import logging
import math
import os
import pathlib
import shutil

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import patch_study_run, tiny_train_config

from valley_jax import checkpoint, checks, defaults, outputs
from valley_jax.core import sweep
from valley_jax.probe import prober, registry
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _no_compile(*a, **k):
  raise AssertionError('a sweep was built before the input was checked')


def _strict_json(text):
  def bad(token):
    raise ValueError(f'non-JSON token {token}')
  return json.loads(text, parse_constant=bad)


def _probe_config(ckpt, kind='special'):
  c = defaults.probe_config(ckpt)
  c.kind = kind
  c.sweep.num_points = 3
  c.sweep.recal_samples = 64
  c.sweep.recal_batch_size = 64
  c.sweep.eval_batch_size = 360
  c.special.directions = ('sign', 'sgp')
  return c


@pytest.fixture(scope='module')
def run2(tmp_path_factory):
  """A 2-epoch digits MLP; tests copy it before damaging it."""
  w = str(tmp_path_factory.mktemp('run2'))
  train_runner.run(tiny_train_config(epochs=2), w)
  return w


def _copy(src, tmp_path):
  dst = str(tmp_path / 'copy')
  shutil.copytree(src, dst)
  return dst


# ------------------------------------------------------------ 3. atomic I/O


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
  path = tmp_path / 'results.json'
  outputs.write_json(path, {'v': 1})

  def killed(self, target):
    raise KeyboardInterrupt  # The process dies between write and rename.
  monkeypatch.setattr(type(outputs.epath.Path(path)), 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    outputs.write_json(path, {'v': 2})
  assert outputs.read_json(path) == {'v': 1}  # The old file, whole.
  assert os.listdir(tmp_path) == ['results.json']  # No temporary left.


def test_unreadable_json_counts_as_missing(tmp_path):
  (tmp_path / 'a.json').write_text('{"curves": [1, 2')
  (tmp_path / 'b.jsonl').write_text('{"epoch": 1}\n{"epo')
  assert outputs.read_json(tmp_path / 'a.json') is None
  assert outputs.read_jsonl(tmp_path / 'b.jsonl') is None
  assert outputs.read_json(tmp_path / 'missing.json') is None


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


def test_torn_results_recomputed_and_lost_figure_redrawn(run2, tmp_path,
                                                         monkeypatch):
  c = _probe_config(run2)
  path = probe_runner.run(c, str(tmp_path))['special']
  good = outputs.read_json(path)
  pathlib.Path(path).write_text(pathlib.Path(path).read_text()[:100])
  assert outputs.read_json(probe_runner.run(c, str(tmp_path))['special']
                           )['curves'] == good['curves']
  # Finished results, figure deleted: redrawn without any sweep.
  (tmp_path / 'special' / 'figure.png').unlink()
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  patch_study_run(monkeypatch, 'special', _no_compile)
  probe_runner.run(c, str(tmp_path))
  assert (tmp_path / 'special' / 'figure.png').stat().st_size > 0


# -------------------------------------------------------------- 1. provenance


def test_retrained_checkpoint_is_probed_again(tmp_path, monkeypatch):
  w = str(tmp_path / 'run')
  train_runner.run(tiny_train_config(epochs=1), w)
  c = _probe_config(w)
  first = outputs.read_json(probe_runner.run(c, str(tmp_path / 'p'))['special'])
  prov = first['provenance'][0]
  assert prov['epoch'] == 1 and prov['workdir'] == w
  assert prov['fingerprint'] == checkpoint.fingerprint(
      checkpoint.restore_model(w)[0])
  assert prov['train_config']['optim']['lr'] == 0.05
  c2 = tiny_train_config(epochs=1)
  c2.optim.lr = 0.01
  train_runner.run(c2, w, overwrite=True)
  calls = []
  original = registry.STUDIES['special'].run
  patch_study_run(monkeypatch, 'special',
                  lambda *a: calls.append(1) or original(*a))
  again = outputs.read_json(probe_runner.run(c, str(tmp_path / 'p'))['special'])
  assert calls == [1]
  assert again['provenance'][0]['fingerprint'] != prov['fingerprint']
  assert again['provenance'][0]['train_config']['optim']['lr'] == 0.01
  probe_runner.run(c, str(tmp_path / 'p'))  # Unchanged now: skipped.
  assert calls == [1]


# ------------------------------------------------------- 2. bad numbers


def test_nonfinite_loss_stops_training(tmp_path):
  c = tiny_train_config(epochs=2)
  c.optim.lr = 1e38
  w = str(tmp_path / 'w')
  with pytest.raises(train_runner.NonFiniteLossError,
                     match=r'epoch 1\b.*config\.optim\.lr=1e\+38'):
    train_runner.run(c, w)
  assert checkpoint.epochs(w) == [0]  # The bad epoch is not saved.


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


def test_checksum_detects_silently_changed_arrays(run2, tmp_path):
  w = _copy(run2, tmp_path)
  # Replace epoch 2's arrays by readable but different ones, as a damaged
  # disk or a partial copy could; the stored checksums stay as they were.
  variables, _ = checkpoint.restore_model(w, 2)
  changed = jax.tree.map(lambda a: np.asarray(a) + 1.0, variables)
  model_dir = pathlib.Path(w, 'checkpoints', '2', 'model')
  shutil.rmtree(model_dir)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(model_dir, changed)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'epoch 2 .* is damaged.*Kept earlier epochs: '
                     r'\[0, 1\]'):
    checkpoint.restore_model(w)
  with pytest.raises(checkpoint.CheckpointError, match='epoch 2'):
    train_runner.run(tiny_train_config(epochs=2), w)
  np.testing.assert_array_equal(  # Epoch 1 still restores.
      checkpoint.restore_model(w, 1)[0]['params']['head']['kernel'],
      checkpoint.restore_model(run2, 1)[0]['params']['head']['kernel'])


def test_verify_names_the_changed_leaf():
  tree = {'params': {'a': np.zeros(3), 'b': np.ones(2)}}
  sums = checkpoint.checksums(tree)
  tree['params']['b'] = np.array([1.0, 1.0 + 1e-12])
  with pytest.raises(checkpoint.CheckpointError, match="'params/b'"):
    checkpoint.verify(tree, sums, 'here')


# ------------------------------------------------ 8. damaged checkpoint files


@pytest.mark.parametrize('item', ['model', 'config'])
def test_flipped_or_truncated_files_give_clear_error(run2, tmp_path, item):
  w = _copy(run2, tmp_path)
  files = [f for f in glob.glob(f'{w}/checkpoints/2/{item}/**',
                                recursive=True)
           if os.path.isfile(f) and 'commit_success' not in f]
  for f in files:  # Damage every file of the item: truncation or flips.
    data = bytearray(pathlib.Path(f).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 40] = bytes(b ^ 0xFF for b in data[mid:mid + 40])
    pathlib.Path(f).write_bytes(bytes(data[:max(len(data) - 7, 1)]))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'Checkpoint epoch 2 in .*copy.*Kept earlier '
                     r'epochs: \[0, 1\]'):
    checkpoint.restore_model(w)


# ----------------------------------------------------- 5. every field checked


def _every_config():
  """The base configs and every config file of configs/."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  out = {'train': defaults.digits_cnn(), 'probe': defaults.probe_config()}
  for f in sorted(glob.glob(str(_ROOT / 'configs' / '*.py'))):
    spec = importlib.util.spec_from_file_location('cfg', f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out[os.path.basename(f)] = mod.get_config()
  return out


def test_every_numeric_field_has_a_range():
  for name, cfg in _every_config().items():
    fields = (registry.fields() if 'kind' in cfg else
              checks.FED_FIELDS if 'fed' in cfg else checks.TRAIN_FIELDS)
    assert checks.unchecked(cfg, fields) == [], name
    checks.check(cfg, fields)  # The shipped configs pass their checks.


def test_docs_list_the_checked_fields():
  doc = (_ROOT / 'docs' / 'config-fields.md').read_text()
  assert checks.markdown(checks.TRAIN_FIELDS) in doc
  assert checks.markdown(registry.own_fields()) in doc
  assert checks.markdown(checks.FED_OWN_FIELDS) in doc


_SCALES = ['noise_types.scales', 'sign_ratio.scale', 'special.scale',
           'groups.scale', 'hparams.scale']


@pytest.mark.parametrize('key,value', [
    *[(k, v) for k in _SCALES for v in (0.0, -1.0, float('nan'))],
    ('sweep.chunk', -1),
    ('sweep.eval_batch_size', -1), ('sweep.recal_samples', 0),
    ('sweep.recal_batch_size', -1), ('sweep.lam_min', float('nan')),
    ('sweep.lam_max', float('inf')), ('seeds', 0),
    ('sign_ratio.ratios', (0.5, 1.5)), ('train.optim.momentum', 1.0),
])
def test_bad_number_names_field_before_loading(tmp_path, monkeypatch, key,
                                               value):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  # No checkpoint exists: a range error must come before any file is read.
  c = _probe_config(str(tmp_path / 'no_run'), 'noise_types,sign_ratio')
  if key in ('noise_types.scales',):
    value = (value,)
  *parents, leaf = key.split('.')
  target = c
  for p in parents:
    target = target[p]
  target[leaf] = value
  with pytest.raises(ValueError, match=rf'config\.{key}=.* must be'):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'probe').exists()


def test_check_field_kinds():
  f = checks.Field('x', int, lo=1)
  assert f.ok(3) and not f.ok(True) and not f.ok(2.0) and not f.ok(0)
  g = checks.Field('y', float, lo=0, hi=1, hi_open=True)
  assert g.ok(0) and g.ok(0.5) and not g.ok(1.0) and not g.ok(math.nan)
  assert g.describe() == 'a finite number in [0, 1)'
  e = checks.Field('epoch', int, lo=0, also=('last',))
  cfg = ml_collections.ConfigDict({'epoch': '7'})
  checks.check(cfg, [e])  # absl passes numbers to str fields as strings.
  cfg.epoch = 'first'
  with pytest.raises(ValueError, match=r"config\.epoch='first'"):
    checks.check(cfg, [e])


# --------------------------------------------------------- 6. output paths


def test_probe_workdir_that_is_a_file_fails_first(run2, tmp_path,
                                                  monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  (tmp_path / 'file').write_text('x')
  for bad in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
    with pytest.raises(ValueError, match=r'--workdir=.*(is a file|not '
                       'writable)'):
      probe_runner.run(_probe_config(run2), str(bad))


def test_train_workdir_that_is_a_file_is_a_clear_error(tmp_path):
  (tmp_path / 'file').write_text('x')
  for bad in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
    with pytest.raises(ValueError, match='--workdir='):
      train_runner.run(tiny_train_config(epochs=1), str(bad))


# ------------------------------------------------ 7. only the default trains


def test_misspelt_checkpoint_is_not_trained(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  c = _probe_config(str(tmp_path / 'runs' / 'defualt'))
  c.train_if_missing = str(tmp_path / 'runs' / 'default')
  c.train = tiny_train_config(epochs=1)
  with pytest.raises(FileNotFoundError,
                     match=r'defualt.*holds no checkpoint.*python train\.py'):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'runs' / 'defualt').exists()


def test_preempted_default_training_is_resumed_before_probing(tmp_path):
  """A plain `python probe.py` killed while it trained its default run
  finishes that training when started again, then probes the last epoch."""
  w = str(tmp_path / 'runs' / 'default')
  train = tiny_train_config(epochs=2)
  train_runner.run(train, w, stop_after=1)  # Killed after epoch 1.
  c = _probe_config(w)
  c.train_if_missing, c.train = w, train
  probe_runner.run(c, str(tmp_path / 'probe'))
  assert checkpoint.epochs(w) == [0, 1, 2]
  res = json.loads((tmp_path / 'probe' / 'special' / 'results.json')
                   .read_text())
  assert res['provenance'][0]['epoch'] == 2
  # A finished run of another config in that folder is probed as it is.
  other = str(tmp_path / 'runs' / 'other')
  train_runner.run(tiny_train_config(epochs=1), other)
  c.checkpoint = c.train_if_missing = other
  probe_runner.run(c, str(tmp_path / 'probe_other'))
  assert checkpoint.epochs(other) == [0, 1]


# ------------------------------------------------------ 9. recal without BN


def test_recal_on_without_bn_warns(tmp_path, caplog):
  w = str(tmp_path / 'nobn')
  train_runner.run(tiny_train_config(epochs=1, bn=False), w)
  c = _probe_config(w)
  c.sweep.recal = 'on'
  with caplog.at_level(logging.WARNING):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert "recal='on'" in caplog.text and 'no BatchNorm' in caplog.text


# ------------------------------------------ checkpoints of earlier versions


def test_checkpoint_of_another_architecture_is_refused():
  """An option-B CIFAR ResNet20 (earlier versions' default) restored into
  today's option-A model: Flax would ignore the extra shortcut arrays."""
  from valley_jax import models  # pylint: disable=g-import-not-at-top
  old = models.abstract_variables(
      models.build_model('resnet20', 10, width=0.125, shortcut='B'),
      (16, 16, 3))
  new = models.build_model('resnet20', 10, width=0.125)
  with pytest.raises(ValueError, match='shortcut.*train it again'):
    prober.check_fits(new, old, (16, 16, 3), 'runs/old')
  prober.check_fits(new, models.abstract_variables(new, (16, 16, 3)),
                    (16, 16, 3), 'runs/new')
