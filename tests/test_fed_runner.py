"""valley_jax.fed.runner: a run end to end, exact resume, the table mode,
bad input."""

import json
import pathlib

import jax
import ml_collections
import numpy as np
import pytest

from valley_jax import (checkpoint, checks, data, defaults, fed, models,
                        outputs, sharding)
from valley_jax.core import steps
from valley_jax.fed import intervals, robust
from valley_jax.fed import runner as fed_runner


def _config(arg='', rounds=4):
  c = defaults.fed_offline('digits', arg)
  c.fed.update(num_clients=10, fraction=0.3, local_epochs=1, rounds=rounds)
  c.model.width = 0.25
  c.checkpoint_every = 2
  c.checkpoint_seconds = 0.0  # Every 2 rounds, however fast.
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
def test_checkpoint_seconds_skips_saves_and_resume_stays_exact(tmp_path):
  # Rounds of a few ms with checkpoint_seconds far above them: only the
  # last round is saved (beside step 0), and a run killed before it
  # starts again from step 0 and ends with the same global model.
  c = _config(rounds=4)
  c.checkpoint_seconds = 1e6
  full = fed_runner.run(c, str(tmp_path / 'full'))
  assert checkpoint.epochs(str(tmp_path / 'full')) == [0, 4]
  cut = str(tmp_path / 'cut')
  fed_runner.run(c, cut, stop_after=3)
  assert checkpoint.epochs(cut) == [0]
  again = fed_runner.run(c, cut)
  assert again['global_fingerprint'] == full['global_fingerprint']
  assert [r['round'] for r in _rows(cut)] == [1, 2, 3, 4]


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
  # The per-example correctness of the last-rounds window (all 5 rounds
  # here) and of the pooled-BN view survives the kill: rounds 1-2 kept,
  # 3 rewritten, 4-5 added, equal to the uninterrupted run's.
  kept, want = intervals.read(cut), intervals.read(str(tmp_path / 'full'))
  assert sorted(kept) == sorted(want)
  for k in want:
    np.testing.assert_array_equal(kept[k], want[k])
  # Their means are the accuracies the run reports: every round's, the
  # final one and the mean of the last rounds.
  for r in a:
    assert want[f"round{r['round']}"].mean() == r['test_accuracy']
  v = intervals.views(cut, [1, 2, 3, 4, 5])
  assert v['final'].mean() == again['final']['test_accuracy']
  assert v['last'].mean() == pytest.approx(
      robust.last_mean([r['test_accuracy'] for r in b], 10), abs=1e-12)
  assert v['pooled_recal'].mean() == again['final'][
      'pooled_recal_test_accuracy']


@pytest.mark.slow
def test_table_mode_layout_selection_and_resume(tmp_path, monkeypatch):
  c = _config('table,fedavg,fedsign,alpha0.5,gamma0.01,gamma0.1', rounds=1)
  c.table.seeds = (0, 1)
  out = fed_runner.main(c, str(tmp_path))
  assert [r['alpha'] for r in out['rows']] == [0.5]

  def final(algorithm, point, seed):
    cell = fed_runner.Cell(algorithm, 0.5, point, seed)
    return outputs.read_json(pathlib.Path(fed_runner.cell_dir(
        str(tmp_path), cell)) / 'results.json')

  res = final('fedsign', (('gamma', 0.1),), 1)
  assert res['hparams'] == {'gamma': 0.1, 'reduction': 'tensor_mean'}
  assert res['config']['fed']['hparams'] == res['hparams']
  assert res['config']['seed'] == 1 and res['config']['fed']['alpha'] == 0.5
  # Validation selection: 10% of digits' 1437 training images held out.
  assert res['partition']['held_out'] == 144
  assert sum(res['partition']['counts']) == 1437 - 144
  # The grid value with the larger mean validation accuracy is selected,
  # and its test accuracies are reported with the sample std.
  val = {g: np.mean([final('fedsign', (('gamma', g),), s)['final'][
      'val_accuracy'] for s in (0, 1)]) for g in (0.01, 0.1)}
  win = 0.01 if val[0.01] >= val[0.1] else 0.1
  accs = [final('fedsign', (('gamma', win),), s)['final']['test_accuracy']
          for s in (0, 1)]
  got = out['rows'][0]['fedsign']
  assert got['selected'] == {'gamma': win}
  assert got['mean'] == pytest.approx(np.mean(accs))
  assert got['std'] == pytest.approx(np.std(accs, ddof=1))
  md = (tmp_path / 'table.md').read_text()
  assert '| data | α | fedavg | fedsign |' in md
  # Mean ± sample std [95 % t interval], the selected value under it.
  assert (f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs, ddof=1):.2f} ["
          in md) and f"<br>gamma{win:g}" in md
  for text in ('sample std (ddof = 1) over seeds [0, 1]', 'selection: '
               'validation', 'gamma ∈ {0.01, 0.1}', 'code: ', 'K = 10'):
    assert text in md
  assert len(out['cells']) == 6 and out['cells'][0]['curve']['round'] == [1]
  assert (tmp_path / 'figure.png').exists()
  assert got['intervals']['final']['method'].startswith(
      'hierarchical bootstrap over 2 seeds and 360 examples')
  # Finished cells are not trained again (nothing compiled either), and
  # their per-example correctness is read back, not evaluated again.
  monkeypatch.setattr(fed, 'make_round', lambda *a, **k: (
      lambda s, cl, t: pytest.fail('a finished cell trained again')))
  monkeypatch.setattr(steps, 'evaluate_per_example', lambda *a, **k: (
      pytest.fail('a finished cell evaluated again')))
  monkeypatch.setattr(fed_runner._Evaluator, 'pooled_weights',
                      lambda *a, **k: pytest.fail('BN recalibrated again'))
  again = fed_runner.main(c, str(tmp_path))
  assert again['timing']['compiles_per_algorithm'] == {'fedavg': 0,
                                                       'fedsign': 0}
  assert ({k: v for k, v in again.items() if k != 'timing'} ==
          {k: v for k, v in out.items() if k != 'timing'})


