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
many devices to float tolerance (tests/test_multihost.py).
"""

import os
import time
from typing import Any

from absl import logging
from etils import epath
import flax
import jax
import ml_collections
import numpy as np
import tqdm

from valley_jax import (checkpoint, checks, compile_cache, data, distributed,
                        groups, models, outputs, sharding, training)

METRICS = 'metrics.jsonl'
# Keys that may change between a run and its resumption.
_RESUMABLE_KEYS = ('data.data_dir', 'num_devices', 'train.on_nonfinite',
                   'compile_cache')
# Keys added after runs were stored: a stored config without one holds this.
_NEW_KEY_DEFAULTS = {'train.init_from': '', 'train.init_fresh': ''}
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
  if config.train.get('init_fresh', ''):
    groups.check_group(config.train.init_fresh)
  compile_cache.check(config.get('compile_cache', ''))
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
  for k, v in _NEW_KEY_DEFAULTS.items():
    if k in b:
      a.setdefault(k, v)
  keys = sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k not in _RESUMABLE_KEYS)
  return keys


def split_epoch(spec: str) -> tuple[str, int | str]:
  """'WORKDIR@EPOCH' -> (WORKDIR, EPOCH); no (numeric) suffix means 'last'.

  Args:
    spec: a workdir, optionally followed by '@' and an epoch or 'last'.

  Returns:
    (workdir, epoch as an int or 'last').

  >>> split_epoch('runs/pre@5'), split_epoch('gs://b/run')
  (('runs/pre', 5), ('gs://b/run', 'last'))
  """
  head, sep, tail = spec.rpartition('@')
  if sep and (tail.isdigit() or tail == 'last'):
    return head, int(tail) if tail.isdigit() else tail
  return spec, 'last'


def _check_init_from(config, workdir: str) -> None:
  """Before any data are loaded: config.train.init_from names a kept epoch
  of another run (only checked while `workdir` holds no run to resume)."""
  spec = config.train.get('init_from', '')
  if not spec or checkpoint.epochs(workdir):
    return
  if _same_path(split_epoch(spec)[0], workdir):
    raise ValueError(f'config.train.init_from={spec!r} is this run\'s own '
                     'workdir; name the run to start from.')
  _init_source(spec)


def _init_source(spec: str) -> tuple[str, int]:
  """(workdir, resolved epoch) of config.train.init_from, or a clear error."""
  src, epoch = split_epoch(spec)
  try:
    return src, checkpoint.resolve_epoch(src, epoch)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'config.train.init_from={spec!r}: {e}') from None


def _same_path(a: str, b: str) -> bool:
  if '://' in a or '://' in b:  # gs:// and the like: compare as written.
    return a.rstrip('/') == b.rstrip('/')
  return os.path.realpath(a) == os.path.realpath(b)


def _leaf_shapes(variables) -> dict[str, tuple[tuple[int, ...], str]]:
  """'collection/module/leaf' -> (shape, dtype) of params and batch_stats."""
  flat = jax.tree_util.tree_flatten_with_path(
      {'params': variables['params'],
       'batch_stats': variables.get('batch_stats') or {}})[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path):
          (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in flat}


def check_same_architecture(fresh, source, where: str,
                            skip: frozenset[str] = frozenset()) -> None:
  """Raises ValueError naming the first leaf that differs in path, shape
  or dtype between two {'params', 'batch_stats'} trees.

  Args:
    fresh: the variables this config builds.
    source: the variables of the checkpoint to start from.
    where: names the checkpoint in the message.
    skip: leaves not compared ('params/head/kernel', ...).

  >>> import numpy as np
  >>> v = {'params': {'w': np.zeros((2, 3))}}
  >>> check_same_architecture(v, {'params': {'w': np.zeros((3, 3))}}, 'x')
  Traceback (most recent call last):
  ...
  ValueError: x holds another architecture: params/w has shape (3, 3) ...
  """
  a, b = _leaf_shapes(fresh), _leaf_shapes(source)
  for key in sorted((set(a) | set(b)) - skip):
    if a.get(key) != b.get(key):
      there = ('no such array' if key not in b else
               f'has shape {b[key][0]} {b[key][1]}')
      here = ('none' if key not in a else f'{a[key][0]} {a[key][1]}')
      hint = (" (or a new head: config.train.init_fresh='CLF')"
              if key.startswith('params/head/') else '')
      raise ValueError(
          f'{where} holds another architecture: {key} {there} there and '
          f'{here} in this config; init_from needs the same model (name, '
          f'width, sizes) and number of classes{hint}.')


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
  check_same_architecture(variables, restored,
                          f'config.train.init_from={spec!r}',
                          _fresh_keys(variables['params'], group))
  logging.info('Starting from epoch %d of %s (fingerprint %s).', epoch, src,
               checkpoint.fingerprint(restored))
  return merge_start(variables, restored, group)


def _metrics_path(workdir: str) -> epath.Path:
  return epath.Path(workdir) / METRICS


def evaluate(eval_step, mesh, params, batch_stats, x, y,
             batch_size: int) -> dict[str, float]:
  """Mean loss and accuracy over all of (x, y), padded batches masked out."""
  idx_SB, w_SB = data.padded_batches(len(y), batch_size)
  sums = []
  for idx, w in zip(idx_SB, w_SB):
    xb, yb = sharding.gather(mesh, (x, y), idx)
    sums.append(eval_step(params, batch_stats, xb, yb,
                          sharding.put_sharded(mesh, w)))
  tot = jax.tree.map(lambda *a: float(np.sum(a)), *sums)
  return {'loss': tot['loss'] / tot['count'],
          'accuracy': tot['correct'] / tot['count']}


def open_run(workdir: str, config: dict[str, Any], *, overwrite: bool,
             keep=(), arrays=('model', 'opt'), ignore=(),
             outputs_to_drop=(METRICS,)):
  """Opens a run's checkpoint manager; refuses a workdir of another config.

  Shared by the mains. A workdir whose stored config differs (keys under
  `ignore` aside) or whose checkpoint is damaged is refused unless
  `overwrite`, which deletes its checkpoints and `outputs_to_drop`.

  Args:
    workdir: the run's folder.
    config: the run's config as a dict.
    overwrite: replace a run of another config.
    keep: steps to keep besides step 0 and the latest.
    arrays: the array items of the checkpoints.
    ignore: key prefixes that may differ between a run and its resumption.
    outputs_to_drop: files of the old run deleted on overwrite.
  Returns:
    The checkpoint manager.
  """
  mngr = checkpoint.manager(workdir, keep, arrays=arrays)
  try:
    old = checkpoint.stored_config(mngr)
    diff = [k for k in (config_diff(old, config) if old is not None else [])
            if not k.startswith(tuple(ignore))]
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
    for name in outputs_to_drop:
      (epath.Path(workdir) / name).unlink(missing_ok=True)
    mngr = checkpoint.manager(workdir, keep, arrays=arrays)
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
  _check_init_from(config, workdir)
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
  mngr = open_run(workdir, config.to_dict(), overwrite=overwrite,
                  keep={*config.train.keep_epochs, config.train.epochs})

  root = jax.random.key(config.seed)
  tx, schedule = training.make_optimizer(config.optim,
                                         steps * config.train.epochs)
  variables = training.init_variables(model, jax.random.fold_in(root, 0),
                                      ds.input_shape)
  if mngr.latest_step() is None:
    variables = start_variables(config, variables, mesh)
  state = sharding.put_replicated(mesh, training.init_state(variables, tx))
  start, items, history = checkpoint.start_or_resume(
      mngr, checkpoint.state_items(state), config.to_dict(),
      _metrics_path(workdir))
  state = checkpoint.state_from_items(items)

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
  for epoch in tqdm.trange(start + 1, last + 1, desc='train',
                           disable=distributed.progress_disabled(),
                           initial=start, total=config.train.epochs):
    t0 = time.time()
    ms = []
    for idx in data.epoch_batches(len(ds.y_train), bs, config.data.seed,
                                  epoch):
      # Each process reads its own rows of the batch (the global batch is
      # config.train.batch_size, split over all processes' devices).
      xb, yb = sharding.gather(mesh, (ds.x_train, ds.y_train), idx)
      state, m = train_step(state, xb, yb, train_key)
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
