"""probe/runner.py: every kind end to end, the schema, provenance, reuse of
finished kinds, damaged outputs and bad input."""

import json
import logging
import pathlib

import numpy as np
import pytest
from conftest import (check_curve_schema as _check_schema,
                      kinds_probe_config as _config, load_json as _load,
                      patch_study_run, small_probe_config, tiny_train_config)

from valley_jax import checkpoint, defaults, outputs, rundir
from valley_jax.core import stats, sweep
from valley_jax.probe import prober, registry
from valley_jax.fed import runner as fed_runner
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import common
from valley_jax.train import runner as train_runner


@pytest.mark.slow
def test_single_checkpoint_kinds(trained_mlp, tmp_path, capsys):
  kinds = 'noise_types,sign_ratio,special,groups,surface'
  c = _config(trained_mlp, kinds)
  c.seeds = 2
  paths = probe_runner.run(c, str(tmp_path))
  for kind in kinds.split(','):
    res = _load(paths[kind])
    _check_schema(res, kind)
    assert (tmp_path / kind / 'figure.png').exists()
    # PNG by default; config.figure_formats='png,pdf' adds PDF.
    assert not (tmp_path / kind / 'figure.pdf').exists()
    assert res['precision'] == {'dtype': 'float32', 'compute_dtype': 'float32',
                                'matmul_precision': 'highest',
                                'fold_bn': True}
    assert res['batch_sizes'] == {'eval': 360, 'recal': 200}
  nt = _load(paths['noise_types'])
  assert len(nt['curves']) == 4  # 2 noises x {plain, sign-consistent}.
  assert nt['curves'][0]['seeds'] == 2 and 'error_std' in nt['curves'][0]
  sr = _load(paths['sign_ratio'])
  assert sr['summary']['ratios'] == [0.0, 0.5, 1.0]
  assert [c['ratio'] for c in sr['curves']] == [0.0, 0.5, 1.0]
  sp = _load(paths['special'])
  assert [c['direction'] for c in sp['curves']] == list(
      c.special.directions)
  gr = _load(paths['groups'])
  assert {c['group'] for c in gr['curves']} == {'ALL', 'CLF', 'BN'}
  su = _load(paths['surface'])
  assert len(su['surface']['loss']) == 3 and len(su['surface']['loss'][0]) == 3
  alpha = su['curves'][0]  # The α axis: the grid's middle column.
  assert alpha['error'] == pytest.approx([r[1] for r in su['surface']['error']])
  assert len(alpha['error_ci']) == 3 and alpha['n_examples'] == 360
  # The table: one row per curve with the two halves and their difference.
  out = capsys.readouterr().out
  assert 'err+' in out and '|G(0,1)|·sign(θ)' in out
  # Intervals and findings (issue 25): every kind of the valley family
  # writes a verdict per claim, the table prints them before the curves.
  for kind in ('noise_types', 'sign_ratio', 'special', 'groups'):
    res = _load(paths[kind])
    assert res['findings'] and all(
        {'claim', 'mean', 'ci', 'n', 'n_examples', 'resolved', 'method'}
        <= set(f) for f in res['findings'])
    assert res['evaluation']['n_examples'] == 360
    c0 = res['curves'][0]
    assert c0['diff']['ci'][0] <= c0['diff']['mean'] <= c0['diff']['ci'][1]
    assert not any(k.startswith('_') for k in c0)
  assert [f['n'] for f in nt['findings']] == [2, 2, 2, 2]
  assert out.index('findings:') < out.index('all curves:')
  assert 'one example = 0.0028' in out


@pytest.mark.slow
def test_non_finite_values_become_null(trained_mlp, tmp_path):
  c = _config(trained_mlp, 'noise_types')
  c.noise_types.noises = ('ones',)
  c.noise_types.scales = (1e38,)
  c.sweep.recal = 'off'
  path = probe_runner.run(c, str(tmp_path))['noise_types']
  res = _load(path)
  losses = res['curves'][0]['loss']
  assert None in losses and losses[2] is not None  # λ = 0 stays finite.
  assert (tmp_path / 'noise_types' / 'figure.png').exists()


@pytest.mark.slow
def test_main_job_trains_when_missing(tmp_path):
  c = _config(str(tmp_path / 'default'), 'noise_types,sign_ratio,special')
  c.train_if_missing = c.checkpoint
  c.train = tiny_train_config(epochs=1)
  paths = probe_runner.run(c, str(tmp_path / 'probe'))
  assert set(paths) == {'noise_types', 'sign_ratio', 'special'}
  assert (tmp_path / 'default' / 'metrics.jsonl').exists()


