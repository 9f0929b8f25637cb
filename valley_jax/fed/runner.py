"""run(config, workdir) and table(config, workdir): the federated simulator.

`run` simulates one federated training (the paper's Algorithm 1 with any
algorithm of `valley_jax.fed`) and writes into `workdir`:
* `partition.json` and `partition.png/pdf`: every client's label histogram
  and the mean per-client label entropy;
* `metrics.jsonl`: one line per round with the global model's test accuracy
  and loss (and `val_*` on the held-out slice when `fed.holdout` > 0), the
  participants' mean local train loss, their mean sign consistency ratio
  with θt, their mean drift ||θ^k − θt||, the sampled
  clients and the seconds the round took;
* `checkpoints/<round>/`: Orbax checkpoints of the server state and all K
  per-client states every `config.checkpoint_every` rounds;
* `results.json` and `figure.png/pdf` (test accuracy against rounds);
* `per_example.npz`: the global model's correctness on each test image for
  the last `table.last_rounds` evaluations and the pooled-BN view
  (fed/intervals.py), for a table's intervals over seeds and test images.
A run killed at any point and started again with the same command resumes
from its last checkpoint and ends with the same global model.

`table` runs the cells algorithms × α × grid values × seeds of
`config.table`, each in its own workdir (so each resumes on its own). Per
(algorithm, α) it selects one grid value (`table.selection`: 'validation',
on a slice of the training set held out from every client, or 'test', the
paper's) and writes Table 1's layout, the selected value's mean ± sample std
(ddof = 1) of the final test accuracy over seeds [its 95 % hierarchical
bootstrap interval over seeds and test images] with the value under it, the
robust views and the verdicts against FedAvg, as
`table.md` (with a header: protocol, grids, seeds, code version),
`table.json` (every cell's curve, every grid value's score) and
`figure.png/pdf` (accuracy against rounds, mean ± std bands).

Failure behaviour is that of every main (see README): every name and number
is checked, the workdir proven writable, and a table's cells compared with
what their workdirs hold, before anything is loaded or compiled.
"""

import dataclasses
import functools
import itertools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
import numpy as np
import tqdm
from etils import epath

from valley_jax import (checkpoint, checks, compile_cache, data, distributed,
                        fed, models, outputs, preemption, rundir, sharding,
                        watch)
from valley_jax.core import stats, steps
from valley_jax.data import partition, pipeline
from valley_jax.errors import InputError
from valley_jax.fed import alignment, figures, intervals, local, robust

