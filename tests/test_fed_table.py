"""fedsim's table: one compilation per algorithm, cells equal to single runs,
every real step counted, the robust views and verdicts (fed/robust.py)."""

import json
import math
import pathlib

import numpy as np
import pytest

from valley_jax import checkpoint, defaults, outputs
from valley_jax.fed import robust
from valley_jax.fed import runner as fed_runner


def _config(arg: str, rounds: int = 2):
  c = defaults.fed_offline('digits', arg)
  c.fed.update(num_clients=10, fraction=0.3, local_epochs=1, rounds=rounds)
  c.model.width = 0.25
  c.checkpoint_every = 2
  c.checkpoint_seconds = 0.0  # Every 2 rounds, however fast.
  c.compile_cache = 'none'
  return c


@pytest.fixture(scope='module')
def small_table(tmp_path_factory):
  """fedavg and fedsign (γ ∈ {0.01, 0.1}) × α ∈ {10, 0.5} × seeds 0, 1:
  12 cells of 2 rounds."""
  c = _config('table,fedavg,fedsign,alpha10,alpha0.5,gamma0.01,gamma0.1')
  c.table.seeds = (0, 1)
  workdir = str(tmp_path_factory.mktemp('table'))
  opened = []
  real = checkpoint.manager

  def recording(*args, **kwargs):  # Notes whether each manager is closed.
    mngr = real(*args, **kwargs)
    close, state = mngr.close, {'closed': False}

    def closing():
      state['closed'] = True
      close()

    mngr.close = closing
    opened.append(state)
    return mngr

  with pytest.MonkeyPatch.context() as m:
    m.setattr(checkpoint, 'manager', recording)
    out = fed_runner.main(c, workdir)
  return c, workdir, {**out, '_managers': opened}


@pytest.mark.slow
def test_one_compilation_per_algorithm(small_table):
  _, workdir, out = small_table
  timing = out['timing']
  # 4 fedavg cells and 8 fedsign cells (2 seeds, 2 α, 2 γ): one program
  # each, however many seeds, α and γ values share it.
  assert timing['compiles_per_algorithm'] == {'fedavg': 1, 'fedsign': 1}
  assert len(out['cells']) == 12
  assert 0 < timing['compile_seconds'] < timing['seconds']
  assert math.isclose(timing['run_seconds'],
                      timing['seconds'] - timing['compile_seconds'],
                      abs_tol=0.02)
  saved = json.loads((pathlib.Path(workdir) / 'table.json').read_text())
  assert saved['timing']['compiles_per_algorithm'] == {'fedavg': 1,
                                                       'fedsign': 1}