@pytest.mark.slow
@pytest.mark.parametrize('key,value,match', [
    ('kind', 'valleys', 'Unknown probe kind'),
    ('normalization', 'batch', 'Unknown normalization'),
    ('noise_types.noises', ('cauchy',), 'Unknown noise'),
    ('groups.groups', ('EMBED',), 'Unknown parameter group'),
    ('special.directions', ('grad',), 'Unknown special'),
    ('sweep.num_points', 0, r'sweep\.num_points=0 must be an integer'),
    ('sweep.lam_min', 2.0, 'Empty or invalid'),
    ('epoch', '99', 'not kept'),
    ('sweep.dtype', 'float8', 'Unknown dtype'),
])
def test_bad_input_fails_before_compiling(trained_mlp, tmp_path, monkeypatch,
                                          key, value, match):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  c = _config(trained_mlp, 'noise_types,groups,special')
  parts = key.split('.')
  target = c
  for p in parts[:-1]:
    target = target[p]
  target[parts[-1]] = value
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    probe_runner.run(c, str(tmp_path))
  assert not list(tmp_path.iterdir())


def _no_compile(*a, **k):
  raise AssertionError('a sweep was built before the input was checked')


def test_missing_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  with pytest.raises(FileNotFoundError, match='holds no checkpoint'):
    probe_runner.run(_config(str(tmp_path / 'nothing'), 'special'),
                     str(tmp_path / 'out'))


@pytest.mark.slow
def test_model_without_bn(tmp_path):
  """No BN: recalibration is off by default and the BN group is skipped."""
  train_dir = str(tmp_path / 'nobn')
  train_runner.run(tiny_train_config(epochs=1, bn=False), train_dir)
  c = _config(train_dir, 'groups')
  p = prober.Prober(c)
  assert p.subject(train_dir).sweep.recal_x is None
  res = _load(probe_runner.run(c, str(tmp_path / 'probe'))['groups'])
  assert {cv['group'] for cv in res['curves']} == {'ALL', 'CLF'}
  c.kind = 'bn_init'
  c.bn_init.checkpoints = (train_dir,)
  with pytest.raises(ValueError, match='needs models with BatchNorm'):
    probe_runner.run(c, str(tmp_path / 'probe2'))


@pytest.mark.slow
def test_finished_kinds_are_not_recomputed(trained_mlp, tmp_path,
                                           monkeypatch):
  c = _config(trained_mlp, 'special,sign_ratio')
  first = probe_runner.run(c, str(tmp_path))
  before = _load(first['special'])
  (tmp_path / 'sign_ratio' / 'results.json').unlink()  # "Interrupted" here.
  calls = []
  original = registry.STUDIES['sign_ratio'].run
  special = registry.STUDIES['special'].run
  patch_study_run(monkeypatch, 'special', _no_compile)
  patch_study_run(monkeypatch, 'sign_ratio',
                  lambda *a: calls.append(1) or original(*a))
  second = probe_runner.run(c, str(tmp_path))
  assert calls == [1]  # Only the unfinished kind ran again.
  assert _load(second['special']) == before
  assert _load(second['sign_ratio'])['summary']['ratios'] == [0.0, 0.5, 1.0]
  c.sweep.num_points = 3  # Another config recomputes.
  patch_study_run(monkeypatch, 'special', special)
  third = _load(probe_runner.run(c, str(tmp_path))['special'])
  assert len(third['curves'][0]['lambdas']) == 3


def test_string_fields_fail_early():
  c = defaults.probe_config()
  c.figure_formats = 'png,jpeg'
  with pytest.raises(ValueError, match='config.figure_formats'):
    probe_runner.check_names(c)
  c.figure_formats = 'PNG, pdf'
  assert probe_runner.figure_formats(c) == ('png', 'pdf')
  c.sweep.dtype = 'tf32'
  probe_runner.check_names(c)
  c.sweep.dtype = 'fp32'
  with pytest.raises(ValueError, match='config.sweep.dtype'):
    probe_runner.check_names(c)


# ---------------------------------------------- damaged outputs and provenance


def _probe_config(ckpt, kind='special'):
  c = small_probe_config(ckpt, kind)
  c.sweep.update(num_points=3, recal_samples=64, recal_batch_size=64)
  c.special.directions = ('sign', 'sgp')
  return c


@pytest.mark.slow
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


@pytest.mark.slow
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
  assert first['code'] == rundir.code_version()
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


# ----------------------------------------------------- 5. every field checked


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