def _runs(scores_by_point):
  """Cell records with given final accuracies: {gamma: [(val, test), ...]}."""
  return [{'algorithm': 'fedsign', 'alpha': 0.5, 'point': {'gamma': g},
           'seed': s, 'final': {'val_accuracy': v, 'test_accuracy': t}}
          for g, pairs in scores_by_point.items()
          for s, (v, t) in enumerate(pairs)]


def test_selection_picks_the_value_computed_by_hand():
  runs = _runs({0.001: [(0.90, 0.80), (0.80, 0.84)],   # val 0.85, test 0.82
                0.01: [(0.86, 0.70), (0.86, 0.72)],    # val 0.86, test 0.71
                0.1: [(0.50, 0.95), (None, 0.95)]})    # diverged on val
  assert fed_runner.select(runs, 'validation')['point'] == {'gamma': 0.01}
  assert fed_runner.select(runs, 'test')['point'] == {'gamma': 0.1}
  c = defaults.fed_offline('digits', 'table,fedsign,alpha0.5,seed0,seed1')
  c.table.grids.fedsign.gamma = (0.001, 0.01, 0.1)
  row = fed_runner.summarize(c, runs)['rows'][0]['fedsign']
  assert row['selected'] == {'gamma': 0.01}
  assert row['mean'] == pytest.approx(0.71)
  assert row['std'] == pytest.approx(0.02 / 2 ** 0.5)  # |a−b|/√2, ddof=1.
  assert row['scores']['gamma0.1'] is None
  c.table.selection = 'test'
  assert fed_runner.summarize(c, runs)['rows'][0]['fedsign']['mean'] == 0.95
  # Equal scores: the value listed first wins.
  tie = _runs({0.1: [(0.5, 0.1)], 0.01: [(0.5, 0.2)]})
  assert fed_runner.select(tie, 'validation')['point'] == {'gamma': 0.1}


def test_command_line_overrides_reach_every_cell():
  from absl import flags
  from ml_collections import config_flags
  argv = ['fedsim.py', '--config=configs/fed_digits.py:table',
          '--config.fed.rounds=3', '--config.table.hparams.moon.tau=0.3',
          '--config.table.grids.fedsign.gamma=(0.1,)',
          '--config.table.grids.fedprox.mu=(0.5,2.0)',
          '--config.table.selection=test']
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv, sys_argv=argv)
  fv(argv)
  c = fv.config
  fed_runner.validate(c)
  cells = fed_runner.cells(c)
  # α × seeds × points: FedAvg, FedProx's 2, MOON's and FedDyn's default
  # grids of 3, FedPAN, FedSign's 1.
  assert len(cells) == 3 * 5 * (1 + 2 + 3 + 3 + 1 + 1)
  for cell in cells:
    cc = fed_runner.cell_config(c, cell)
    assert cc.fed.rounds == 3 and cc.fed.holdout == 0.0  # 'test': no hold-out.
    hp = cc.fed.hparams
    if cell.algorithm == 'moon':
      assert hp.tau == 0.3 and hp.mu == dict(cell.point)['mu']
    if cell.algorithm == 'fedsign':
      assert hp.gamma == 0.1
    if cell.algorithm == 'fedprox':
      assert hp.mu == dict(cell.point)['mu'] and hp.mu in (0.5, 2.0)


