"""Orbax CheckpointManager helpers.

Layout of `<workdir>/checkpoints/<epoch>/`: item `model` ({'params',
'batch_stats'}), item `opt` ({'opt_state', 'step'}), item `config` (JSON) and
item `meta` (JSON: a SHA-256 checksum of every saved array, the fingerprint
of `model`, and the metrics history up to that epoch). Epoch 0 is the
initialisation θ0. A probe restores `model` and `config` only.

Every restore verifies the arrays against the stored checksums. A damaged
checkpoint (flipped bytes, a truncated file, an unreadable config) raises
`CheckpointError`, which names the workdir, the epoch and the kept epochs to
fall back to.

Multi-process runs (`valley_jax.distributed`): every process calls the same
save and restore functions in the same order, as Orbax expects; Orbax writes
each array once (the replicated parameters by process 0) and the JSON items
from process 0, with barriers between the processes. The checkpoint folder
must be storage all processes share (gs:// or a shared disk).
"""

import hashlib
import json
import os
from typing import Any, Iterable

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from valley_jax import outputs, sharding
from valley_jax.core.steps import TrainState
from valley_jax.errors import InputError, InputFileError, UserError

CKPT_DIR = 'checkpoints'
# Mid-epoch checkpoints of train.py (config.train.checkpoint_every_steps, or
# a pre-emption): keyed by the global optimiser step, the latest one kept,
# apart from the epochs that probes and init_from read.
STEPS_DIR = 'checkpoints_steps'
DEFAULT_KEEP = (1, 2, 3, 5, 10, 20, 30, 50)


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that cannot be read back as it was written."""


# The folder of a fedsim workdir that holds its global model as a train.py
# run (valley_jax/fed/runner.py), which probe.py reads like any run.
FED_GLOBAL_MODEL = 'global_model'


def checksums(tree: Any) -> dict[str, str]:
  """SHA-256 of each leaf's dtype, shape and bytes, keyed by its tree path.

  >>> a = checksums({'w': np.zeros(2, np.float32)})
  >>> a == checksums({'w': np.zeros(2, np.float32)})
  True
  >>> a == checksums({'w': np.zeros(2, np.int32)})  # Same bytes, other dtype.
  False
  """
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    # Replicated arrays are read from this process's copy; arrays split over
    # several processes are gathered (all processes checksum together).
    a = np.ascontiguousarray(sharding.to_host(leaf))
    h = hashlib.sha256(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.tobytes())
    out[_path_str(path)] = h.hexdigest()
  return out


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(
      k, 'idx', k)))) for k in path)


def fingerprint(variables: dict[str, Any]) -> str:
  """One hash of {'params', 'batch_stats'}: what a probe measured.

  >>> v = {'params': {'w': np.ones(3)}, 'batch_stats': {}}
  >>> fingerprint(v) == fingerprint({'params': {'w': np.ones(3)}})
  True
  >>> fingerprint(v) == fingerprint({'params': {'w': np.zeros(3)}})
  False
  """
  sums = checksums({'params': variables['params'],
                    'batch_stats': variables.get('batch_stats') or {}})
  return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()
                        ).hexdigest()[:16]


def verify(tree: Any, expected: dict[str, str], where: str) -> None:
  """Raises CheckpointError naming the first leaf whose checksum differs."""
  got = checksums(tree)
  bad = sorted(k for k in set(got) | set(expected)
               if got.get(k) != expected.get(k))
  if bad:
    raise CheckpointError(
        f'{where} is damaged: the checksum of {bad[0]!r}'
        f'{f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""} '
        'does not match what was saved.')


def as_json(cfg: dict[str, Any]) -> dict[str, Any]:
  """A config dict as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(cfg))


def _ckpt_dir(workdir: str, folder: str = CKPT_DIR) -> epath.Path:
  """Orbax wants absolute paths; local ones are resolved, gs:// kept."""
  if outputs.is_remote(workdir):
    return epath.Path(workdir) / folder
  return epath.Path(os.path.abspath(os.path.expanduser(workdir))) / folder