MODES = ('run', 'table')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Keys that may change between a run and its resumption.
# fed.chunk is not among them: vmapping another number of clients at once
# changes float sums in the last digits, so a resumed run would not equal
# an uninterrupted one.
_RESUMABLE_KEYS = ('data.data_dir', 'num_devices', 'on_nonfinite',
                   'eval.batch_size', 'mode', 'table', 'compile_cache',
                   'checkpoint_every', 'checkpoint_seconds')


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
      bn_policy=config.fed.bn_policy, chunk=config.fed.chunk or None,
      bn_first=config.fed.bn_first)
  if config.fed.get('align', False):
    alignment.check(config.fed.algorithm, config.fed.bn_policy)
  if config.fed.bn_first != 'init' and config.fed.bn_policy != 'local':
    raise InputError(
        f'config.fed.bn_first={config.fed.bn_first!r} sets how FedBN '
        "(config.fed.bn_policy='local') starts a client's BN layers; with "
        f'bn_policy={config.fed.bn_policy!r} it would mean nothing: add the '
        'fedbn variant, or drop bn_first.')
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
  """Test (and held-out validation) loss and accuracy of the global model
  (FedBN: recalibrated), and its per-example test correctness."""

  def __init__(self, config, model, ds: data.Dataset, mesh, val=None,
               step=None, recal=None, per_step=None):
    self.config, self.model, self.ds, self.mesh = config, model, ds, mesh
    self.val = val
    self.step = step or jax.jit(steps.make_eval_step(model, ds.mean,
                                                     ds.std))
    self.recal = recal or jax.jit(functools.partial(
        fed.recalibrate, model, mean=ds.mean, std=ds.std))
    self.per_step = per_step or jax.jit(steps.make_per_example_step(
        model, ds.mean, ds.std))
    n_dev = mesh.shape[sharding.DATA]
    self.batch = -(-min(config.eval.batch_size, len(ds.y_test)) // n_dev
                   ) * n_dev
    self.recal_x = None
    if config.fed.bn_policy == 'local':
      n = min(config.eval.recal_samples, len(ds.y_train))
      order = np.random.default_rng(config.seed).permutation(
          len(ds.y_train))[:n]
      self.recal_x = jnp.asarray(ds.x_train[order])[None]

  def _own(self, weights):
    """The weights as evaluated (FedBN: BN recalibrated on recal_x)."""
    if self.recal_x is None:
      return weights
    return fed.recalibrate(self.model, weights, self.recal_x, self.ds.mean,
                           self.ds.std)

  def __call__(self, weights) -> dict[str, float]:
    weights = self._own(weights)
    row = {}
    sets = {'test': (self.ds.x_test, self.ds.y_test)}
    if self.val is not None:
      sets['val'] = self.val
    for name, (x, y) in sets.items():
      out = steps.evaluate(self.step, self.mesh, weights.params,
                           weights.batch_stats, x, y, self.batch)
      row.update({f'{name}_loss': out['loss'],
                  f'{name}_accuracy': out['accuracy']})
    return row

  def per_example(self, weights, *, own: bool = True) -> np.ndarray:
    """The 0/1 correctness [N] of each test image (its mean is __call__'s
    test accuracy); `own=False` evaluates the weights as given."""
    w = self._own(weights) if own else weights
    return steps.evaluate_per_example(
        self.per_step, self.mesh, w.params, w.batch_stats, self.ds.x_test,
        self.ds.y_test, self.batch)['correct']

  def pooled_weights(self, weights):
    """The weights with BN statistics recomputed on all the clients'
    training data pooled (None for a model without BN)."""
    if not jax.tree.leaves(weights.batch_stats):
      return None
    n = len(self.ds.y_train)
    b = min(n, self.config.eval.batch_size)
    x = jnp.asarray(self.ds.x_train[:n // b * b]).reshape(
        n // b, b, *self.ds.x_train.shape[1:])
    return self.recal(weights, x)

  def pooled_recalibrated(self, weights, workdir: str, done: int
                          ) -> dict[str, float]:
    """Test accuracy and loss of the weights (the global model after round
    `done`) with BN statistics recomputed on all the clients' training data
    pooled: a view that a server, which never sees the clients' data, does
    not have ({} for a model without BN). Read back from the run's
    per_example.npz when it holds this model's, else computed and stored
    there with its per-example correctness."""
    fp = checkpoint.fingerprint({'params': weights.params,
                                 'batch_stats': weights.batch_stats})
    got = intervals.pooled(workdir, done, fp)
    if got is None:
      w = self.pooled_weights(weights)
      if w is None:
        return {}
      out = steps.evaluate(self.step, self.mesh, w.params, w.batch_stats,
                           self.ds.x_test, self.ds.y_test, self.batch)
      got = {'correct': self.per_example(w, own=False),
             'accuracy': out['accuracy'], 'loss': out['loss']}
      intervals.save_pooled(workdir, done, fp, got['correct'],
                            got['accuracy'], got['loss'])
    return {'pooled_recal_test_accuracy': got['accuracy'],
            'pooled_recal_test_loss': got['loss']}

  def clients(self, global_w, clients) -> dict[str, float]:
    """FedBN's own view: every client that has trained, as the global
    weights with its own BN layers (scales, biases, running statistics), on
    the test set; the means over those clients and how many they are."""
    trained = np.flatnonzero(np.asarray(jax.device_get(clients.rounds)) > 0)
    if not trained.size:
      return {}
    outs = []
    for k in trained:
      w = local.with_bn_part(global_w, jax.tree.map(lambda a: a[k],
                                                    clients.local))
      outs.append(steps.evaluate(self.step, self.mesh, w.params,
                                 w.batch_stats, self.ds.x_test,
                                 self.ds.y_test, self.batch))
    return {'client_test_accuracy': float(np.mean([o['accuracy']
                                                   for o in outs])),
            'client_test_loss': float(np.mean([o['loss'] for o in outs])),
            'clients_evaluated': int(trained.size)}


def _hold_out(ds: data.Dataset, fraction: float, seed: int):
  """(the dataset without its held-out slice, (x_val, y_val) or None)."""
  if not fraction:
    return ds, None
  kept, val = partition.hold_out(len(ds.y_train), fraction, seed=seed)
  rest = dataclasses.replace(ds, x_train=ds.x_train[kept],
                             y_train=ds.y_train[kept])
  return rest, (ds.x_train[val], ds.y_train[val])


def _write_partition(workdir: str, ds: data.Dataset, parts,
                     held_out: int) -> dict:
  hist = partition.label_histogram(ds.y_train, parts, ds.num_classes)
  info = {'num_clients': len(parts), 'counts': [len(p) for p in parts],
          'held_out': held_out,
          'histogram': hist.tolist(),
          'mean_label_entropy': partition.mean_label_entropy(hist)}
  folder = epath.Path(workdir)
  if outputs.read_json(folder / 'partition.json') != outputs.finite_or_none(
      info) or not (folder / 'partition.png').exists():
    outputs.write_json(folder / 'partition.json', info)
    _heatmap(hist, folder, len(parts))
  return info


# Heat maps drawn in this process, by histogram: a table's cells of one
# (α, seed) share their partition, so each is drawn once and copied.
_HEATMAPS: dict[bytes, list[epath.Path]] = {}


def _heatmap(hist: np.ndarray, folder: epath.Path, clients: int) -> None:
  key = np.ascontiguousarray(hist).tobytes() + bytes(str(hist.shape), 'utf8')
  drawn = _HEATMAPS.get(key)
  if drawn and all(p.exists() for p in drawn):
    for p in drawn:
      outputs.write_bytes(folder / p.name, p.read_bytes())
    return
  paths = figures.label_heatmap(hist, str(folder / 'partition'),
                                title=f'{clients} clients')
  _HEATMAPS[key] = [epath.Path(p) for p in paths]


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
  with rundir.lock(workdir), preemption.graceful():
    return _simulate(config, workdir, alg, overwrite, stop_after)


def _simulate(config, workdir: str, alg, overwrite: bool,
              stop_after: int | None) -> dict[str, Any]:
  """run()'s work once the config is accepted and the workdir locked."""
  ds = _load(config)
  prog = _Program(config, alg, ds, max_count=None)
  live = _open_run(config, workdir, alg, overwrite, prog, ds)
  round_fn = prog.round_fn(live.data)
  f = config.fed
  last = min(stop_after or f.rounds, f.rounds)
  server, clients = live.states['server'], live.states['clients']
  for t in tqdm.trange(live.start, last, desc=f'fedsim {f.algorithm}',
                       disable=distributed.progress_disabled(),
                       initial=live.start, total=f.rounds):
    t0 = time.time()
    server, clients, m = round_fn(server, clients, t, live.knobs,
                                  live.data)
    stop = preemption.requested(t + 1)  # Every round, on every process.
    _record_round(live, t, server, lambda c=clients: c, jax.device_get(m),
                  time.time() - t0, stop=stop)
    if stop and t + 1 < last:  # A signal in the last round: finish.
      _close_run(live)
      raise preemption.Preempted(f'round {t + 1} of {f.rounds} in '
                                 f'{workdir}')
  return _close_run(live)


def _load(config) -> data.Dataset:
  """The dataset of config.data, all of its training set."""
  return data.from_config(config.data)


class _Program:
  """What the runs of one compiled round share: (algorithm and its
  non-numeric hyperparameters, model, data shapes). Its round, model
  initialiser and evaluation step are compiled once for all of them.

  `max_count` pads every run's clients to M rows (a table's largest
  client over all its cells); None pads each run to its own largest.
  """

  def __init__(self, config, alg: fed.Algorithm, ds: data.Dataset,
               max_count: int | None):
    self.config, self.alg, self.max_count = config, alg, max_count
    self.model = build(config, ds, alg)
    f = config.fed
    if f.bn_policy == 'local' and not models.has_batch_norm(
        models.abstract_variables(self.model, tuple(ds.input_shape))):
      raise InputError(
          f"config.fed.bn_policy='local' (FedBN) keeps each client's "
          f'BatchNorm statistics, but {config.model.name} has no BatchNorm '
          f'here (config.model.bn={config.model.bn}): drop the fedbn '
          'variant, or use a model with BN.')
    self.mesh = sharding.make_mesh(config.num_devices)
    self.eval_step = jax.jit(steps.make_eval_step(self.model, ds.mean,
                                                  ds.std))
    self.per_example_step = jax.jit(steps.make_per_example_step(
        self.model, ds.mean, ds.std))
    x = jnp.zeros((1, *ds.input_shape), jnp.float32)
    self.init = jax.jit(lambda k: self.model.init(k, x, train=False))
    self.recal = jax.jit(functools.partial(fed.recalibrate, self.model,
                                           mean=ds.mean, std=ds.std))
    self._round = None
    self._eval_many = None

  def round_fn(self, client_data: fed.ClientData):
    """The compiled round (built on the first run's data; every run passes
    its own data and knobs)."""
    if self._round is None:
      c, f = self.config, self.config.fed
      ds_mean, ds_std = self._norm
      self._round = fed.make_round(
          self.model, self.alg, client_data, optim=c.optim,
          fraction=f.fraction, local_epochs=f.local_epochs,
          batch_size=f.batch_size, seed=c.seed, mean=ds_mean, std=ds_std,
          augment=self._augment, aggregation=f.aggregation,
          bn_policy=f.bn_policy, bn_first=f.bn_first,
          chunk=f.chunk or None, mesh=self.mesh, dtype=DTYPES[f.dtype],
          align=f.get('align', False))
    return self._round

  def set_data_info(self, ds: data.Dataset) -> None:
    self._norm = (ds.mean, ds.std)
    self._augment = self.config.data.augment and ds.augmentable

  def variables(self, key) -> dict[str, Any]:
    v = self.init(key)
    return {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}

  def evaluate_many(self, weights_r, lives: list['_Live']
                    ) -> list[dict[str, float]]:
    """Test (and validation) loss and accuracy of a batch's global
    models, stacked on a leading run axis, in one vmapped call per batch of
    examples: the rows `_Evaluator.__call__` gives one run at a time."""
    if self._eval_many is None:
      one = steps.make_eval_step(self.model, *self._norm)
      self._eval_many = {
          'test': jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None))),
          'val': jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None)))}
    width = jax.tree.leaves(weights_r.params)[0].shape[0]
    ev = lives[0].evaluate
    sets = {'test': (ev.ds.x_test, ev.ds.y_test)}
    if ev.val is not None:
      pad = lives + [lives[-1]] * (width - len(lives))
      sets['val'] = (np.stack([lv.evaluate.val[0] for lv in pad]),
                     np.stack([lv.evaluate.val[1] for lv in pad]))
    rows = [{} for _ in lives]
    for name, (x, y) in sets.items():
      n = y.shape[-1]
      idx_sb, w_sb = pipeline.padded_batches(n, min(ev.batch, n))
      sums = []
      for idx, w in zip(idx_sb, w_sb):
        xb, yb = (x[idx], y[idx]) if name == 'test' else (x[:, idx],
                                                          y[:, idx])
        sums.append(jax.device_get(self._eval_many[name](
            weights_r.params, weights_r.batch_stats, xb, yb, w)))
      # Summed over batches and divided as steps.evaluate does.
      tot = jax.tree.map(lambda *a: np.sum(np.stack(a), axis=0), *sums)
      for i, row in enumerate(rows):
        count = float(tot['count'][i])
        row[f'{name}_loss'] = float(tot['loss'][i]) / count
        row[f'{name}_accuracy'] = float(tot['correct'][i]) / count
    return rows

  def chunk_sizes(self, server) -> list[int]:
    """The clients per chunk of one device's slots (rounds.chunk_sizes)."""
    f = self.config.fed
    devices = sharding.size(self.mesh)
    s = fed.num_sampled(f.num_clients, f.fraction)
    slots = -(-s // devices) * devices
    size = f.chunk or fed.auto_chunk(server.weights.params, slots // devices)
    return fed.rounds.chunk_sizes(slots, devices, size)

  def compiles(self) -> int:
    """How many programs the round compiled (single and batched)."""
    if self._round is None:
      return 0
    return (self._round.jitted._cache_size() +
            self._round.many_jitted._cache_size())


@dataclasses.dataclass
class _Live:
  """One run in progress: its config, workdir, states and history."""
  config: Any
  workdir: str
  alg: fed.Algorithm
  mngr: Any
  start: int
  states: dict[str, Any]
  history: list
  evaluate: Any
  part_info: dict
  data: Any
  knobs: dict
  ds: Any
  watcher: Any = None
  saved_at: float = dataclasses.field(default_factory=time.monotonic)


def _pad_clients(ds: data.Dataset, parts, max_count: int | None):
  """pad_clients, then zero rows up to max_count (a table's shared M)."""
  x, y, counts = partition.pad_clients(ds.x_train, ds.y_train, parts)
  if max_count is not None and max_count > x.shape[1]:
    extra = max_count - x.shape[1]
    x = np.pad(x, [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2))
    y = np.pad(y, [(0, 0), (0, extra)])
  return x, y, counts


def _open_run(config, workdir: str, alg, overwrite: bool,
              prog: _Program, base: data.Dataset | None = None) -> _Live:
  """Everything a run needs before its first round: its data, partition,
  initial (or restored) states, Orbax manager and evaluator."""
  f = config.fed
  ds, val = _hold_out(base or _load(config), f.holdout, config.data.seed)
  partition.check_clients(len(ds.y_train), f.num_clients, f.min_size)
  prog.set_data_info(ds)
  parts = split(config, ds)
  client_data = fed.ClientData.from_arrays(
      *_pad_clients(ds, parts, prog.max_count), mesh=prog.mesh)
  root = jax.random.key(config.seed)
  variables = prog.variables(jax.random.fold_in(root, 0))
  server, clients = fed.init_states(
      alg, prog.model, variables, f.num_clients, input_shape=ds.input_shape,
      key=jax.random.fold_in(root, 1), bn_policy=f.bn_policy,
      mesh=prog.mesh)
  mngr = rundir.open_run(workdir, config.to_dict(), overwrite=overwrite,
                         arrays=('server', 'clients'),
                         ignore=_RESUMABLE_KEYS,
                         outputs_to_drop=(rundir.METRICS, 'results.json'),
                         length='fed.rounds')
  # Written only once the run is accepted: a refused rerun leaves the
  # finished run's partition files as they are.
  part_info = _write_partition(workdir, ds, parts,
                               0 if val is None else len(val[1]))
  start, states, history = checkpoint.start_or_resume(
      mngr, {'server': server, 'clients': clients}, config.to_dict(),
      rundir.metrics_path(workdir))
  evaluate = _Evaluator(config, prog.model, ds, prog.mesh, val,
                        step=prog.eval_step, recal=prog.recal,
                        per_step=prog.per_example_step)
  kn = fed.rounds.knobs(alg, config.optim, config.seed)
  watcher = watch.Watcher(workdir, f'fedsim {f.algorithm}', config.to_dict(),
                          total=f.rounds, start=start, unit='rounds')
  return _Live(config, workdir, alg, mngr, start, states, history, evaluate,
               part_info, client_data, kn, ds, watcher)


def _record_round(live: _Live, t: int, server, clients_fn, m: dict,
                  seconds: float, test: dict | None = None,
                  stop: bool = False) -> None:
  """After round t of a run: the non-finite check, the evaluation, the
  metrics row, the checkpoint (clients_fn() gives the run's client
  states, asked for only when they are saved; `stop`, a signal's request,
  saves this round whatever config.checkpoint_every and
  config.checkpoint_seconds say), TensorBoard."""
  config, f = live.config, live.config.fed
  checks.stop_if_nonfinite(
      [m['train_loss']], f'round {t + 1}', t,
      f'the local learning rate config.optim.lr={config.optim.lr} or an '
      'algorithm hyperparameter is too large', config.on_nonfinite,
      'config.on_nonfinite')
  done = t + 1
  if test is None and _evaluates(config, t):
    test = live.evaluate(fed.global_weights(live.alg, server))
    if f.bn_policy == 'local':
      test.update(live.evaluate.clients(fed.global_weights(live.alg, server),
                                        clients_fn()))
  if test is not None and done in intervals.window(
      f.rounds, config.eval.every, config.table.last_rounds):
    intervals.save_round(live.workdir, done, live.evaluate.per_example(
        fed.global_weights(live.alg, server)))
  live.history.append(_round_row(t, m, test, seconds))
  live.states = {'server': server, 'clients': None}
  due = done % config.checkpoint_every == 0 and (
      time.monotonic() - live.saved_at >= config.get('checkpoint_seconds', 0))
  if due or done == f.rounds or stop:
    live.states['clients'] = clients_fn()
    checkpoint.save_items(live.mngr, done, live.states, config.to_dict(),
                          live.history)
    live.saved_at = time.monotonic()
  outputs.append_jsonl(rundir.metrics_path(live.workdir), live.history)
  live.watcher.step(done)
  live.watcher.scalars(done, {k: v for k, v in live.history[-1].items()
                              if k != 'round'})


def _evaluates(config, t: int) -> bool:
  """Whether round t (0-based) ends with an evaluation."""
  done = t + 1
  return done % config.eval.every == 0 or done == config.fed.rounds


class _Saves:
  """Orbax managers whose last saves may still be in flight. A table hands
  each cell's managers here and closes them one batch of cells later, so
  that they are written while the next cells train; every one is closed
  before the table returns or stops."""

  def __init__(self):
    self.open: list[Any] = []  # Orbax CheckpointManagers.

  def add(self, mngr) -> None:
    self.open.append(mngr)

  def close(self) -> None:
    """Waits for every held manager's saves and closes it."""
    while self.open:
      mngr = self.open.pop(0)
      mngr.wait_until_finished()
      mngr.close()


def _close_run(live: _Live, figure: bool = True,
               saves: _Saves | None = None) -> dict[str, Any]:
  """The run's results.json (and figure), then its saves waited for and
  its managers closed (by `saves`, later, when given). A kill before the
  last round's checkpoint is written reruns that round on resume."""
  live.watcher.step(len(live.history), force=True)
  live.watcher.close()
  out = _finish(live.config, live.workdir, live.alg, live.states['server'],
                live.history, live.part_info, live.evaluate, figure, saves)
  if saves is None:
    live.mngr.wait_until_finished()
    live.mngr.close()
  else:
    saves.add(live.mngr)
  return out


def global_model_dir(workdir: str) -> str:
  """Where a fedsim run keeps its global model as a train.py run."""
  return str(epath.Path(workdir) / checkpoint.FED_GLOBAL_MODEL)


def _export_global(config, workdir: str, alg, server, done: int,
                   saves: _Saves | None = None) -> None:
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
  if saves is None:
    mngr.wait_until_finished()
    mngr.close()
  else:
    saves.add(mngr)


def _finish(config, workdir, alg, server, history, part_info,
            evaluate: _Evaluator | None = None, figure: bool = True,
            saves: _Saves | None = None):
  """results.json and the accuracy figure of a run (final or so far).

  With `evaluate`, 'final' also holds the global model's test accuracy
  with BN statistics recalibrated on the clients' pooled training data
  (`_Evaluator.pooled_recalibrated`; models with BN), whose per-example
  correctness is kept in the run's per_example.npz (fed/intervals.py).
  """
  evaluated = [r for r in history if 'test_accuracy' in r]
  final = evaluated[-1] if evaluated else {}
  done = history[-1]['round'] if history else 0
  keys = ('round', 'test_accuracy', 'test_loss') + tuple(
      k for k in ('val_accuracy', 'val_loss', 'client_test_accuracy',
                  'client_test_loss', 'clients_evaluated') if k in final)
  final = {k: final.get(k) for k in keys}
  if evaluate is not None and done:
    final.update(outputs.finite_or_none(evaluate.pooled_recalibrated(
        fed.global_weights(alg, server), workdir, done)))
  results = {
      'algorithm': alg.name, 'hparams': dict(alg.hparams),
      'rounds_done': done, 'finished': done == config.fed.rounds,
      'final': final,
      'global_fingerprint': checkpoint.fingerprint(
          {'params': server.weights.params,
           'batch_stats': server.weights.batch_stats}),
      'partition': {k: part_info[k] for k in ('counts', 'held_out',
                                              'mean_label_entropy')},
      'config': config.to_dict()}
  folder = epath.Path(workdir)
  if done:
    _export_global(config, workdir, alg, server, done, saves)
  outputs.write_json(folder / 'results.json', results)
  if evaluated and figure:
    figures.accuracy(
        {alg.name: ([r['round'] for r in evaluated],
                    [r['test_accuracy'] for r in evaluated])},
        str(folder / 'figure'))
  return results


# ---------------------------------------------------------------------- table
#
# A table cell is one run: (algorithm, α, grid point, seed). Its workdir is
# <workdir>/<algorithm>/alpha<α>[/<point>]/seed<s>, so each resumes on its
# own. Per (algorithm, α) the grid point with the best mean final accuracy
# over seeds (on the held-out slice, or on the test set) is selected and its
# test accuracy reported.


class Cell(NamedTuple):
  algorithm: str
  alpha: float
  point: tuple[tuple[str, Any], ...]  # ((hparam, value), ...) of the grid.
  seed: int


def _check_table(config) -> None:
  """The grid of table mode: no empty or repeated axis or grid, and no
  setting that a cell cannot honour (it would be replaced silently)."""
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
        '<algorithm> and its grid config.table.grids.<algorithm>: set '
        '--config.table.hparams.<algorithm>.<name> instead.')
  if config.fed.holdout:
    raise InputError(
        f'config.fed.holdout={config.fed.holdout} is replaced in table mode '
        "by config.table.holdout (selection='validation') or 0 "
        "(selection='test'): set --config.table.holdout instead.")
  for name in t.grids:
    if name not in fed.ALGORITHMS:
      raise InputError(f'config.table.grids.{name}: unknown algorithm '
                       f'{name!r}; choose from {sorted(fed.ALGORITHMS)}.')
    if name not in t.algorithms and _grid(config, name):
      logging.warning(
          'config.table.grids.%s is ignored: %s is not in config.table.'
          'algorithms=%s.', name, name, tuple(t.algorithms))
  for name in t.algorithms:
    if name not in fed.ALGORITHMS:
      raise InputError(f'Unknown algorithm {name!r} in config.table.'
                       f'algorithms; choose from {sorted(fed.ALGORITHMS)}.')
    grid = _grid(config, name)
    taken = fed.build_algorithm(name).hparams
    for key, values in grid.items():
      if key not in taken:
        raise InputError(
            f'config.table.grids.{name}.{key}: {name} has no hyperparameter '
            f'{key!r}; it takes {sorted(taken)}.')
      if not values or len(set(values)) != len(values):
        raise InputError(f'config.table.grids.{name}.{key}={values} must '
                         'name distinct values, at least one.')
      fixed = _table_hparams(config, name).get(key, taken[key])
      if fixed != taken[key]:
        raise InputError(
            f'config.table.hparams.{name}.{key}={fixed} and config.table.'
            f'grids.{name}.{key}={values} both set {key}; the grid would '
            f"replace it. Fix one value with --config.table.grids.{name}."
            f"{key}='({fixed},)', or drop the hparams setting.")
    for point in _points(config, name):
      fed.build_algorithm(name, {**_table_hparams(config, name), **point})


def _table_hparams(config, name: str) -> dict[str, Any]:
  hp = config.table.hparams.get(name)
  return hp.to_dict() if hp is not None else {}


def _grid(config, name: str) -> dict[str, tuple]:
  g = config.table.grids.get(name)
  return {k: tuple(v) for k, v in (g.to_dict() if g is not None else {}
                                   ).items()}


def _points(config, name: str) -> list[dict[str, Any]]:
  """The grid points of an algorithm: the product of its grids' values
  (keys in alphabetical order), or [{}] without a grid."""
  grid = _grid(config, name)
  keys = sorted(grid)
  return [dict(zip(keys, vs)) for vs in itertools.product(
      *(grid[k] for k in keys))]


def point_label(point) -> str:
  """'gamma0.01' or 'mu0.1_tau0.5' ('' for no grid); names as 'name-value'.

  >>> point_label({'gamma': 0.01}), point_label({})
  ('gamma0.01', '')
  """
  return '_'.join(f'{k}{v:g}' if isinstance(v, (int, float))
                  else f'{k}-{v}' for k, v in dict(point).items())


def cells(config) -> list[Cell]:
  """Every run of the table: algorithms × α × grid points × seeds."""
  t = config.table
  return [Cell(a, float(al), tuple(p.items()), int(s))
          for a in t.algorithms for al in t.alphas
          for p in _points(config, a) for s in t.seeds]


def _full_hparams(alg: fed.Algorithm) -> ml_collections.ConfigDict:
  """Every hyperparameter an algorithm runs with, defaults included (what
  a run's stored config holds)."""
  return ml_collections.ConfigDict(dict(alg.hparams))


def cell_config(config, cell: Cell) -> ml_collections.ConfigDict:
  """The one-run config of a table cell. Under selection='validation' it
  holds out config.table.holdout of the training set; under 'test' none
  (the paper's protocol: all training data on the clients)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.mode = 'run'
  c.fed.algorithm = cell.algorithm
  c.fed.hparams = _full_hparams(fed.build_algorithm(
      cell.algorithm, {**_table_hparams(config, cell.algorithm),
                       **dict(cell.point)}))
  c.fed.alpha = cell.alpha
  c.fed.holdout = (config.table.holdout
                   if config.table.selection == 'validation' else 0.0)
  c.seed = cell.seed
  c.data.seed = cell.seed
  return c


def cell_dir(workdir: str, cell: Cell) -> str:
  label = point_label(cell.point)
  folder = epath.Path(workdir) / cell.algorithm / f'alpha{cell.alpha:g}'
  return str((folder / label if label else folder) / f'seed{cell.seed}')


def _check_cells(config, workdir: str) -> None:
  """Each cell's workdir must hold its own config (or nothing)."""
  for cell in cells(config):
    w = cell_dir(workdir, cell)
    if not checkpoint.epochs(w):
      continue
    old = checkpoint.load_config(w)
    diff = _diff(old, cell_config(config, cell))
    if diff:
      raise InputError(
          f'Table cell {w} holds a run whose config differs from this table '
          f'in {diff}; use another --workdir, or delete that cell to '
          'recompute it.')


def table(config: ml_collections.ConfigDict, workdir: str, *,
          overwrite: bool = False) -> dict[str, Any]:
  """Runs every cell of config.table (resumable per cell), selects a grid
  point per (algorithm, α) and writes table.md, table.json and figure.png.
  With `overwrite`, a cell of another config is run again.
  """
  validate(config)
  outputs.check_writable(workdir, '--workdir')
  if not overwrite:
    _check_cells(config, workdir)
  with rundir.lock(workdir):
    runs, timing = run_cells(config, workdir, overwrite=overwrite)
    out = summarize(config, runs)
    out['timing'] = timing
    folder = epath.Path(workdir)
    outputs.write_json(folder / 'table.json', out)
    outputs.write_text(folder / 'table.md', markdown(out))
    figures.table_curves(out, str(folder / 'figure'))
  print(markdown(out))
  return out


# Compilation seconds as JAX reports them (tracing, lowering, XLA compile).
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_compile_seconds = [0.0]


def _on_event(event: str, duration: float, **_) -> None:
  if event in _COMPILE_EVENTS:
    _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def compile_seconds() -> float:
  """Seconds this process spent tracing, lowering and compiling so far."""
  return _compile_seconds[0]


def auto_batch_runs(config, num_runs: int) -> int:
  """Runs side by side per program when config.table.batch_runs is 0.

  On CPU one after another: vmapping runs gained nothing there (the digits
  MLP round on 2 Xeon cores, 2026-12-07: 4 runs vmapped 0.046 s against
  4 × 0.010 s one at a time, and the vmapped program compiled in 21 s
  against 11 s), and vmapped convolutions become grouped ones that
  XLA:CPU ran 4-6× slower (`sweep.auto_chunk`). On accelerators all the
  runs of a program at once, as many clients side by side were faster on
  a GPU (`rounds.auto_chunk`).
  """
  if config.table.batch_runs:
    return min(config.table.batch_runs, num_runs)
  return 1 if jax.default_backend() == 'cpu' else num_runs


def _program_key(alg: fed.Algorithm) -> tuple:
  """Cells with the same key share one compiled round: the algorithm and
  its hyperparameters that shape the program (the numeric ones are
  traced)."""
  return (alg.name, tuple(sorted((k, str(v)) for k, v in alg.hparams.items()
                                 if k not in alg.numeric)))


def _table_max_count(config, cell_configs, loaded: dict) -> int:
  """M of the whole table: the largest client of any cell's partition, so
  that every cell's client data have one shape. Partitions are computed
  (cheap, NumPy) once per (data, holdout, α, seed); datasets are loaded
  into `loaded` (by data config), which the table's cells reuse."""
  seen, biggest = set(), 1
  for c in cell_configs:
    key = (str(c.data.to_dict()), c.fed.holdout, c.fed.alpha, c.data.seed)
    if key in seen:
      continue
    seen.add(key)
    dkey = str(c.data.to_dict())
    if dkey not in loaded:
      loaded[dkey] = _load(c)
    ds, _ = _hold_out(loaded[dkey], c.fed.holdout, c.data.seed)
    partition.check_clients(len(ds.y_train), c.fed.num_clients,
                            c.fed.min_size)
    biggest = max(biggest, max(len(p) for p in split(c, ds)))
  return biggest


class _Steps:
  """Real local steps against the steps computed (a chunk of clients side
  by side, and runs side by side, loop as long as their longest)."""

  def __init__(self):
    self.real, self.computed = 0, 0

  def add(self, m_R: dict, sizes: list[int], members: int, width: int):
    """m_R: a round's metrics with a leading run axis of `width` (the
    first `members` real runs)."""
    chunk = np.asarray(m_R['chunk_steps']).reshape(width, -1, len(sizes))
    self.real += int(np.sum(np.asarray(m_R['real_steps'])[:members]))
    self.computed += int(width * np.sum(chunk.max(0) * np.asarray(sizes)))

  def share(self) -> float | None:
    return self.real / self.computed if self.computed else None


_stack = jax.jit(lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees))
_row = jax.jit(lambda tree, i: jax.tree.map(lambda a: a[i], tree))


