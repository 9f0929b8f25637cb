"""valley_jax.fed.runner: a run end to end, exact resume, the table mode,
bad input."""

import json
import pathlib

import numpy as np
import pytest

from valley_jax import checkpoint, checks, defaults, fed, outputs
from valley_jax.fed import runner as fed_runner


def _config(arg='', rounds=4):
  c = defaults.fed_offline('digits', arg)
  c.fed.update(num_clients=10, fraction=0.3, local_epochs=1, rounds=rounds)
  c.model.width = 0.25
  c.checkpoint_every = 2
  return c


def _rows(workdir):
  return [json.loads(line) for line in
          pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_run_writes_metrics_partition_results(tmp_path):
  c = _config()
  res = fed_runner.run(c, str(tmp_path))
  rows = _rows(tmp_path)
  assert [r['round'] for r in rows] == [1, 2, 3, 4]
  for r in rows:
    assert {'test_accuracy', 'test_loss', 'train_loss', 'sign_consistency',
            'drift', 'clients', 'seconds'} <= set(r)
    assert len(r['clients']) == 3 and len(set(r['clients'])) == 3
    assert 0.5 < r['sign_consistency'] <= 1 and r['drift'] > 0
  part = outputs.read_json(tmp_path / 'partition.json')
  assert sum(part['counts']) == 1437  # Every digits training sample once.
  assert np.sum(part['histogram']) == 1437
  assert res['finished'] and res['final']['round'] == 4
  assert res['final']['test_accuracy'] == rows[-1]['test_accuracy']
  for name in ('figure.png', 'figure.pdf', 'partition.png', 'results.json'):
    assert (tmp_path / name).exists()
  assert checkpoint.epochs(str(tmp_path)) == [0, 4]


@pytest.mark.slow
def test_fedavg_on_digits_rises_well_above_chance(tmp_path):
  c = defaults.fed_offline('digits', 'alpha0.5,rounds5')
  assert c.fed.num_clients == 20 and c.fed.algorithm == 'fedavg'
  fed_runner.run(c, str(tmp_path))
  acc = [r['test_accuracy'] for r in _rows(tmp_path)]
  assert acc[-1] > 0.6, acc  # Chance is 0.1.


@pytest.mark.slow
@pytest.mark.parametrize('algorithm', ['scaffold', 'moon'])
def test_killed_run_resumes_to_the_same_global_model(tmp_path, algorithm):
  """Per-client states (SCAFFOLD's c_k, MOON's previous model) included."""
  c = _config(algorithm, rounds=5)
  full = fed_runner.run(c, str(tmp_path / 'full'))
  cut = str(tmp_path / 'cut')
  fed_runner.run(c, cut, stop_after=3)  # Killed after round 3 (saved: 2).
  assert checkpoint.epochs(cut) == [0, 2]
  (pathlib.Path(cut) / 'metrics.jsonl').write_text('{"round": 1, "te')
  again = fed_runner.run(c, cut)
  assert again['global_fingerprint'] == full['global_fingerprint']
  a, b = _rows(tmp_path / 'full'), _rows(cut)
  assert [r['round'] for r in b] == [1, 2, 3, 4, 5]
  assert [r['test_loss'] for r in a] == [r['test_loss'] for r in b]
  assert [r['clients'] for r in a] == [r['clients'] for r in b]


@pytest.mark.slow
def test_table_mode_layout_and_resume(tmp_path, monkeypatch):
  c = _config('table', rounds=1)
  c.table.update(algorithms=('fedavg', 'fedsign'), alphas=(0.5,),
                 seeds=(0, 1))
  c.table.hparams = {'fedsign': {'gamma': 0.01}}
  out = fed_runner.main(c, str(tmp_path))
  assert [r['alpha'] for r in out['rows']] == [0.5]
  cell = outputs.read_json(
      pathlib.Path(fed_runner.cell_dir(str(tmp_path), 'fedsign', 0.5, 1)) /
      'results.json')
  assert cell['hparams'] == {'gamma': 0.01, 'reduction': 'tensor_mean'}
  assert cell['config']['fed']['hparams'] == cell['hparams']
  assert cell['config']['seed'] == 1 and cell['config']['fed']['alpha'] == 0.5
  accs = [outputs.read_json(pathlib.Path(fed_runner.cell_dir(
      str(tmp_path), 'fedavg', 0.5, s)) / 'results.json')['final'][
          'test_accuracy'] for s in (0, 1)]
  got = out['rows'][0]['fedavg']
  assert got['mean'] == pytest.approx(np.mean(accs))
  assert got['std'] == pytest.approx(np.std(accs))
  md = (tmp_path / 'table.md').read_text()
  assert md.splitlines()[0] == '| data | α | fedavg | fedsign |'
  assert f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f}" in md
  # Finished cells are not trained again.
  monkeypatch.setattr(fed, 'make_round', lambda *a, **k: (
      lambda s, cl, t: pytest.fail('a finished cell trained again')))
  assert fed_runner.main(c, str(tmp_path)) == out