@pytest.mark.slow
def test_real_steps_are_every_sampled_clients_own(small_table):
  # Σ over cells and rounds of E·⌈n_k/B⌉ for the clients each round
  # sampled, from metrics.jsonl and partition.json: the engine's count.
  c, _, out = small_table
  want = 0
  for cell in out['cells']:
    counts = outputs.read_json(pathlib.Path(cell['workdir']) /
                               'partition.json')['counts']
    for row in outputs.read_jsonl(pathlib.Path(cell['workdir']) /
                                  'metrics.jsonl'):
      want += sum(c.fed.local_epochs * -(-counts[k] // c.fed.batch_size)
                  for k in row['clients'])
  timing = out['timing']
  assert timing['real_steps'] == want
  assert timing['computed_steps'] >= want
  assert timing['real_step_share'] == pytest.approx(
      want / timing['computed_steps'])


@pytest.mark.slow
def test_a_cell_equals_its_single_run(small_table, tmp_path):
  c, workdir, out = small_table
  cell = fed_runner.Cell('fedsign', 0.5, (('gamma', 0.1),), 1)
  res = fed_runner.run(fed_runner.cell_config(c, cell), str(tmp_path))
  mine = outputs.read_json(pathlib.Path(fed_runner.cell_dir(workdir, cell))
                           / 'results.json')
  assert res['final']['test_accuracy'] == mine['final']['test_accuracy']
  assert res['final']['val_accuracy'] == mine['final']['val_accuracy']
  assert res['global_fingerprint'] == mine['global_fingerprint']
  assert checkpoint.epochs(str(tmp_path)) == [0, 2]


@pytest.mark.slow
def test_every_cell_ends_with_its_saves_and_metrics_written(small_table):
  # A table closes each cell's Orbax managers one batch later (their saves
  # are written while the next cells train) and appends metrics.jsonl a
  # row per round: once it returns, every cell's last round and global
  # model are on disk and its metrics file is the checkpoint's history.
  c, _, out = small_table
  for cell in out['cells']:
    folder = pathlib.Path(cell['workdir'])
    assert checkpoint.epochs(str(folder)) == [0, c.fed.rounds]
    exported = checkpoint.manager(str(folder / checkpoint.FED_GLOBAL_MODEL),
                                  read_only=True, arrays=('model',))
    assert exported.all_steps() == [c.fed.rounds]
    mngr = checkpoint.manager(str(folder), read_only=True,
                              arrays=('server', 'clients'))
    stored = checkpoint.stored_meta(mngr, c.fed.rounds)['metrics']
    assert outputs.read_jsonl(folder / 'metrics.jsonl') == stored
    assert [r['round'] for r in stored] == list(range(1, c.fed.rounds + 1))
    assert not list(folder.rglob('*tmp*'))


@pytest.mark.slow
def test_a_table_closes_every_checkpoint_manager_it_opens(small_table):
  # Cells hand their managers on to be closed one batch later; none may be
  # left open (saves unwritten, files open) once the table returns.
  _, _, out = small_table
  opened = out['_managers']
  # Per cell its run's manager and its global model's.
  assert len(opened) >= 2 * len(out['cells'])
  assert all(state['closed'] for state in opened)


def test_collapsed_final_round_is_flagged_and_views_reported():
  # Seed 1's last round falls from ~0.96 to 0.68: flagged (threshold 0.1),
  # and the last-rounds mean moves much less than the final number.
  c = defaults.fed_offline('digits', 'table,fedavg,alpha10,seed0,seed1')
  curves = {0: [0.95, 0.96, 0.96, 0.97], 1: [0.96, 0.97, 0.96, 0.68]}
  runs = [{'algorithm': 'fedavg', 'alpha': 10.0, 'point': {}, 'seed': s,
           'final': {'test_accuracy': v[-1], 'val_accuracy': v[-1],
                     'pooled_recal_test_accuracy': 0.97},
           'curve': {'round': [1, 2, 3, 4], 'test_accuracy': v,
                     'val_accuracy': v}, 'held_out': 144}
          for s, v in curves.items()]
  out = fed_runner.summarize(c, runs)
  e = out['rows'][0]['fedavg']
  assert e['collapsed_seeds'] == [1]
  assert e['mean'] == pytest.approx((0.97 + 0.68) / 2)
  assert e['last']['mean'] == pytest.approx(
      (np.mean(curves[0]) + np.mean(curves[1])) / 2)
  assert e['pooled_recal']['mean'] == pytest.approx(0.97)
  lo, hi = e['final']['ci']
  assert 0.0 <= lo < e['mean'] < hi <= 1.0  # Clipped to [0, 1].
  md = fed_runner.markdown(out)
  assert '†[1]' in md and 'a view a server does not have' in md
  assert robust.collapsed([0.96, 0.97, 0.96, 0.90], 10, 0.1) is False


def test_selection_by_last_rounds_with_ties():
  # γ = 0.1 wins the final round on one lucky round; the last-rounds mean
  # picks γ = 0.01; γ = 0.001 is within one held-out example (1/144).
  def runs(g, curve):
    return [{'algorithm': 'fedsign', 'alpha': 0.5, 'point': {'gamma': g},
             'seed': s, 'final': {'val_accuracy': curve[-1]},
             'curve': {'val_accuracy': curve}} for s in (0, 1)]

  rs = (runs(0.1, [0.5, 0.5, 0.9]) + runs(0.01, [0.8, 0.8, 0.8]) +
        runs(0.001, [0.8, 0.8, 0.8 - 0.5 / 144 * 3]))
  assert fed_runner.select(rs, 'validation')['point'] == {'gamma': 0.1}
  sel = fed_runner.select(rs, 'validation', last=3, resolution=1 / 144)
  assert sel['point'] == {'gamma': 0.01}
  assert sel['tied'] == ['gamma0.01', 'gamma0.001']


def test_a_verdict_flips_with_the_difference():
  base = {0: 0.90, 1: 0.91, 2: 0.92}
  up = robust.paired_finding('fedsign', 0.5, 'final',
                             {0: 0.93, 1: 0.94, 2: 0.96}, base)
  assert up['resolved'] and up['mean'] == pytest.approx(0.1 / 3)
  mixed = robust.paired_finding('fedsign', 0.5, 'final',
                                {0: 0.93, 1: 0.90, 2: 0.92}, base)
  assert not mixed['resolved']
  assert up['claim'] == 'fedsign > fedavg at α = 0.5'


# Settings fedsim used to ignore silently (issue 27): refused before work.
@pytest.mark.parametrize('arg,update,match', [
    ('rounds2,moon,feddyn', None, r'names 2 algorithms'),
    ('table', lambda c: c.table.grids.update({'fedsgin': {'gamma': (0.1,)}}),
     r'grids\.fedsgin: unknown algorithm'),
    ('bn_first_average', None, r'bn_first=.average.*fedbn'),
])
def test_silently_ignored_settings_are_refused(arg, update, match):
  with pytest.raises(ValueError, match=match):
    c = defaults.fed_offline('digits', arg)
    if update:
      update(c)
    fed_runner.validate(c)


def test_a_grid_of_an_algorithm_outside_the_table_warns(caplog):
  c = defaults.fed_offline('digits', 'table,fedavg,fedsign')
  assert sorted(c.table.grids) == ['fedsign']  # The others' are dropped.
  c.table.grids.moon = {'mu': (0.1, 1.0)}
  with caplog.at_level('WARNING'):
    fed_runner.validate(c)
  assert 'config.table.grids.moon is ignored' in caplog.text


def test_a_config_flag_given_twice_is_refused():
  from valley_jax import cli  # pylint: disable=g-import-not-at-top
  with pytest.raises(Exception, match=r'--config\.table\.seeds is given '
                     'twice'):
    cli.check_repeated_flags(['--config.table.seeds=(0,1)', '--workdir=x',
                              '--config.table.seeds=(2,)'])
  cli.check_repeated_flags(['--config.seed=1', '--config.fed.rounds=2'])


@pytest.mark.slow
def test_cells_run_side_by_side_match_cells_run_alone(small_table,
                                                      tmp_path):
  # table.batch_runs=2: fedsign's two γ of seed 1 at α = 0.5 vmapped in one
  # program (evaluated side by side too) give the cells run one after
  # another, to float rounding (one compile, of the batched program).
  c, workdir, _ = small_table
  c = c.copy_and_resolve_references()
  c.table.update(algorithms=('fedsign',), alphas=(0.5,), seeds=(1,),
                 batch_runs=2)
  out = fed_runner.main(c, str(tmp_path))
  assert out['timing']['batch_runs'] == {'fedsign': 2}
  assert out['timing']['compiles_per_algorithm'] == {'fedsign': 1}
  for cell in out['cells']:
    alone = outputs.read_json(pathlib.Path(fed_runner.cell_dir(
        workdir, fed_runner.Cell('fedsign', 0.5, tuple(
            cell['point'].items()), 1))) / 'results.json')['final']
    for key in ('test_loss', 'val_loss'):
      assert cell['final'][key] == pytest.approx(alone[key], rel=1e-4)
    assert abs(cell['final']['test_accuracy'] -
               alone['test_accuracy']) <= 1 / 360 + 1e-9


def test_fedsign_mean_of_per_tensor_means_by_hand():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from valley_jax.fed import fedsign  # pylint: disable=g-import-not-at-top
  p = {'a': jnp.array([0.0, 1.0, 2.0, 3.0]), 'b': jnp.array([[-1.0, 2.0]])}
  anchor = {'a': jnp.array([1.0, -1.0, 0.0, 1.0]),
            'b': jnp.array([[-1.0, -1.0]])}
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  r_a = [sig(0.0), sig(-1.0), 0.0, sig(3.0)]  # θt_i = 0: no term.
  r_b = [sig(1.0), sig(-2.0)]
  got = fedsign.sign_reward(p, anchor, 'mean_of_means')
  assert float(got) == pytest.approx((np.mean(r_a) + np.mean(r_b)) / 2,
                                     rel=1e-6)
  assert float(fedsign.sign_reward(p, anchor, 'tensor_mean')) == (
      pytest.approx((sum(r_a) + sum(r_b)) / 2, rel=1e-6))


@pytest.mark.slow
def test_pfl_benchmark_config_runs_offline(tmp_path):
  # pfl-research's CIFAR-10 protocol on random CIFAR-shaped data, scaled
  # to 50 clients of 50 images and 2 rounds.
  c = defaults.fed_pfl_cifar10('synthetic,rounds2,clients50')
  c.data.kwargs.update(n_train=2500, n_test=200)
  c.compile_cache = 'none'
  full = defaults.fed_pfl_cifar10()
  assert (full.fed.num_clients, full.fed.fraction, full.fed.rounds,
          full.fed.local_epochs, full.fed.batch_size, full.optim.lr,
          full.eval.every, full.model.name, full.fed.partition) == (
              1000, 0.05, 1500, 1, 10, 0.1, 10, 'pfl_cnn', 'iid')
  res = fed_runner.run(c, str(tmp_path))
  assert res['finished'] and res['partition']['counts'] == [50] * 50
  assert 0.0 <= res['final']['test_accuracy'] <= 1.0