def _advance(prog: _Program, lives: list[_Live], width: int,
             tally: _Steps) -> None:
  """Runs the live runs (all at the same start round) to the end: one
  after another (width 1) or `width` side by side, the last batch padded
  with copies of its last run (their results are dropped), so one program
  serves every batch."""
  f = prog.config.fed
  if lives[0].start >= f.rounds:
    return  # Finished cells: nothing to compile.
  round_fn = prog.round_fn(lives[0].data)
  sizes = prog.chunk_sizes(lives[0].states['server'])
  start = lives[0].start
  if width == 1:
    for live in lives:
      server, clients = live.states['server'], live.states['clients']
      for t in range(start, f.rounds):
        t0 = time.time()
        server, clients, m = round_fn(server, clients, t, live.knobs,
                                      live.data)
        m = jax.device_get(m)
        tally.add(jax.tree.map(lambda a: np.asarray(a)[None], m), sizes, 1,
                  1)
        stop = preemption.requested(t + 1)
        _record_round(live, t, server, lambda c=clients: c, m,
                      time.time() - t0, stop=stop)
        if stop and t + 1 < f.rounds:
          _stop_cells([live], t + 1)
    return
  padded = lives + [lives[-1]] * (width - len(lives))
  server = _stack([lv.states['server'] for lv in padded])
  clients = _stack([lv.states['clients'] for lv in padded])
  data_r = _stack([lv.data for lv in padded])
  knobs_r = _stack([lv.knobs for lv in padded])
  for t in range(start, f.rounds):
    t0 = time.time()
    server, clients, m = round_fn.many(server, clients, t, data_r, knobs_r)
    m = jax.device_get(m)
    tally.add(m, sizes, len(lives), width)
    tests = [None] * len(lives)
    if _evaluates(prog.config, t) and f.bn_policy != 'local':
      tests = prog.evaluate_many(
          fed.global_weights(prog.alg, server), lives)
    seconds = (time.time() - t0) / len(lives)
    stop = preemption.requested(t + 1)  # Once per round for every run.
    for i, live in enumerate(lives):
      _record_round(live, t, _row(server, i),
                    lambda i=i, c=clients: _row(c, i),
                    jax.tree.map(lambda a, i=i: a[i], m), seconds, tests[i],
                    stop=stop)
    if stop and t + 1 < f.rounds:
      _stop_cells(lives, t + 1)