def manager(workdir: str, keep: Iterable[int] = (), read_only: bool = False,
            arrays: Iterable[str] = ('model', 'opt'), folder: str = CKPT_DIR
            ) -> ocp.CheckpointManager:
  """A manager keeping step 0, the steps in `keep` and the latest one.

  Args:
    workdir: the run's folder; checkpoints go to `<workdir>/checkpoints`.
    keep: further steps (epochs, rounds) to keep.
    read_only: open an existing run for reading (creates no folder).
    arrays: names of the array items; items `config` and `meta` (JSON) are
      always there.
    folder: the folder in `workdir` (STEPS_DIR: mid-epoch checkpoints).
  """
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(1),
      ocp.checkpoint_managers.CustomSteps(sorted({0, *keep})),
  ])
  # Readers open the manager without `create` rather than with read_only=True,
  # which logs two warnings per call; only save() ever deletes checkpoints.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, create=not read_only)
  handlers = {name: ocp.StandardCheckpointHandler() for name in arrays}
  handlers.update(config=ocp.JsonCheckpointHandler(),
                  meta=ocp.JsonCheckpointHandler())
  return ocp.CheckpointManager(_ckpt_dir(workdir, folder), options=options,
                               item_handlers=handlers)


def save_items(mngr: ocp.CheckpointManager, step: int,
               arrays: dict[str, Any], config: dict[str, Any],
               metrics: list[dict[str, Any]] | None = None,
               extra: dict[str, Any] | None = None) -> None:
  """Saves array items, the config and a `meta` item (asynchronously).

  `meta` holds the SHA-256 of every array (verified by `restore_items`),
  the fingerprint of item `model` if there is one, and `metrics`: the
  history up to this step, from which a resumed run rebuilds its JSON lines;
  `extra` adds further JSON entries (a mid-epoch checkpoint's step metrics).
  """
  meta = {'checksums': {k: checksums(v) for k, v in arrays.items()},
          'metrics': metrics or [], **(extra or {})}
  if 'model' in arrays:
    meta['fingerprint'] = fingerprint(arrays['model'])
  mngr.save(step, args=ocp.args.Composite(
      config=ocp.args.JsonSave(as_json(config)),
      meta=ocp.args.JsonSave(outputs.finite_or_none(meta)),
      **{k: ocp.args.StandardSave(v) for k, v in arrays.items()}))


def restore_items(mngr: ocp.CheckpointManager, step: int,
                  targets: dict[str, Any]) -> dict[str, Any]:
  """Restores array items onto the structure and sharding of `targets`,
  verified against the stored checksums (CheckpointError if damaged)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, targets)
  out = _restore(mngr, step, **{k: ocp.args.StandardRestore(v)
                                for k, v in abstract.items()})
  meta = stored_meta(mngr, step)
  for k in targets:
    _verify(mngr, step, k, out[k], meta)
  return {k: out[k] for k in targets}


def state_items(state: TrainState) -> dict[str, Any]:
  """A TrainState as the checkpoint's array items `model` and `opt`."""
  return {'model': {'params': state.params, 'batch_stats': state.batch_stats},
          'opt': {'opt_state': state.opt_state, 'step': state.step}}


def state_from_items(items: dict[str, Any]) -> TrainState:
  return TrainState(items['opt']['step'], items['model']['params'],
                    items['model']['batch_stats'], items['opt']['opt_state'])


def save(mngr: ocp.CheckpointManager, epoch: int, state: TrainState,
         config: dict[str, Any],
         metrics: list[dict[str, Any]] | None = None) -> None:
  """Saves one training epoch (call mngr.wait_until_finished())."""
  save_items(mngr, epoch, state_items(state), config, metrics)


