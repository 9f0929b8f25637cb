"""run(config, workdir): data-parallel training with exact resume.

Failure behaviour: every numeric config field is range-checked and the
workdir proven writable before data are loaded; training stops at the first
non-finite loss (config.train.on_nonfinite = 'stop', the default) without
saving that epoch; metrics.jsonl is written atomically and rebuilt on resume
from the history stored in the checkpoint.
"""

import time
from typing import Any

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
import tqdm

from valley_jax import (checkpoint, checks, data, models, outputs, sharding,
                        training)

METRICS = 'metrics.jsonl'
# Keys that may change between a run and its resumption.
_RESUMABLE_KEYS = ('data.data_dir', 'num_devices', 'train.on_nonfinite')
NonFiniteLossError = checks.NonFiniteLossError


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names and numeric ranges before anything is loaded or compiled.

  The numeric fields and their ranges are `checks.TRAIN_FIELDS`.
  """
  if config.model.name not in models.MODELS:
    raise ValueError(f'Unknown model {config.model.name!r}; choose one of '
                     f'{sorted(models.MODELS)} (config.model.name).')
  if config.data.name not in data.DATASETS:
    raise ValueError(f'Unknown dataset {config.data.name!r}; choose one of '
                     f'{sorted(data.DATASETS)} (config.data.name).')
  if config.optim.name not in training.OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {config.optim.name!r}; choose one of '
                     f'{training.OPTIMIZERS} (config.optim.name).')
  checks.check_policy(config.train.get('on_nonfinite', 'stop'),
                      'config.train.on_nonfinite')
  checks.check(config, checks.TRAIN_FIELDS)


def build(config: ml_collections.ConfigDict, ds: data.Dataset):
  """The model for a config and dataset, with its input shape checked."""
  m = config.model
  model = models.build_model(m.name, ds.num_classes, width=m.width, bn=m.bn,
                             bn_init=m.bn_init, **m.get('kwargs', {}))
  models.check_input_shape(m.name, model, ds.input_shape)
  return model


def _flat(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f'{prefix}{k}.') if isinstance(v, dict)
               else {f'{prefix}{k}': v})
  return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """Keys whose values differ between two config dicts (resume-safe ignored)."""
  a, b = _flat(old), _flat(checkpoint.as_json(new))
  keys = sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k not in _RESUMABLE_KEYS)
  return keys


def _metrics_path(workdir: str) -> epath.Path:
  return epath.Path(workdir) / METRICS


def evaluate(eval_step, mesh, params, batch_stats, x, y,
             batch_size: int) -> dict[str, float]:
  """Mean loss and accuracy over all of (x, y), padded batches masked out."""
  idx_SB, w_SB = data.padded_batches(len(y), batch_size)
  sums = []
  for idx, w in zip(idx_SB, w_SB):
    xb, yb, wb = sharding.put_sharded(mesh, (x[idx], y[idx], w))
    sums.append(eval_step(params, batch_stats, xb, yb, wb))
  tot = jax.tree.map(lambda *a: float(np.sum(a)), *sums)
  return {'loss': tot['loss'] / tot['count'],
          'accuracy': tot['correct'] / tot['count']}


def _prepare_workdir(config, workdir: str, overwrite: bool):
  """Opens the checkpoint manager; refuses a workdir of another config."""
  keep = {*config.train.keep_epochs, config.train.epochs}
  mngr = checkpoint.manager(workdir, keep)
  try:
    old = checkpoint.stored_config(mngr)
    diff = config_diff(old, config.to_dict()) if old is not None else []
  except checkpoint.CheckpointError as e:
    if not overwrite:
      raise checkpoint.CheckpointError(
          f'{e} Or pass --overwrite to start this run again.') from None
    diff = ['(damaged checkpoint)']
  if diff:
    if not overwrite:
      raise ValueError(
          f'{workdir} holds a run with a different config (keys {diff}); use '
          'another --workdir or pass --overwrite to start again.')
    logging.warning('Overwriting the run in %s.', workdir)
    mngr.close()
    (epath.Path(workdir) / checkpoint.CKPT_DIR).rmtree(missing_ok=True)
    _metrics_path(workdir).unlink(missing_ok=True)
    mngr = checkpoint.manager(workdir, keep)
  return mngr


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
  ds = data.from_config(config.data)
  model = build(config, ds)
  mesh = sharding.make_mesh(config.num_devices)
  bs = config.train.batch_size
  sharding.check_divisible(mesh, bs, 'config.train.batch_size')
  sharding.check_divisible(mesh, config.train.eval_batch_size,
                           'config.train.eval_batch_size')
  steps = len(ds.y_train) // bs
  if steps == 0:
    raise ValueError(f'config.train.batch_size={bs} exceeds the '
                     f'{len(ds.y_train)} training examples.')
  mngr = _prepare_workdir(config, workdir, overwrite)

  root = jax.random.key(config.seed)
  tx, schedule = training.make_optimizer(config.optim,
                                         steps * config.train.epochs)
  variables = training.init_variables(model, jax.random.fold_in(root, 0),
                                      ds.input_shape)
  state = sharding.put_replicated(mesh, training.init_state(variables, tx))
  start = mngr.latest_step()
  if start is None:
    start = 0
    checkpoint.save(mngr, 0, state, config.to_dict())
    mngr.wait_until_finished()
  else:
    state = checkpoint.restore_state(mngr, start, state)
    logging.info('Resuming from epoch %d of %s.', start, workdir)
  history = checkpoint.rebuild_metrics(mngr, start, _metrics_path(workdir))

  rep, shd = sharding.replicated(mesh), sharding.sharded(mesh)
  augment = config.data.augment and ds.augmentable
  train_step = jax.jit(
      training.make_train_step(model, tx, ds.mean, ds.std, augment),
      in_shardings=(rep, shd, shd, rep), out_shardings=(rep, rep),
      donate_argnums=0)
  eval_step = jax.jit(training.make_eval_step(model, ds.mean, ds.std))
  train_key = jax.random.fold_in(root, 1)
  last = stop_after if stop_after is not None else config.train.epochs
  row = {}
  for epoch in tqdm.trange(start + 1, last + 1, desc='train', disable=None,
                           initial=start, total=config.train.epochs):
    t0 = time.time()
    ms = []
    for idx in data.epoch_batches(len(ds.y_train), bs, config.data.seed,
                                  epoch):
      state, m = train_step(state, ds.x_train[idx], ds.y_train[idx], train_key)
      ms.append(m)
    losses = np.array([m['loss'] for m in ms], np.float64)
    _check_finite(losses, epoch, config)
    test = evaluate(eval_step, mesh, state.params, state.batch_stats,
                    ds.x_test, ds.y_test, config.train.eval_batch_size)
    row = {'epoch': epoch,
           'train_loss': float(losses.mean()),
           'train_accuracy': float(np.mean([m['accuracy'] for m in ms])),
           'test_loss': test['loss'], 'test_accuracy': test['accuracy'],
           'lr': float(schedule(int(state.step) - 1)),
           'seconds': round(time.time() - t0, 3)}
    history.append(outputs.finite_or_none(row))
    checkpoint.save(mngr, epoch, state, config.to_dict(), history)
    outputs.write_jsonl(_metrics_path(workdir), history)
  mngr.wait_until_finished()
  mngr.close()
  # A finished run started again trains nothing: report its last epoch.
  return row or (history or [{}])[-1]


def _check_finite(losses: np.ndarray, epoch: int, config) -> None:
  """Stops (or warns, by config.train.on_nonfinite) on a non-finite loss."""
  checks.stop_if_nonfinite(
      losses, f'epoch {epoch}', epoch - 1,
      f'the learning rate config.optim.lr={config.optim.lr} is too high for '
      'this model, or the data hold NaN/inf',
      config.train.get('on_nonfinite', 'stop'), 'config.train.on_nonfinite')
