"""Permutation alignment against sign consistency and the barrier.

The paper explains model fusion by the sign consistency ratio (SSR) between
two models: the more their parameters agree in sign, the lower the error
between them. Independent runs are known to interpolate better after their
hidden units are aligned (Ainsworth et al., "Git Re-Basin", ICLR 2023), and
with BatchNorm only once the statistics are re-estimated at each point
(Jordan et al., "REPAIR", ICLR 2023). The `align` kind asks the paper's
question of that: for disjoint pairs of independent runs (θA, θB), weight
matching (core/permute.py) permutes θB's units to θA's; before and after it
the study measures SSR(θA, θB), ‖θA − θB‖ and the interpolation barrier

    B = max_λ [err((1−λ)θA + λθB) − ((1−λ)·err(θA) + λ·err(θB))],

λ ∈ [0, 1], of the test error and the loss: with BN statistics recalibrated
at every point (the sweep engine's config.sweep.recal), and, for BN models,
with the running statistics interpolated as the parameters are (what a
naive merge does). Findings, per setting (BN / no BN) over the pairs
(Student-t intervals, core/stats.py): weight matching raises the SSR; it
lowers each barrier; and the change of the recalibrated barrier per unit
change of the SSR is negative (higher sign consistency, lower barrier).

config.align.checkpoints lists the runs; consecutive runs form a pair (0
and 1, 2 and 3, ...), so the pairs share no run and are independent.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from valley_jax import checks, plots, sharding
from valley_jax.core import directions, permute, stats, sweep, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe import prober as prober_lib
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
STATES = ('naive', 'aligned')


def barrier(lams, values) -> float:
  """Largest excess of a curve over the chord between its ends.

  Args:
    lams: λ in [0, 1], increasing, from 0 to 1.
    values: the curve at each λ.

  Returns:
    max_λ [v(λ) − ((1−λ)·v(0) + λ·v(1))] (≥ 0 at the ends).

  >>> barrier([0.0, 0.5, 1.0], [0.1, 0.5, 0.3])
  0.3
  """
  lams, v = np.asarray(lams, np.float64), np.asarray(values, np.float64)
  return round(float(np.max(v - ((1 - lams) * v[0] + lams * v[-1]))), 12)


def _placed(p: Prober, variables: Any) -> Any:
  where = (sharding.replicated(p.mesh) if p.mesh is not None else None)
  return jax.device_put(variables, where)


def _plain_setting(p: Prober, s: Subject) -> sweep.Setting:
  """s's sweep without recalibration (same data, dtype and folding)."""
  sw = p.config.sweep
  ds = s.dataset
  fn = sweep.make_sweep(s.model, ds.mean, ds.std, recal=False,
                        chunk=sw.chunk or None,
                        dtype=prober_lib.DTYPES[sw.dtype], mesh=p.mesh,
                        precision=prober_lib.PRECISIONS[sw.dtype],
                        fold=bool(sw.get('fold_bn', True)))
  return sweep.Setting(fn, s.sweep.eval_data, None, p.mesh)


def _interpolated_stats(plain: sweep.Setting, a: Subject, vb: Any,
                        eps: Any, lams) -> dict[str, np.ndarray]:
  """The line with BN running statistics interpolated like θ, no
  recalibration: one point at a time (the statistics change with λ)."""
  loss, err = [], []
  for lam in lams:
    st = jax.tree.map(lambda x, y: (1 - lam) * x + lam * y, a.batch_stats,
                      vb['batch_stats'])
    out = plain(a.params, st, [eps], np.array([[lam]]))
    loss.append(out['loss'][0])
    err.append(out['error'][0])
  return {'loss': np.array(loss), 'error': np.array(err)}


