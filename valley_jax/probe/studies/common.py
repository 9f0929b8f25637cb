"""What the studies share: the measured checkpoint, directions and curves.

A study builds its curves from these helpers, so that noise i of seed s is
the same direction in every study and every curve has the same keys in
results.json. Choices the paper leaves open:

* A direction restricted to a group is NS-normalised against θ restricted to
  the same group, so the step is relative to that group's own scale.
* Several seeds of a direction are reported as mean and standard deviation.

>>> curve('G', 'panel', [-1.0, 0.0, 1.0], [1.0, 0.5, 0.7],
...       [0.4, 0.1, 0.2])['negative_error']
0.25
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import flatten_util

from valley_jax import checkpoint, sharding
from valley_jax.core import directions, groups, hessian, normalize, sweep, tree
from valley_jax.errors import InputError, InputFileError
from valley_jax.probe.prober import Prober, Subject, architecture

# The `why` of every scale field (checks.Field).
SCALE_WHY = 'the step is λ·s; a negative s swaps the two halves of the curve'


# ------------------------------------------------------------------ subjects


# ---------------------------------------------------------------- validation


def check_range(lo: float, hi: float, num: int, where: str) -> None:
  """Raises ValueError for an empty or invalid λ range, naming `where`.

  Args:
    lo, hi, num: the range, as sweep.linspace_coeffs takes it.
    where: the config block, e.g. 'config.surface'.
  """
  try:
    sweep.linspace_coeffs(lo, hi, num)
  except ValueError as e:
    raise InputError(f'{e} ({where})') from None


def check_checkpoint(workdir: str, epoch='last',
                     what: str = 'config.checkpoint') -> None:
  """Raises FileNotFoundError unless `workdir` keeps `epoch`.

  Args:
    workdir: a training workdir.
    epoch: an epoch number or 'last'.
    what: the config field that names the workdir, for the message.
  """
  kept = checkpoint.epochs(workdir) if workdir else []
  if not kept:
    raise InputFileError(f'{what}={workdir!r} holds no checkpoint; train '
                         'it first with train.py --workdir=...')
  checkpoint.check_training_run(workdir, what)
  if epoch != 'last' and int(epoch) not in kept:
    raise InputFileError(f'Epoch {epoch} of {workdir} is not kept; kept: '
                         f'{kept}.')


def model_signature(workdir: str) -> tuple[str, str]:
  """Architecture and dataset of a run.

  Args:
    workdir: a training workdir.

  Returns:
    (architecture, dataset name).
  """
  cfg = checkpoint.load_config(workdir)
  return architecture(cfg), cfg['data']['name']


# ---------------------------------------------------------------- directions


def make_direction(p: Prober, s: Subject, seed: int, *, noise: str = '',
                   special: str = '', sign_consistent: bool = False,
                   ratio: float | None = None, normalization: str = 'ns',
                   group: str = 'ALL', index: int = 0):
  """One normalised direction; noise i of seed s is the same in any study.

  Built by two compiled functions on θ's flat vector (one for every random
  noise, seed, key, ratio, sign choice and group; one for every special
  direction), each compiled once per model and normalisation: names,
  seeds, ratios and group masks are arguments. Plain noise is ratio 0 and
  sign-consistent noise ratio 1 (a Bernoulli(0) chooses no element and a
  Bernoulli(1) every one), so they are the directions they always were.

  Args:
    p: the Prober (its root key).
    s: the subject whose θ the direction is built for.
    seed: the draw of a random direction.
    noise: a noise of directions.NOISES (when `special` is not given).
    special: a special direction of directions.SPECIAL.
    sign_consistent: give every element θ's sign.
    ratio: give a fraction `ratio` of the elements θ's sign.
    normalization: a method of normalize.NORMALIZATIONS.
    group: restrict the direction to this parameter group.
    index: overrides the noise's own key index (the surface's two
      directions).

  Returns:
    The direction, a pytree like θ.
  """
  theta = s.params
  normalize.check_normalization(normalization)
  mask = _group_mask(s, group)
  if special:
    directions.check_special(special)
    theta0 = s.theta0 if special == 'init' else theta
    return _special_direction(theta, theta0,
                              directions.SPECIAL.index(special), mask,
                              normalization=normalization)
  directions.check_noise(noise)
  n = list(directions.NOISES).index(noise)
  if ratio is None:
    ratio = 1.0 if sign_consistent else 0.0
  return _noise_direction(p.root, seed, index or n, n, theta, ratio, mask,
                          normalization=normalization)


def _group_mask(s: Subject, group: str):
  """θ's flat group mask, an array argument of the builders (cached)."""
  if group not in s.layouts:
    leaves = jax.tree.leaves(s.params)
    keep = jax.tree.leaves(groups.mask(s.params, group))
    mask = np.concatenate([np.full(x.size, k, bool)
                           for x, k in zip(leaves, keep)])
    # Placed as θ is (replicated over the mesh, also across processes).
    where = (sharding.replicated(s.sweep.mesh) if s.sweep.mesh is not None
             else None)
    s.layouts[group] = jax.device_put(mask, where)
  return s.layouts[group]


