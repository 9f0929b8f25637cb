"""What the studies share: the measured checkpoint, directions and curves.

A study builds its curves from these helpers, so that noise i of seed s is
the same direction in every study and every curve has the same keys in
results.json. Choices the paper leaves open:

* A direction restricted to a group is NS-normalised against θ restricted to
  the same group, so the step is relative to that group's own scale.
* Several seeds of a direction are reported as mean and standard deviation.

Uncertainty (issue 25): `line` keeps the error of every evaluation example
at every point (`per_example`: the sweep vmapped over one-hot example
weights; the forward pass does not depend on the weights, so it is computed
once per point). Every curve then carries 95 % intervals of its two halves,
of their difference err+ − err− (`diff`) and of each point's error
(`error_ci`), by `stats.bootstrap_means`: a hierarchical bootstrap over the
seeds (draws of the direction) and the test examples, one example being
1/N of an error (`n_examples`). `finding` turns a per-example statistic
into a claim's verdict (results.json's `findings`).

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
from valley_jax.core import (directions, groups, hessian, normalize, stats,
                             sweep, tree)
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
  runs = [per_example(s.sweep, s.params, s.batch_stats, [make(seed)], coeffs)
          for seed in range(seeds)]
  p.bar.update(1)
  examples = (None if runs[0]['error_NxP'] is None else
              np.stack([r['error_NxP'] for r in runs]))
  return curve(label, panel, lams, np.stack([r['loss'] for r in runs]),
               np.stack([r['error'] for r in runs]), scale=scale,
               error_SxNxP=examples, n_examples=runs[0]['n'], **meta)


# Evaluation sets larger than this are resampled in this many interleaved
# groups of examples (example j in group j mod MAX_GROUPS), which keeps the
# one-hot weights of `per_example` small; below it every example is its own
# group.
MAX_GROUPS = 2000


def per_example(setting: sweep.Setting, params, batch_stats, dirs,
                coeffs_PxK) -> dict[str, Any]:
  """A sweep that also returns the error of every evaluation example.

  The compiled sweep is vmapped over one-hot example weights: every weight
  vector selects one example (or one group of examples, see MAX_GROUPS), so
  the sweep's weighted mean error is that example's 0/1 error. Parameters,
  BN recalibration and the forward pass do not depend on the weights, so
  XLA computes them once per point; only the weighted sums are batched.

  Args:
    setting: the compiled sweep with its data (a Subject's `sweep`).
    params, batch_stats: the model.
    dirs: the directions.
    coeffs_PxK: the points.

  Returns:
    {'loss': [P], 'error': [P]} as the sweep gives them, and 'error_NxP':
    each example's (or group's) error at each point, None for data streamed
    from the host (HostBatches), whose per-example errors are not kept;
    'n': the number of examples.
  """
  data = setting.eval_data
  if isinstance(data, sweep.HostBatches):
    out = setting(params, batch_stats, dirs, coeffs_PxK)
    return {**out, 'error_NxP': None, 'n': None}
  w = sharding.to_host(data.w)  # Split over processes in a multi-process run.
  n = int(w.sum())
  k = min(n, MAX_GROUPS)
  onehot = np.zeros((k, w.size), np.float32)
  real = np.arange(n)  # padded_batches puts the real examples first.
  onehot[real % k, real] = 1.0
  weights = onehot.reshape(k, *w.shape) * w
  if setting.mesh is not None:
    weights = sharding.put_sharded(setting.mesh, weights, axis=2)

  def one(wk):
    return setting.sweep(params, batch_stats, dirs, coeffs_PxK,
                         sweep.Batches(data.x, data.y, wk), setting.recal_x)

  out = sharding.to_host(jax.vmap(one)(weights))
  loss_KxP, error_KxP = (np.asarray(out[key], np.float64)
                         for key in ('loss', 'error'))
  counts = onehot.sum(1)[:, None]
  return {'loss': (loss_KxP * counts).sum(0) / n,
          'error': (error_KxP * counts).sum(0) / n, 'error_NxP': error_KxP,
          'n': n}


def curve(label: str, panel: str, lams, loss_SxP, error_SxP, *,
          scale: float = 1.0, error_SxNxP=None, n_examples=None,
          **meta) -> dict[str, Any]:
  """A results.json curve from per-seed [seeds, points] loss and error.

  Args:
    label, panel: the curve's label and the figure panel it goes in.
    lams: the λ of each point.
    loss_SxP, error_SxP: loss and error per seed and point (or per point).
    scale: the step scale s.
    error_SxNxP: the error of every evaluation example (or group, see
      MAX_GROUPS) per seed and point; gives the intervals (see intervals).
    n_examples: how many examples error_SxNxP holds (default its N; more
      when it holds groups of examples).
    **meta: more keys of the curve (see curve_meta).

  Returns:
    The curve: mean (and, for several seeds, std) loss and error, and the
    mean error of each half; with error_SxNxP, their intervals too.
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
  if error_SxNxP is not None:
    out.update(intervals(lams, error_SxNxP))
    out['n_examples'] = int(n_examples or out['n_examples'])
  return out


