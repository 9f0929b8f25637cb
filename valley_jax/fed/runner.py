"""run(config, workdir) and table(config, workdir): the federated simulator.

`run` simulates one federated training (the paper's Algorithm 1 with any
algorithm of `valley_jax.fed`) and writes into `workdir`:
* `partition.json` and `partition.png/pdf`: every client's label histogram
  and the mean per-client label entropy;
* `metrics.jsonl`: one line per round with the global model's test accuracy
  and loss, the participants' mean local train loss, their mean sign
  consistency ratio with θt, their mean drift ||θ^k − θt||, the sampled
  clients and the seconds the round took;
* `checkpoints/<round>/`: Orbax checkpoints of the server state and all K
  per-client states every `config.checkpoint_every` rounds;
* `results.json` and `figure.png/pdf` (test accuracy against rounds).
A run killed at any point and started again with the same command resumes
from its last checkpoint and ends with the same global model.

`table` runs the cells algorithms × α × seeds of `config.table`, each in its
own workdir (so each resumes on its own), and writes Table 1's layout, mean
± std of the final accuracy over seeds, as `table.md` and `table.json`.

Failure behaviour is that of every main (see README): every name and number
is checked, the workdir proven writable, and a table's cells compared with
what their workdirs hold, before anything is loaded or compiled.
"""

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from etils import epath

from valley_jax import (checkpoint, checks, compile_cache, data, distributed,
                        fed, models, outputs, rundir, sharding)
from valley_jax.core import steps
from valley_jax.data import partition
from valley_jax.errors import InputError
from valley_jax.fed import figures

MODES = ('run', 'table')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Keys that may change between a run and its resumption.
# fed.chunk is not among them: vmapping another number of clients at once
# changes float sums in the last digits, so a resumed run would not equal
# an uninterrupted one.
_RESUMABLE_KEYS = ('data.data_dir', 'num_devices', 'on_nonfinite',
                   'eval.batch_size', 'mode', 'table', 'compile_cache')


# ----------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict) -> fed.Algorithm:
  """Every name and number of a fed config; returns the algorithm.

  Reads no data and compiles nothing.
  """
  checks.check(config, checks.FED_FIELDS)
  compile_cache.check(config.get('compile_cache', ''))
  if config.mode not in MODES:
    raise InputError(f'config.mode={config.mode!r} must be one of {MODES}.')
  if config.model.name not in models.MODELS:
    raise InputError(f'Unknown model {config.model.name!r}; choose one of '
                     f'{sorted(models.MODELS)} (config.model.name).')
  if config.data.name not in data.DATASETS:
    raise InputError(f'Unknown dataset {config.data.name!r}; choose one of '
                     f'{sorted(data.DATASETS)} (config.data.name).')
  if config.optim.name != 'sgd':
    raise InputError(f"config.optim.name={config.optim.name!r}: local "
                     "training uses 'sgd' (momentum SGD, as the paper).")
  if config.fed.partition not in partition.METHODS:
    raise InputError(f'Unknown config.fed.partition={config.fed.partition!r}'
                     f'; choose one of {partition.METHODS}.')
  if config.fed.dtype not in DTYPES:
    raise InputError(f'Unknown config.fed.dtype={config.fed.dtype!r}; choose '
                     f'one of {tuple(DTYPES)}.')
  checks.check_policy(config.on_nonfinite, 'config.on_nonfinite')
  fed.check_round_config(
      fraction=config.fed.fraction, local_epochs=config.fed.local_epochs,
      batch_size=config.fed.batch_size, aggregation=config.fed.aggregation,
      bn_policy=config.fed.bn_policy, chunk=config.fed.chunk or None)
  if config.mode == 'table':
    _check_table(config)
  return fed.build_algorithm(config.fed.algorithm,
                             config.fed.hparams.to_dict())