def _state(p: Prober, a: Subject, vb: Any, lams,
           plain: sweep.Setting | None) -> dict[str, Any]:
  """SSR, distance, curves and barriers of θA with one version of θB."""
  eps = directions.difference(a.params, vb['params'])
  out = a.sweep(a.params, a.batch_stats, [eps], np.asarray(lams)[:, None])
  p.bar.update(1)
  res = {'ssr': float(tree.sign_consistency_ratio(a.params, vb['params'])),
         'distance': float(tree.norm(eps)),
         'loss': out['loss'].tolist(), 'error': out['error'].tolist(),
         'barrier_error': barrier(lams, out['error']),
         'barrier_loss': barrier(lams, out['loss'])}
  if plain is not None:
    st = _interpolated_stats(plain, a, vb, eps, lams)
    res['stats_interpolated'] = {
        'loss': st['loss'].tolist(), 'error': st['error'].tolist(),
        'barrier_error': barrier(lams, st['error']),
        'barrier_loss': barrier(lams, st['loss'])}
  return res


def _pair(p: Prober, wa: str, wb: str, i: int, lams,
          plains: dict[str, sweep.Setting]) -> dict[str, Any]:
  c = p.config.align
  a = p.subject(wa, label=f'A{i}')
  b = p.subject(wb, label=f'B{i}')
  has_bn = bool(jax.tree.leaves(a.batch_stats))
  plain = None
  if has_bn:
    key = prober_lib.architecture(a.train_config)
    plain = plains.setdefault(key, _plain_setting(p, a))
  vb = {'params': b.params, 'batch_stats': b.batch_stats}
  versions = {'naive': vb, 'aligned': aligned(p, a, b, c.seed)}
  return {'a': wa, 'b': wb, 'setting': 'BN' if has_bn else 'no BN',
          'recalibrated': a.sweep.recal_x is not None,
          **{k: _state(p, a, v, lams, plain) for k, v in versions.items()}}


def aligned(p: Prober, a: Subject, b: Subject, seed: int = 0) -> Any:
  """θB's variables with its units permuted to θA's (weight matching),
  placed as the Prober places parameters.

  Args:
    p: the Prober (its mesh).
    a, b: the two subjects (one model).
    seed: weight matching's order seed.

  Returns:
    {'params', 'batch_stats'} of the aligned θB.
  """
  va = {'params': a.params, 'batch_stats': a.batch_stats}
  vb = {'params': b.params, 'batch_stats': b.batch_stats}
  return _placed(p, permute.align(a.model, va, vb, seed=seed)[0])


def endpoint_barrier(lams, values) -> float | None:
  """`barrier` over the points of a curve with 0 ≤ λ ≤ 1, when λ = 0 and
  λ = 1 are among them (None otherwise).

  >>> endpoint_barrier([-1.0, 0.0, 0.5, 1.0, 2.0], [9, 0.1, 0.5, 0.3, 9])
  0.3
  """
  lams, v = np.asarray(lams, np.float64), np.asarray(values, np.float64)
  inside = (lams > -1e-9) & (lams < 1 + 1e-9)
  x = lams[inside]
  if not (x.size and np.isclose(x[0], 0) and np.isclose(x[-1], 1)):
    return None
  return barrier(np.clip(x, 0.0, 1.0), v[inside])


def compare_line(p: Prober, a: Subject, b: Subject, naive: dict[str, Any],
                 lams, seed: int = 0) -> dict[str, Any]:
  """The line θA → π(θB) beside the naive line θA → θB (config.<study>.align
  of interpolate).

  Args:
    p: the Prober.
    a, b: the two subjects.
    naive: the curve of θA → θB (its error gives the naive barrier).
    lams: the λ of both curves.
    seed: weight matching's order seed.

  Returns:
    {'curve': the aligned curve, 'alignment': SSR(θA, θB) and the error
    barrier (λ ∈ [0, 1], None when 0 or 1 is not a point) before and
    after, ‖θA − θB‖ before and after}.
  """
  vb = aligned(p, a, b, seed)
  eps = directions.difference(a.params, vb['params'])
  curve = common.line(p, a, 'θA → π(θB)', 'interpolation', lambda _: eps,
                      lams=lams, aligned=True,
                      **common.curve_meta('difference', False, None, 'none'))
  dist = tree.norm(directions.difference(a.params, b.params))
  return {'curve': curve, 'alignment': {
      'ssr_naive': float(tree.sign_consistency_ratio(a.params, b.params)),
      'ssr_aligned': float(tree.sign_consistency_ratio(a.params,
                                                       vb['params'])),
      'distance_naive': float(dist), 'distance_aligned': float(
          tree.norm(eps)),
      'barrier_error_naive': endpoint_barrier(lams, naive['error']),
      'barrier_error_aligned': endpoint_barrier(lams, curve['error'])}}