def _stop_cells(lives: list[_Live], done: int) -> None:
  """After a signal: the runs in flight have saved round `done`; wait for
  the saves and stop (run_cells adds which cells had finished)."""
  for live in lives:
    live.mngr.wait_until_finished()
    live.mngr.close()
    live.watcher.close()
  names = ', '.join(epath.Path(lv.workdir).name for lv in lives)
  raise preemption.Preempted(f'round {done} of the cells in flight ({names})')


def run_cells(config, workdir: str, *, overwrite: bool = False
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Runs (or resumes) every cell of the table, each in its own workdir.

  Cells whose algorithms differ only in numeric hyperparameters, seeds and
  α share one compiled round (`_program_key`): the seed and the numbers
  are traced inputs, and every cell's clients are padded to the table's
  largest client M (`_table_max_count`), whose padding rows no step
  reads. `config.table.batch_runs` of them run side by side
  (`auto_batch_runs`); cells resumed from different rounds run in
  separate batches. Returns (the cells' records in `cells` order, timing:
  seconds of compilation and of the rest, compilations per algorithm, the
  share of computed local steps that were real).
  """
  finished = []
  with preemption.graceful():
    try:
      return _run_cells(config, workdir, overwrite, finished)
    except preemption.Preempted as e:
      raise preemption.Preempted(
          f'{e.saved} (table cell {len(finished) + 1} of '
          f'{len(cells(config))}; {len(finished)} finished)') from None


def _run_cells(config, workdir: str, overwrite: bool, finished: list
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """run_cells' work, inside its signal handling; `finished` collects the
  cells as they finish."""
  saves = _Saves()
  try:
    return _run_table(config, workdir, overwrite, finished, saves)
  finally:
    saves.close()


def _run_table(config, workdir: str, overwrite: bool, finished: list,
               saves: _Saves) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """_run_cells inside the closing of its managers (`saves`)."""
  t_start, c_start = time.time(), compile_seconds()
  todo = cells(config)
  configs = {cell: cell_config(config, cell) for cell in todo}
  algs = {cell: fed.build_algorithm(cell.algorithm,
                                    configs[cell].fed.hparams.to_dict())
          for cell in todo}
  loaded = {}
  max_count = _table_max_count(config, configs.values(), loaded)
  groups: dict[tuple, list[Cell]] = {}
  for cell in todo:
    groups.setdefault(_program_key(algs[cell]), []).append(cell)
  records, compiles, widths = {}, {}, {}
  tally = _Steps()
  for key, group in groups.items():
    first = configs[group[0]]
    dkey = str(first.data.to_dict())
    if dkey not in loaded:  # Loaded once per data config.
      loaded[dkey] = _load(first)
    prog = _Program(first, algs[group[0]], loaded[dkey], max_count)
    width = auto_batch_runs(config, len(group))
    widths[key[0]] = width
    for i in range(0, len(group), width):
      batch = group[i:i + width]
      lives = []
      for cell in batch:
        c = configs[cell]
        dk = str(c.data.to_dict())
        if dk not in loaded:
          loaded[dk] = _load(c)
        lives.append(_open_run(c, cell_dir(workdir, cell), algs[cell],
                               overwrite, prog, loaded[dk]))
      by_start: dict[int, list[_Live]] = {}
      for live in lives:
        by_start.setdefault(live.start, []).append(live)
      for members in by_start.values():
        if preemption.pending():  # A signal between two batches of cells.
          _stop_cells(lives, members[0].start)
        _advance(prog, members, width, tally)
      saves.close()  # The previous batch's, written while this one ran.
      for cell, live in zip(batch, lives):
        # The table's figure draws every cell: no figure per cell.
        records[cell] = _cell_record(
            cell, live.workdir, _close_run(live, figure=False, saves=saves))
        finished.append(cell)
    compiles[key[0]] = compiles.get(key[0], 0) + prog.compiles()
  total = time.time() - t_start
  compile_s = compile_seconds() - c_start
  timing = {'seconds': round(total, 2), 'compile_seconds': round(compile_s, 2),
            'run_seconds': round(total - compile_s, 2),
            'compiles_per_algorithm': compiles,
            'batch_runs': widths, 'max_count': max_count,
            'real_step_share': tally.share(),
            'real_steps': tally.real, 'computed_steps': tally.computed,
            'backend': jax.default_backend()}
  return [records[c] for c in todo], timing


def _cell_record(cell: Cell, workdir: str, res: dict[str, Any]
                 ) -> dict[str, Any]:
  """A cell's final accuracies and its accuracy curve (metrics.jsonl)."""
  rows = [r for r in outputs.read_jsonl(rundir.metrics_path(workdir)) or []
          if 'test_accuracy' in r]
  curve = {'round': [r['round'] for r in rows],
           'test_accuracy': [r['test_accuracy'] for r in rows]}
  if rows and 'val_accuracy' in rows[0]:
    curve['val_accuracy'] = [r['val_accuracy'] for r in rows]
  return {'algorithm': cell.algorithm, 'alpha': cell.alpha,
          'point': dict(cell.point), 'seed': cell.seed, 'workdir': workdir,
          'final': res['final'], 'curve': curve,
          'held_out': res['partition']['held_out'],
          'per_example': _cell_per_example(
              workdir, res, curve, res['config']['table']['last_rounds'])}


def _cell_per_example(workdir: str, res: dict[str, Any], curve: dict,
                      last: int) -> dict[str, np.ndarray]:
  """A finished cell's per-example views (fed/intervals.py), each kept
  only if its mean over the test images is the accuracy the run reported
  (a file of another run is not used)."""
  got = intervals.views(workdir, curve['round'][-last:])
  want = {'final': res['final'].get('test_accuracy'),
          'last': (robust.last_mean(curve['test_accuracy'], last)
                   if curve['test_accuracy'] else None),
          'pooled_recal': res['final'].get('pooled_recal_test_accuracy')}
  out = {}
  for view, v in got.items():
    if _finite(want[view]) and abs(float(v.mean()) - want[view]) < 1e-9:
      out[view] = v
    else:
      logging.warning('%s: per-example %s correctness (mean %s) does not '
                      'match the reported accuracy %s; not used.', workdir,
                      view, float(v.mean()), want[view])
  return out


def _mean(values) -> float:
  v = np.array([np.nan if x is None else x for x in values], np.float64)
  return float(np.mean(v))


def _sample_std(values) -> float | None:
  """The sample standard deviation (ddof = 1); None for a single seed."""
  v = np.array([np.nan if x is None else x for x in values], np.float64)
  return float(np.std(v, ddof=1)) if len(v) > 1 else None


def select(runs: list[dict[str, Any]], selection: str, *,
           last: int | None = None, resolution: float = 0.0
           ) -> dict[str, Any]:
  """The selected grid point of one (algorithm, α) from its runs.

  The score of a point is the mean over seeds of the validation accuracy
  (selection 'validation') or test accuracy ('test'): of the final round,
  or with `last` of the mean over each run's last `last` evaluations
  (`robust.last_mean`; records with a curve). A point with a non-finite
  score (a diverged run) cannot win; the first listed of equal scores
  wins, and every point within `resolution` (one held-out example) of the
  best is reported as tied. Returns {'label', 'point', 'scores': {label:
  score}, 'tied': [labels]}.
  """
  key = 'val_accuracy' if selection == 'validation' else 'test_accuracy'
  by_label: dict[str, list] = {}
  points = {}
  for r in runs:
    label = point_label(r['point'])
    if last and key in r.get('curve', {}):
      value = robust.last_mean(r['curve'][key], last)
    else:
      value = r['final'].get(key)
    by_label.setdefault(label, []).append(value)
    points[label] = r['point']
  scores = {label: _mean(v) for label, v in by_label.items()}
  best = robust.select(scores, resolution)
  return {'label': best['label'], 'point': points[best['label']],
          'scores': outputs.finite_or_none(scores), 'tied': best['tied']}


def _entry(won: list[dict[str, Any]], sel: dict[str, Any], t
           ) -> dict[str, Any]:
  """One (algorithm, α) cell of table.json from its selected runs."""
  accs = [r['final']['test_accuracy'] for r in won]
  curves = [r.get('curve', {}).get('test_accuracy') or
            [r['final']['test_accuracy']] for r in won]
  lasts = [robust.last_mean(c, t.last_rounds) for c in curves]
  recal = [r['final'].get('pooled_recal_test_accuracy') for r in won]
  flagged = [r['seed'] for r, c in zip(won, curves)
             if robust.collapsed(c, t.last_rounds, t.collapse)]
  per = [r.get('per_example') or {} for r in won]
  return {'mean': _mean(accs), 'std': _sample_std(accs), 'runs': accs,
          'seeds': [r['seed'] for r in won], 'selected': sel['point'],
          'scores': sel['scores'], 'tied': sel['tied'],
          'final': robust.cell_summary(accs),
          'last': robust.cell_summary(lasts), 'last_runs': lasts,
          'pooled_recal': (robust.cell_summary(recal)
                           if all(x is not None for x in recal) else None),
          'pooled_recal_runs': recal,
          # Over seeds and test images (None where a seed has no
          # per-example data): what the table prints and the verdicts use.
          'intervals': {v: intervals.cell_interval([p.get(v) for p in per])
                        for v in intervals.VIEWS},
          'collapsed_seeds': flagged}


def _findings(config, rows, won: dict[tuple[float, str], list]
              ) -> list[dict[str, Any]]:
  """'<algorithm> > fedavg at α = a' for every other algorithm of the
  table, on the final round, the last rounds' mean and the pooled-BN view:
  the paired hierarchical bootstrap over seeds and test images
  (fed/intervals.py) of the per-example differences, with the t interval
  over seeds alone beside it ('t_over_seeds'); where a seed has no
  per-example data, the t interval over seeds decides (its method says
  so). `won`: the selected runs by (α, algorithm)."""
  t = config.table
  if 'fedavg' not in t.algorithms:
    return []
  out = []
  for row in rows:
    base = row['fedavg']
    for name in t.algorithms:
      if name == 'fedavg':
        continue
      mine = row[name]
      for view, stat, key in (
          ('final', 'final-round test accuracy', 'runs'),
          ('last', (f'mean test accuracy of the last {t.last_rounds} '
                    'evaluations'), 'last_runs'),
          ('pooled_recal', ('final test accuracy with BN recalibrated on '
                            "the clients' pooled data"),
           'pooled_recal_runs')):
        f = _paired(row['alpha'], name, view, stat, key, mine, base, won)
        if f is not None:
          out.append(f)
  return out


def _paired(alpha: float, name: str, view: str, stat: str, key: str,
            mine: dict[str, Any], base: dict[str, Any],
            won: dict[tuple[float, str], list]) -> dict[str, Any] | None:
  """One finding of `_findings`: where every seed has per-example data,
  the bootstrap over seeds and test images, resolved only when the t
  interval over seeds agrees (with 5 seeds the bootstrap's top level has no
  small-sample correction and can be narrower than the t interval: a
  difference that one bad seed carries is then not called resolved); else
  the t interval over seeds alone."""
  t_f = robust.paired_finding(
      name, alpha, stat, dict(zip(mine['seeds'], mine.get(key) or [])),
      dict(zip(base['seeds'], base.get(key) or [])))
  if t_f is None:
    return None

  def vectors(algorithm):
    return {r['seed']: (r.get('per_example') or {}).get(view)
            for r in won[(alpha, algorithm)]}

  mine_v, base_v = vectors(name), vectors('fedavg')
  if any(mine_v.get(s) is None or base_v.get(s) is None
         for s in t_f['seeds']):
    return t_f
  f = intervals.paired_finding(name, alpha, stat, mine_v, base_v)
  f['t_over_seeds'] = {k: t_f[k] for k in ('mean', 'std', 'ci', 'method',
                                           'resolved')}
  f['bootstrap_resolved'] = f['resolved']
  f['resolved'] = bool(f['resolved'] and t_f['resolved'])
  f['rule'] = 'bootstrap and t over seeds'
  return f


def summarize(config, runs: list[dict[str, Any]]) -> dict[str, Any]:
  """table.json: the protocol, one row per α with each algorithm's selected
  point and its test accuracy (final round: mean and sample std over seeds
  with a t interval; the last rounds' mean; the pooled-BN view; collapsed
  seeds), the findings with verdicts, and every cell's record."""
  t, f = config.table, config.fed
  n_val, n_test = _held_out_examples(runs), _test_examples(config)
  resolution = 1.0 / n_val if (t.selection == 'validation' and n_val) else (
      1.0 / n_test)
  rows, won_by = [], {}
  for al in t.alphas:
    row = {'dataset': config.data.name, 'alpha': float(al)}
    for a in t.algorithms:
      mine = [r for r in runs if r['algorithm'] == a and
              r['alpha'] == float(al)]
      sel = select(mine, t.selection, last=t.last_rounds,
                   resolution=resolution)
      won = [r for r in mine if point_label(r['point']) == sel['label']]
      won_by[(float(al), a)] = won
      row[a] = _entry(won, sel, t)
    rows.append(row)
  protocol = {
      'selection': t.selection,
      'selection_score': f'mean over seeds of the mean over the last '
                         f'{t.last_rounds} evaluations',
      'tie': f'within {resolution:.4g} (one '
             f"{'held-out' if t.selection == 'validation' else 'test'} "
             'example) of the best score',
      'holdout': t.holdout if t.selection == 'validation' else 0.0,
      'std': 'sample std (ddof = 1)',
      'interval': (f'{intervals.METHOD} ({intervals.N_BOOT} replicates, '
                   'percentile), clipped to [0, 1]; [lo, hi]t: Student t '
                   'over seeds (95 %), for a cell or finding without '
                   'per-example data'),
      'interval_t': 'Student t over seeds (95 %), clipped to [0, 1] '
                    "(each cell's final, last and pooled_recal)",
      'test_examples': n_test,
      'last_rounds': t.last_rounds, 'collapse_threshold': t.collapse,
      'rounds': f.rounds, 'num_clients': f.num_clients,
      'fraction': f.fraction, 'local_epochs': f.local_epochs,
      'batch_size': f.batch_size, 'alphas': [float(a) for a in t.alphas],
      'seeds': [int(s) for s in t.seeds],
      'grids': {a: g for a in t.algorithms if (g := _grid(config, a))},
      'hparams': {a: _table_hparams(config, a) for a in t.algorithms},
      'model': config.model.name, 'dataset': config.data.name,
      'optim': config.optim.to_dict(), 'code': rundir.code_version()}
  return outputs.finite_or_none({
      'algorithms': list(t.algorithms), 'protocol': protocol, 'rows': rows,
      'findings': _findings(config, rows, won_by),
      'cells': [{k: v for k, v in r.items() if k != 'per_example'}
                for r in runs],
      'seeds': protocol['seeds'], 'model': config.model.name})


def _held_out_examples(runs) -> int:
  held = [r.get('held_out') for r in runs if r.get('held_out')]
  return int(held[0]) if held else 0


def _test_examples(config) -> int:
  return int(len(_load(config).y_test))


def _finite(x) -> bool:
  return x is not None and math.isfinite(x)


def _pct(s: dict[str, Any] | None, *, ci: bool = True,
         boot: dict[str, Any] | None = None) -> str:
  """'93.06 ± 0.79 [92.1, 94.0]' from a cell summary (percent): the
  bracket is `boot`'s interval (over seeds and test images) when given,
  else the summary's t interval marked 't'."""
  if not s or not _finite(s.get('mean')):
    return 'n/a'
  text = f"{100 * s['mean']:.2f}"
  if _finite(s.get('std')):
    text += f" ± {100 * s['std']:.2f}"
  if ci and boot and boot.get('ci'):
    text += f" [{100 * boot['ci'][0]:.1f}, {100 * boot['ci'][1]:.1f}]"
  elif ci and s.get('ci'):
    text += f" [{100 * s['ci'][0]:.1f}, {100 * s['ci'][1]:.1f}]t"
  return text


def _view_text(entry: dict[str, Any], view: str) -> str:
  return _pct(entry.get(view),
              boot=(entry.get('intervals') or {}).get(view))


def _cell_text(entry: dict[str, Any]) -> str:
  if not _finite(entry['mean']):
    return 'n/a'
  text = _pct(entry.get('final') or {'mean': entry['mean'],
                                     'std': entry['std']},
              boot=(entry.get('intervals') or {}).get('final'))
  if entry.get('collapsed_seeds'):
    text += f" †{entry['collapsed_seeds']}"
  label = point_label(entry.get('selected') or {})
  if label and len(entry.get('tied') or []) > 1:
    label += ' (tied: ' + ', '.join(entry['tied']) + ')'
  return f'{text}<br>{label}' if label else text


def _layout(out, title: str, text) -> list[str]:
  algs = out['algorithms']
  lines = ['', title, '', '| data | α | ' + ' | '.join(algs) + ' |',
           '|---|---|' + '---|' * len(algs)]
  for r in out['rows']:
    lines.append(f"| {r['dataset']} | {r['alpha']:g} | " +
                 ' | '.join(text(r[a]) for a in algs) + ' |')
  return lines


def _reverse(f: dict[str, Any]) -> bool:
  """Whether a finding's interval lies below 0: for a bootstrap finding,
  its t interval over seeds too (`_paired`'s rule)."""
  below = bool(f.get('ci')) and f['ci'][1] < 0
  t = f.get('t_over_seeds')
  if t is not None:
    below = below and bool(t.get('ci')) and t['ci'][1] < 0
  return below


def _t_text(f: dict[str, Any]) -> str:
  """'; t over seeds alone: [lo, hi], not resolved' for a bootstrap
  finding (its interval over seeds without the test set's noise)."""
  t = f.get('t_over_seeds')
  if not t or not t.get('ci'):
    return ''
  lo, hi = t['ci']
  word = ('resolved' if t['resolved'] else
          'the reverse resolved' if hi < 0 else 'not resolved')
  return f'; t over seeds alone: [{lo:.3f}, {hi:.3f}], {word}'


def markdown(out: dict[str, Any]) -> str:
  """table.md: a header that says how the table was made, then Table 1's
  layout (final test accuracy %, mean ± sample std over seeds [95 %
  hierarchical bootstrap interval over seeds and test images; '[…]t': a t
  interval over seeds, for a cell without per-example data], the selected
  grid value under it, † and the seeds whose final round collapsed), the
  robust views in the same layout, and the verdicts of the comparisons
  with FedAvg."""
  p = out['protocol']
  grids = '; '.join(f'{a} {k} ∈ {{{", ".join(f"{v:g}" for v in vs)}}}'
                    for a, g in p['grids'].items() for k, vs in g.items())
  score = p.get('selection_score', 'final accuracy')
  if p['selection'] == 'validation':
    how = (f"validation: the grid value with the best {score} on "
           f"{100 * p['holdout']:g}% of the training set, held out from "
           "every client, is selected; its test accuracy is shown")
  else:
    how = (f"test (the paper's protocol): the grid value with the best "
           f"{score} on the test set is selected and shown")
  n_test = p.get('test_examples')
  lines = [
      f"Final test accuracy (%) of the global model after {p['rounds']} "
      f"rounds: mean ± {p['std']} over seeds {p['seeds']}"
      + (' [95 % interval]' if 'interval' in p else '') + '.',
      '',
      f"- data {p['dataset']}, model {p['model']}; K = {p['num_clients']} "
      f"clients, Q = {p['fraction']:g}, E = {p['local_epochs']}, "
      f"B = {p['batch_size']}, local SGD lr {p['optim']['lr']:g}",
      f"- grids: {grids or 'none'}",
      f'- selection: {how}' + (f"; ties: {p['tie']}" if 'tie' in p else ''),
  ]
  if 'interval' in p:
    lines.append(f"- intervals: {p['interval']}")
  if p.get('interval', '').startswith('hierarchical'):
    lines.append(
        f"- with {len(p['seeds'])} seeds the bootstrap resamples few seeds "
        'and has no small-sample correction: its seed part is narrower than '
        "a t interval's, so each finding shows the t interval over seeds "
        'alone beside it')
  if n_test:
    lines.append(f'- test set: {n_test} images, one image = '
                 f'{100 / n_test:.2f} points')
  if 'collapse_threshold' in p:
    lines.append(f"- † seeds whose final accuracy is more than "
                 f"{100 * p['collapse_threshold']:g} points below the mean "
                 f"of their previous evaluations (of the last "
                 f"{p['last_rounds']}): a collapsed final round")
  lines.append(f"- code: {p['code']}")
  lines += _layout(out, 'Final round (the paper\'s number):', _cell_text)
  if 'last_rounds' in p:
    lines += _layout(out, f"Mean over the last {p['last_rounds']} "
                     'evaluations (robust to one bad round):',
                     lambda e: _view_text(e, 'last'))
    if any(r[a].get('pooled_recal') for r in out['rows']
           for a in out['algorithms']):
      lines += _layout(
          out, 'Final model with BN statistics recalibrated on the clients\' '
          'pooled training data (a view a server does not have):',
          lambda e: _view_text(e, 'pooled_recal'))
  if out.get('findings'):
    lines += ['', 'Findings (difference in accuracy, paired by seed and '
              f'test image: {intervals.METHOD}; each names its method):',
              '']
    lines += [f'- {stats.describe(f, 4)} [{f["statistic"]}]' + (
        ' (the reverse is resolved)' if _reverse(f) else '') + _t_text(f)
              for f in out['findings']]
  return '\n'.join(lines) + '\n'


def main(config: ml_collections.ConfigDict, workdir: str, *,
         overwrite: bool = False) -> dict[str, Any]:
  """What fedsim.py runs: `run` or `table` by config.mode."""
  if config.mode == 'table':
    return table(config, workdir, overwrite=overwrite)
  return run(config, workdir, overwrite=overwrite)