# Per-example arrays a study keeps on its curves for its findings; the runner
# removes every curve key that starts with '_' before results.json.
PER_EXAMPLE = '_error_SxNxP'


def half_masks(lams) -> tuple[np.ndarray, np.ndarray]:
  """The points of the positive half λ ∈ [0, 1] and negative half [-1, 0].

  Args:
    lams: the λ of each point.

  Returns:
    Two boolean masks over the points.
  """
  lams = np.asarray(lams)
  return (lams >= 0) & (lams <= 1), (lams <= 0) & (lams >= -1)


def halves_per_example(lams, error_SxNxP) -> np.ndarray:
  """Each example's mean error over each half: [S, N, 2] (err+, err−).

  Args:
    lams: the λ of each point.
    error_SxNxP: the error per seed, example and point.

  Returns:
    [S, N, 2]; NaN in a column whose half has no point.
  """
  e = np.asarray(error_SxNxP, np.float64)
  cols = [e[..., m].mean(-1) if m.any() else np.full(e.shape[:2], np.nan)
          for m in half_masks(lams)]
  return np.stack(cols, -1)


def intervals(lams, error_SxNxP) -> dict[str, Any]:
  """The intervals of a curve (hierarchical bootstrap, stats.bootstrap_means).

  Args:
    lams: the λ of each point.
    error_SxNxP: the error per seed, example and point.

  Returns:
    'positive_error_ci', 'negative_error_ci' and 'error_ci' (one [low,
    high] per point, clipped to [0, 1]); 'diff': err+ − err− with its n,
    std over seeds, interval and method; 'n_examples'; and PER_EXAMPLE, the
    array itself, for the study's findings (not written to results.json).
  """
  e = np.asarray(error_SxNxP, np.float64)
  h = halves_per_example(lams, e)
  if np.isnan(h).any() or min(m.sum() for m in half_masks(lams)) < 2:
    # A curve without two halves (a radial line, a path, a segment θA → θB
    # on [0, 1]): each point's interval only.
    cols, bounds = e, [(0.0, 1.0)] * e.shape[-1]
    boot = stats.bootstrap_means(cols, bounds=bounds)
    return {'error_ci': [b['ci'] for b in boot],
            'n_examples': int(e.shape[1]), PER_EXAMPLE: e}
  cols = np.concatenate([h, h[..., :1] - h[..., 1:], e], -1)
  bounds = [(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0)] + [(0.0, 1.0)] * e.shape[-1]
  pos, neg, diff, *points = stats.bootstrap_means(cols, bounds=bounds)
  return {'positive_error_ci': pos['ci'], 'negative_error_ci': neg['ci'],
          'diff': _brief(diff), 'error_ci': [b['ci'] for b in points],
          'n_examples': int(e.shape[1]), PER_EXAMPLE: e}


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
  """A bootstrap summary without its per-replicate details."""
  return {k: summary[k] for k in ('mean', 'std', 'n', 'n_examples', 'ci',
                                  'method', 'per_seed')}