def _pairs(checkpoints) -> list[tuple[str, str]]:
  ws = list(checkpoints)
  return list(zip(ws[0::2], ws[1::2]))


def _delta(rows, get) -> list[float]:
  return [get(r['aligned']) - get(r['naive']) for r in rows]


def _findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The verdicts over pairs, per setting (module doc)."""
  out = []
  for setting in sorted({r['setting'] for r in rows}):
    rs = [r for r in rows if r['setting'] == setting]
    n = f'{setting}, {len(rs)} pairs'
    d_ssr = _delta(rs, lambda s: s['ssr'])
    d_bar = _delta(rs, lambda s: s['barrier_error'])
    out.append(stats.finding(
        f'{setting}: weight matching raises SSR(θA, θB)',
        stats.summary(d_ssr), expect='positive',
        statistic=f'SSR aligned − SSR naive ({n})'))
    recal = 'BN recalibrated per point' if rs[0]['recalibrated'] else (
        'no recalibration')
    out.append(stats.finding(
        f'{setting}: weight matching lowers the error barrier ({recal})',
        stats.summary(d_bar), expect='negative',
        statistic=f'barrier aligned − barrier naive, test error ({n})'))
    if 'stats_interpolated' in rs[0]['naive']:
      out.append(stats.finding(
          f'{setting}: weight matching lowers the error barrier (BN '
          'statistics interpolated, not recalibrated)',
          stats.summary(_delta(
              rs, lambda s: s['stats_interpolated']['barrier_error'])),
          expect='negative',
          statistic=f'barrier aligned − barrier naive, test error ({n})'))
    if all(d > 0 for d in d_ssr):
      out.append(stats.finding(
          f'{setting}: higher sign consistency goes with a lower barrier',
          stats.summary([b / s for b, s in zip(d_bar, d_ssr)]),
          expect='negative',
          statistic=f'Δ barrier / Δ SSR per pair, test error ({n})'))
  return out


def _mean_curves(rows, lams) -> list[dict[str, Any]]:
  """Per setting and state, the error curve over pairs (results.json's
  'curves': mean and std over pairs)."""
  curves = []
  for setting in sorted({r['setting'] for r in rows}):
    rs = [r for r in rows if r['setting'] == setting]
    for state in STATES:
      curves.append(common.curve(
          f'{setting}, {state}', setting, lams,
          [r[state]['loss'] for r in rs], [r[state]['error'] for r in rs],
          **common.curve_meta('difference', normalization='none')))
  return curves


def align(p: Prober, _) -> dict[str, Any]:
  """SSR and interpolation barriers of pairs of runs, naive and aligned.

  Args:
    p: the Prober.

  Returns:
    'pairs' (per pair and state: SSR, distance, curves, barriers),
    'lambdas', 'curves' (mean over pairs) and 'findings'.
  """
  c = p.config.align
  lams = np.linspace(0.0, 1.0, c.num_points)
  plains: dict[str, sweep.Setting] = {}
  rows = [_pair(p, wa, wb, i, lams, plains)
          for i, (wa, wb) in enumerate(_pairs(c.checkpoints))]
  return {'pairs': rows, 'lambdas': lams.tolist(),
          'curves': _mean_curves(rows, lams), 'findings': _findings(rows)}


# -------------------------------------------------------------------- figure

_COLORS = {'BN': 'tab:blue', 'no BN': 'tab:orange'}


def _arrows(ax, rows, key) -> None:
  """One arrow per pair from naive to aligned in (SSR, barrier)."""
  for setting, color in _COLORS.items():
    rs = [r for r in rows if r['setting'] == setting and
          (key is None or key in r['naive'])]
    for j, r in enumerate(rs):
      pts = [(r[s]['ssr'], (r[s] if key is None else r[s][key])
              ['barrier_error']) for s in STATES]
      ax.annotate('', pts[1], pts[0], arrowprops=dict(
          arrowstyle='->', color=color, lw=1.2))
      ax.plot(*pts[0], 'o', mfc='white', mec=color,
              label=f'{setting}: naive' if j == 0 else None)
      ax.plot(*pts[1], 'o', color=color,
              label=f'{setting}: aligned' if j == 0 else None)
  ax.set_xlabel('sign consistency ratio SSR(θA, θB)')
  ax.set_ylabel('error barrier on the line θA → θB')
  ax.legend(fontsize=7)


def _bands(ax, results) -> None:
  lams = np.asarray(results['lambdas'])
  for cv in results['curves']:
    setting, state = cv['label'].split(', ')
    m = np.asarray(cv['error'])
    ax.plot(lams, m, color=_COLORS.get(setting, 'gray'),
            ls='-' if state == 'aligned' else '--',
            label=f'{setting}, {state} (mean ± std, {cv["seeds"]} pairs)')
    if 'error_std' in cv:
      sd = np.asarray(cv['error_std'])
      ax.fill_between(lams, m - sd, m + sd, color=_COLORS.get(setting,
                                                                'gray'),
                      alpha=0.15)
  ax.set_xlabel('λ: (1−λ)θA + λθB')
  ax.set_ylabel('test error')
  ax.legend(fontsize=7)


def figure(results: dict[str, Any], folder: str) -> list[str]:
  """Arrows naive → aligned in (SSR, barrier), and the mean error curves."""
  rows = results['pairs']
  bn = any('stats_interpolated' in r['naive'] for r in rows)
  fig, axes = plt.subplots(1, 3 if bn else 2,
                           figsize=(14 if bn else 9.5, 3.8))
  recal = 'BN recalibrated at each point' if any(
      r['recalibrated'] for r in rows) else 'no recalibration'
  _arrows(axes[0], rows, None)
  axes[0].set_title(f'barrier vs SSR ({recal})', fontsize=9)
  if bn:
    _arrows(axes[1], rows, 'stats_interpolated')
    axes[1].set_title('BN models: statistics interpolated, not '
                      'recalibrated', fontsize=9)
  _bands(axes[-1], results)
  axes[-1].set_title(f'test error along the line ({recal})', fontsize=9)
  fig.suptitle(f"align: weight matching (Git Re-Basin) on pairs of "
               f"independent {results['model']} runs, "
               f"{results['dataset']}", fontsize=10)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


# -------------------------------------------------------------------- config


def _config() -> Config:
  return Config(dict(checkpoints=(), num_points=11, seed=0))


def _validate(config: Config) -> None:
  n = len(config.align.checkpoints)
  if n % 2:
    raise InputError(f'config.align.checkpoints has {n} runs; give an even '
                     'number (consecutive runs form a pair).')


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  return [(w, 'last') for w in config.align.checkpoints]


def _check_checkpoints(config: Config) -> None:
  ws = config.align.checkpoints
  if not ws:
    raise InputError('config.align.checkpoints is empty: give the workdirs '
                     'of pairs of runs of one model (A1, B1, A2, B2, ...).')
  for w in ws:
    common.check_checkpoint(w, 'last', 'config.align.checkpoints')
  for wa, wb in _pairs(ws):
    sa, sb = common.model_signature(wa), common.model_signature(wb)
    if sa != sb:
      raise InputError(f'config.align.checkpoints: {wa} and {wb} form a '
                       f'pair but differ in model or dataset: {sa} and {sb}.')


ALIGN = Study(
    'align', align, _config, validate=_validate, figure=figure,
    fields=(checks.count('align.num_points', 3),
            checks.count('align.seed', 0)),
    checkpoints=_checkpoints, multi_run=True,
    check_checkpoints=_check_checkpoints)

STUDIES = (ALIGN,)
