"""The N runs that the simplex and ensembles kinds measure, and predictions
of any point of their span example by example (for intervals over the test
set).

config.simplex.checkpoints names N ≥ 3 independently trained runs of one
model on one dataset (their last epochs). Every point measured here has its
BN statistics recalibrated on the sweep's recalibration batches (as the
sweep does), so that points differ only in their weights.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from valley_jax import checkpoint, rundir
from valley_jax.core import steps, subspace, sweep
from valley_jax.data import pipeline
from valley_jax.errors import InputError
from valley_jax.probe.prober import Prober, Subject, architecture
from valley_jax.probe.studies import common

Config = ml_collections.ConfigDict
PyTree = Any


def labels(config: Config) -> list[str]:
  """config.simplex.labels, else the runs' folder names."""
  c = config.simplex
  return list(c.labels) or [os.path.basename(str(w).rstrip('/')) or str(w)
                            for w in c.checkpoints]


def checkpoints(config: Config) -> list[tuple[str, Any]]:
  """The runs' last epochs, as a Study's `checkpoints`."""
  return [(w, 'last') for w in config.simplex.checkpoints]


def check_runs(config: Config) -> None:
  """config.simplex.checkpoints: at least 3 distinct runs, kept, of one
  architecture on one dataset (InputError naming the field otherwise; a
  missing run is an InputFileError, so that probe.py may train it first)."""
  c, where = config.simplex, 'config.simplex.checkpoints'
  runs = list(c.checkpoints)
  if len(runs) < 3:
    raise InputError(
        f'{where} names {len(runs)} run(s); a simplex of solutions needs at '
        'least 3 independently trained runs of one model (their workdirs; '
        'configs/probe_simplex.py trains four).')
  if len(set(runs)) != len(runs):
    raise InputError(f'{where}={tuple(runs)} names a run twice: the '
                     'simplex would be flat.')
  if c.labels and len(c.labels) != len(runs):
    raise InputError('config.simplex.labels must match '
                     'config.simplex.checkpoints.')
  for w in runs:
    common.check_checkpoint(w, 'last', where)
  first = _signature(runs[0])
  for i, w in enumerate(runs[1:], 1):
    if _signature(w) != first:
      raise InputError(
          f'{where}[{i}]={w!r} is another model or dataset than '
          f'{where}[0]={runs[0]!r} ({_signature(w)} vs {first}): the '
          'vertices of a simplex must be runs of one architecture on one '
          'dataset.')


def _signature(workdir: str) -> tuple[str, str]:
  cfg = checkpoint.load_config(workdir)
  return architecture(cfg), cfg['data']['name']


def solutions(p: Prober) -> list[Subject]:
  """The N runs of config.simplex.checkpoints, their last epochs."""
  c = p.config.simplex
  subs = [p.subject(w, label=label)
          for w, label in zip(c.checkpoints, labels(p.config))]
  first = {'params': subs[0].params, 'batch_stats': subs[0].batch_stats}
  for i, s in enumerate(subs[1:], 1):
    rundir.check_same_architecture(
        first, {'params': s.params, 'batch_stats': s.batch_stats},
        f'config.simplex.checkpoints[{i}]={s.workdir!r}')
  return subs


def check_on_device(s: Subject, kind: str) -> None:
  """Per-example predictions need the test set on the device."""
  if not isinstance(s.sweep.eval_data, sweep.Batches):
    raise InputError(f'{kind} needs the test set on the device: set '
                     'config.sweep.stream_batches=0.')


def make_predict(model, mean, std):
  """jit fn(params, batch_stats, recal_x, batches) -> probabilities
  [S, B, C] on the evaluation batches, BN recalibrated on recal_x first
  (None: the statistics as given)."""

  @jax.jit
  def predict(params, batch_stats, recal_x, batches: sweep.Batches):
    if recal_x is not None:
      batch_stats = sweep.recalibrate(model, params, batch_stats, recal_x,
                                      mean, std)

    def batch(_, x):
      x = pipeline.normalize(x, mean, std)
      logits, _ = steps.apply_model(model, params, batch_stats, x, False)
      return None, jax.nn.softmax(logits.astype(jnp.float32))

    return jax.lax.scan(batch, None, batches.x)[1]

  return predict


class Predictor:
  """Predicted probabilities of parameter points on one Subject's test set,
  example by example (padding dropped)."""

  def __init__(self, s: Subject):
    check_on_device(s, 'this study')
    self.subject = s
    self.fn = make_predict(s.model, s.dataset.mean, s.dataset.std)
    ev = s.sweep.eval_data
    self.keep = np.asarray(ev.w).ravel() > 0
    self.labels = np.asarray(ev.y).ravel()[self.keep]

  def probs(self, params: PyTree, batch_stats: PyTree) -> np.ndarray:
    """[N, C] probabilities of one point (float64)."""
    out = np.asarray(self.fn(params, batch_stats, self.subject.sweep.recal_x,
                             self.subject.sweep.eval_data), np.float64)
    return out.reshape(-1, out.shape[-1])[self.keep]

  def outcomes(self, params: PyTree, batch_stats: PyTree
               ) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 error [N], CE loss [N]) of one point."""
    return self.outcomes_of(self.probs(params, batch_stats))

  def outcomes_of(self, probs_NxC: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 error [N], CE loss [N]) of given probabilities."""
    idx = np.arange(len(self.labels))
    err = (probs_NxC.argmax(-1) != self.labels).astype(np.float64)
    loss = -np.log(np.maximum(probs_NxC[idx, self.labels], 1e-12))
    return err, loss

  def points(self, vertices: list[PyTree], batch_stats: PyTree,
             weights_PxV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(error [P, N], loss [P, N]) at Σ_i w_i v_i for every row w."""
    stacked = subspace.stack(vertices)
    errs, losses = [], []
    for w in np.asarray(weights_PxV):
      e, l = self.outcomes(subspace.combine(stacked, jnp.asarray(
          w, jnp.float32)), batch_stats)
      errs.append(e)
      losses.append(l)
    return np.stack(errs), np.stack(losses)
