"""Orbax CheckpointManager helpers.

Layout of `<workdir>/checkpoints/<epoch>/`: item `model` ({'params',
'batch_stats'}), item `opt` ({'opt_state', 'step'}) and item `config` (JSON).
Epoch 0 is the initialisation θ0. A probe restores `model` and `config` only.
"""

import json
import os
from typing import Any, Iterable

from etils import epath
import jax
import orbax.checkpoint as ocp

from valley_jax import sharding
from valley_jax.training import TrainState

CKPT_DIR = 'checkpoints'
DEFAULT_KEEP = (1, 2, 3, 5, 10, 20, 30, 50)


def as_json(cfg: dict[str, Any]) -> dict[str, Any]:
  """A config dict as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(cfg))


def _ckpt_dir(workdir: str) -> epath.Path:
  """Orbax wants absolute paths; local ones are resolved, gs:// kept."""
  if '://' in str(workdir):
    return epath.Path(workdir) / CKPT_DIR
  return epath.Path(os.path.abspath(os.path.expanduser(workdir))) / CKPT_DIR


def manager(workdir: str, keep: Iterable[int] = (),
            read_only: bool = False) -> ocp.CheckpointManager:
  """A manager keeping epoch 0, the epochs in `keep` and the latest one.

  read_only: open an existing run for reading (creates no folder).
  """
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(1),
      ocp.checkpoint_managers.CustomSteps(sorted({0, *keep})),
  ])
  # Readers open the manager without `create` rather than with read_only=True,
  # which logs two warnings per call; only save() ever deletes checkpoints.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, create=not read_only)
  handlers = {'model': ocp.StandardCheckpointHandler(),
              'opt': ocp.StandardCheckpointHandler(),
              'config': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(_ckpt_dir(workdir), options=options,
                               item_handlers=handlers)


def save(mngr: ocp.CheckpointManager, epoch: int, state: TrainState,
         config: dict[str, Any]) -> None:
  """Saves one epoch asynchronously (call mngr.wait_until_finished())."""
  mngr.save(epoch, args=ocp.args.Composite(
      model=ocp.args.StandardSave({'params': state.params,
                                   'batch_stats': state.batch_stats}),
      opt=ocp.args.StandardSave({'opt_state': state.opt_state,
                                 'step': state.step}),
      config=ocp.args.JsonSave(as_json(config))))


def restore_state(mngr: ocp.CheckpointManager, epoch: int,
                  target: TrainState) -> TrainState:
  """Restores a full TrainState with the structure and sharding of `target`."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  out = mngr.restore(epoch, args=ocp.args.Composite(
      model=ocp.args.StandardRestore({'params': abstract.params,
                                      'batch_stats': abstract.batch_stats}),
      opt=ocp.args.StandardRestore({'opt_state': abstract.opt_state,
                                    'step': abstract.step})))
  return TrainState(out.opt['step'], out.model['params'],
                    out.model['batch_stats'], out.opt['opt_state'])


def stored_config(mngr: ocp.CheckpointManager,
                  epoch: int | None = None) -> dict[str, Any] | None:
  """The config JSON saved with `epoch` (default: latest); None if no run."""
  epoch = mngr.latest_step() if epoch is None else epoch
  if epoch is None:
    return None
  return mngr.restore(epoch, args=ocp.args.Composite(
      config=ocp.args.JsonRestore())).config


def load_config(workdir: str) -> dict[str, Any]:
  """The config saved with the latest epoch of a training workdir."""
  return stored_config(manager(workdir, read_only=True))


def epochs(workdir: str) -> list[int]:
  """The kept epochs of a training workdir (empty if there is none)."""
  if not _ckpt_dir(workdir).exists():
    return []
  return list(manager(workdir, read_only=True).all_steps())


def restore_model(workdir: str, epoch: int | str = 'last',
                  mesh=None) -> tuple[dict[str, Any], dict[str, Any]]:
  """Restores {'params', 'batch_stats'} and the config of one kept epoch.

  No optimiser state is read: this is what probes need. Arrays come back
  replicated over `mesh` whatever devices the run was trained on.

  Args:
    workdir: the training workdir.
    epoch: an int (0 = initialisation) or 'last'.
    mesh: where to place the arrays (default: a one-device mesh).
  Returns:
    (variables, config dict).
  """
  kept = epochs(workdir)
  if not kept:
    raise FileNotFoundError(f'No checkpoints in {workdir}/{CKPT_DIR}; train '
                            'first: python train.py --workdir=...')
  step = max(kept) if epoch == 'last' else int(epoch)
  if step not in kept:
    raise FileNotFoundError(f'Epoch {step} is not kept in {workdir}; kept '
                            f'epochs: {kept} (config.train.keep_epochs).')
  mngr = manager(workdir, read_only=True)
  rep = sharding.replicated(mesh or sharding.make_mesh(1))
  meta = mngr.item_metadata(step)['model'].tree
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=rep), meta)
  out = mngr.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(target),
      config=ocp.args.JsonRestore()))
  variables = dict(out.model)
  variables.setdefault('batch_stats', {})
  return variables, out.config
