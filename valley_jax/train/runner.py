"""run(config, workdir): data-parallel training with exact resume.

Failure behaviour: every numeric config field is range-checked and the
workdir proven writable before data are loaded; training stops at the first
non-finite loss (config.train.on_nonfinite = 'stop', the default) without
saving that epoch; metrics.jsonl is written atomically and rebuilt on resume
from the history stored in the checkpoint.

A run may start from another run's checkpoint rather than a fresh init
(`config.train.init_from = 'WORKDIR[@EPOCH]'`, the model-soups start θI): its
params and batch_stats become epoch 0, the optimiser starts fresh, and a
checkpoint of another architecture is refused before training starts.
`config.train.init_fresh = 'CLF'` keeps a fresh classifier head instead of
the checkpoint's (fine-tuning on a task with other classes).

Several processes (`valley_jax.distributed`): config.train.batch_size is the
global batch, split over all processes' devices; each process reads only its
rows of every batch (`sharding.gather`); metrics.jsonl is written by process
0, checkpoints by all together. The result equals a one-process run on as
many devices to float tolerance (tests/test_distributed.py).
"""

import contextlib
import os
import time
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from valley_jax import (checkpoint, checks, compile_cache, data, distributed,
                        models, outputs, preemption, rundir, sharding, watch)
from valley_jax.core import groups, steps
from valley_jax.errors import InputError, InputFileError