@pytest.mark.slow
def test_table_cell_with_other_config_is_refused(tmp_path, monkeypatch):
  c = _config('table', rounds=1)
  c.table.update(algorithms=('fedavg',), alphas=(0.5,), seeds=(0,))
  fed_runner.main(c, str(tmp_path))
  c.optim.lr = 0.01
  monkeypatch.setattr(fed, 'make_round', _no_compile)
  with pytest.raises(ValueError, match=r'Table cell .*fedavg.*optim\.lr'):
    fed_runner.main(c, str(tmp_path))


@pytest.mark.slow
def test_nonfinite_round_stops(tmp_path):
  c = _config(rounds=2)
  c.optim.lr = 1e30
  with pytest.raises(checks.NonFiniteLossError, match=r'round 1\b'):
    fed_runner.run(c, str(tmp_path))
  assert checkpoint.epochs(str(tmp_path)) == [0]


def _no_compile(*a, **k):
  raise AssertionError('compiled before the input was checked')


@pytest.mark.parametrize('key,value,match', [
    ('fed.alpha', 0.0, r'config\.fed\.alpha=0\.0 must be'),
    ('fed.alpha', -1.0, r'config\.fed\.alpha'),
    ('fed.fraction', 0.0, r'config\.fed\.fraction'),
    ('fed.fraction', 1.5, r'config\.fed\.fraction'),
    ('fed.num_clients', 5000, r'config\.fed\.num_clients'),
    ('fed.batch_size', 0, r'config\.fed\.batch_size'),
    ('fed.algorithm', 'fedsgd', r'config\.fed\.algorithm'),
    ('fed.min_size', 200, r'config\.fed\.min_size'),
    ('fed.hparams', {'gamma': -0.1}, r'config\.fed\.hparams\.gamma'),
    ('fed.hparams', {'reduction': 'mean'},
     r"config\.fed\.hparams\.reduction='mean' must be one of 'tensor_mean'"),
    ('fed.partition', 'shards', r'config\.fed\.partition'),
    ('fed.bn_policy', 'none', r'config\.fed\.bn_policy'),
    ('fed.rounds', 0, r'config\.fed\.rounds'),
    ('optim.lr', float('nan'), r'config\.optim\.lr'),
])
def test_bad_input_named_before_compiling(tmp_path, monkeypatch, key, value,
                                          match):
  monkeypatch.setattr(fed, 'make_round', _no_compile)
  monkeypatch.setattr(fed, 'init_states', _no_compile)
  c = _config('fedsign' if 'hparams' in key else '')
  section, name = key.split('.')
  if name == 'hparams':
    c.fed.hparams = value
  else:
    c[section][name] = value
  with pytest.raises(ValueError, match=match):
    fed_runner.run(c, str(tmp_path))


def test_unsatisfiable_partition_names_alpha_k_min_size(tmp_path,
                                                        monkeypatch):
  monkeypatch.setattr(fed, 'make_round', _no_compile)
  c = _config()
  c.fed.update(alpha=0.01, num_clients=100, min_size=10)
  with pytest.raises(ValueError, match=r'(?s)alpha.*num_clients.*min_size'):
    fed_runner.run(c, str(tmp_path))


def test_fed_configs_are_checked_and_complete():
  for arg in ('', 'fedsign,gamma0.1,alpha10', 'moon', 'table'):
    c = defaults.fed_offline('digits', arg)
    assert checks.unchecked(c, checks.FED_FIELDS) == []
    fed_runner.validate(c)
  c = defaults.apply_fed_variant(defaults.fed_config('resnet20', 'cifar10'),
                                 'alpha0.5,fedprox,mu0.01,vgg11')
  assert (c.fed.alpha, c.fed.algorithm, c.fed.hparams.mu, c.model.name) == (
      0.5, 'fedprox', 0.01, 'vgg11')
  assert (c.fed.num_clients, c.fed.fraction, c.fed.local_epochs,
          c.fed.batch_size, c.fed.rounds) == (100, 0.1, 5, 64, 200)
  with pytest.raises(ValueError, match='Unknown fed config variant'):
    defaults.apply_fed_variant(c, 'beta3')