def start_or_resume(mngr: ocp.CheckpointManager, arrays: dict[str, Any],
                    config: dict[str, Any], metrics_path: epath.PathLike
                    ) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
  """What every main does first: save step 0 of a new run, or restore the
  latest step of an interrupted one (verified), and rebuild its metrics.

  Args:
    mngr: the run's manager.
    arrays: the array items at step 0, also the restore target.
    config: the run's config as a dict.
    metrics_path: the run's JSON-lines file, rebuilt from the checkpoint.
  Returns:
    (step to continue from, the array items, the metrics history).
  """
  start = mngr.latest_step()
  if start is None:
    start = 0
    # Written in the background while the first step runs; a kill before
    # it is finalised leaves no step at all, so the run starts again.
    save_items(mngr, 0, arrays, config)
  else:
    arrays = restore_items(mngr, start, arrays)
    logging.info('Resuming from step %d of %s.', start, mngr.directory)
  return start, arrays, rebuild_metrics(mngr, start, metrics_path)


def _where(mngr: ocp.CheckpointManager, epoch: int) -> str:
  return f'Checkpoint epoch {epoch} in {mngr.directory}'


def _fallback(mngr: ocp.CheckpointManager, epoch: int) -> str:
  earlier = [e for e in mngr.all_steps() if e < epoch]
  if not earlier:
    return (' No earlier epoch is kept: train again in a new workdir or with '
            '--overwrite.')
  return (f' Kept earlier epochs: {earlier}. To fall back, delete '
          f'{mngr.directory}/{epoch} and run train.py again (it resumes from '
          f'epoch {max(earlier)}), or probe one of them with '
          '--config.epoch=N.')


def _restore(mngr: ocp.CheckpointManager, epoch: int, **items) -> Any:
  """mngr.restore with a clear error when the files are damaged."""
  try:
    return mngr.restore(epoch, args=ocp.args.Composite(**items))
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f'{_where(mngr, epoch)} cannot be read ({type(e).__name__}: '
        f'{str(e)[:200]}).{_fallback(mngr, epoch)}') from e


def stored_meta(mngr: ocp.CheckpointManager,
                epoch: int) -> dict[str, Any] | None:
  """The `meta` item of an epoch; None for checkpoints written without it."""
  if not (epath.Path(mngr.directory) / str(epoch) / 'meta').exists():
    return None
  return _restore(mngr, epoch, meta=ocp.args.JsonRestore()).meta


def _verify(mngr, epoch: int, item: str, tree: Any,
            meta: dict[str, Any] | None) -> None:
  if meta is not None:
    try:
      verify(tree, meta['checksums'][item], _where(mngr, epoch))
    except CheckpointError as e:
      raise CheckpointError(f'{e}{_fallback(mngr, epoch)}') from None


def restore_state(mngr: ocp.CheckpointManager, epoch: int,
                  target: TrainState) -> TrainState:
  """Restores a full TrainState with the structure and sharding of `target`.

  The arrays are verified against the checksums saved with them.
  """
  return state_from_items(restore_items(mngr, epoch, state_items(target)))


def rebuild_metrics(mngr: ocp.CheckpointManager, step: int,
                    path: epath.PathLike) -> list[dict[str, Any]]:
  """The metrics history up to `step`, rewritten (atomically) to `path`.

  The history saved in the checkpoint is the source, so a JSON-lines file
  that is torn, emptied or ahead of the checkpoint is replaced by it.
  Checkpoints written before histories were stored keep the readable rows
  of the file up to `step`.
  """
  meta = stored_meta(mngr, step)
  if meta is not None:
    rows = meta['metrics']
  else:
    rows = [r for r in outputs.read_jsonl(path) or []
            if r.get('epoch', r.get('round', step + 1)) <= step]
  outputs.write_jsonl(path, rows)
  return rows


def stored_config(mngr: ocp.CheckpointManager,
                  epoch: int | None = None) -> dict[str, Any] | None:
  """The config JSON saved with `epoch` (default: latest); None if no run."""
  epoch = mngr.latest_step() if epoch is None else epoch
  if epoch is None:
    return None
  return _restore(mngr, epoch, config=ocp.args.JsonRestore()).config