NonFiniteLossError = checks.NonFiniteLossError


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names and numeric ranges before anything is loaded or compiled.

  The numeric fields and their ranges are `checks.TRAIN_FIELDS`.
  """
  models.check_name(config.model.name)
  data.check_name(config.data.name)
  if config.optim.name not in steps.OPTIMIZERS:
    raise InputError(f'Unknown optimizer {config.optim.name!r}; choose one of '
                     f'{steps.OPTIMIZERS} (config.optim.name).')
  checks.check_policy(config.train.get('on_nonfinite', 'stop'),
                      'config.train.on_nonfinite')
  if config.train.get('init_fresh', ''):
    groups.check_group(config.train.init_fresh)
  compile_cache.check(config.get('compile_cache', ''))
  checks.check(config, checks.TRAIN_FIELDS)


def _check_init_from(config, workdir: str) -> None:
  """Before any data are loaded: config.train.init_from names a kept epoch
  of another run (only checked while `workdir` holds no run to resume)."""
  spec = config.train.get('init_from', '')
  if not spec or checkpoint.epochs(workdir):
    return
  if _same_path(rundir.split_epoch(spec)[0], workdir):
    raise InputError(f'config.train.init_from={spec!r} is this run\'s own '
                     'workdir; name the run to start from.')
  _init_source(spec)


def _init_source(spec: str) -> tuple[str, int]:
  """(workdir, resolved epoch) of config.train.init_from, or a clear error."""
  src, epoch = rundir.split_epoch(spec)
  try:
    step = checkpoint.resolve_epoch(src, epoch)
  except FileNotFoundError as e:
    raise InputFileError(f'config.train.init_from={spec!r}: {e}') from None
  checkpoint.check_training_run(src, 'config.train.init_from')
  return src, step


def _same_path(a: str, b: str) -> bool:
  if outputs.is_remote(a) or outputs.is_remote(b):  # Compare as written.
    return a.rstrip('/') == b.rstrip('/')
  return os.path.realpath(a) == os.path.realpath(b)


def _fresh_keys(params, group: str) -> frozenset[str]:
  """'params/...' paths of the leaves of `group` ('' = none)."""
  if not group:
    return frozenset()
  flat = flax.traverse_util.flatten_dict(groups.mask(params, group), sep='/')
  return frozenset(f'params/{k}' for k, m in flat.items() if m)


def merge_start(fresh, source, fresh_group: str = '') -> dict[str, Any]:
  """The source's params and batch_stats; the leaves of `fresh_group` keep
  their fresh init (a new classifier: 'CLF').

  Args:
    fresh: the variables this config builds.
    source: the variables of the checkpoint to start from (already checked
      with check_same_architecture).
    fresh_group: a parameter group of groups.GROUPS, or ''.

  Returns:
    {'params', 'batch_stats'}.

  >>> import numpy as np
  >>> f = {'params': {'conv1': {'kernel': np.zeros(2)},
  ...                 'head': {'kernel': np.zeros(3)}}, 'batch_stats': {}}
  >>> s = {'params': {'conv1': {'kernel': np.ones(2)},
  ...                 'head': {'kernel': np.ones(5)}}, 'batch_stats': {}}
  >>> out = merge_start(f, s, 'CLF')['params']
  >>> out['conv1']['kernel'].tolist(), out['head']['kernel'].tolist()
  ([1.0, 1.0], [0.0, 0.0, 0.0])
  """
  keep = _fresh_keys(fresh['params'], fresh_group)
  new = flax.traverse_util.flatten_dict(fresh['params'], sep='/')
  old = flax.traverse_util.flatten_dict(source['params'], sep='/')
  params = {k: v if f'params/{k}' in keep else old[k] for k, v in new.items()}
  return {'params': flax.traverse_util.unflatten_dict(params, sep='/'),
          'batch_stats': source.get('batch_stats') or {}}


def start_variables(config, variables, mesh) -> dict[str, Any]:
  """The epoch-0 variables: a fresh init, or config.train.init_from's.

  Args:
    config: the training config.
    variables: the fresh {'params', 'batch_stats'} of this config.
    mesh: where to place restored arrays.

  Returns:
    `variables`, or the params and batch_stats of the checkpoint named by
    config.train.init_from (ValueError if its architecture differs), with
    the group config.train.init_fresh kept fresh.
  """
  spec = config.train.get('init_from', '')
  if not spec:
    return variables
  src, epoch = _init_source(spec)
  restored, _ = checkpoint.restore_model(src, epoch, mesh)
  group = config.train.get('init_fresh', '')
  rundir.check_same_architecture(variables, restored,
                                 f'config.train.init_from={spec!r}',
                                 _fresh_keys(variables['params'], group))
  logging.info('Starting from epoch %d of %s (fingerprint %s).', epoch, src,
               checkpoint.fingerprint(restored))
  return merge_start(variables, restored, group)


def run(config: ml_collections.ConfigDict, workdir: str, *,
        overwrite: bool = False, stop_after: int | None = None) -> dict:
  """Trains (or resumes) the run of `config` in `workdir`.

  Args:
    config: see valley_jax.defaults.train_config.
    workdir: local or gs:// folder for checkpoints and metrics.jsonl.
    overwrite: replace a run of a different config found in `workdir`.
    stop_after: stop after this epoch (simulates a pre-emption in tests).
  Returns:
    The metrics of the last epoch run.
  """
  validate(config)
  outputs.check_writable(workdir, '--workdir')
  _check_init_from(config, workdir)
  # A signal while data load and compile is recorded; the run then stops
  # before its first step.
  with rundir.lock(workdir), preemption.graceful():
    return _train(config, workdir, overwrite, stop_after)


def _train(config, workdir: str, overwrite: bool, stop_after: int | None
           ) -> dict:
  """run()'s work once the config is accepted and the workdir locked."""
  ds = data.from_config(config.data)
  model = models.from_config(config.model, ds.num_classes, ds.input_shape)
  mesh = sharding.make_mesh(config.num_devices)
  bs = config.train.batch_size
  sharding.check_divisible(mesh, bs, 'config.train.batch_size')
  sharding.check_divisible(mesh, config.train.eval_batch_size,
                           'config.train.eval_batch_size')
  n_steps = len(ds.y_train) // bs
  if n_steps == 0:
    raise InputError(f'config.train.batch_size={bs} exceeds the '
                     f'{len(ds.y_train)} training examples.')
  mngr = rundir.open_run(workdir, config.to_dict(), overwrite=overwrite,
                         keep={*config.train.keep_epochs, config.train.epochs},
                         length='train.epochs')

  root = jax.random.key(config.seed)
  tx, schedule = steps.make_optimizer(config.optim,
                                      n_steps * config.train.epochs)
  variables = steps.init_variables(model, jax.random.fold_in(root, 0),
                                   ds.input_shape)
  if mngr.latest_step() is None:
    variables = start_variables(config, variables, mesh)
  state = sharding.put_replicated(mesh, steps.init_state(variables, tx))
  start, items, history = checkpoint.start_or_resume(
      mngr, checkpoint.state_items(state), config.to_dict(),
      rundir.metrics_path(workdir))
  state = checkpoint.state_from_items(items)

  rep, shd = sharding.replicated(mesh), sharding.sharded(mesh)
  augment = config.data.augment and ds.augmentable
  train_step = jax.jit(
      steps.make_train_step(model, tx, ds.mean, ds.std, augment),
      in_shardings=(rep, shd, shd, rep), out_shardings=(rep, rep),
      donate_argnums=0)
  eval_step = jax.jit(steps.make_eval_step(model, ds.mean, ds.std))
  train_key = jax.random.fold_in(root, 1)
  last = stop_after if stop_after is not None else config.train.epochs
  mid = _MidEpoch(workdir, config, n_steps, start)
  pos, ms = 0, []
  if mid.resumable(state):
    pos, state, ms = mid.restore(state)
  watcher = watch.Watcher(workdir, 'train', config.to_dict(),
                          total=n_steps * config.train.epochs,
                          start=start * n_steps + pos)
  row = {}
  if preemption.pending():
    _stop(mngr, mid, watcher, f'nothing new: the run stopped before its '
          f'first step; its latest checkpoint is epoch {start} in {workdir}')
  with contextlib.closing(watcher):  # Signals: run()'s graceful().
    for epoch in tqdm.trange(start + 1, last + 1, desc='train',
                             disable=distributed.progress_disabled(),
                             initial=start, total=config.train.epochs):
      t0 = time.time()
      stop = False
      batches = data.epoch_batches(len(ds.y_train), bs, config.data.seed,
                                   epoch)
      for i in range(pos, n_steps):
        # Each process reads its own rows of the batch (the global batch is
        # config.train.batch_size, split over all processes' devices).
        xb, yb = sharding.gather(mesh, (ds.x_train, ds.y_train), batches[i])
        state, m = train_step(state, xb, yb, train_key)
        ms.append(m)
        done = (epoch - 1) * n_steps + i + 1
        watcher.step(done)
        stop = preemption.requested(done)  # Every step, on every process.
        if i + 1 < n_steps and (stop or mid.due(done)):
          mid.save(done, state, history, ms)
          if stop:
            _stop(mngr, mid, watcher, f'epoch {epoch - 1} and {i + 1} of the '
                  f'{n_steps} steps of epoch {epoch} (global step {done}) in '
                  f'{workdir}/{checkpoint.STEPS_DIR}')
      pos = 0
      losses = np.array([m['loss'] for m in ms], np.float64)
      _check_finite(losses, epoch, config)
      test = steps.evaluate(eval_step, mesh, state.params, state.batch_stats,
                            ds.x_test, ds.y_test,
                            config.train.eval_batch_size)
      row = {'epoch': epoch,
             'train_loss': float(losses.mean()),
             'train_accuracy': float(np.mean([m['accuracy'] for m in ms])),
             'test_loss': test['loss'], 'test_accuracy': test['accuracy'],
             'lr': float(schedule(int(state.step) - 1)),
             'seconds': round(time.time() - t0, 3)}
      ms = []
      history.append(outputs.finite_or_none(row))
      checkpoint.save(mngr, epoch, state, config.to_dict(), history)
      outputs.write_jsonl(rundir.metrics_path(workdir), history)
      watcher.scalars(epoch * n_steps, {k: v for k, v in history[-1].items()
                                        if k != 'epoch'})
      if stop and epoch < last:  # A signal in the last epoch: just finish.
        _stop(mngr, mid, watcher, f'epoch {epoch} in {workdir}/'
              f'{checkpoint.CKPT_DIR}')
    watcher.step(max(last, start) * n_steps, force=True)
  mngr.wait_until_finished()
  mngr.close()
  mid.close(finished=last >= config.train.epochs)
  # A finished run started again trains nothing: report its last epoch.
  return row or (history or [{}])[-1]