def test_named_options_as_variants_reach_the_run():
  """fed.hparams starts empty, so a flag cannot add these: variants do."""
  c = defaults.fed_offline('digits', 'moon,classifier_representation,'
                                     'first_negative_global')
  alg = fed_runner.validate(c)
  assert (alg.hparams['classifier'], alg.hparams['first_negative']) == (
      'representation', 'global')
  c = defaults.fed_offline('digits', 'feddyn,alpha_scaling_none,alpha0.1')
  assert fed_runner.validate(c).hparams['alpha_scaling'] == 'none'
  assert c.fed.alpha == 0.1  # The Dirichlet α, not FedDyn's.
  assert defaults.fed_offline('digits', 'fedbn,bn_first_average'
                              ).fed.bn_first == 'average'
  with pytest.raises(ValueError, match=r"classifier='head' must be one of"):
    fed_runner.validate(defaults.fed_offline('digits', 'moon,classifier_head'))


def test_table_variants_set_the_table_axes():
  c = defaults.fed_offline('digits', 'table,fedsign,fedavg,alpha0.5,alpha10,'
                                     'seed3,gamma0.1,rounds2')
  assert (c.mode, c.fed.rounds) == ('table', 2)
  assert c.table.algorithms == ('fedsign', 'fedavg')
  assert c.table.alphas == (0.5, 10.0) and c.table.seeds == (3,)
  assert c.table.grids.fedsign.gamma == (0.1,)
  assert defaults.fed_offline('digits', 'table,fedsign,reduction_sum'
                              ).table.hparams.fedsign.reduction == 'sum'
  moon = defaults.fed_offline('digits', 'table,moon,mu0.5')
  assert moon.table.grids.moon.mu == (0.5,)
  with pytest.raises(ValueError, match=r"mu is a hyperparameter of "
                     r"\['fedprox', 'moon'\].*Name one algorithm"):
    defaults.fed_offline('digits', 'table,mu0.1')


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
    ('table', {'fed.holdout': 0.2}, 'set --config.table.holdout'),
    ('table', {'hparams.fedsign.gamma': 0.1}, r'both set gamma.*grids\.'
     r"fedsign\.gamma='\(0\.1,\)'"),
    ('table', {'grids.fedavg': {'mu': (0.1,)}},
     'fedavg has no hyperparameter'),
    ('table', {'grids.fedprox.mu': (0.1, 0.1)}, 'distinct values'),
    ('table', {'grids.fedsign.gamma': (-1.0,)}, r'grids\.fedsign\.gamma'),
    ('table', {'selection': 'best'}, "'validation', 'test'"),
])
def test_table_grid_and_ignored_settings_are_refused(tmp_path, arg, update,
                                                     match):
  c = defaults.fed_offline('digits', arg)
  (key, value), = update.items()  # 'fed.x.y' or a path below config.table.
  *path, last = key.split('.')
  node = c if path[:1] == ['fed'] else c.table
  for k in path:
    node = node[k]
  # As --config.fed.hparams.gamma=0.1 or a config file sets it.
  node[last] = (ml_collections.ConfigDict(value) if isinstance(value, dict)
                else value)
  with pytest.raises(ValueError, match=match):
    fed_runner.main(c, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_fedbn_client_view_equals_each_clients_model_by_hand():
  """Each trained client = global weights with its own BN layers, evaluated
  on the test set; clients that never trained are left out."""
  c = _config('fedbn')
  ds = data.from_config(c.data)
  model = models.build_model('mlp', 10, width=0.25, bn=True)
  v = steps.init_variables(model, jax.random.key(0),
                           ds.input_shape)
  alg = fed.build_algorithm('fedavg')
  server, clients = fed.init_states(alg, model, v, 3, input_shape=(64,),
                                    key=None, bn_policy='local')
  scale = np.array([1.0, 3.0, 0.5])  # Client k's BN: θ0's times scale[k].
  clients = clients.replace(
      local=jax.tree.map(
          lambda a: a * scale.reshape((3,) + (1,) * (a.ndim - 1)),
          clients.local),
      rounds=np.array([0, 2, 1], np.int32))
  ev = fed_runner._Evaluator(c, model, ds, sharding.make_mesh(1))
  got = ev.clients(server.weights, clients)
  x = (ds.x_test - np.asarray(ds.mean)) / np.asarray(ds.std)
  acc, loss = [], []
  for k in (1, 2):
    p = {'params': dict(v['params']), 'batch_stats': {}}
    for name, leaves in v['params'].items():
      if name.startswith('bn'):
        p['params'][name] = {n: a * scale[k] for n, a in leaves.items()}
    p['batch_stats'] = {n: {m: a * scale[k] for m, a in s.items()}
                        for n, s in v['batch_stats'].items()}
    logits = np.asarray(model.apply(p, x, train=False), np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    acc.append(np.mean(logits.argmax(1) == ds.y_test))
    loss.append(-np.mean(logp[np.arange(len(ds.y_test)), ds.y_test]))
  assert got['clients_evaluated'] == 2
  assert got['client_test_accuracy'] == pytest.approx(np.mean(acc))
  assert got['client_test_loss'] == pytest.approx(np.mean(loss), rel=1e-5)