def build(config, ds: data.Dataset, alg: fed.Algorithm):
  """The model of a fed config (with FedPAN's options when it asks)."""
  m = config.model
  kwargs = {**m.get('kwargs', {}), **alg.model_kwargs}
  model = models.build_model(m.name, ds.num_classes, width=m.width, bn=m.bn,
                             bn_init=m.bn_init, **kwargs)
  models.check_input_shape(m.name, model, ds.input_shape)
  return model


def split(config, ds: data.Dataset) -> list[np.ndarray]:
  """The clients' training indices (seeded by config.data.seed)."""
  f = config.fed
  return partition.partition(ds.y_train, f.num_clients, method=f.partition,
                             alpha=f.alpha, seed=config.data.seed,
                             min_size=f.min_size)


# ------------------------------------------------------------------- one run


def _diff(old: dict[str, Any], config) -> list[str]:
  return [k for k in rundir.config_diff(old, config.to_dict())
          if not k.startswith(_RESUMABLE_KEYS)]


class _Evaluator:
  """Test loss and accuracy of the global model (FedBN: recalibrated)."""

  def __init__(self, config, model, ds: data.Dataset, mesh):
    self.config, self.model, self.ds, self.mesh = config, model, ds, mesh
    self.step = jax.jit(steps.make_eval_step(model, ds.mean, ds.std))
    n_dev = mesh.shape[sharding.DATA]
    self.batch = -(-min(config.eval.batch_size, len(ds.y_test)) // n_dev
                   ) * n_dev
    self.recal_x = None
    if config.fed.bn_policy == 'local':
      n = min(config.eval.recal_samples, len(ds.y_train))
      order = np.random.default_rng(config.seed).permutation(
          len(ds.y_train))[:n]
      self.recal_x = jnp.asarray(ds.x_train[order])[None]

  def __call__(self, weights) -> dict[str, float]:
    if self.recal_x is not None:
      weights = fed.recalibrate(self.model, weights, self.recal_x,
                                self.ds.mean, self.ds.std)
    out = steps.evaluate(self.step, self.mesh, weights.params,
                         weights.batch_stats, self.ds.x_test,
                         self.ds.y_test, self.batch)
    return {'test_loss': out['loss'], 'test_accuracy': out['accuracy']}


def _write_partition(workdir: str, ds: data.Dataset, parts) -> dict:
  hist = partition.label_histogram(ds.y_train, parts, ds.num_classes)
  info = {'num_clients': len(parts), 'counts': [len(p) for p in parts],
          'histogram': hist.tolist(),
          'mean_label_entropy': partition.mean_label_entropy(hist)}
  folder = epath.Path(workdir)
  if outputs.read_json(folder / 'partition.json') != outputs.finite_or_none(
      info) or not (folder / 'partition.png').exists():
    outputs.write_json(folder / 'partition.json', info)
    figures.label_heatmap(hist, str(folder / 'partition'),
                          title=f'{len(parts)} clients')
  return info


def _round_row(t: int, m: dict[str, Any], test: dict[str, float] | None,
               seconds: float) -> dict[str, Any]:
  row = {'round': t + 1, **(test or {}),
         'train_loss': float(m['train_loss']),
         'sign_consistency': float(m['sign_consistency']),
         'drift': float(m['drift']),
         'clients': np.asarray(m['clients']).tolist(),
         'seconds': round(seconds, 4)}
  return outputs.finite_or_none(row)


def run(config: ml_collections.ConfigDict, workdir: str, *,
        overwrite: bool = False, stop_after: int | None = None
        ) -> dict[str, Any]:
  """Runs (or resumes) one federated simulation; returns results.json.

  Args:
    config: see valley_jax.defaults.fed_config (mode 'run').
    workdir: local or gs:// folder for checkpoints, metrics and results.
    overwrite: replace a run of a different config found in `workdir`.
    stop_after: stop after this round (simulates a pre-emption in tests).
  """
  alg = validate(config)
  # The stored config names every hyperparameter the run used, defaults
  # included: a later default (FedSign's reduction) cannot change a run
  # that is resumed with the same command.
  config = config.copy_and_resolve_references()
  config.fed.hparams = _full_hparams(alg)
  outputs.check_writable(workdir, '--workdir')
  with rundir.lock(workdir):
    return _simulate(config, workdir, alg, overwrite, stop_after)