def finding(claim: str, lams, curves: list[dict[str, Any]],
            combine: Callable[..., np.ndarray], *, expect: str,
            statistic: str) -> dict[str, Any]:
  """A claim's verdict from the per-example halves of one or more curves.

  The curves must share their seeds and evaluation examples (a direction of
  seed s in one curve and the same seed in the other), so that their
  difference is taken seed by seed and example by example.

  Args:
    claim: the claim in words.
    lams: the λ of the curves' points.
    curves: curves that carry PER_EXAMPLE (made by `line`).
    combine: ([S, N, 2] halves of each curve, in order) -> [S, N] values
      whose mean is the statistic, e.g. `lambda h: h[..., 0] - h[..., 1]`.
    expect: the sign the claim predicts ('positive', 'negative',
      'nonzero').
    statistic: what the number is, in words.

  Returns:
    stats.finding's dict (claim, statistic, mean, std, n, n_examples, ci,
    method, resolved, ...), or None when a curve has no per-example errors
    (data streamed from the host).
  """
  if any(c.get(PER_EXAMPLE) is None for c in curves):
    return None
  hs = [halves_per_example(lams, c[PER_EXAMPLE]) for c in curves]
  values = np.asarray(combine(*hs), np.float64)[..., None]
  (summary,) = stats.bootstrap_means(values, bounds=[(-1.0, 1.0)])
  return stats.finding(claim, summary, expect=expect, statistic=statistic)


def train_seeds(config) -> int:
  """config.train_seeds: training seeds per listed run (1 when unset)."""
  return int(config.get('train_seeds', 1))


def replicas(workdir: str, n: int) -> list[str]:
  """The workdirs of a run over `n` training seeds (config.train_seeds).

  Args:
    workdir: the run as its study's block names it (training seed +0).
    n: how many training seeds.

  Returns:
    [workdir, workdir_seed1, ..., workdir_seed{n-1}].

  >>> replicas('runs/a/', 3)
  ['runs/a/', 'runs/a_seed1', 'runs/a_seed2']
  """
  base = workdir.rstrip('/')
  return [workdir] + [f'{base}_seed{k}' for k in range(1, n)]


def over_runs(curves: list[dict[str, Any]], runs: list[str]
              ) -> dict[str, Any]:
  """One curve from the same curve of each training seed of a run.

  The draws of the direction are averaged within each run, so that the
  seeds of the intervals are the training runs (the units that were
  repeated); 'draws' keeps how many directions each run averaged.

  Args:
    curves: the curve of each run (made by `line`, same λ and metadata).
    runs: their workdirs, in order.

  Returns:
    The curve over runs: 'seeds' is the number of runs, 'runs' their
    workdirs; intervals over runs and test examples.
  """
  if len(curves) == 1:
    return dict(curves[0], runs=list(runs))
  first = curves[0]
  keep = {k: v for k, v in first.items() if k in (
      'direction', 'sign_consistent', 'ratio', 'normalization', 'group')}
  per = [c.get(PER_EXAMPLE) for c in curves]
  examples = (None if any(e is None for e in per) else
              np.stack([e.mean(0) for e in per]))
  out = curve(first['label'], first['panel'], first['lambdas'],
              np.stack([c['loss'] for c in curves]),
              np.stack([c['error'] for c in curves]), scale=first['scale'],
              error_SxNxP=examples, n_examples=first.get('n_examples'),
              **keep)
  return dict(out, runs=list(runs), draws=first['seeds'])


def half_diff(h: np.ndarray) -> np.ndarray:
  """err+ − err− of each example (a `finding` combine)."""
  return h[..., 0] - h[..., 1]


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


# Noises that draw nothing: one draw is every draw.
DETERMINISTIC = ('ones',)


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
    seeds: draws of the noise; default config.seeds (1 for a noise of
      DETERMINISTIC: every draw is the same direction).

  Returns:
    A results.json curve.
  """
  norm = normalization or p.config.normalization
  name = directions.NOISE_LABELS[noise]
  label = label or (f'|{name}|·sign(θ)' if sc else name)
  if noise in DETERMINISTIC:
    seeds = 1
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