def load_config(workdir: str, epoch: int | None = None) -> dict[str, Any]:
  """The config saved with an epoch (default: latest) of a training run."""
  return stored_config(manager(workdir, read_only=True), epoch)


def check_training_run(workdir: str, what: str) -> None:
  """Raises InputError if `workdir` holds a fedsim run, not a training run.

  A fedsim workdir's checkpoints hold the server and client states of the
  federated simulation (items 'server' and 'clients'), not one model's
  params and batch_stats, so probe.py and init_from cannot read them.

  Args:
    workdir: a workdir that holds checkpoints.
    what: the config field that names it, for the message.
  """
  cfg = load_config(workdir)
  if cfg is not None and 'fed' in cfg:
    raise InputError(
        f'{what}={workdir!r} is a fedsim run: its checkpoints hold the '
        'server and client states of a federated simulation, not one '
        "model's params and batch_stats. Its global model is saved as a "
        f'train.py run in {str(epath.Path(workdir) / FED_GLOBAL_MODEL)!r} '
        '(written by fedsim.py from this version on): name that folder '
        'instead.')


def epochs(workdir: str) -> list[int]:
  """The kept epochs of a training workdir (empty if there is none)."""
  if not _ckpt_dir(workdir).exists():
    return []
  return list(manager(workdir, read_only=True).all_steps())


def resolve_epoch(workdir: str, epoch: int | str = 'last') -> int:
  """The kept epoch that `epoch` ('last' or a number) names in `workdir`."""
  kept = epochs(workdir)
  if not kept:
    raise InputFileError(f'No checkpoints in {workdir}/{CKPT_DIR}; train '
                         'first: python train.py --workdir=...')
  step = max(kept) if epoch == 'last' else int(epoch)
  if step not in kept:
    raise InputFileError(f'Epoch {step} is not kept in {workdir}; kept '
                         f'epochs: {kept} (config.train.keep_epochs).')
  return step


def restore_model(workdir: str, epoch: int | str = 'last',
                  mesh=None) -> tuple[dict[str, Any], dict[str, Any]]:
  """Restores {'params', 'batch_stats'} and the config of one kept epoch.

  No optimiser state is read: this is what probes need. Arrays come back
  replicated over `mesh` whatever devices the run was trained on, and are
  verified against the checksums saved with them.

  Args:
    workdir: the training workdir.
    epoch: an int (0 = initialisation) or 'last'.
    mesh: where to place the arrays (default: a one-device mesh).
  Returns:
    (variables, config dict).
  Raises:
    FileNotFoundError: no run, or the epoch is not kept.
    CheckpointError: the checkpoint is damaged.
  """
  step = resolve_epoch(workdir, epoch)
  mngr = manager(workdir, read_only=True)
  rep = sharding.replicated(mesh or sharding.make_mesh(1))
  try:
    meta = mngr.item_metadata(step)['model'].tree
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'{_where(mngr, step)} cannot be read ('
                          f'{e!r:.200}).{_fallback(mngr, step)}') from e
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=rep), meta)
  out = _restore(mngr, step, model=ocp.args.StandardRestore(target),
                 config=ocp.args.JsonRestore())
  _verify(mngr, step, 'model', out.model, stored_meta(mngr, step))
  variables = dict(out.model)
  variables.setdefault('batch_stats', {})
  return variables, out.config


def provenance(workdir: str, epoch: int | str = 'last') -> dict[str, Any]:
  """What a result measured: the resolved epoch, the fingerprint of its
  parameters and batch statistics, and the training config.

  Cheap: the fingerprint is read from the checkpoint's `meta` item (which
  restores verify against the arrays); older checkpoints are restored.
  """
  step = resolve_epoch(workdir, epoch)
  mngr = manager(workdir, read_only=True)
  meta = stored_meta(mngr, step)
  fp = (meta['fingerprint'] if meta is not None
        else fingerprint(restore_model(workdir, step)[0]))
  return {'workdir': str(workdir), 'epoch': step, 'fingerprint': fp,
          'train_config': stored_config(mngr, step)}