# How many times the direction builders were traced (tests assert that a
# study compiles each once).
TRACES = {'noise': 0, 'special': 0}


@functools.partial(jax.jit, static_argnames=('normalization',))
def _noise_direction(root, seed, key_index, noise_index, theta, ratio, mask,
                     *, normalization: str):
  """Noise `noise_index` drawn with key (seed, key_index); a fraction
  `ratio` of its elements given θ's sign (drawn with its own key); then
  restricted to `mask` and normalised."""
  TRACES['noise'] += 1
  t, unravel = flatten_util.ravel_pytree(theta)
  key = directions.direction_key(root, seed, key_index)
  eps = jax.lax.switch(noise_index, [functools.partial(directions.sample, n)
                                     for n in directions.NOISES], key, t)
  eps = directions.partial_sign_consistent(eps, t, ratio,
                                           jax.random.fold_in(key, 7919))
  return _restrict_normalize(eps, t, unravel, mask, normalization)


@functools.partial(jax.jit, static_argnames=('normalization',))
def _special_direction(theta, theta0, index, mask, *, normalization: str):
  """Special direction number `index` of directions.SPECIAL (see
  directions.special; μ is the mean of each tensor), restricted and
  normalised."""
  TRACES['special'] += 1
  t, unravel = flatten_util.ravel_pytree(theta)
  t0 = flatten_util.ravel_pytree(theta0)[0]
  c = flatten_util.ravel_pytree(tree.centered(theta))[0]
  # In the order of directions.SPECIAL.
  eps = jax.lax.switch(index, [
      lambda: t0, lambda: t, lambda: tree.sign(t), lambda: tree.sign(c),
      lambda: tree.sgp(t), lambda: tree.sgp(c)])
  return _restrict_normalize(eps, t, unravel, mask, normalization)


def _restrict_normalize(eps, t, unravel, mask, normalization: str):
  """normalize.normalize of ε and θ restricted to `mask` (flat vectors)."""
  eps, t = jnp.where(mask, eps, 0.0), jnp.where(mask, t, 0.0)
  if normalization == 'ns':  # One norm over the whole vector.
    return unravel(normalize.normalize(eps, t, 'ns'))
  return normalize.normalize(unravel(eps), unravel(t), normalization)


# -------------------------------------------------------------------- curves


def halves(lams, error) -> tuple[float, float]:
  """Mean error over λ ∈ [0, 1] and over λ ∈ [-1, 0].

  Args:
    lams: the λ of each point.
    error: the error at each point.

  Returns:
    (positive half, negative half); NaN where a half has no point.

  >>> halves([-1.0, 0.0, 1.0], [0.5, 0.25, 0.0])
  (0.125, 0.375)
  """
  lams, err = np.asarray(lams), np.asarray(error, np.float64)
  pos = err[(lams >= 0) & (lams <= 1)]
  neg = err[(lams <= 0) & (lams >= -1)]
  return (float(pos.mean()) if pos.size else math.nan,
          float(neg.mean()) if neg.size else math.nan)


def line(p: Prober, s: Subject, label: str, panel: str,
         make: Callable[[int], Any], *, scale: float = 1.0, seeds: int = 1,
         lams=None, **meta) -> dict[str, Any]:
  """A 1D curve θ + λ·s·d averaged over `seeds` draws of d = make(seed).

  Args:
    p: the Prober (config.sweep gives the default λ and the progress bar).
    s: the subject to sweep.
    label, panel: the curve's label and the figure panel it goes in.
    make: seed -> direction.
    scale: the step scale s.
    seeds: how many draws of the direction.
    lams: the λ values (default: config.sweep's range).
    **meta: more keys of the curve (see curve_meta).

  Returns:
    A results.json curve.
  """
  sw = p.config.sweep
  if lams is None:
    lams = np.linspace(sw.lam_min, sw.lam_max, sw.num_points)
  coeffs = (np.asarray(lams) * scale)[:, None]
  runs = [s.sweep(s.params, s.batch_stats, [make(seed)], coeffs)
          for seed in range(seeds)]
  p.bar.update(1)
  return curve(label, panel, lams, np.stack([r['loss'] for r in runs]),
               np.stack([r['error'] for r in runs]), scale=scale, **meta)


