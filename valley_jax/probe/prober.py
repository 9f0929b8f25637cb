"""The Prober: what every probe study receives, and the Subject it measures.

The studies (valley_jax/probe/studies/) import this module; the probe runner
(valley_jax/probe/runner.py) creates one Prober per run and hands it, with
the Subject of config.checkpoint, to each study's `run`. The Prober loads
checkpoints and datasets once and compiles one sweep per architecture and
dataset (`setting`), so runs of one architecture share one executable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from valley_jax import (checkpoint, checks, convert, data, distributed,
                        models, sharding)
from valley_jax.core import sweep
from valley_jax.errors import InputError

# config.sweep.dtype -> (compute dtype, matmul precision). 'float32' is full
# float32 everywhere (on GPUs XLA's default runs float32 products in a
# TF32-like precision: 6e-3 relative error on a probe's curves, H200); 'tf32'
# is that faster default, asked for by name.
DTYPES = {'float32': jnp.float32, 'tf32': jnp.float32,
          'bfloat16': jnp.bfloat16}
PRECISIONS = {'float32': 'highest', 'tf32': None, 'bfloat16': None}
# Images per batch when config.sweep.eval_batch_size / recal_batch_size is 0,
# by platform: on an H100 the SWEEP benchmark is fastest at 2,000-5,000
# images per batch (issue 10); on a CPU the earlier defaults 1,000 / 500 are
# kept (CPU time is per image; configs/probe_default.py sets its own). The
# recal batch size also sets whose statistics a train-mode BN normalises
# with (see sweep.recalibrate), so it is recorded in results.json.
AUTO_BATCH = {'gpu': (2500, 2000), 'tpu': (2500, 2000), 'cpu': (1000, 500)}
def batch_sizes(config, platform: str | None = None) -> tuple[int, int]:
  """(eval, recal) images per batch: config.sweep's, or AUTO_BATCH's for 0.

  Args:
    config: the probe config.
    platform: 'cpu', 'gpu', 'tpu' (default: the first device's).

  Returns:
    The two batch sizes before they are capped by the data.
  """
  platform = platform or jax.devices()[0].platform
  auto = AUTO_BATCH.get(platform, AUTO_BATCH['gpu'])
  sw = config.sweep
  return sw.eval_batch_size or auto[0], sw.recal_batch_size or auto[1]



@dataclasses.dataclass
class Subject:
  """One trained checkpoint, ready to sweep."""

  label: str
  workdir: str
  epoch: int | str
  train_config: dict[str, Any]
  model: Any
  params: Any
  batch_stats: Any
  dataset: data.Dataset
  sweep: sweep.Setting
  # group -> flat mask of θ's elements, for the direction builders.
  layouts: dict[str, Any] = dataclasses.field(default_factory=dict,
                                              repr=False)

  @functools.cached_property
  def theta0(self):
    return checkpoint.restore_model(self.workdir, 0,
                                    self.sweep.mesh)[0]['params']


def architecture(cfg: dict[str, Any]) -> str:
  """The model config without what only affects initialisation.

  Args:
    cfg: a training config as a dict.

  Returns:
    A JSON string; two runs of one architecture give the same string.
  """
  return json.dumps({k: v for k, v in cfg['model'].items() if k != 'bn_init'},
                    sort_keys=True)





class Prober:
  """Loads checkpoints and data once and compiles one sweep per model.

  `workdir` is the probe's output folder ('' outside probe.py): a study that
  keeps state of its own (the simplex's trained connectors) puts it there.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str = ''):
    self.config = config
    self.workdir = workdir
    self.mesh = sharding.make_mesh(config.get('num_devices', 0))
    self.root = jax.random.key(config.seed)
    self._datasets: dict[str, data.Dataset] = {}
    self._settings: dict[str, sweep.Setting] = {}
    self._pins: dict[str, int] = {}  # workdir -> the epoch 'last' named.
    # Images per batch of the last compiled sweep, for results.json (None:
    # no sweep yet, or no recalibration).
    self.batch_sizes: dict[str, int | None] | None = None
    self.bar = tqdm.tqdm(desc='probe', unit='curve',
                         disable=distributed.progress_disabled())

  def dataset(self, data_cfg: dict[str, Any]) -> data.Dataset:
    key = json.dumps(data_cfg, sort_keys=True)
    if key not in self._datasets:
      self._datasets[key] = data.from_config(
          ml_collections.ConfigDict(data_cfg))
    return self._datasets[key]

  def subject(self, workdir: str, epoch='last', label: str = '') -> Subject:
    """A kept epoch of a training run, ready to sweep.

    Args:
      workdir: the training run.
      epoch: an epoch number or 'last'.
      label: the subject's name in curves (default: the workdir).

    Returns:
      The Subject, with the compiled sweep of its architecture and data.
    """
    epoch = self.pin(workdir, epoch)
    variables, cfg = checkpoint.restore_model(workdir, epoch, self.mesh)
    checks.check_finite_variables(variables, f'Epoch {epoch} of {workdir}')
    ds = self.dataset(cfg['data'])
    model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                               ds.num_classes, ds.input_shape)
    check_fits(model, variables, ds.input_shape, workdir)
    setting = self.setting(model, cfg, cfg['data'],
                           bool(variables['batch_stats']))
    self.batch_sizes = setting.batch_sizes
    return Subject(label or workdir, workdir, epoch, cfg, model,
                   variables['params'], variables['batch_stats'], ds, setting)

  def pin(self, workdir: str, epoch: int | str = 'last') -> int:
    """The epoch that `epoch` names in `workdir`, resolved once per probe.

    'last' is resolved the first time it is asked for and then kept, so a
    run that saves a newer epoch while the probe runs changes nothing until
    the next probe: every kind, its provenance and its reuse check measure
    the same epoch.

    Args:
      workdir: a training run.
      epoch: an epoch number or 'last'.

    Returns:
      The epoch number.
    """
    if epoch != 'last':
      return checkpoint.resolve_epoch(workdir, epoch)
    if workdir not in self._pins:
      self._pins[workdir] = checkpoint.resolve_epoch(workdir, 'last')
    return self._pins[workdir]

  def weights_subject(self) -> Subject:
    """config.weights (a torchvision state dict, valley_jax.convert) in the
    model and data of config.train, instead of a checkpoint."""
    cfg, path = self.config.train, self.config.weights
    ds = self.dataset(cfg.data.to_dict())
    model = models.from_config(cfg.model, ds.num_classes, ds.input_shape)
    v = jax.device_put(convert.load_variables(path, model, ds.input_shape),
                       sharding.replicated(self.mesh))
    checks.check_finite_variables(v, f'config.weights={path!r}')
    setting = self._compile(model, ds, True)
    self.batch_sizes = setting.batch_sizes
    return Subject(path, path, 'weights', cfg.to_dict(), model, v['params'],
                   v['batch_stats'], ds, setting)

  def setting(self, model, train_config: dict[str, Any],
              data_config: dict[str, Any], has_bn: bool) -> sweep.Setting:
    """The compiled sweep of a model on a dataset, shared by every run of
    the same architecture (`architecture(train_config)`) on the same data.

    Args:
      model: the Flax module.
      train_config: the run's training config (its model block is the key).
      data_config: the dataset whose test split is evaluated and whose
        training split recalibrates BN (may differ from the run's own, as
        the soups study's whole split does).
      has_bn: whether the model has BatchNorm statistics.

    Returns:
      The sweep setting (cached).
    """
    key = architecture(train_config) + json.dumps(data_config,
                                                  sort_keys=True)
    if key not in self._settings:
      self._settings[key] = self._compile(model, self.dataset(data_config),
                                          has_bn)
    return self._settings[key]

  def eval_batch_size(self) -> int:
    """config.sweep.eval_batch_size, or the device's choice when it is 0."""
    return batch_sizes(self.config)[0]

  def _compile(self, model, ds: data.Dataset,
               has_bn: bool) -> sweep.Setting:
    sw = self.config.sweep
    recal = sw.recal == 'on' or (sw.recal == 'auto' and has_bn)
    if sw.recal == 'on' and not has_bn:
      logging.warning("config.sweep.recal='on', but %s has no BatchNorm: "
                      'there is nothing to recalibrate, so every point is '
                      'evaluated as it is.', type(model).__name__)
      recal = False
    n_dev = self.mesh.shape[sharding.DATA]
    x, y = ds.x_test, ds.y_test
    if sw.n_test:
      x, y = x[:sw.n_test], y[:sw.n_test]
    eval_size, recal_size = batch_sizes(self.config)
    eval_bs = _round_up(min(eval_size, len(y)), n_dev)
    eval_data = sweep.make_batches(x, y, eval_bs, self.mesh,
                                       stream=sw.get('stream_batches', 0))
    recal_x = None
    if recal:
      rb = _round_up(min(recal_size, sw.recal_samples,
                         len(ds.y_train)), n_dev)
      n = min(sw.recal_samples, len(ds.y_train)) // rb * rb
      order = np.random.default_rng(self.config.seed).permutation(
          len(ds.y_train))
      recal_x = sweep.make_recal_batches(ds.x_train[order], n, rb,
                                             self.mesh)
    fn = sweep.make_sweep(model, ds.mean, ds.std, recal=recal,
                              chunk=sw.chunk or None,
                              dtype=DTYPES[sw.dtype], mesh=self.mesh,
                              precision=PRECISIONS[sw.dtype],
                              fold=bool(sw.get('fold_bn', True)))
    sizes = {'eval': eval_bs,
             'recal': None if recal_x is None else int(recal_x.shape[1])}
    return sweep.Setting(fn, eval_data, recal_x, self.mesh, sizes)


def check_fits(model, variables, input_shape, workdir: str) -> None:
  """Raises ValueError unless a checkpoint's arrays are exactly those of the
  model its stored config builds now (a checkpoint of an older valley_jax
  may not fit: CIFAR ResNets trained before 2026-12-01 had 1×1-conv
  shortcuts, and Flax would silently ignore the extra arrays)."""
  fresh = models.abstract_variables(model, tuple(input_shape))

  def shapes(v):
    tree = {'params': v['params'], 'batch_stats': v.get('batch_stats') or {}}
    return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(a.shape)
            for path, a in jax.tree_util.tree_leaves_with_path(tree)}

  want, have = shapes(fresh), shapes(variables)
  diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
  if diff:
    raise InputError(
        f'The checkpoint in {workdir} does not fit the model its config '
        f'builds with this version of valley_jax: {len(diff)} arrays differ '
        f'({", ".join(diff[:3])}{", ..." if len(diff) > 3 else ""}). It was '
        'probably trained by an earlier version (CIFAR ResNets trained '
        'before 2026-12-01 used 1×1-conv shortcuts): train it again.')


def _round_up(n: int, k: int) -> int:
  return -(-n // k) * k