def _simulate(config, workdir: str, alg, overwrite: bool,
              stop_after: int | None) -> dict[str, Any]:
  """run()'s work once the config is accepted and the workdir locked."""
  ds = data.from_config(config.data)
  f = config.fed
  partition.check_clients(len(ds.y_train), f.num_clients, f.min_size)
  model = build(config, ds, alg)
  if f.bn_policy == 'local' and not models.has_batch_norm(
      models.abstract_variables(model, tuple(ds.input_shape))):
    raise InputError(
        f"config.fed.bn_policy='local' (FedBN) keeps each client's BatchNorm "
        f'statistics, but {config.model.name} has no BatchNorm here '
        f'(config.model.bn={config.model.bn}): drop the fedbn variant, or '
        'use a model with BN.')
  parts = split(config, ds)
  mesh = sharding.make_mesh(config.num_devices)
  root = jax.random.key(config.seed)
  variables = steps.init_variables(model, jax.random.fold_in(root, 0),
                                   ds.input_shape)
  server, clients = fed.init_states(
      alg, model, variables, f.num_clients, input_shape=ds.input_shape,
      key=jax.random.fold_in(root, 1), bn_policy=f.bn_policy, mesh=mesh)
  round_fn = fed.make_round(
      model, alg, fed.ClientData.from_arrays(
          *partition.pad_clients(ds.x_train, ds.y_train, parts), mesh=mesh),
      optim=config.optim, fraction=f.fraction, local_epochs=f.local_epochs,
      batch_size=f.batch_size, seed=config.seed, mean=ds.mean, std=ds.std,
      augment=config.data.augment and ds.augmentable,
      aggregation=f.aggregation, bn_policy=f.bn_policy,
      chunk=f.chunk or None, mesh=mesh, dtype=DTYPES[f.dtype])
  mngr = rundir.open_run(workdir, config.to_dict(), overwrite=overwrite,
                         arrays=('server', 'clients'),
                         ignore=_RESUMABLE_KEYS,
                         outputs_to_drop=(rundir.METRICS, 'results.json'),
                         length='fed.rounds')
  # Written only once the run is accepted: a refused rerun leaves the
  # finished run's partition files as they are.
  part_info = _write_partition(workdir, ds, parts)
  start, states, history = checkpoint.start_or_resume(
      mngr, {'server': server, 'clients': clients}, config.to_dict(),
      rundir.metrics_path(workdir))
  evaluate = _Evaluator(config, model, ds, mesh)
  last = min(stop_after or f.rounds, f.rounds)
  for t in tqdm.trange(start, last, desc=f'fedsim {f.algorithm}',
                       disable=distributed.progress_disabled(),
                       initial=start, total=f.rounds):
    t0 = time.time()
    server, clients, m = round_fn(states['server'], states['clients'], t)
    states = {'server': server, 'clients': clients}
    m = jax.device_get(m)
    checks.stop_if_nonfinite(
        [m['train_loss']], f'round {t + 1}', t,
        f'the local learning rate config.optim.lr={config.optim.lr} or an '
        'algorithm hyperparameter is too large', config.on_nonfinite,
        'config.on_nonfinite')
    done = t + 1
    test = (evaluate(fed.global_weights(alg, server))
            if done % config.eval.every == 0 or done == f.rounds else None)
    history.append(_round_row(t, m, test, time.time() - t0))
    if done % config.checkpoint_every == 0 or done == f.rounds:
      checkpoint.save_items(mngr, done, states, config.to_dict(), history)
    outputs.write_jsonl(rundir.metrics_path(workdir), history)
  mngr.wait_until_finished()
  mngr.close()
  return _finish(config, workdir, alg, states['server'], history, part_info)


