"""Large-scale structure of the landscape (Fort & Jastrzebski, NeurIPS 2019).

Fort and Jastrzebski model the low-loss region as a union of wedges: long
in most directions, narrow in a few, wider the farther from the origin; and
they claim that learning rate, width and L2 act alike on the path the
optimiser takes (their Sect. 4). Two kinds let a user test that:

Kind `cuts` (runs of config.cuts.checkpoints; θ0 = a run's epoch 0, θf its
last kept epoch):

* planes through three points: 'init_finals' (θ0 and θf of run 1, θf of run
  2), 'finals' (θf of runs 1, 2, 3) and 'origin' (0, θ0 and θf of run 1),
  with an orthonormal basis by Gram-Schmidt (core/cuts.py); one compiled
  sweep call per plane on a square num_points² grid that holds the three
  points with a margin;
* radial cuts: the loss along t·θf, t ∈ [t_min, t_max] (t = 1 always
  measured), per run;
* wedge widths: at t·θf for t in wedge_t (r = t·‖θf‖), along
  wedge_directions Gaussian directions made orthogonal to θf and of unit
  norm, offsets s in ±wedge_max·r (wedge_points of them; one sweep call
  per run), the extent of the interval around t·θf where the point is
  low-loss, by three criteria read from the same sweep (CRITERIA):
  'loss', test CE below wedge_loss_factor × the test CE at θf (one level
  for the whole ray, the wedge model's low-loss set); 'loss_ray', below
  wedge_loss_factor × the CE at t·θf itself (the ray's own CE changes with
  t, like a softmax temperature, and can leave the fixed set); 'error',
  test error below the error at θf + wedge_error_margin. The interval's
  ends are interpolated linearly between grid points; a value at 0 not
  below the level gives width 0, and an interval that reaches the end of
  the offsets is marked censored (a lower bound). Widths are reported in
  units of ‖θf‖ and divided by r (an angle-like width);
* the sign consistency ratio with θf of every cut direction (the planes'
  e1, e2 and chords, the wedge directions, θf − θ0): how the second paper's
  directions relate to the first's sign-consistent valley.
* a threshold that admits chance (CE ≥ ln C, error ≥ 1 − 1/C) is marked
  `vacuous` per t, not dropped (and one of 0, which admits nothing,
  `degenerate`);
* every width also on the training loss (config.cuts.train_samples fixed
  training examples, BN recalibrated as for the test set; each wedge's
  'train', each anisotropy kind's 'train_loss' and 'train_error'): the
  wedges are a training-loss object;
* anisotropy at θf: widths (criteria 'loss' and 'error', offsets
  ±wedge_max·‖θf‖) along the top anisotropy_hessian eigenvectors of the
  Hessian of the training CE (block power iteration, BN statistics
  recalibrated), anisotropy_random random directions, the directions
  towards the other runs' θf (all made ⊥ θf) and θf itself (radial): a
  distribution per kind, so "narrow in a few directions, long in most" is
  measured;
* findings over the runs (each run one seed; core/stats.py): narrower along
  the Hessian's top directions than along random ones, and widths growing
  from t = 1 to the last t; the mean/std/interval over runs of width/r per t
  and criterion (`width_over_r_summary`). The curves' err+/err− halves
  mean nothing here (results['err_table'] is False).

Kind `paths` (runs of config.paths.checkpoints, e.g. LR, width and L2
variants; a run may be listed in several columns of the figure), along the
kept epochs t of each run: ‖θt‖, ‖θt − θ0‖, cos(θt, θ0), the angle between
successive updates θ_{t_i} − θ_{t_{i−1}} and θ_{t_{i+1}} − θ_{t_i}, the test
loss and error, and, at each θt with BN statistics recalibrated there (as
the sweep does) and held fixed, the curvature dᵀHd/‖d‖² along the update
that reached it (d = θ_{t_i} − θ_{t_{i−1}}) and Hutchinson's tr(H), H of the
mean CE over `samples` examples of `split`. Width changes the parameter
count P, so the figure draws normalised quantities: ‖θt‖/‖θ0‖,
‖θt − θ0‖/‖θ0‖, cosines and angles, dᵀHd/‖d‖² (a Rayleigh quotient,
per unit length) and tr(H)/P (the mean eigenvalue); results.json holds the
raw values too. With BN, curvature of scale-invariant weights scales as
1/‖θ‖², so the kind also reports the radius ‖θt‖/‖θ0‖ beside the distance
from θ0 and the scale-free tr(H)·‖θt‖²/P; the training CE on the Hessian's
data beside the test error; and the test loss along the segment θ0 → θ_last
(segment_points) with its bend over the chord (the large-scale curvature
of the region crossed, not only the end point's Hessian). Each listed run
is measured over config.train_seeds training seeds (the run and its
replicas, common.replicas) and reported as the mean per epoch with a t
interval over the seeds (path_seeds.over_seeds); findings compare the first
and last setting of each column at the last epoch, paired by seed
(path_seeds.column_findings); configs/probe_paths.py:nobn is the BN-free
control.

A BN network's output does not change when the weights of a layer that a
BN follows are scaled, so along those weights (most of a conv net's) the
landscape seen from t·θf is the one seen from θf scaled by t: widths ∝ r
follow from the invariance alone, whatever the wedge model says (the
classifier and BN's own γ, β are not scale-invariant). The figure draws
width ∝ r through the first run's width at t = 1 as that reference;
configs/probe_cuts.py:nobn measures runs without BN.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax.numpy as jnp
import matplotlib.ticker
import ml_collections
import numpy as np
import optax
from jax import flatten_util

from valley_jax import checkpoint, checks, plots
from valley_jax.core import cuts as cutmath
from valley_jax.core import directions, hessian, stats, sweep, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject, architecture
from valley_jax.probe.studies import common, path_seeds
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
# Plane name -> (its three points, runs it needs).
PLANES = {'init_finals': ('θ0 and θf of run 1, θf of run 2', 2),
          'finals': ('θf of runs 1, 2 and 3', 3),
          'origin': ('the origin, θ0 and θf of run 1', 1)}
SPLITS = ('train', 'test')
# Key indices (directions.direction_key) of the wedge directions and of the
# Hutchinson probes, apart from the noises' (0-6), the surface's (1000+) and
# the curvature kind's (2000, 2001).
_WEDGE_INDEX, _PROBE_INDEX = 3000, 3001


# ----------------------------------------------------------------------- cuts


@dataclasses.dataclass
class Run:
  """One run of a cut: its label, θf (as a Subject) and θ0."""

  label: str
  final: Subject
  theta0: Any


def _plane_points(name: str, runs: list[Run]) -> list[tuple[str, str, Any]]:
  """(label, role, point) of the three points of plane `name`."""
  r = runs
  if name == 'init_finals':
    return [(f'θ0 {r[0].label}', 'init', r[0].theta0),
            (f'θf {r[0].label}', 'final', r[0].final.params),
            (f'θf {r[1].label}', 'final', r[1].final.params)]
  if name == 'finals':
    return [(f'θf {x.label}', 'final', x.final.params) for x in r[:3]]
  return [('origin', 'origin', optax.tree.zeros_like(r[0].theta0)),
          (f'θ0 {r[0].label}', 'init', r[0].theta0),
          (f'θf {r[0].label}', 'final', r[0].final.params)]


def _ssr(d, theta_f) -> float:
  return tree.sign_consistency_ratio(d, theta_f)


def cut_plane(p: Prober, name: str, runs: list[Run]) -> dict[str, Any]:
  """One plane: the loss and error on its grid, its points, SSRs.

  Args:
    p: the Prober (config.cuts: num_points, margin).
    name: a plane of PLANES.
    runs: the runs (run 1's sweep evaluates; all share its architecture).

  Returns:
    {'name', 'xs', 'ys', 'loss' [x][y], 'error', 'points' (label, role,
    x, y), 'ssr' (with θf of run 1: e1, e2, and the chords b − a, c − a),
    'chords' (‖b − a‖, ‖c − a‖, ‖c − b‖)}.
  """
  c, s = p.config.cuts, runs[0].final
  pts = _plane_points(name, runs)
  labels = ', '.join(q[0] for q in pts)
  pl = cutmath.plane(*[q[2] for q in pts],
                     where=f"config.cuts.planes: plane '{name}' ({labels})")
  xs, ys, coeffs = cutmath.square_grid(pl.coords_Nx2, c.num_points, c.margin)
  out = s.sweep(pl.origin, s.batch_stats, [pl.e1, pl.e2], coeffs)
  p.bar.update(1)
  n = c.num_points
  a, b, cc = (q[2] for q in pts)
  ref = s.params
  chords = [optax.tree.sub(b, a), optax.tree.sub(cc, a), optax.tree.sub(cc, b)]
  return {
      'name': name, 'xs': xs.tolist(), 'ys': ys.tolist(),
      'loss': out['loss'].reshape(n, n).tolist(),
      'error': out['error'].reshape(n, n).tolist(),
      'points': [{'label': q[0], 'role': q[1], 'x': float(xy[0]),
                  'y': float(xy[1])}
                 for q, xy in zip(pts, pl.coords_Nx2)],
      'ssr': {'e1': _ssr(pl.e1, ref), 'e2': _ssr(pl.e2, ref),
              'b - a': _ssr(chords[0], ref), 'c - a': _ssr(chords[1], ref)},
      'chords': [float(optax.tree.norm(d)) for d in chords]}


def radial(p: Prober, run: Run) -> dict[str, Any]:
  """The curve t ↦ L(t·θf): base θf, direction θf, coefficient t − 1.

  Args:
    p: the Prober (config.cuts: t_min, t_max, radial_points).
    run: the run.

  Returns:
    A results.json curve (lambdas = t) with 'norm' ‖θf‖; its halves are
    None (λ ∈ [−1, 0] and [0, 1] mean nothing on a ray).
  """
  ts = radial_ts(p.config.cuts)
  s = run.final
  out = s.sweep(s.params, s.batch_stats, [s.params], (ts - 1.0)[:, None])
  p.bar.update(1)
  curve = common.curve(run.label, 'radial t·θf', ts, out['loss'],
                       out['error'], norm=float(tree.norm(s.params)),
                       **common.curve_meta('radial', False, None, 'none'))
  curve['positive_error'] = curve['negative_error'] = None
  return curve


def radial_ts(c: Config) -> np.ndarray:
  """config.cuts' radial t values, with t = 1 (θf itself) among them.

  >>> radial_ts(Config(dict(t_min=0.0, t_max=2.0, radial_points=3)))
  array([0., 1., 2.])
  >>> radial_ts(Config(dict(t_min=0.0, t_max=3.0, radial_points=2)))
  array([0., 1., 3.])
  """
  ts = np.linspace(c.t_min, c.t_max, c.radial_points)
  return np.unique(np.concatenate([ts, [1.0]]))


# Low-loss criteria of the wedge widths: name -> what the figure calls it.
CRITERIA = {'loss': 'test CE < factor × CE(θf)',
            'loss_ray': 'test CE < factor × CE(t·θf)',
            'error': 'test error < error(θf) + margin'}


def wedge(p: Prober, run: Run, at_f: dict[str, float],
          train: sweep.Setting | None = None,
          at_f_train: dict[str, float] | None = None) -> dict[str, Any]:
  """Wedge widths of one run at t·θf for t in config.cuts.wedge_t.

  One sweep call (two with `train`): at each t, along each direction u_j,
  offsets s in ±wedge_max·r (r = t·‖θf‖), so every t is resolved alike
  relative to r.

  Args:
    p: the Prober (config.cuts' wedge fields).
    run: the run.
    at_f: {'loss', 'error'} at θf (the radial cut's t = 1), test set.
    train: the sweep of the fixed training subset (train_setting), or None.
    at_f_train: {'loss', 'error'} at θf on that subset (with `train`).

  Returns:
    {'label', 'ts', 'r' (t·‖θf‖), 'norm' ‖θf‖, 'ssr' of each direction
    with θf, and per criterion of CRITERIA (test set): 'threshold' (per t),
    'vacuous', 'width' [t][direction] in units of ‖θf‖, 'width_mean',
    'width_std' (over directions), 'width_over_r' (mean width / r) and
    'censored'}; with `train`, 'train' holds the same criteria on the
    training subset (CE and error there, levels from θf's training CE and
    error).
  """
  c, s = p.config.cuts, run.final
  theta = s.params
  norm = float(tree.norm(theta))
  dirs = [cutmath.orthogonal_unit(directions.sample(
      'gaussian', directions.direction_key(p.root, j, _WEDGE_INDEX), theta),
      theta) for j in range(c.wedge_directions)]
  ts = np.asarray(c.wedge_t, np.float64)
  offs = np.stack([cutmath.offsets(c.wedge_max * t * norm, c.wedge_points)
                   for t in ts])
  out = {'label': run.label, 'ts': ts.tolist(), 'r': (ts * norm).tolist(),
         'norm': norm, 'ssr': [_ssr(d, theta) for d in dirs]}
  chance = vacuous_levels(s.dataset.num_classes)
  settings = [(out, s.sweep, at_f)]
  if train is not None:
    out['train'] = {}
    settings.append((out['train'], train, at_f_train))
  for into, setting, ref in settings:
    vals = cutmath.wedge_values(
        lambda base, ds, co, f=setting: f(base, s.batch_stats, ds, co),
        theta, dirs, ts, offs)
    p.bar.update(1)
    into.update(wedge_blocks(offs, vals, ts, norm, ref, c, chance))
  return out


def wedge_blocks(offs, vals: dict[str, np.ndarray], ts: np.ndarray,
                 norm: float, at_f: dict[str, float], c: Config,
                 chance: dict[str, float]) -> dict[str, Any]:
  """Per criterion of CRITERIA, the widths of one evaluation set.

  Args:
    offs: [T, S] offsets.
    vals: wedge_values' {'loss', 'error'} [T, D, S] on the set.
    ts: the t of the points t·θf.
    norm: ‖θf‖.
    at_f: {'loss', 'error'} at θf on the same set.
    c: config.cuts (wedge_loss_factor, wedge_error_margin).
    chance: vacuous_levels.

  Returns:
    {criterion: {'threshold', 'vacuous' (at or above chance), 'degenerate'
    (≤ 0: nothing can lie below it), 'width', 'width_mean', 'width_std',
    'width_over_r', 'censored'}}.
  """
  at_ray = vals['loss'][:, 0, int(np.argmin(np.abs(offs[0])))]
  thresholds = {'loss': np.full(len(ts), c.wedge_loss_factor * at_f['loss']),
                'loss_ray': c.wedge_loss_factor * at_ray,
                'error': np.full(len(ts), at_f['error'] +
                                 c.wedge_error_margin)}
  out = {}
  for name, thr in thresholds.items():
    metric = 'error' if name == 'error' else 'loss'
    w = cutmath.widths(offs, vals[metric], thr)
    width = w.width_TxD / norm
    out[name] = {'threshold': thr.tolist(),
                 'vacuous': (thr >= chance[metric]).tolist(),
                 # A level of 0 admits nothing: a CE that underflows to 0 in
                 # float32 (a saturated training set far out on the ray).
                 'degenerate': (thr <= 0).tolist(),
                 'width': width.tolist(),
                 'width_mean': width.mean(1).tolist(),
                 'width_std': width.std(1).tolist(),
                 'width_over_r': (width.mean(1) / ts).tolist(),
                 'censored': w.censored_TxD.tolist()}
  return out


def train_setting(p: Prober, s: Subject) -> sweep.Setting:
  """s's compiled sweep evaluating a fixed training subset instead of the
  test set: config.cuts.train_samples examples of the training split in
  the order the BN recalibration draws them (so, with recal_samples ≥
  train_samples, the subset is among the recalibration batches), BN
  statistics recalibrated at every point as the test sweep does.

  Args:
    p: the Prober.
    s: a subject of the architecture (its sweep is reused).

  Returns:
    The sweep setting.
  """
  ds, n = s.dataset, p.config.cuts.train_samples
  order = np.random.default_rng(p.config.seed).permutation(len(ds.y_train))
  idx = order[:min(n, len(order))]
  batches = sweep.make_batches(ds.x_train[idx], ds.y_train[idx],
                               p.eval_batch_size(), s.sweep.mesh)
  return dataclasses.replace(s.sweep, eval_data=batches)


def _at(setting: sweep.Setting, s: Subject) -> dict[str, float]:
  """{'loss', 'error'} of the setting's data at s's θ (recalibrated)."""
  out = setting(s.params, s.batch_stats, [s.params], np.zeros((1, 1)))
  return {'loss': float(out['loss'][0]), 'error': float(out['error'][0])}


def vacuous_levels(num_classes: int) -> dict[str, float]:
  """The levels a low-loss criterion means nothing at: the CE of a uniform
  prediction, ln C, and the error of a guess, 1 − 1/C (a threshold at or
  above them admits chance).

  >>> {k: round(v, 4) for k, v in vacuous_levels(10).items()}
  {'loss': 2.3026, 'error': 0.9}
  """
  return {'loss': float(np.log(num_classes)),
          'error': 1.0 - 1.0 / num_classes}


def anisotropy(p: Prober, run: Run, runs: list[Run], at_f: dict[str, float],
               tracker: Tracker, train: sweep.Setting | None = None,
               at_f_train: dict[str, float] | None = None
               ) -> dict[str, Any]:
  """Widths at θf along many directions, grouped by kind (see ANISOTROPY).

  One sweep call per run at t = 1, offsets ±wedge_max·‖θf‖; the criteria
  'loss' and 'error' of `wedge`.

  Args:
    p: the Prober.
    run: the run measured.
    runs: every run (the other runs' θf give the 'optima' directions).
    at_f: {'loss', 'error'} at θf.
    tracker: the curvature functions (Hessian of the training CE).
    train: the fixed training subset's sweep (train_setting), or None.
    at_f_train: {'loss', 'error'} at θf on that subset (with `train`).

  Returns:
    {'eigenvalues' (the top Hessian eigenvalues), 'kinds': kind ->
    {'n', and per criterion the widths / ‖θf‖ of its directions, their mean,
    min and max (test set), and with `train` the same under 'train_loss'
    and 'train_error' (training subset)}}.
  """
  c, s = p.config.cuts, run.final
  theta = s.params
  norm = float(tree.norm(theta))
  stats = tracker.stats(s)
  flat, unravel = flatten_util.ravel_pytree(theta)

  def matvec(v):
    hv = tracker.curv.hvp(theta, stats, unravel(jnp.asarray(v, flat.dtype)),
                          tracker.data)
    return np.asarray(flatten_util.ravel_pytree(hv)[0], np.float64)

  vals, vecs = cutmath.top_eigenvectors(matvec, int(flat.size),
                                        c.anisotropy_hessian,
                                        c.anisotropy_iters, p.config.seed)
  kinds = {
      'hessian': [cutmath.orthogonal_unit(unravel(jnp.asarray(
          v, flat.dtype)), theta) for v in vecs],
      'random': [cutmath.orthogonal_unit(directions.sample(
          'gaussian', directions.direction_key(p.root, 100 + j,
                                               _WEDGE_INDEX), theta), theta)
                 for j in range(c.anisotropy_random)],
      'optima': [cutmath.orthogonal_unit(optax.tree.sub(
          o.final.params, theta), theta) for o in runs if o is not run],
      'radial': [optax.tree.scale(1.0 / norm, theta)]}
  names = [k for k, v in kinds.items() for _ in v]
  dirs = [d for v in kinds.values() for d in v]
  offs = cutmath.offsets(c.wedge_max * norm, c.wedge_points)
  out = {'eigenvalues': vals.tolist(), 'kinds': {k: {'n': len(v)}
                                                  for k, v in kinds.items()}}
  sets = [('', s.sweep, at_f)]
  if train is not None:
    sets.append(('train_', train, at_f_train))
  for prefix, setting, ref in sets:
    vals_map = cutmath.wedge_values(
        lambda base, ds, co, f=setting: f(base, s.batch_stats, ds, co),
        theta, dirs, [1.0], offs)
    p.bar.update(1)
    thresholds = {'loss': c.wedge_loss_factor * ref['loss'],
                  'error': ref['error'] + c.wedge_error_margin}
    for name, thr in thresholds.items():
      w = cutmath.widths(offs, vals_map[name], thr).width_TxD[0] / norm
      for kind in kinds:
        v = w[[i for i, n in enumerate(names) if n == kind]]
        out['kinds'][kind][prefix + name] = {
            'width': v.tolist(), 'mean': float(v.mean()),
            'min': float(v.min()), 'max': float(v.max())}
  return out


def cuts_findings(anis: list[dict[str, Any]], wedges: list[dict[str, Any]],
                  train: bool = False) -> list[dict[str, Any]]:
  """Verdicts over the runs (each run one seed): narrow along the top
  Hessian eigenvectors, long along random directions; widths ∝ r.

  Args:
    anis: anisotropy's dict per run (may be empty).
    wedges: wedge's dict per run.
    train: the widths on the training subset (none when not measured)
      rather than the test set.

  Returns:
    stats.finding dicts (rule 'every_seed'), each claim naming its set.
  """
  out = []
  where = 'training subset' if train else 'test set'
  prefix = 'train_' if train else ''
  if anis and (not train or 'train_error' in anis[0]['kinds']['random']):
    for crit in ('error', 'loss'):
      diff = [a['kinds']['random'][prefix + crit]['mean'] -
              a['kinds']['hessian'][prefix + crit]['mean'] for a in anis]
      out.append(stats.finding(
          f'narrower along the top Hessian eigenvectors than along random '
          f'directions ({crit} criterion, {where})', stats.summary(diff),
          rule='every_seed',
          statistic='mean random width − mean Hessian width, / ‖θf‖, per '
          'run'))
  blocks = [w.get('train') if train else w for w in wedges]
  ts = wedges[0]['ts'] if wedges and all(blocks) else []
  if 1.0 in ts and len(ts) > 1:
    i1, last = ts.index(1.0), len(ts) - 1
    grow = [b['error']['width_mean'][last] - b['error']['width_mean'][i1]
            for b in blocks]
    out.append(stats.finding(
        f'the width grows with the distance from the origin (t = 1 → '
        f'{ts[last]:g}, error criterion, {where})', stats.summary(grow),
        rule='every_seed', statistic='width(t_max) − width(1), / ‖θf‖'))
  return out


def cuts(p: Prober, _) -> dict[str, Any]:
  """Planes, radial cuts and wedge widths of config.cuts' runs.

  Args:
    p: the Prober.

  Returns:
    'planes' (cut_plane per config.cuts.planes), 'curves' (the radial cut
    of each run), 'wedges' (one per run) and 'ssr_update' (SSR of θf − θ0
    with θf, per run).
  """
  c = p.config.cuts
  runs = [Run(label, p.subject(w, 'last', label), p.subject(w, 0,
                                                           label).params)
          for w, label in zip(c.checkpoints, c.labels or c.checkpoints)]
  planes = [cut_plane(p, name, runs) for name in c.planes]
  curves = [radial(p, r) for r in runs]
  wedges, anis = [], []
  tracker = (make_tracker(p, runs[0].final, c) if c.anisotropy_hessian
             else None)
  train = train_setting(p, runs[0].final) if c.train_samples else None
  for r, curve in zip(runs, curves):
    i = curve['lambdas'].index(1.0)
    at_f = {'loss': curve['loss'][i], 'error': curve['error'][i]}
    at_f_train = _at(train, r.final) if train is not None else None
    wedges.append(dict(wedge(p, r, at_f, train, at_f_train),
                       at_f=at_f, at_f_train=at_f_train))
    if tracker is not None:
      anis.append({'label': r.label, **anisotropy(
          p, r, runs, at_f, tracker, train, at_f_train)})
  over_runs = {
      name: [stats.summary([w[name]['width_over_r'][i] for w in wedges])
             for i in range(len(c.wedge_t))] for name in CRITERIA}
  out = {}
  if train is not None:
    out['width_over_r_summary_train'] = {
        name: [stats.summary([w['train'][name]['width_over_r'][i]
                              for w in wedges])
               for i in range(len(c.wedge_t))] for name in CRITERIA}
    out['train_subset'] = {'samples': int(min(c.train_samples, len(
        runs[0].final.dataset.y_train))), 'split': 'train'}
  return {'curves': curves, 'planes': planes, 'wedges': wedges,
          'width_over_r_summary': over_runs, **out,
          'anisotropy': anis, 'err_table': False,
          'findings': (cuts_findings(anis, wedges) +
                       cuts_findings(anis, wedges, train=True)),
          'ssr_update': [_ssr(optax.tree.sub(r.final.params, r.theta0),
                              r.final.params) for r in runs],
          'labels': [r.label for r in runs]}


# ---------------------------------------------------------------- cut figures

_MARKERS = {'origin': ('s', 'black', 'origin'), 'init': ('o', 'white', 'θ0'),
            'final': ('*', 'red', 'θf')}


def _plane_panel(fig, ax, pl: dict[str, Any], metric: str) -> None:
  xs, ys = np.asarray(pl['xs']), np.asarray(pl['ys'])
  z = plots.clipped(np.asarray(pl[metric], dtype=object).ravel().tolist())
  z = z.reshape(len(xs), len(ys)).T
  label = 'test error'
  if metric == 'loss':
    z, label = np.log10(np.maximum(z, 1e-6)), 'log10 test CE loss'
  cs = ax.contourf(xs, ys, z, levels=20, cmap='viridis')
  fig.colorbar(cs, ax=ax, label=label)
  for q in pl['points']:
    m, color, _ = _MARKERS[q['role']]
    ax.plot(q['x'], q['y'], m, color=color, mec='black', ms=9)
    ax.annotate(q['label'], (q['x'], q['y']), textcoords='offset points',
                xytext=(5, 5), fontsize=6,
                bbox=dict(boxstyle='round,pad=0.15', fc='white', alpha=0.7,
                          lw=0))
  ax.set_aspect('equal')
  ax.set_xlabel('e1', fontsize=8)
  ax.set_ylabel('e2', fontsize=8)
  ax.tick_params(labelsize=7)
  ssr = pl['ssr']
  names = ', '.join(q['label'] for q in pl['points'])
  ax.set_title(f"{pl['name']}: {names}\nSSR with θf: e1 "
               f"{ssr['e1']:.3f}, e2 {ssr['e2']:.3f}", fontsize=8)


def cuts_figure(results: dict[str, Any], folder: str) -> list[str]:
  """figure: the planes (log test CE, test error) with their points;
  figure_wedges: radial cuts and wedge widths against r."""
  planes = results['planes']
  paths = []
  if planes:
    fig, axes = plt.subplots(2, len(planes), figsize=(4.3 * len(planes), 7.4),
                             squeeze=False)
    for j, pl in enumerate(planes):
      for i, metric in enumerate(('loss', 'error')):
        _plane_panel(fig, axes[i, j], pl, metric)
    handles = [plt.Line2D([], [], marker=m, color=c, mec='black', ls='',
                          label=name) for m, c, name in _MARKERS.values()]
    fig.legend(handles=handles, loc='upper right', fontsize=7)
    fig.suptitle(f"cuts: {results['model']} on {results['dataset']}"
                 f"{plots.checkpoint_label(results)}; planes through three "
                 'points (orthonormal basis by Gram-Schmidt)', fontsize=9)
    fig.tight_layout()
    paths += plots.save(fig, folder, 'figure')
  return paths + wedges_figure(results, folder)


def wedges_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Radial test loss and error against t; wedge widths against r (one
  panel per criterion, vacuous thresholds marked); the widths at θf along
  every kind of direction (anisotropy)."""
  fig, axes = plt.subplots(2, 3, figsize=(13.5, 8.0))
  colors = plt.get_cmap('tab10')
  for n, cv in enumerate(results['curves']):
    for ax, metric in zip(axes[0, :2], ('loss', 'error')):
      ax.plot(cv['lambdas'], plots.clipped(cv[metric]), '-', color=colors(n),
              label=cv['label'])
  axes[0, 0].set_yscale('log')
  for ax, title, ylabel in zip(
      axes[0, :2], ('test CE loss along t·θf', 'test error along t·θf'),
      ('test CE loss (log)', 'test error')):
    ax.axvline(1.0, color='grey', lw=0.5)
    ax.set_xlabel('t (the point t·θf)', fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
  axes[0, 1].set_ylim(0.0, plots.error_top(
      [v for cv in results['curves'] for v in plots.clipped(cv['error'])]))
  axes[0, 0].legend(fontsize=7)
  for ax, name in zip(axes[1], CRITERIA):
    _width_panel(ax, results['wedges'], name, colors)
  _anisotropy_panel(axes[0, 2], results.get('anisotropy') or [], colors)
  cfg = results['config']['cuts']
  ssr = [s for w in results['wedges'] for s in w['ssr']]
  upd = results.get('ssr_update') or []
  fig.suptitle(
      f"cuts: {results['model']} on {results['dataset']}"
      f"{plots.checkpoint_label(results)}\nwidths along "
      f"{cfg['wedge_directions']} unit directions ⊥ θf (SSR with θf "
      f'{np.mean(ssr):.3f}, mean), factor {cfg["wedge_loss_factor"]:g}, '
      f"margin {cfg['wedge_error_margin']:g}; SSR of θf − θ0 with θf: "
      f"{', '.join(f'{v:.3f}' for v in upd)}", fontsize=9)
  handles, labels = axes[1, 0].get_legend_handles_labels()
  handles += [plt.Line2D([], [], marker='o', mfc='white', mec='grey', ls=''),
              plt.Line2D([], [], marker='x', color='grey', ls='')]
  labels += ['censored (a lower bound)', 'threshold vacuous (≥ chance)']
  if any(w.get('train') for w in results['wedges']):
    handles.append(plt.Line2D([], [], ls='--', color='grey'))
    labels.append('mean width on the training subset (training CE / '
                  'error)')
  axes[1, 2].legend(handles, labels, fontsize=7)
  for ax in axes.ravel():
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure_wedges')


def _anisotropy_panel(ax, anis: list[dict[str, Any]], colors) -> None:
  """Widths at θf (error criterion) along each kind of direction, every
  direction a point, per run a colour."""
  if not anis:
    ax.set_axis_off()
    ax.set_title('anisotropy: not measured', fontsize=9)
    return
  kinds = list(anis[0]['kinds'])
  for n, a in enumerate(anis):
    for k, kind in enumerate(kinds):
      w = a['kinds'][kind]['error']['width']
      x = k + (n - (len(anis) - 1) / 2) * 0.12 + np.zeros(len(w))
      ax.plot(x, w, 'o', ms=3, color=colors(n), alpha=0.7)
      ax.plot([x[0] - 0.05, x[0] + 0.05], [np.mean(w)] * 2, '-',
              color=colors(n), lw=2)
  ax.set_xticks(range(len(kinds)), [
      f"{k}\n({anis[0]['kinds'][k]['n']} dirs)" for k in kinds], fontsize=8)
  ax.set_ylabel('width / ‖θf‖ (error criterion)', fontsize=8)
  ax.set_ylim(bottom=0.0)
  ax.set_title('anisotropy at θf: widths by direction kind\n(dots: '
               'directions; bars: means; colours: runs)', fontsize=9)


def _width_panel(ax, wedges: list[dict[str, Any]], name: str,
                 colors) -> None:
  """Mean ± std width (over directions) against t, per run; open markers
  where an interval reached the end of the offsets."""
  for n, w in enumerate(wedges):
    ts, m = np.asarray(w['ts']), np.asarray(w[name]['width_mean'])
    sd = np.asarray(w[name]['width_std'])
    ax.errorbar(ts, m, sd, marker='o', ms=3, color=colors(n), capsize=2,
                label=w['label'])
    cens = np.asarray(w[name]['censored']).any(1)
    if cens.any():
      ax.plot(ts[cens], m[cens], 'o', mfc='white', mec=colors(n), ms=7)
    vac = np.asarray(w[name].get('vacuous', [False] * len(ts)), bool)
    if vac.any():
      ax.plot(ts[vac], m[vac], 'x', color=colors(n), ms=9)
    if w.get('train'):
      ax.plot(ts, w['train'][name]['width_mean'], '--', color=colors(n),
              lw=1)
  w = wedges[0]
  if 1.0 in w['ts']:
    ts = np.asarray(w['ts'])
    ref = w[name]['width_mean'][w['ts'].index(1.0)]
    ax.plot(ts, ref * ts, ':', color='grey',
            label=f"∝ r through {w['label']} at t = 1")
  ax.set_title(f'width of the low-loss region:\n{CRITERIA[name]}',
               fontsize=9)
  ax.set_xlabel('r / ‖θf‖ = t', fontsize=8)
  ax.set_ylabel('width / ‖θf‖', fontsize=8)
  ax.set_ylim(bottom=0.0)


# ------------------------------------------------------------------ cuts config


def _cuts_config() -> Config:
  return Config(dict(
      checkpoints=(), labels=(),
      planes=('init_finals', 'finals', 'origin'), num_points=21, margin=0.25,
      t_min=0.0, t_max=2.0, radial_points=21,
      # Wedge widths at t·θf along wedge_directions unit directions ⊥ θf,
      # offsets in ±wedge_max·r (r = t·‖θf‖) in wedge_points steps.
      wedge_t=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0), wedge_directions=3,
      wedge_max=1.0, wedge_points=21,
      # Low-loss (three criteria, all reported): test CE below
      # wedge_loss_factor × the CE at θf, or × the CE at t·θf; test error
      # below the error at θf + wedge_error_margin.
      wedge_loss_factor=2.0, wedge_error_margin=0.05,
      # Anisotropy at θf: widths along the top anisotropy_hessian Hessian
      # eigenvectors (block power iteration, anisotropy_iters steps),
      # anisotropy_random random directions, towards the other runs' θf
      # (all made ⊥ θf) and along θf; 0 Hessian directions: not measured.
      anisotropy_hessian=3, anisotropy_random=12, anisotropy_iters=20,
      # The Hessian's data: the training CE on `samples` examples.
      split='train', samples=500, batch_size=250, probe_chunk=0,
      # Wedge and anisotropy widths on the training loss too: the CE and
      # error of train_samples training examples (fixed, in the order BN
      # recalibration draws them; 0 = test set only).
      train_samples=500))


def runs_needed(planes) -> int:
  """The number of runs the planes need.

  >>> runs_needed(('origin', 'init_finals'))
  2
  """
  return max([PLANES[n][1] for n in planes] + [1])


def _cuts_validate(config: Config) -> None:
  c = config.cuts
  bad = [n for n in c.planes if n not in PLANES]
  if bad:
    raise InputError(f'config.cuts.planes: unknown plane(s) {bad}; choose '
                     f'from {tuple(PLANES)}.')
  if len(set(c.planes)) != len(c.planes):
    raise InputError(f'config.cuts.planes={tuple(c.planes)} names a plane '
                     'twice.')
  common.check_range(c.t_min, c.t_max, c.radial_points, 'config.cuts')
  if c.split not in SPLITS:
    raise InputError(f'config.cuts.split={c.split!r}: choose one of '
                     f'{SPLITS}.')
  if not c.wedge_t:
    raise InputError('config.cuts.wedge_t is empty: give the points t·θf '
                     'of the ray to measure wedge widths at, e.g. (0.5, 1, '
                     '2).')
  _check_labels(c, 'config.cuts')
  if len(set(c.checkpoints)) != len(c.checkpoints):
    raise InputError(f'config.cuts.checkpoints={tuple(c.checkpoints)} names '
                     'a run twice; a cut needs distinct runs.')
  need = runs_needed(c.planes)
  if c.checkpoints and len(c.checkpoints) < need:
    raise InputError(
        f'config.cuts.checkpoints has {len(c.checkpoints)} run(s); '
        f'config.cuts.planes={tuple(c.planes)} needs {need} ('
        + '; '.join(f'{n}: {PLANES[n][0]}' for n in c.planes) + ').')


def _check_labels(c: Config, where: str) -> None:
  for name in ('labels', 'columns'):
    if c.get(name) and len(c[name]) != len(c.checkpoints):
      raise InputError(f'{where}.{name} has {len(c[name])} entries for '
                       f'{len(c.checkpoints)} checkpoints: give one per run '
                       'or none.')


def _cuts_checkpoints(config: Config) -> list[tuple[str, Any]]:
  """θf of every run, then θ0 of every run."""
  ws = config.cuts.checkpoints
  return [(w, 'last') for w in ws] + [(w, 0) for w in ws]


def _check_cuts(config: Config) -> None:
  """The runs exist, keep epoch 0 and are of one model and dataset."""
  c = config.cuts
  if not c.checkpoints:
    raise InputError('config.cuts.checkpoints is empty: give the workdirs '
                     f'of {runs_needed(c.planes)} or more runs '
                     '(configs/probe_cuts.py trains three).')
  for w in c.checkpoints:
    common.check_checkpoint(w, 'last', 'config.cuts.checkpoints')
    common.check_checkpoint(w, 0, 'config.cuts.checkpoints')
  sigs = {w: common.model_signature(w) for w in c.checkpoints}
  if len(set(sigs.values())) > 1:
    raise InputError('config.cuts.checkpoints must be runs of one model on '
                     f'one dataset; got {sigs}.')


CUTS = Study(
    'cuts', cuts, _cuts_config, validate=_cuts_validate, figure=cuts_figure,
    fields=(checks.count('cuts.num_points', 2),
            checks.Field('cuts.margin', float, lo=0.0),
            checks.finite('cuts.t_min'), checks.finite('cuts.t_max'),
            checks.count('cuts.radial_points'),
            checks.positive('cuts.wedge_t'),
            checks.count('cuts.wedge_directions'),
            checks.positive('cuts.wedge_max'),
            checks.count('cuts.wedge_points', 3),
            checks.positive('cuts.wedge_loss_factor'),
            checks.Field('cuts.wedge_error_margin', float, lo=0.0, hi=1.0),
            checks.count('cuts.anisotropy_hessian', 0),
            checks.count('cuts.anisotropy_random'),
            checks.count('cuts.anisotropy_iters'),
            checks.count('cuts.samples', 0, why='0 = the whole split'),
            checks.count('cuts.train_samples', 0,
                         why='0 = widths on the test set only'),
            checks.count('cuts.batch_size'),
            checks.count('cuts.probe_chunk', 0,
                         why='0 = chosen by the architecture')),
    checkpoints=_cuts_checkpoints, multi_run=True,
    check_checkpoints=_check_cuts)


# ---------------------------------------------------------------------- paths


@dataclasses.dataclass
class Tracker:
  """Compiled curvature functions and data of one architecture."""

  curv: hessian.Curvature
  data: sweep.Batches
  recal: Any  # jitted (params, batch_stats, recal_x) -> stats, or None.

  def stats(self, s: Subject):
    """The BN statistics of s's point, recalibrated as the sweep does."""
    if self.recal is None:
      return s.batch_stats
    return self.recal(s.params, s.batch_stats, s.sweep.recal_x)


def make_tracker(p: Prober, s: Subject, block: Config | None = None
                 ) -> Tracker:
  """Curvature functions for s's model on a block's data.

  Args:
    p: the Prober.
    s: a subject of the architecture.
    block: the config block with split, samples, batch_size, probe_chunk
      (default config.paths).

  Returns:
    The Tracker.
  """
  curv, data, recal = common.hessian_setup(p, s, block or p.config.paths)
  return Tracker(curv, data, recal)


def path_epochs(config: Config, workdir: str) -> list[int]:
  """The epochs of a run that `paths` measures: 0, then config.paths.epochs
  or every other kept epoch."""
  es = config.paths.epochs or checkpoint.epochs(workdir)
  return sorted({0, *(int(e) for e in es)})


def measure_path(p: Prober, workdir: str, trackers: dict[str, Tracker]
                 ) -> dict[str, Any]:
  """The geometry, loss and curvature of one run along its epochs.

  Args:
    p: the Prober.
    workdir: the run.
    trackers: architecture -> Tracker (filled as needed).

  Returns:
    Per epoch (lists): trajectory's keys (norm, dist, cos_init,
    update_cos, step), their normalised forms (norm_rel, rel_dist,
    update_angle in degrees, rms = ‖θt‖/√P), loss, error, curvature
    (dᵀHd/‖d‖² along the update into θt; NaN at epoch 0), trace,
    trace_sem, trace_per_param; and epochs, num_params, hparams.
  """
  c = p.config.paths
  es = path_epochs(p.config, workdir)
  subs = [p.subject(workdir, e, f'{workdir}@{e}') for e in es]
  key = architecture(subs[0].train_config) + json.dumps(
      subs[0].train_config['data'], sort_keys=True)
  if key not in trackers:
    trackers[key] = make_tracker(p, subs[0])
  t = trackers[key]
  geo = cutmath.trajectory([s.params for s in subs])
  n = tree.size(subs[0].params)
  probe = directions.direction_key(p.root, 0, _PROBE_INDEX)
  rows = []
  for i, s in enumerate(subs):
    ev = s.sweep(s.params, s.batch_stats, [s.params], np.zeros((1, 1)))
    stats = t.stats(s)
    curv = float('nan')
    if i:
      d = optax.tree.sub(s.params, subs[i - 1].params)
      curv = float(t.curv.directional(s.params, stats, d, t.data))
    tr, se = t.curv.hutchinson(s.params, stats, probe, t.data, c.probes)
    train = float(t.curv.loss(s.params, stats, t.data))
    rows.append((float(ev['loss'][0]), float(ev['error'][0]), curv,
                 float(tr), float(se), train))
    p.bar.update(1)
  loss, error, curv, tr, se, train = (list(v) for v in zip(*rows))
  n0 = geo['norm'][0]
  cfg = subs[0].train_config
  lams = np.linspace(0.0, 1.0, c.segment_points)
  seg = subs[-1].sweep(subs[0].params, subs[-1].batch_stats,
                       [optax.tree.sub(subs[-1].params, subs[0].params)],
                       lams[:, None])
  return {
      'workdir': workdir, 'epochs': es, 'num_params': n, **geo,
      'train_loss': train,
      'trace_scale_free': [v * r * r / n for v, r in zip(tr, geo['norm'])],
      'segment': {'lambdas': lams.tolist(), 'loss': seg['loss'].tolist(),
                  'error': seg['error'].tolist(),
                  'bend': segment_bend(lams, seg['loss'])},
      'norm_rel': [v / n0 for v in geo['norm']],
      'rel_dist': [v / n0 for v in geo['dist']],
      'rms': [v / np.sqrt(n) for v in geo['norm']],
      'update_angle': cutmath.degrees(geo['update_cos']),
      'loss': loss, 'error': error, 'curvature': curv, 'trace': tr,
      'trace_sem': se, 'trace_per_param': [v / n for v in tr],
      'hparams': {'lr': cfg['optim']['lr'],
                  'weight_decay': cfg['optim']['weight_decay'],
                  'width': cfg['model']['width'],
                  'batch_size': cfg['train']['batch_size']}}


def segment_bend(lams, loss) -> float:
  """The largest excess of the loss along θ0 → θt over the chord between
  its ends (> 0: a bump the optimiser went round; < 0: convex-like).

  >>> segment_bend([0.0, 0.5, 1.0], [2.0, 1.5, 0.0])
  0.5
  """
  lams, loss = np.asarray(lams, np.float64), np.asarray(loss, np.float64)
  chord = (1 - lams) * loss[0] + lams * loss[-1]
  return float(np.max(loss - chord))


def _replicas(config: Config, workdir: str) -> list[str]:
  """The training seeds of a listed run (config.train_seeds)."""
  return common.replicas(workdir, common.train_seeds(config))


def paths(p: Prober, _) -> dict[str, Any]:
  """Trajectory geometry and curvature of config.paths' runs, over seeds.

  Args:
    p: the Prober.

  Returns:
    'paths': one entry per listed run (measure_path of each of its
    config.train_seeds training seeds, aggregated by path_seeds.over_seeds:
    means per epoch, intervals over the seeds, per-seed values, 'runs'; a
    run listed twice is measured once), 'findings' (path_seeds.
    column_findings), 'columns' (in order), 'train_seeds', 'hessian_data'
    and 'curves' ([]: no λ curve).
  """
  c = p.config.paths
  labels = c.labels or c.checkpoints
  columns = c.columns or ('runs',) * len(c.checkpoints)
  trackers: dict[str, Tracker] = {}
  measured = {}
  for w in dict.fromkeys(c.checkpoints):
    runs = _replicas(p.config, w)
    measured[w] = dict(path_seeds.over_seeds(
        [measure_path(p, r, trackers) for r in runs]), workdir=w, runs=runs)
  data = next(iter(trackers.values())).data
  entries = [{**measured[w], 'label': label, 'column': col}
             for w, label, col in zip(c.checkpoints, labels, columns)]
  return {'curves': [], 'err_table': False,
          'findings': path_seeds.column_findings(entries),
          'paths': entries,
          'train_seeds': common.train_seeds(p.config),
          'columns': list(dict.fromkeys(columns)),
          'hessian_data': {'split': c.split, 'probes': c.probes,
                           'samples': int(np.sum(np.asarray(data.w)))}}


# ----------------------------------------------------------------- paths figure

_PATH_ROWS = (('rel_dist', '‖θt − θ0‖ / ‖θ0‖', False),
              ('norm_rel', '‖θt‖ / ‖θ0‖', False),
              ('cos_init', 'cos(θt, θ0)', False),
              ('update_angle', 'angle of successive updates (°)', False),
              ('curvature', 'dᵀHd/‖d‖², d = θt − θt−1', True),
              ('trace_per_param', 'tr(H) / P', True),
              ('trace_scale_free', 'tr(H)·‖θt‖² / P (scale-free)', True),
              ('error', 'test error', False),
              ('train_loss', 'training CE (Hessian data)', True))


def _values(q: dict[str, Any], key: str) -> np.ndarray:
  return np.array([np.nan if x is None else x for x in q[key]], np.float64)


def _log_scale(ax, values: np.ndarray) -> None:
  """Log y when every value is positive, symlog when some are not.

  Symlog gets labelled ticks at 0 and at whole decades from one decade
  above its linear range outwards, at most three a side (the default put
  +10^k and −10^k at the linear range's edges, whose labels overlapped).
  """
  v = values[np.isfinite(values)]
  if not v.size or not np.any(v > 0):
    return
  if np.all(v > 0):
    ax.set_yscale('log')
    return
  ax.set_yscale('symlog', linthresh=float(np.percentile(v[v > 0], 10)))
  ax.set_yticks(symlog_ticks(v, float(np.percentile(v[v > 0], 10))))
  ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def symlog_ticks(values: np.ndarray, linthresh: float) -> list[float]:
  """0 and ±10^k for the decades k above the linear range that the values
  reach on each side, thinned to at most three a side.

  >>> symlog_ticks(np.array([-0.9, 0.0, 2e-4, 0.03, 5.0]), 1e-3)
  [-1.0, -0.1, 0.0, 0.1, 1.0, 10.0]
  """
  ticks = [0.0]
  first = int(np.floor(np.log10(linthresh))) + 2
  for sign, reach in ((1, values.max()), (-1, -values.min())):
    if reach <= 10.0 ** (first - 1):
      continue
    ks = list(range(first, int(np.ceil(np.log10(reach))) + 1))
    ks = ks[::-(-len(ks) // 3)] if ks else ks
    ticks += [sign * 10.0 ** k for k in ks]
  return sorted(ticks)


def _band(ci: list | None, n: int) -> tuple[np.ndarray, np.ndarray]:
  """An interval per epoch as two arrays (NaN where there is none)."""
  ci = ci or [None] * n
  lo_hi = np.array([[np.nan, np.nan] if c is None else c for c in ci],
                   np.float64)
  return lo_hi[:, 0], lo_hi[:, 1]


def _draw_path(ax, q: dict[str, Any], key: str, color, log: bool) -> None:
  """One setting's mean over seeds with its 95 % band (several seeds; on a
  log axis the geometric mean and the interval of log10), or its single
  run with Hutchinson's standard error on the traces."""
  v, es = _values(q, key), q['epochs']
  label = (f"{q['label']} (P = {q['num_params']:,}, "
           f"{q.get('seeds', 1)} seed{'s' if q.get('seeds', 1) > 1 else ''})")
  if q.get('seeds', 1) > 1:
    geo = q.get('geometric', {}).get(key) if log else None
    if geo:
      v = _values(geo, 'mean')
    lo, hi = _band(geo['ci'] if geo else q.get('ci', {}).get(key), len(es))
    ax.fill_between(es, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(es, v, 'o-', ms=3, color=color, label=label)
    return
  err = None
  if key in ('trace_per_param', 'trace_scale_free') and 'trace_sem' in q:
    # Hutchinson's standard error, scaled as the value is.
    tr = _values(q, 'trace')
    err = _values(q, 'trace_sem') * np.abs(v / np.where(tr, tr, 1.0))
  ax.errorbar(es, v, err, fmt='o-', ms=3, capsize=2, color=color,
              label=label)


def paths_figure(results: dict[str, Any], folder: str) -> list[str]:
  """One column per hyperparameter (config.paths.columns), one row per
  normalised quantity against the epoch, a line per run; every row shares
  its y axis, so the columns compare directly."""
  cols = results['columns']
  fig, axes = plt.subplots(len(_PATH_ROWS), len(cols),
                           figsize=(3.6 * len(cols), 1.9 * len(_PATH_ROWS)),
                           squeeze=False, sharex=True, sharey='row')
  # Settings of a column are ordered (LR, width, WD): a sequential map.
  colors = plt.get_cmap('viridis')
  for i, (key, name, log) in enumerate(_PATH_ROWS):
    if log:
      _log_scale(axes[i, 0], np.concatenate(
          [_values(q, key) for q in results['paths']]))
    for j, col in enumerate(cols):
      ax = axes[i, j]
      mine = [q for q in results['paths'] if q['column'] == col]
      for n, q in enumerate(mine):
        _draw_path(ax, q, key, colors(0.85 * n / max(len(mine) - 1, 1)),
                   log)
      ax.set_xscale('symlog', linthresh=1.0)
      top = max(max(q['epochs']) for q in results['paths'])
      ax.set_xticks([e for e in (0, 1, 3, 10, 30, 100, 300) if e <= top])
      ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
      ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
    axes[i, 0].set_ylabel(name, fontsize=7)
  for j, col in enumerate(cols):
    axes[0, j].set_title(col, fontsize=10)
    axes[0, j].legend(fontsize=6)
    axes[-1, j].set_xlabel('epoch', fontsize=8)
  data = results.get('hessian_data', {})
  seeds = results.get('train_seeds', 1)
  spread = (f'mean of {seeds} training seeds per setting (geometric on log '
            'axes), band: 95 % t interval over the seeds (of log10 on log '
            'axes)' if seeds > 1 else
            "one run per setting; error bars: Hutchinson's standard error")
  fig.suptitle(f"paths: {results['model']} on {results['dataset']}, kept "
               f"epochs of each run ({spread})\nH of the CE on "
               f"{data.get('samples', '?')} {data.get('split', '')} examples "
               'with BN statistics recalibrated at each θt; P = parameter '
               'count (width changes it: quantities normalised)', fontsize=8)
  fig.tight_layout(rect=(0, 0, 1, 0.985))
  return plots.save(fig, folder, 'figure')


# ----------------------------------------------------------------- paths config


def _paths_config() -> Config:
  return Config(dict(
      checkpoints=(), labels=(),
      # The figure's column of each run ('LR', 'width', 'L2'); a run may be
      # listed again under another column. Empty: one column.
      columns=(),
      epochs=(),  # Empty: every kept epoch of each run (0 always).
      split='train', samples=500, batch_size=250, probes=8, probe_chunk=0,
      # Points of the segment θ0 → θ_last whose test loss shows the
      # large-scale curvature of the region the optimiser crossed.
      segment_points=11))


def _paths_validate(config: Config) -> None:
  c = config.paths
  _check_labels(c, 'config.paths')
  if c.split not in SPLITS:
    raise InputError(f'config.paths.split={c.split!r} must be one of '
                     f'{SPLITS}.')


def _paths_checkpoints(config: Config) -> list[tuple[str, Any]]:
  """Every epoch measured of every run (each run once)."""
  return [(r, e) for w in dict.fromkeys(config.paths.checkpoints)
          for r in _replicas(config, w) for e in path_epochs(config, r)]


def _check_paths(config: Config) -> None:
  c = config.paths
  if not c.checkpoints:
    raise InputError('config.paths.checkpoints is empty: give the workdirs '
                     'of the runs (configs/probe_paths.py trains them).')
  for w in dict.fromkeys(r for x in c.checkpoints
                         for r in _replicas(config, x)):
    common.check_checkpoint(w, 'last', 'config.paths.checkpoints')
    es = path_epochs(config, w)
    for e in es:
      common.check_checkpoint(w, e, 'config.paths.checkpoints')
    if len(es) < 2:
      raise InputError(f'{w} keeps only epoch 0: a path needs two or more '
                       'kept epochs (config.train.keep_epochs).')


PATHS = Study(
    'paths', paths, _paths_config, validate=_paths_validate,
    figure=paths_figure,
    fields=(checks.count('paths.epochs', 0),
            checks.count('paths.samples', 0, why='0 = the whole split'),
            checks.count('paths.batch_size'), checks.count('paths.probes'),
            checks.count('paths.probe_chunk', 0,
                         why='0 = chosen by the architecture'),
            checks.count('paths.segment_points', 2)),
    checkpoints=_paths_checkpoints, multi_run=True,
    check_checkpoints=_check_paths)

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (CUTS, PATHS)