@pytest.mark.slow
def test_other_config_refused_then_overwritten(tmp_path):
  c = _config(rounds=1)
  fed_runner.run(c, str(tmp_path))
  c.optim.lr = 0.01
  with pytest.raises(ValueError, match=r'different config.*optim\.lr'):
    fed_runner.run(c, str(tmp_path))
  res = fed_runner.run(c, str(tmp_path), overwrite=True)
  assert res['config']['optim']['lr'] == 0.01
  assert [r['round'] for r in _rows(tmp_path)] == [1]
  c.eval.batch_size = 120  # Resume-safe keys may change.
  assert fed_runner.run(c, str(tmp_path))['finished']


def test_single_run_variants_refused_in_table_mode():
  for arg in ('table,fedsign', 'table,alpha0.1', 'table,seed3',
              'fedsign,gamma0.1,table'):
    with pytest.raises(ValueError, match=r'with table: table mode runs'):
      defaults.fed_offline('digits', arg)
  assert defaults.fed_offline('digits', 'table,rounds2').fed.rounds == 2


@pytest.mark.slow
def test_stored_config_names_default_hparams(tmp_path):
  """A FedSign run of reduction 'sum' is not resumed under the command that
  now means 'tensor_mean' (the default since 2026-12-02)."""
  c = _config('fedsign', rounds=1)
  c.fed.hparams = {'gamma': 0.01, 'reduction': 'sum'}
  fed_runner.run(c, str(tmp_path))
  c.fed.hparams = {'gamma': 0.01}
  with pytest.raises(ValueError,
                     match=r'different config.*fed\.hparams\.reduction'):
    fed_runner.run(c, str(tmp_path))


@pytest.mark.slow
def test_refused_rerun_leaves_the_partition_files(tmp_path):
  fed_runner.run(_config(rounds=1), str(tmp_path))
  names = ('partition.json', 'partition.png')
  before = {n: (tmp_path / n).read_bytes() for n in names}
  with pytest.raises(ValueError, match='different config'):
    fed_runner.run(_config('alpha0.1', rounds=1), str(tmp_path))
  assert {n: (tmp_path / n).read_bytes() for n in names} == before


def test_fedbn_without_bn_is_refused(tmp_path):
  c = _config('fedbn', rounds=1)
  c.model.bn = False
  with pytest.raises(ValueError, match='has no BatchNorm'):
    fed_runner.run(c, str(tmp_path))
  assert not checkpoint.epochs(str(tmp_path))


@pytest.mark.slow
def test_resume_with_another_chunk_is_refused(tmp_path):
  c = _config(rounds=4)
  fed_runner.run(c, str(tmp_path), stop_after=2)
  c.fed.chunk = 1
  with pytest.raises(ValueError, match=r'different config.*fed\.chunk'):
    fed_runner.run(c, str(tmp_path))


@pytest.mark.slow
def test_extended_run_equals_a_run_of_the_new_length(tmp_path):
  full = fed_runner.run(_config(rounds=4), str(tmp_path / 'full'))
  fed_runner.run(_config(rounds=2), str(tmp_path / 'ext'))
  ext = fed_runner.run(_config(rounds=4), str(tmp_path / 'ext'))
  assert ext['global_fingerprint'] == full['global_fingerprint']
  assert [r['round'] for r in _rows(tmp_path / 'ext')] == [1, 2, 3, 4]
  with pytest.raises(ValueError, match='different config'):
    fed_runner.run(_config(rounds=3), str(tmp_path / 'ext'))  # Shorter.


@pytest.mark.parametrize('arg,update,match', [
    ('table', dict(seeds=()), 'config.table.seeds is empty'),
    ('table', dict(seeds=(0, 0)), 'repeats a value'),
    ('table', dict(alphas=(0.5, 0.5)), 'repeats a value'),
    ('table', {'fed.hparams': {'gamma': 0.1}}, 'ignored in table mode'),
])
def test_table_grid_and_ignored_settings_are_refused(tmp_path, arg, update,
                                                     match):
  c = defaults.fed_offline('digits', arg)
  if 'fed.hparams' in update:  # As --config.fed.hparams.gamma=0.1 sets it.
    c.fed.hparams = update['fed.hparams']
  else:
    c.table.update(update)
  with pytest.raises(ValueError, match=match):
    fed_runner.main(c, str(tmp_path))
  assert not any(tmp_path.iterdir())