def global_model_dir(workdir: str) -> str:
  """Where a fedsim run keeps its global model as a train.py run."""
  return str(epath.Path(workdir) / checkpoint.FED_GLOBAL_MODEL)


def _export_global(config, workdir: str, alg, server, done: int) -> None:
  """The global model after round `done`, saved as a train.py run folder
  (items `model` and `config`, epoch = round) that probe.py measures like
  any trained model: --config.checkpoint=<workdir>/global_model.

  Its config has the run's model block (FedPAN's encodings included) and
  data block, and `federated`: the fedsim workdir, algorithm, hparams and
  round. Under FedBN the BN statistics are the server's averaged ones; a
  probe recalibrates BN at every point anyway.
  """
  w = fed.global_weights(alg, server)
  model = config.model.to_dict()
  model['kwargs'] = {**model.get('kwargs', {}), **alg.model_kwargs}
  cfg = {'model': model, 'data': config.data.to_dict(), 'seed': config.seed,
         'federated': {'workdir': str(workdir), 'algorithm': alg.name,
                       'hparams': dict(alg.hparams), 'round': done}}
  mngr = checkpoint.manager(global_model_dir(workdir), arrays=('model',))
  if done not in mngr.all_steps():
    checkpoint.save_items(mngr, done, {'model': {
        'params': w.params, 'batch_stats': w.batch_stats}}, cfg)
  mngr.wait_until_finished()
  mngr.close()


def _finish(config, workdir, alg, server, history, part_info):
  """results.json and the accuracy figure of a run (final or so far)."""
  evaluated = [r for r in history if 'test_accuracy' in r]
  final = evaluated[-1] if evaluated else {}
  done = history[-1]['round'] if history else 0
  results = {
      'algorithm': alg.name, 'hparams': dict(alg.hparams),
      'rounds_done': done, 'finished': done == config.fed.rounds,
      'final': {k: final.get(k) for k in ('round', 'test_accuracy',
                                          'test_loss')},
      'global_fingerprint': checkpoint.fingerprint(
          {'params': server.weights.params,
           'batch_stats': server.weights.batch_stats}),
      'partition': {k: part_info[k] for k in ('counts',
                                              'mean_label_entropy')},
      'config': config.to_dict()}
  folder = epath.Path(workdir)
  if done:
    _export_global(config, workdir, alg, server, done)
  outputs.write_json(folder / 'results.json', results)
  if evaluated:
    figures.accuracy(
        {alg.name: ([r['round'] for r in evaluated],
                    [r['test_accuracy'] for r in evaluated])},
        str(folder / 'figure'))
  return results


# ---------------------------------------------------------------------- table


def _check_table(config) -> None:
  """The grid of table mode: no empty or repeated axis, and no setting of
  a single run that the table would silently replace."""
  t = config.table
  for key in ('algorithms', 'alphas', 'seeds'):
    values = list(t[key])
    if not values:
      raise InputError(f'config.table.{key} is empty: name at least one.')
    if len(set(values)) != len(values):
      raise InputError(f'config.table.{key}={tuple(values)} repeats a value; '
                       'each cell must be run once (± is over distinct '
                       'seeds).')
  if config.fed.hparams.to_dict():
    raise InputError(
        f'config.fed.hparams={config.fed.hparams.to_dict()} is ignored in '
        'table mode, which runs each algorithm with config.table.hparams.'
        '<algorithm> (its defaults where unset): set them there, in a '
        'config file.')
  for name in t.algorithms:
    fed.build_algorithm(name, _table_hparams(config, name))


def _table_hparams(config, name: str) -> dict[str, Any]:
  hp = config.table.hparams.get(name)
  return hp.to_dict() if hp is not None else {}


def cells(config) -> list[tuple[str, float, int]]:
  t = config.table
  return [(a, float(al), int(s)) for a in t.algorithms for al in t.alphas
          for s in t.seeds]


def _full_hparams(alg: fed.Algorithm) -> ml_collections.ConfigDict:
  """Every hyperparameter an algorithm runs with, defaults included (what
  a run's stored config holds)."""
  return ml_collections.ConfigDict(dict(alg.hparams))