# --------------------------------------------------------- 6. output paths


@pytest.mark.slow
def test_probe_workdir_that_is_a_file_fails_first(run2, tmp_path,
                                                  monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  (tmp_path / 'file').write_text('x')
  for bad in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
    with pytest.raises(ValueError, match=r'--workdir=.*(is a file|not '
                       'writable)'):
      probe_runner.run(_probe_config(run2), str(bad))


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_recal_on_without_bn_warns(tmp_path, caplog):
  w = str(tmp_path / 'nobn')
  train_runner.run(tiny_train_config(epochs=1, bn=False), w)
  c = _probe_config(w)
  c.sweep.recal = 'on'
  with caplog.at_level(logging.WARNING):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert "recal='on'" in caplog.text and 'no BatchNorm' in caplog.text


@pytest.mark.slow
def test_probe_racing_training_measures_the_epoch_it_names(tmp_path,
                                                            monkeypatch):
  """A checkpoint saved while the probe runs changes nothing until the next
  probe: the second kind names and measures the epoch the first did."""
  w = str(tmp_path / 'run')
  train_runner.run(tiny_train_config(epochs=1), w)
  c = _probe_config(w, 'sign_ratio,special')
  original = registry.STUDIES['sign_ratio'].run

  def racing(p, s):
    out = original(p, s)
    train_runner.run(tiny_train_config(epochs=2), w)  # Epoch 2 appears.
    return out

  patch_study_run(monkeypatch, 'sign_ratio', racing)
  raced = outputs.read_json(probe_runner.run(c, str(tmp_path / 'p'))[
      'special'])
  assert checkpoint.epochs(w)[-1] == 2
  assert raced['provenance'][0]['epoch'] == 1
  monkeypatch.undo()
  for e in (1, 2):
    solo = _probe_config(w, 'special')
    with solo.ignore_type():
      solo.epoch = e
    want = outputs.read_json(probe_runner.run(solo, str(tmp_path / f's{e}'))[
        'special'])
    assert want['provenance'][0]['epoch'] == e
    if e == 1:
      assert raced['curves'] == want['curves']
    else:
      assert raced['curves'] != want['curves']
  # The next probe measures epoch 2 and recomputes what named epoch 1.
  again = outputs.read_json(probe_runner.run(c, str(tmp_path / 'p'))[
      'special'])
  assert again['provenance'][0]['epoch'] == 2
  assert again['curves'] == want['curves']


@pytest.mark.slow
def test_fedsim_workdir_is_explained(tmp_path):
  f = defaults.fed_offline('digits', 'rounds1')
  f.fed.update(num_clients=4, fraction=0.5)
  f.model.width = 0.25
  fed_res = fed_runner.run(f, str(tmp_path / 'fed'))
  with pytest.raises(ValueError, match=r"is a fedsim run.*global_model'"):
    probe_runner.run(_probe_config(str(tmp_path / 'fed')),
                     str(tmp_path / 'p'))
  c = tiny_train_config(epochs=1)
  c.train.init_from = str(tmp_path / 'fed')
  with pytest.raises(ValueError, match='is a fedsim run'):
    train_runner.run(c, str(tmp_path / 'run'))
  # Its global model is probed like a trained one: the same parameters
  # (fingerprint), and at λ = 0 without recalibration the test loss and
  # accuracy fedsim measured on it.
  p = _probe_config(fed_runner.global_model_dir(str(tmp_path / 'fed')))
  p.sweep.recal = 'off'
  res = _load(probe_runner.run(p, str(tmp_path / 'g'))['special'])
  prov = res['provenance'][0]
  assert prov['epoch'] == 1 and prov['fingerprint'] == fed_res[
      'global_fingerprint']
  assert prov['train_config']['federated']['algorithm'] == 'fedavg'
  curve = res['curves'][0]
  assert curve['lambdas'][1] == 0.0
  assert curve['loss'][1] == pytest.approx(fed_res['final']['test_loss'],
                                           rel=1e-5)
  assert 1 - curve['error'][1] == pytest.approx(
      fed_res['final']['test_accuracy'], abs=1e-6)


# --------------------------------- 10. multi-run studies train their runs

# A training config file as a user writes one (tiny_train_config's run).
_TINY_CONFIG = '''
from valley_jax import defaults


def get_config(arg=None):
  c = defaults.train_config('mlp', 'digits')
  c.model.width = 0.125
  c.data.augment = False
  c.data.n_train = 512
  c.optim.lr = 0.05
  c.train.update(dict(epochs=1, batch_size=64, eval_batch_size=120,
                      keep_epochs=(1,)))
  return defaults.apply_variant(c, arg)
'''


def _config_file(tmp_path, text=_TINY_CONFIG, name='tiny.py') -> str:
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _load_config_file(path, arg=None):
  """A config file loaded as train.py would (not by the code under test)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('tiny_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _runs_config(tmp_path, runs: dict[str, str]):
  """An hparams probe of `runs` (name -> 'CONFIG_FILE[:VARIANT]'), each a
  workdir under tmp_path/runs named in config.train_runs."""
  dirs = [str(tmp_path / 'runs' / name) for name in runs]
  c = _probe_config('', 'hparams')
  c.sweep.num_points = 3
  c.hparams.checkpoints = tuple(dirs)
  c.train_runs = tuple(f'{d}={spec}' for d, spec in zip(dirs, runs.values()))
  return c, dirs


def _no_training(*a, **k):
  raise AssertionError('a run was trained before the input was checked')


@pytest.mark.slow
def test_train_runs_trains_only_what_is_missing(tmp_path, monkeypatch):
  f = _config_file(tmp_path)
  c, (done, missing, killed) = _runs_config(
      tmp_path, {'done': f, 'missing': f'{f}:lr0.1', 'killed': f'{f}:epochs2'})
  train_runner.run(_load_config_file(f), done)  # Trained by hand.
  train_runner.run(_load_config_file(f, 'epochs2'), killed,
                   stop_after=1)  # Pre-empted after epoch 1.
  calls, original = [], train_runner.run
  monkeypatch.setattr(train_runner, 'run', lambda cfg, w, **k: (
      calls.append(w), original(cfg, w, **k))[1])
  probe_runner.run(c, str(tmp_path / 'probe'))
  assert calls == [missing, killed]  # The finished run is not trained.
  assert checkpoint.epochs(killed)[-1] == 2  # Resumed to its last epoch.
  assert checkpoint.load_config(missing)['optim']['lr'] == 0.1
  res = _load(tmp_path / 'probe' / 'hparams' / 'results.json')
  assert [p['workdir'] for p in res['provenance']] == [done, missing, killed]
  assert [p['epoch'] for p in res['provenance']] == [1, 1, 2]
  probe_runner.run(c, str(tmp_path / 'probe'))  # Again: nothing to train.
  assert calls == [missing, killed]


_PROBE_CONFIG = '''
from valley_jax import defaults


def get_config(arg=None):
  return defaults.probe_config()
'''


@pytest.mark.parametrize('spec,error,match', [
    ('{b}={dir}/nothere.py', FileNotFoundError,
     r'train_runs\[1\].*nothere\.py.* does not exist'),
    ('{b}={f}:speed9', ValueError,
     r"train_runs\[1\].*Unknown config variant 'speed9'"),
    ('{b}={f}:bninit_flat', ValueError,
     r"train_runs\[1\].*Unknown bn_init 'flat'"),
    ('{b}={f}:lr-1', ValueError, r'train_runs\[1\].*config\.optim\.lr=-1'),
    ('{b}', ValueError, r'train_runs\[1\].*WORKDIR=CONFIG_FILE'),
    ('{b}={probe}', ValueError, r'train_runs\[1\].*not a training config'),
    ('{a}={f}:lr0.1', ValueError, r'train_runs\[1\].*names too'),
])
def test_bad_train_run_is_refused_before_training(tmp_path, monkeypatch,
                                                  spec, error, match):
  """The first entry is fine and missing: nothing is trained all the same."""
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  monkeypatch.setattr(train_runner, 'run', _no_training)
  f = _config_file(tmp_path)
  c, (a, b) = _runs_config(tmp_path, {'a': f, 'b': f})
  probe = _config_file(tmp_path, _PROBE_CONFIG, 'probe_cfg.py')
  c.train_runs = (c.train_runs[0],
                  spec.format(a=a, b=b, f=f, probe=probe, dir=tmp_path))
  with pytest.raises(error, match=match):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'runs').exists()
  assert not (tmp_path / 'probe').exists()


def test_missing_run_that_no_entry_trains_fails_first(tmp_path, monkeypatch):
  monkeypatch.setattr(train_runner, 'run', _no_training)
  f = _config_file(tmp_path)
  c, (_, b) = _runs_config(tmp_path, {'a': f, 'b': f})
  c.train_runs = c.train_runs[:1]  # Only a would be trained.
  with pytest.raises(FileNotFoundError,
                     match=r"config\.hparams.*/runs/b'.*holds no checkpoint"):
    probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'runs').exists()


def test_train_run_that_no_kind_measures_is_not_trained(tmp_path, caplog):
  f = _config_file(tmp_path)
  c, _ = _runs_config(tmp_path, {'a': f})
  c.kind = 'listing1'  # Measures no checkpoint.
  with caplog.at_level(logging.WARNING):
    kinds, plan = probe_runner._validate(c)
  assert kinds == ['listing1'] and plan == []
  assert 'which no kind' in caplog.text and 'not trained' in caplog.text


def test_library_example_of_probe_md_runs(trained_mlp, capsys):
  """docs/probe.md's 'As a library' block, on a tiny trained run (its
  training set has 512 images, so 500 recalibrate instead of 1,000)."""
  doc = (pathlib.Path(__file__).parents[1] / 'docs' / 'probe.md').read_text()
  code = doc.split('## As a library', 1)[1].split('```python\n', 1)[1]
  code = code.split('```', 1)[0]
  assert "'runs/default'" in code and 'ds.x_train, 1000, 100' in code
  code = code.replace("'runs/default'", repr(trained_mlp)).replace(
      'ds.x_train, 1000, 100', 'ds.x_train, 500, 100')
  exec(compile(code, 'probe.md', 'exec'), {})  # pylint: disable=exec-used
  errors = eval(capsys.readouterr().out)  # pylint: disable=eval-used
  assert len(errors) == 21 and errors[0.0] < 0.5


def test_findings_of_any_study_print():
  by_seeds = stats.finding('a > b', stats.summary([0.2, 0.3, 0.25]))
  one = stats.finding('one run', stats.summary([0.1]), expect='nonzero')
  boot = stats.finding('x < 0', stats.hierarchical_bootstrap(
      -np.ones((2, 4)), n_boot=20), expect='negative', statistic='x')
  text = probe_runner.findings_table([by_seeds, one, boot])
  rows = text.splitlines()
  assert rows[1].startswith('resolved') and '[+0.126, +0.374]' in rows[1]
  assert rows[1].rstrip().endswith('a > b') and ' 3 ' in rows[1]
  assert rows[2].startswith('NOT resolved') and 'no interval' in rows[2]
  assert '2×4' in rows[3] and rows[3].endswith('x < 0 (x)')


def test_kinds_without_valleys_print_no_err_table():
  """cuts, simplex, ensembles, paths and subspace set err_table False: their
  err+/err− columns would be NaN or meaningless."""
  lams = np.linspace(0, 3, 4)
  c = common.curve('radial', 'p', lams, np.ones((1, 4)), np.ones((1, 4)))
  found = stats.finding('w > 0', stats.summary([0.2, 0.3, 0.25]))
  with_valleys = probe_runner.table({'curves': [c]})
  assert 'all curves:' in with_valleys and 'radial' in with_valleys
  text = probe_runner.table({'curves': [c], 'err_table': False,
                             'findings': [found]})
  assert 'all curves:' not in text and 'w > 0' in text
  bare = probe_runner.table({'curves': [c], 'err_table': False})
  assert 'no err+/err− table' in bare


@pytest.mark.slow
def test_results_of_another_version_are_recomputed(trained_mlp, tmp_path,
                                                   monkeypatch, caplog):
  calls = []

  def fake(p, s):
    del p, s
    calls.append(1)
    lams = np.linspace(-1, 1, 5)
    e = (np.random.default_rng(0).random((3, 120, 5)) <
         np.where(lams > 0, 0.1, 0.4)).astype(float)
    c = common.curve('c', 'p', lams, e.mean(1), e.mean(1), error_SxNxP=e)
    return {'curves': [c], 'findings': [common.finding(
        'flatter', lams, [c], common.half_diff, expect='negative',
        statistic='err+ − err−')]}

  patch_study_run(monkeypatch, 'special', fake)
  c = _config(trained_mlp, 'special')
  path = probe_runner.run(c, str(tmp_path))['special']
  res = _load(path)
  assert res['version'] == probe_runner.RESULTS_VERSION == 4
  assert res['findings'][0]['resolved'] and res['evaluation'][
      'one_example'] == pytest.approx(1 / 120)
  assert not any(k.startswith('_') for k in res['curves'][0])
  probe_runner.run(c, str(tmp_path))
  assert len(calls) == 1  # Reused.
  res['version'] = 3
  (tmp_path / 'special' / 'results.json').write_text(json.dumps(res))
  with caplog.at_level(logging.WARNING):
    probe_runner.run(c, str(tmp_path))
  assert len(calls) == 2 and 'earlier version' in caplog.text