def _stop(mngr, mid: '_MidEpoch', watcher: watch.Watcher, saved: str):
  """Waits for the checkpoints in flight, then raises Preempted."""
  watcher.close()
  mngr.wait_until_finished()
  mngr.close()
  mid.close(finished=False)
  raise preemption.Preempted(saved)


class _MidEpoch:
  """The mid-epoch checkpoints of a run (checkpoint.STEPS_DIR): the state
  after a global step, and the step metrics of its epoch so far, so that a
  resumed epoch ends with the same metrics row as an uninterrupted one.

  Each epoch's data order is a function of (config.data.seed, epoch), so
  the global step says where in the order the epoch resumes.
  """

  def __init__(self, workdir: str, config, n_steps: int, start: int):
    self.every = config.train.get('checkpoint_every_steps', 0)
    self.config, self.n_steps, self.start = config, n_steps, start
    self.mngr = checkpoint.manager(workdir, arrays=('model', 'opt'),
                                   folder=checkpoint.STEPS_DIR)

  def due(self, step: int) -> bool:
    return bool(self.every) and step % self.every == 0

  def resumable(self, state) -> bool:
    """Whether the latest mid-epoch checkpoint lies inside the epoch after
    the resumed one and belongs to this run's config."""
    step = self.mngr.latest_step()
    if step is None or int(state.step) != self.start * self.n_steps or not (
        self.start * self.n_steps < step < (self.start + 1) * self.n_steps):
      return False
    old = checkpoint.stored_config(self.mngr, step)
    return old is not None and not rundir.config_diff(old,
                                                      self.config.to_dict())

  def restore(self, state):
    """(position in the epoch, the state, the epoch's step metrics so far)."""
    step = self.mngr.latest_step()
    items = checkpoint.restore_items(self.mngr, step,
                                     checkpoint.state_items(state))
    part = checkpoint.stored_meta(self.mngr, step)['epoch_steps']
    ms = [{'loss': np.float32(a), 'accuracy': np.float32(b)}
          for a, b in zip(part['loss'], part['accuracy'])]
    logging.info('Resuming mid-epoch at global step %d.', step)
    return step - self.start * self.n_steps, checkpoint.state_from_items(
        items), ms

  def save(self, step: int, state, history, ms) -> None:
    got = jax.device_get([(m['loss'], m['accuracy']) for m in ms])  # One copy.
    part = {'loss': [float(a) for a, _ in got],
            'accuracy': [float(b) for _, b in got]}
    checkpoint.save_items(self.mngr, step, checkpoint.state_items(state),
                          self.config.to_dict(), history,
                          extra={'epoch_steps': part})

  def close(self, finished: bool) -> None:
    """Waits for saves; a finished run drops its mid-epoch checkpoints."""
    self.mngr.wait_until_finished()
    if finished:
      for step in self.mngr.all_steps():
        self.mngr.delete(step)
    self.mngr.close()


def _check_finite(losses: np.ndarray, epoch: int, config) -> None:
  """Stops (or warns, by config.train.on_nonfinite) on a non-finite loss."""
  checks.stop_if_nonfinite(
      losses, f'epoch {epoch}', epoch - 1,
      f'the learning rate config.optim.lr={config.optim.lr} is too high for '
      'this model, or the data hold NaN/inf',
      config.train.get('on_nonfinite', 'stop'), 'config.train.on_nonfinite')
