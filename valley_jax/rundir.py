"""A run's folder: the stored config, its comparison, and opening a run.

Shared by the three mains (train, probe-with-training, fedsim): a run is a
workdir whose checkpoints hold the config that made them; a later command
resumes it only with the same config (`config_diff`), and `open_run`
refuses another unless --overwrite. Also `split_epoch` ('WORKDIR@EPOCH'
specs) and `check_same_architecture` (a checkpoint fits a model).
"""

import contextlib
import fcntl
import functools
import importlib.metadata
import json
import os
import pathlib
import socket
import subprocess
import time
from typing import Any

from absl import logging
from etils import epath
import jax

from valley_jax import checkpoint, distributed, outputs
from valley_jax.errors import InputError, WorkdirBusyError

# Every main's per-epoch or per-round metrics file in its workdir.
METRICS = 'metrics.jsonl'
# Keys that may change between a run and its resumption.
_RESUMABLE_KEYS = ('data.data_dir', 'num_devices', 'train.on_nonfinite',
                   'compile_cache', 'train.checkpoint_every_steps')
# Keys added after runs were stored: a stored config without one holds this.
_NEW_KEY_DEFAULTS = {'train.init_from': '', 'train.init_fresh': '',
                     'fed.align': False}

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
  valley_jax.errors.InputError: x holds another architecture: params/w has ...
  """
  a, b = _leaf_shapes(fresh), _leaf_shapes(source)
  for key in sorted((set(a) | set(b)) - skip):
    if a.get(key) != b.get(key):
      there = ('no such array' if key not in b else
               f'has shape {b[key][0]} {b[key][1]}')
      here = ('none' if key not in a else f'{a[key][0]} {a[key][1]}')
      hint = (" (or a new head: config.train.init_fresh='CLF')"
              if key.startswith('params/head/') else '')
      raise InputError(
          f'{where} holds another architecture: {key} {there} there and '
          f'{here} in this config; init_from needs the same model (name, '
          f'width, sizes) and number of classes{hint}.')



def metrics_path(workdir: str) -> epath.Path:
  """<workdir>/metrics.jsonl."""
  return epath.Path(workdir) / METRICS


def open_run(workdir: str, config: dict[str, Any], *, overwrite: bool,
             keep=(), arrays=('model', 'opt'), ignore=(),
             outputs_to_drop=(METRICS,), length: str = ''):
  """Opens a run's checkpoint manager; refuses a workdir of another config.

  Shared by the mains. A workdir whose stored config differs (keys under
  `ignore` aside) or whose checkpoint is damaged is refused unless
  `overwrite`, which deletes its checkpoints and `outputs_to_drop`. A run
  whose config differs only in a larger `length` (train.epochs,
  fed.rounds) is extended: it continues from its last checkpoint.

  Args:
    workdir: the run's folder.
    config: the run's config as a dict.
    overwrite: replace a run of another config.
    keep: steps to keep besides step 0 and the latest.
    arrays: the array items of the checkpoints.
    ignore: key prefixes that may differ between a run and its resumption.
    outputs_to_drop: files of the old run deleted on overwrite.
    length: the dotted key of the run's length, which may grow.
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
  if diff == [length] and _flat(config)[length] > _flat(old)[length]:
    logging.warning('Extending the run in %s: %s %s -> %s.', workdir, length,
                    _flat(old)[length], _flat(config)[length])
    diff = []
  if diff:
    if not overwrite:
      raise InputError(
          f'{workdir} holds a run with a different config (keys {diff}); use '
          'another --workdir or pass --overwrite to start again.')
    logging.warning('Overwriting the run in %s.', workdir)
    mngr.close()
    (epath.Path(workdir) / checkpoint.CKPT_DIR).rmtree(missing_ok=True)
    (epath.Path(workdir) / checkpoint.STEPS_DIR).rmtree(missing_ok=True)
    for name in outputs_to_drop:
      (epath.Path(workdir) / name).unlink(missing_ok=True)
    mngr = checkpoint.manager(workdir, keep, arrays=arrays)
  return mngr


LOCK = '.lock'


@contextlib.contextmanager
def lock(workdir: str, what: str = '--workdir'):
  """Holds the one-writer lock of a run's folder for the `with` block.

  train.py, fedsim.py and a probe that trains its checkpoint take it before
  they write anything; a second writer fails at once with a message naming
  the holder. The lock is `fcntl.flock` on `<workdir>/.lock`, which the
  kernel releases when its process ends, even by kill -9, so a stale lock
  never blocks a resume. Readers (a probe of a finished run) take none.
  Only process 0 of a multi-process run takes it. Object stores (gs://)
  have no such lock: there it is skipped with a warning, and one writer per
  workdir is up to the user.

  Args:
    workdir: the run's folder (created if missing).
    what: the flag or field naming it, for the message.

  Yields:
    None.
  """
  remote = outputs.is_remote(workdir)
  if remote or not distributed.is_primary():
    if remote and distributed.is_primary():
      logging.warning('%s=%s is on object storage, where no lock is taken: '
                      'make sure no other job writes there.', what, workdir)
    yield
    return
  path = epath.Path(workdir) / LOCK
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'a+', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise WorkdirBusyError(
          f'{what}={workdir} is in use by another run ({_holder(f.read())}). '
          'Wait for it to finish, or use another --workdir.') from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                        'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}))
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def writer(workdir: str) -> str | None:
  """Who holds the one-writer lock of `workdir` now ('pid 12 on host,
  started ...'), or None when nobody does (or the workdir is on gs://, where
  no lock exists). A reader that must not see checkpoints change under it
  (probe.py) asks before it starts.

  Args:
    workdir: a run's folder.

  Returns:
    The holder, or None.
  """
  path = epath.Path(workdir) / LOCK
  if outputs.is_remote(workdir) or not path.exists():
    return None
  with open(path, 'r', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return _holder(f.read())
    fcntl.flock(f, fcntl.LOCK_UN)
  return None


def _holder(text: str) -> str:
  try:
    h = json.loads(text)
    return f"pid {h['pid']} on {h['host']}, started {h['started']}"
  except (ValueError, KeyError, TypeError):
    return 'holder unknown'


@functools.cache
def code_version() -> str:
  """The code that produced a result: 'git <sha>' of valley_jax's checkout
  ('+dirty' with uncommitted changes to tracked files), or 'valley_jax
  <version>' where the package is not a git checkout."""
  root = pathlib.Path(__file__).resolve().parent.parent

  def git(*args: str) -> str:
    return subprocess.run(['git', '-C', str(root), *args], check=True,
                          capture_output=True, text=True,
                          timeout=20).stdout.strip()

  try:
    if pathlib.Path(git('rev-parse', '--show-toplevel')) != root:
      raise OSError('valley_jax is not the root of this git checkout')
    dirty = git('status', '--porcelain', '--untracked-files=no')
    return f"git {git('rev-parse', 'HEAD')}{'+dirty' if dirty else ''}"
  except (OSError, subprocess.SubprocessError):
    try:
      return f"valley_jax {importlib.metadata.version('valley_jax')}"
    except importlib.metadata.PackageNotFoundError:
      return 'valley_jax (version unknown)'
