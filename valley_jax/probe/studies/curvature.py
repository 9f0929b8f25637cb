"""Curvature along the valley: a valley curve with a curvature track.

Kind: curvature. For one noise, plain and sign-consistent (|ε|·sign(θ)),
normalised with config.normalization, at every λ of the curve θ + λ·s·d:
the sweep's test loss and error, the curvature dᵀHd/‖d‖² along the curve's
own direction d and Hutchinson's estimate of tr(H); at θf, the top eigenvalue
of H by power iteration. The figure draws them against λ, with the flat side
of the sign-consistent curve shaded. With config.curvature.spectrum_steps >
0 the kind also writes `spectrum`: H's eigenvalue density by stochastic
Lanczos quadrature (hessian.slq, matfree's Lanczos; PyHessian's density) at
θf and at the points λ ∈ spectrum_lams of both curves (the first seed's
direction), drawn in figure_spectrum.

Choices the paper leaves open:

* H is the Hessian of the mean CE over `samples` examples of `split` (the
  training split by default: the loss the model was trained on), in eval
  mode. For a BN model the statistics are recalibrated at every point, as the
  sweep does (sweep.recalibrate on the same batches), and then held
  fixed: their own dependence on θ is not differentiated.
* The same Rademacher probes serve every λ and both curves of a seed, so
  differences along λ and between the curves are not differences between
  probe draws.
* dᵀHd/‖d‖² is per unit length; the curvature of λ ↦ L(θ + λ·s·d) is
  s²·‖d‖² times it (‖d‖ = ‖θ‖ under NS normalisation).
* Curvature is computed in float32 whatever config.sweep.dtype says.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from valley_jax import checks, plots, sharding
from valley_jax.core import directions, hessian, stats, sweep, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
SPLITS = ('train', 'test')
# Key indices (directions.direction_key) of the probes and the power
# iteration's start, apart from the noises' (0-6) and the surface's (1000+).
_PROBE_INDEX, _POWER_INDEX, _SLQ_INDEX = 2000, 2001, 2002


@dataclasses.dataclass
class Track:
  """The compiled curvature functions of one subject and their data."""

  subject: Subject
  curv: hessian.Curvature
  data: sweep.Batches
  recal: Any  # jitted (params, batch_stats, recal_x) -> stats, or None.
  probes: int
  # jitted (params, batch_stats, d, key, recal_x, data) -> (dᵀH̃d/‖d‖²,
  # tr H̃, its s.e.) with the statistics differentiated, or None.
  through: Any = None
  mesh: Any = None

  def stats(self, params):
    """The BN statistics the point is evaluated with (as the sweep)."""
    s = self.subject
    if self.recal is None:
      return s.batch_stats
    return self.recal(params, s.batch_stats, s.sweep.recal_x)

  def point(self, d, coeff: float, key) -> tuple[float, float, float]:
    """dᵀHd/‖d‖², tr(H) and its standard error at θ + coeff·d."""
    params = tree.combine(self.subject.params, [d], jnp.full((1,), coeff))
    stats = self.stats(params)
    dc = self.curv.directional(params, stats, d, self.data)
    tr, se = self.curv.hutchinson(params, stats, key, self.data, self.probes)
    return float(dc), float(tr), float(se)

  def point_through(self, d, coeff: float, key) -> tuple[float, float, float]:
    """As `point`, with the BN statistics recomputed from θ and
    differentiated with it (hessian.quadratic_form_through): the curvature
    of the curve the sweep draws."""
    s = self.subject
    params = tree.combine(s.params, [d], jnp.full((1,), coeff))
    args = (params, s.batch_stats, d, key)
    if self.mesh is not None:
      args = sharding.put_replicated(self.mesh, args)
    dc, tr, se = self.through(*args, s.sweep.recal_x, self.data)
    return float(dc), float(tr), float(se)


# -------------------------------------------------------------------- figures


def _curvature_scale(ax, curves: list[dict[str, Any]], metric: str) -> None:
  """Log y when every value is positive (curvature spans decades); symlog
  when some are not (the curvature with BN differentiated can be < 0)."""
  v = np.concatenate([plots.clipped(c[k]) for c in curves
                      for k in (metric, f'{metric}_through_bn') if k in c])
  if not v.size:
    return
  if np.all(v > 0):
    ax.set_yscale('log')
  elif np.any(v > 0):
    ax.set_yscale('symlog', linthresh=float(np.percentile(v[v > 0], 10)))


def _shade_flat_side(ax, curves: list[dict[str, Any]]) -> None:
  """Shades the half of λ where the sign-consistent curve errs less."""
  for c in curves:
    pos, neg = c.get('positive_error'), c.get('negative_error')
    if not c.get('sign_consistent') or pos is None or neg is None:
      continue
    lams = np.asarray(c['lambdas'])
    lo, hi = (0.0, lams.max()) if pos <= neg else (lams.min(), 0.0)
    if hi > lo:
      ax.axvspan(lo, hi, color='tab:green', alpha=0.08, lw=0)
    return


def curvature_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Test error, CE loss, dᵀHd/‖d‖² and tr(H) against λ (kind curvature).

  Sign-consistent curves solid, plain dashed; the flat side of the
  sign-consistent curve (its half of lower mean error) is shaded green and
  the top eigenvalue at θf, when measured, is in the curvature's title.

  Args:
    results: the kind's results ('curves' with 'curvature' and 'trace').
    folder: where figure.png and figure.pdf go.
  Returns:
    The paths written.
  """
  curves = results['curves']
  rows = (('error', 'test error'), ('loss', 'CE loss'),
          ('curvature', 'dᵀHd / ‖d‖²'), ('trace', 'tr(H), Hutchinson'))
  fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0))
  colors = plt.get_cmap('tab10')
  through = any('curvature_through_bn' in c for c in curves)
  for ax, (metric, title) in zip(axes, rows):
    _shade_flat_side(ax, curves)
    for n, c in enumerate(curves):
      plots.draw_curve(ax, c, metric, colors(n % 10))
      if metric in ('curvature', 'trace') and through:
        ax.plot(c['lambdas'], plots.clipped(c[f'{metric}_through_bn']), ':',
                color=colors(n % 10), lw=1.8,
                label=f"{c['label']}, BN differentiated")
    if metric in ('curvature', 'trace'):
      _curvature_scale(ax, curves, metric)
    top = results.get('top_eigenvalue')
    if metric == 'curvature' and top and top.get('value') is not None:
      title += f" (top eigenvalue at θf: {top['value']:.3g})"
    ax.axvline(0.0, color='grey', lw=0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel('λ', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=6)
  if through:
    axes[2].legend(fontsize=5)
  data = results.get('hessian_data', {})
  fig.suptitle(f"{results['kind']}: {results['model']} on "
               f"{results['dataset']}{plots.checkpoint_label(results)}\n"
               f"H of the CE on {data.get('samples', '?')} "
               f"{data.get('split', '')} examples, BN statistics recalibrated "
               'at each λ and held fixed inside H' + (
                   '; dotted: statistics differentiated with θ, as the '
                   'curves' if through else ' (not differentiated)') +
               '; green: flat side', fontsize=8)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def make_track(p: Prober, s: Subject) -> Track:
  """Compiles the curvature functions for s and batches their data.

  Args:
    p: the Prober (config.curvature, config.sweep, the mesh).
    s: the subject.

  Returns:
    The Track.
  """
  c, ds = p.config.curvature, s.dataset
  curv, data, recal = common.hessian_setup(p, s, c)
  through = None
  if recal is not None and c.through_bn:
    through = _make_through(s.model, ds.mean, ds.std, curv.loss_fn,
                            c.probes, c.probe_chunk or None)
  return Track(s, curv, data, recal, c.probes, through, p.mesh)


def _make_through(model, mean, std, loss_fn, probes: int, chunk):
  """Track.through: the curvature with BN statistics differentiated."""

  def fn(params, stats0, d, key, recal_x, data):
    def stats_fn(p):
      return sweep.recalibrate(model, p, stats0, recal_x, mean, std)

    q = hessian.quadratic_form_through(loss_fn, stats_fn, params, d, data)
    tr, se = hessian.hutchinson(loss_fn, params, stats0, key, data, probes,
                                chunk, stats_fn=stats_fn)
    return q / optax.tree.norm(d, squared=True), tr, se

  return jax.jit(fn)


def _mean_std(name: str, values_SxP) -> dict[str, Any]:
  """{name: mean over seeds, name_std: std (several seeds only)}."""
  v = np.asarray(values_SxP, np.float64)
  out = {name: v.mean(0).tolist()}
  if len(v) > 1:
    out[f'{name}_std'] = v.std(0).tolist()
  return out


def track_curve(p: Prober, t: Track, lams, sc: bool) -> dict[str, Any]:
  """A valley curve of config.curvature.noise with its curvature track.

  Args:
    p: the Prober.
    t: the Track of the subject.
    lams: the λ of the points.
    sc: sign-consistent noise rather than plain.

  Returns:
    A results.json curve with, per λ, 'curvature' (dᵀHd/‖d‖²), 'trace'
    and 'trace_sem' (Hutchinson's standard error, mean over seeds), and the
    mean of each half: positive_/negative_curvature and _trace.
  """
  c, s, norm = p.config.curvature, t.subject, p.config.normalization
  seeds = range(p.config.seeds)
  ds = [common.make_direction(p, s, seed, noise=c.noise, sign_consistent=sc,
                              normalization=norm) for seed in seeds]
  name = directions.NOISE_LABELS[c.noise]
  out = common.line(p, s, f'|{name}|·sign(θ)' if sc else name, name,
                    lambda seed: ds[seed], scale=c.scale, seeds=len(ds),
                    lams=lams, **common.curve_meta(c.noise, sc, None, norm))
  vals_SxPx3 = np.array([[t.point(d, lam * c.scale, directions.direction_key(
      p.root, seed, _PROBE_INDEX)) for lam in lams]
                         for seed, d in zip(seeds, ds)])
  out.update(_mean_std('curvature', vals_SxPx3[..., 0]),
             **_mean_std('trace', vals_SxPx3[..., 1]),
             trace_sem=vals_SxPx3[..., 2].mean(0).tolist())
  if t.through is not None:
    thr_SxPx3 = np.array([[t.point_through(
        d, lam * c.scale, directions.direction_key(p.root, seed,
                                                   _PROBE_INDEX))
                           for lam in lams] for seed, d in zip(seeds, ds)])
    out.update(_mean_std('curvature_through_bn', thr_SxPx3[..., 0]),
               **_mean_std('trace_through_bn', thr_SxPx3[..., 1]))
  for key in ('curvature', 'trace'):
    out[f'positive_{key}'], out[f'negative_{key}'] = common.halves(lams,
                                                                   out[key])
  # Per seed, err+ − err− of dᵀHd/‖d‖² (for the findings; the runner drops
  # keys that start with '_').
  out['_curvature_diff_S'] = [
      np.subtract(*common.halves(lams, v)) for v in vals_SxPx3[..., 0]]
  return out


def _findings(curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per curve: the test error's halves (hierarchical bootstrap over seeds
  and test examples) and dᵀHd/‖d‖²'s halves (t over the seeds: the curvature
  is one number per seed and point, with no per-example decomposition).
  Sign-consistent noise predicts a flatter, less curved positive side;
  plain noise is tested for any difference."""
  out = []
  for cv in curves:
    sc = bool(cv['sign_consistent'])
    expect = 'negative' if sc else 'nonzero'
    what = 'lower on the positive side' if sc else 'halves differ'
    out.append(common.finding(f"{cv['label']}: test error {what}",
                              cv['lambdas'], [cv], common.half_diff,
                              expect=expect, statistic='err+ − err−'))
    if not np.all(np.isfinite(cv['_curvature_diff_S'])):
      continue  # A half without points, or a diverged seed: no claim.
    out.append(stats.finding(
        f"{cv['label']}: dᵀHd/‖d‖² {what}",
        stats.summary(cv['_curvature_diff_S']), expect=expect,
        statistic='mean dᵀHd/‖d‖² of λ ∈ [0, 1] − of λ ∈ [-1, 0]'))
  return out


def top_eigenvalue(p: Prober, t: Track) -> dict[str, Any]:
  """The top eigenvalue of H at θf by config.curvature.power_iters steps.

  Args:
    p: the Prober.
    t: the Track of the subject.

  Returns:
    {'value', 'residual' (‖Hv − value·v‖), 'iters'}.
  """
  s, iters = t.subject, p.config.curvature.power_iters
  key = directions.direction_key(p.root, 0, _POWER_INDEX)
  e = t.curv.power_iteration(s.params, t.stats(s.params), key, t.data, iters)
  return {'value': float(e.value), 'residual': float(e.residual),
          'iters': iters}


def spectrum_point(p: Prober, t: Track, label: str, lam: float,
                   params) -> dict[str, Any]:
  """SLQ nodes and weights of H at one point and its smoothed density.

  The density is on 400 points spanning the nodes plus a margin, smoothed
  by a Gaussian of width 1% of the nodes' range (PyHessian's choice).

  Args:
    p: the Prober (config.curvature.spectrum_steps, _probes).
    t: the Track (data and recalibration as the curvature track's).
    label: the point's name.
    lam: its λ (0 for θf).
    params: the point.

  Returns:
    {'label', 'lambda', 'nodes' [K, S], 'weights' [K, S], 'top' (largest
    node), 'grid', 'density'}.
  """
  c = p.config.curvature
  key = directions.direction_key(p.root, 0, _SLQ_INDEX)
  nodes, weights = t.curv.slq(params, t.stats(params), key, t.data,
                              c.spectrum_steps, c.spectrum_probes)
  nodes, weights = np.asarray(nodes), np.asarray(weights)
  lo, hi = float(nodes.min()), float(nodes.max())
  width = max(hi - lo, 1e-12)
  grid = np.linspace(lo - 0.05 * width, hi + 0.05 * width, 400)
  return {'label': label, 'lambda': lam, 'nodes': nodes.tolist(),
          'weights': weights.tolist(), 'top': hi, 'grid': grid.tolist(),
          'density': hessian.density(nodes, weights, grid,
                                     0.01 * width).tolist()}


def spectrum(p: Prober, t: Track) -> list[dict[str, Any]]:
  """spectrum_point at θf and at spectrum_lams of both curves (seed 0)."""
  c, s = p.config.curvature, t.subject
  out = [spectrum_point(p, t, 'θf', 0.0, s.params)]
  name = directions.NOISE_LABELS[c.noise]
  for sc in (False, True):
    d = common.make_direction(p, s, 0, noise=c.noise, sign_consistent=sc,
                              normalization=p.config.normalization)
    label = f'|{name}|·sign(θ)' if sc else name
    for lam in c.spectrum_lams:
      params = tree.combine(s.params, [d], jnp.full((1,), lam * c.scale))
      out.append(spectrum_point(p, t, f'{label}, λ = {lam:g}', float(lam),
                                params))
  return out


def spectrum_figure(results: dict[str, Any], folder: str) -> list[str]:
  """One panel per point: the smoothed density (log scale, as PyHessian
  draws it) and the SLQ nodes with their weights (dots)."""
  pts = results['spectrum']
  fig, axes = plt.subplots(1, len(pts), figsize=(3.0 * len(pts), 3.0),
                           squeeze=False)
  for ax, pt in zip(axes[0], pts):
    ax.semilogy(pt['grid'], np.maximum(pt['density'], 1e-12), 'k-', lw=1,
                label='density')
    nodes, weights = np.ravel(pt['nodes']), np.ravel(pt['weights'])
    weights = weights / len(pt['nodes'])  # Mean over probes.
    ax.semilogy(nodes, np.maximum(weights, 1e-12), 'o', color='tab:red',
                ms=3, label='SLQ nodes (weight)')
    ax.set_ylim(1e-6, None)
    ax.set_title(f"{pt['label']}\ntop eigenvalue {pt['top']:.3g}",
                 fontsize=8)
    ax.set_xlabel('eigenvalue of H', fontsize=8)
    ax.tick_params(labelsize=7)
  axes[0][0].set_ylabel('density / weight', fontsize=8)
  axes[0][0].legend(fontsize=6)
  k, steps = np.shape(pts[0]['nodes'])
  fig.suptitle(f"curvature: Hessian eigenvalue density (stochastic Lanczos "
               f"quadrature, {k} probe{'s' if k > 1 else ''} × {steps} "
               f"steps), {results['model']} on {results['dataset']}",
               fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure_spectrum')


def _figures(results: dict[str, Any], folder: str) -> list[str]:
  out = curvature_figure(results, folder)
  if results.get('spectrum'):
    out += spectrum_figure(results, folder)
  return out


def curvature_kind(p: Prober, s: Subject) -> dict[str, Any]:
  """Plain and sign-consistent curves of one noise with curvature tracks.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    The two curves, the data H is measured on and, when
    config.curvature.power_iters > 0, the top eigenvalue at θf.
  """
  c = p.config.curvature
  t = make_track(p, s)
  lams, _ = sweep.linspace_coeffs(c.lam_min, c.lam_max, c.num_points)
  curves = [track_curve(p, t, lams, sc) for sc in (False, True)]
  out = {'curves': curves, 'findings': _findings(curves),
         'hessian_data': {'split': c.split,
                          'samples': int(np.sum(np.asarray(t.data.w)))}}
  if c.power_iters:
    out['top_eigenvalue'] = top_eigenvalue(p, t)
  if c.spectrum_steps:
    out['spectrum'] = spectrum(p, t)
  return out


def _config() -> Config:
  # through_bn: also the curvature with the BN statistics recomputed from θ
  # and differentiated (what the recalibrated curves bend by), beside the
  # default's statistics recalibrated at each point and held fixed in H.
  # spectrum_steps: Lanczos steps per SLQ probe (0 = no density);
  # spectrum_lams: the λ of each curve where the density is taken too.
  return Config(dict(noise='gaussian', scale=1.0, lam_min=-1.0, lam_max=1.0,
                     num_points=11, probes=8, probe_chunk=0, split='train',
                     samples=1000, batch_size=100, power_iters=20,
                     through_bn=False, spectrum_steps=0, spectrum_probes=4,
                     spectrum_lams=(-0.5, 0.5)))


def _validate(config: Config) -> None:
  c = config.curvature
  directions.check_noise(c.noise)
  if c.split not in SPLITS:
    raise InputError(f'config.curvature.split={c.split!r} must be one of '
                     f'{SPLITS}.')
  common.check_range(c.lam_min, c.lam_max, c.num_points, 'config.curvature')


CURVATURE = Study(
    'curvature', curvature_kind, _config, validate=_validate,
    figure=_figures,
    fields=(checks.positive('curvature.scale', why=common.SCALE_WHY),
            checks.finite('curvature.lam_min'),
            checks.finite('curvature.lam_max'),
            checks.count('curvature.num_points'),
            checks.count('curvature.probes'),
            checks.count('curvature.probe_chunk', 0,
                         why='0 = chosen by the architecture'),
            checks.count('curvature.samples', 0, why='0 = the whole split'),
            checks.count('curvature.batch_size'),
            checks.count('curvature.power_iters', 0,
                         why='0 = no top eigenvalue'),
            checks.count('curvature.spectrum_steps', 0,
                         why='0 = no eigenvalue density'),
            checks.count('curvature.spectrum_probes'),
            checks.finite('curvature.spectrum_lams')))

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (CURVATURE,)