def curve(label: str, panel: str, lams, loss_SxP, error_SxP, *,
          scale: float = 1.0, **meta) -> dict[str, Any]:
  """A results.json curve from per-seed [seeds, points] loss and error.

  Args:
    label, panel: the curve's label and the figure panel it goes in.
    lams: the λ of each point.
    loss_SxP, error_SxP: loss and error per seed and point (or per point).
    scale: the step scale s.
    **meta: more keys of the curve (see curve_meta).

  Returns:
    The curve: mean (and, for several seeds, std) loss and error, and the
    mean error of each half.
  """
  loss_SxP, error_SxP = np.atleast_2d(loss_SxP), np.atleast_2d(error_SxP)
  seeds = len(loss_SxP)
  out = dict(label=label, panel=panel, scale=scale, seeds=seeds,
             lambdas=np.asarray(lams).tolist(),
             loss=loss_SxP.mean(0).tolist(), error=error_SxP.mean(0).tolist(),
             **meta)
  if seeds > 1:
    out['loss_std'] = loss_SxP.std(0).tolist()
    out['error_std'] = error_SxP.std(0).tolist()
  out['positive_error'], out['negative_error'] = halves(lams, out['error'])
  return out


def curve_meta(direction: str, sign_consistent=False, ratio=None,
               normalization='ns', group='ALL') -> dict[str, Any]:
  """The direction keys every results.json curve carries.

  Args:
    direction: the noise, special direction or 'difference'.
    sign_consistent: whether every element has θ's sign.
    ratio: the fraction given θ's sign (None: not a ratio direction).
    normalization: the normalisation method.
    group: the parameter group the direction is restricted to.

  Returns:
    The keys as a dict.
  """
  return dict(direction=direction, sign_consistent=sign_consistent,
              ratio=ratio, normalization=normalization, group=group)


def noise_line(p: Prober, s: Subject, noise: str, sc: bool, panel: str, *,
               scale: float = 1.0, group: str = 'ALL',
               normalization: str | None = None, label: str = '',
               seeds: int | None = None) -> dict[str, Any]:
  """A curve along a random noise, plain or sign-consistent.

  Args:
    p: the Prober.
    s: the subject to sweep.
    noise: a noise of directions.NOISES.
    sc: sign-consistent (|ε|·sign(θ)) rather than plain.
    panel: the figure panel.
    scale: the step scale s.
    group: restrict the noise to this parameter group.
    normalization: default config.normalization.
    label: default the noise's name.
    seeds: draws of the noise; default config.seeds.

  Returns:
    A results.json curve.
  """
  norm = normalization or p.config.normalization
  name = directions.NOISE_LABELS[noise]
  label = label or (f'|{name}|·sign(θ)' if sc else name)
  return line(p, s, label, panel,
              lambda seed: make_direction(p, s, seed, noise=noise,
                                          sign_consistent=sc,
                                          normalization=norm, group=group),
              scale=scale, seeds=seeds or p.config.seeds,
              **curve_meta(noise, sc, None, norm, group))


def hessian_setup(p: Prober, s: Subject, c) -> tuple[hessian.Curvature,
                                                     sweep.Batches, Any]:
  """What a curvature measurement of s needs: the compiled curvature
  functions, the batches of `c.samples` examples of `c.split` (a seeded
  subset; 0 = all) in batches of `c.batch_size`, and the jitted BN
  recalibration (params, batch_stats, recal_x) -> stats, or None when the
  sweep does not recalibrate.

  Args:
    p: the Prober (config.seed, the mesh).
    s: the subject (its model and dataset).
    c: a study's config block with split, samples, batch_size, probe_chunk.
  """
  ds = s.dataset
  x, y = (ds.x_train, ds.y_train) if c.split == 'train' else (ds.x_test,
                                                              ds.y_test)
  order = np.random.default_rng(p.config.seed).permutation(len(y))
  order = order[:c.samples or len(y)]
  n_dev = sharding.size(p.mesh)
  bs = -(-min(c.batch_size, len(order)) // n_dev) * n_dev
  data = sweep.make_batches(x[order], y[order], bs, p.mesh)
  curv = hessian.make_curvature(s.model, ds.mean, ds.std,
                                chunk=c.probe_chunk or None, mesh=p.mesh)
  recal = None
  if s.sweep.recal_x is not None:
    recal = jax.jit(functools.partial(sweep.recalibrate, s.model,
                                      mean=ds.mean, std=ds.std))
  return curv, data, recal