def cell_config(config, algorithm: str, alpha: float,
                seed: int) -> ml_collections.ConfigDict:
  """The one-run config of a table cell."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.mode = 'run'
  c.fed.algorithm = algorithm
  c.fed.hparams = _full_hparams(fed.build_algorithm(
      algorithm, _table_hparams(config, algorithm)))
  c.fed.alpha = alpha
  c.seed = seed
  c.data.seed = seed
  return c


def cell_dir(workdir: str, algorithm: str, alpha: float, seed: int) -> str:
  return str(epath.Path(workdir) / algorithm / f'alpha{alpha:g}' /
             f'seed{seed}')


def _check_cells(config, workdir: str) -> None:
  """Each cell's workdir must hold its own config (or nothing)."""
  for a, al, s in cells(config):
    w = cell_dir(workdir, a, al, s)
    if not checkpoint.epochs(w):
      continue
    old = checkpoint.load_config(w)
    diff = _diff(old, cell_config(config, a, al, s))
    if diff:
      raise InputError(
          f'Table cell {w} holds a run whose config differs from this table '
          f'in {diff}; use another --workdir, or delete that cell to '
          'recompute it.')


def table(config: ml_collections.ConfigDict, workdir: str, *,
          overwrite: bool = False) -> dict[str, Any]:
  """Runs every cell of config.table (resumable per cell) and writes the
  paper's Table 1 layout (mean ± std over seeds) as table.md and table.json.
  With `overwrite`, a cell of another config is run again.
  """
  validate(config)
  outputs.check_writable(workdir, '--workdir')
  if not overwrite:
    _check_cells(config, workdir)
  acc = {}
  with rundir.lock(workdir):
    for a, al, s in cells(config):
      res = run(cell_config(config, a, al, s), cell_dir(workdir, a, al, s),
                overwrite=overwrite)
      acc.setdefault((a, al), []).append(res['final']['test_accuracy'])
    out = summarize(config, acc)
    folder = epath.Path(workdir)
    outputs.write_json(folder / 'table.json', out)
    outputs.write_text(folder / 'table.md', markdown(out))
  print(markdown(out))
  return out


def summarize(config, acc: dict[tuple[str, float], list]) -> dict[str, Any]:
  """Mean and (population) std of the final accuracy per (algorithm, α)."""
  rows = []
  for al in config.table.alphas:
    row = {'dataset': config.data.name, 'alpha': float(al)}
    for a in config.table.algorithms:
      v = np.array([np.nan if x is None else x for x in acc[(a, float(al))]],
                   np.float64)
      row[a] = {'mean': float(np.mean(v)), 'std': float(np.std(v)),
                'runs': v.tolist()}
    rows.append(row)
  return {'algorithms': list(config.table.algorithms), 'rows': rows,
          'seeds': list(config.table.seeds), 'model': config.model.name}


def _finite(x) -> bool:
  return x is not None and math.isfinite(x)


def markdown(out: dict[str, Any]) -> str:
  """Table 1's layout: accuracy % as mean ± std over seeds."""
  algs = out['algorithms']
  lines = ['| data | α | ' + ' | '.join(algs) + ' |',
           '|---|---|' + '---|' * len(algs)]
  for r in out['rows']:
    cells_ = [f"{100 * r[a]['mean']:.2f} ± {100 * r[a]['std']:.2f}"
              if _finite(r[a]['mean']) else 'n/a' for a in algs]
    lines.append(f"| {r['dataset']} | {r['alpha']:g} | " +
                 ' | '.join(cells_) + ' |')
  return '\n'.join(lines) + '\n'


def main(config: ml_collections.ConfigDict, workdir: str, *,
         overwrite: bool = False) -> dict[str, Any]:
  """What fedsim.py runs: `run` or `table` by config.mode."""
  if config.mode == 'table':
    return table(config, workdir, overwrite=overwrite)
  return run(config, workdir, overwrite=overwrite)

