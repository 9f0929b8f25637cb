"""The paths study over training seeds: per-setting means, intervals, verdicts.

Kind `paths` (probe/studies/wedges.py) measures every training seed of each
setting (config.train_seeds replicas, common.replicas); this module turns
the per-seed measurements of one setting into one entry, and the entries of
a column into findings. Config-free and numeric only (lists in, lists out),
so it is tested by hand.

* `over_seeds`: every per-epoch quantity (QUANTITIES) as the mean over the
  seeds at each epoch, with its per-seed values and a Student-t 95 %
  interval over the seeds (stats.summary); the segment θ0 → θ_last's loss
  and bend likewise; `end` holds the last epoch's stats.summary per
  quantity (what the docs quote).
* `column_findings`: per column, the first setting against the last, paired
  by training seed (the k-th seed of each was trained with the same seed):
  a difference per seed, log10 of the ratio for quantities that are
  positive and span decades (LOG_KEYS), and a verdict: resolved when the
  paired 95 % t interval excludes 0 (rule 'interval'); `every_seed` says
  whether the ordering holds in every seed too.

>>> e = over_seeds([{'epochs': [0, 1], 'error': [0.5, 0.1]},
...                 {'epochs': [0, 1], 'error': [0.7, 0.3]}], ('error',))
>>> e['error'], e['end']['error']['mean']
([0.6, 0.2], 0.2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from valley_jax.core import stats
from valley_jax.errors import InputError

# Per-epoch lists of measure_path that are averaged over seeds.
QUANTITIES = ('norm', 'dist', 'cos_init', 'update_cos', 'step', 'norm_rel',
              'rel_dist', 'rms', 'update_angle', 'loss', 'error',
              'curvature', 'trace', 'trace_sem', 'trace_per_param',
              'trace_scale_free', 'train_loss')
# (key, words) of the end-point quantities the findings compare.
COMPARED = (('trace_per_param', 'tr(H)/P'),
            ('trace_scale_free', 'tr(H)·‖θ‖²/P'),
            ('curvature', 'dᵀHd/‖d‖² along the last update'),
            ('norm_rel', '‖θ‖/‖θ0‖'),
            ('rel_dist', '‖θ − θ0‖/‖θ0‖'),
            ('cos_init', 'cos(θ, θ0)'),
            ('train_loss', 'training CE'),
            ('error', 'test error'),
            ('bend', 'segment bend (test CE over the chord)'))
# Positive quantities that span decades: compared as log10(a / b), and
# also summarised on log10 (GEOMETRIC) for the figure's log axes.
LOG_KEYS = frozenset({'trace_per_param', 'trace_scale_free', 'norm_rel',
                      'rel_dist', 'train_loss'})
GEOMETRIC = LOG_KEYS | {'trace'}
# Bounds a quantity cannot leave: its interval is clipped to them.
_NONNEGATIVE = (0.0, np.inf)
BOUNDS = {'error': (0.0, 1.0), 'cos_init': (-1.0, 1.0),
          'update_cos': (-1.0, 1.0), 'update_angle': (0.0, 180.0),
          **{k: _NONNEGATIVE for k in ('norm', 'dist', 'step', 'norm_rel',
                                       'rel_dist', 'rms', 'loss',
                                       'train_loss', 'trace_sem')}}


def _floats(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def _nan_to_none(values) -> list[float | None]:
  return [None if not np.isfinite(v) else float(v) for v in values]


def _interval(values_S: np.ndarray, bounds=None) -> list[float] | None:
  """The t interval over the finite seeds' values (None below two)."""
  v = values_S[np.isfinite(values_S)]
  return stats.summary(v, bounds=bounds)['ci'] if v.size > 1 else None


def _track(per_seed_SxE: np.ndarray, bounds=None) -> dict[str, Any]:
  """Mean over the seeds per epoch (NaN where a seed has none), its
  interval and the per-seed values."""
  with np.errstate(invalid='ignore'):
    mean = per_seed_SxE.mean(0)
  return {'mean': _nan_to_none(mean),
          'ci': [_interval(col, bounds) for col in per_seed_SxE.T],
          'per_seed': [_nan_to_none(row) for row in per_seed_SxE]}


def geometric(per_seed_SxE: np.ndarray) -> dict[str, Any]:
  """The geometric mean over the seeds per epoch and its interval: 10 to
  the mean and t interval of log10 (None at an epoch with a value ≤ 0 or
  missing).

  >>> geometric(np.array([[1.0, 10.0], [100.0, -1.0]]))['mean']
  [10.0, None]
  """
  mean, ci = [], []
  for col in per_seed_SxE.T:
    if not np.all(np.isfinite(col) & (col > 0)):
      mean.append(None)
      ci.append(None)
      continue
    logs = np.log10(col)
    mean.append(float(10 ** logs.mean()))
    c = _interval(logs)
    ci.append(None if c is None else [float(10 ** x) for x in c])
  return {'mean': mean, 'ci': ci}


def _end(values_S: np.ndarray, bounds=None) -> dict[str, Any] | None:
  """stats.summary of the last epoch's values (None if any is missing)."""
  if not np.all(np.isfinite(values_S)):
    return None
  return stats.summary(values_S, bounds=bounds)


def over_seeds(runs: Sequence[dict[str, Any]],
               quantities: Sequence[str] = QUANTITIES) -> dict[str, Any]:
  """One setting's entry from its seeds' measurements.

  Args:
    runs: measure_path's dict of each training seed (same epochs).
    quantities: the per-epoch keys to aggregate (those present).

  Returns:
    The first run's other keys, then per quantity the mean per epoch (under
    its own key, None where undefined), 'ci' {key: per epoch [low, high]
    or None}, 'per_seed' {key: [S][E]}, 'end' {key: stats.summary of the
    last epoch, with 'bend' the segment's}, 'geometric' {key of GEOMETRIC:
    geometric mean and interval per epoch, for log axes}, 'seeds' (S) and,
    with a segment, its mean loss and error per λ with the loss's
    interval.
  """
  first = runs[0]
  for r in runs[1:]:
    if list(r['epochs']) != list(first['epochs']):
      raise InputError(
          f"paths: the training seeds of {first.get('workdir')} keep "
          f"different epochs ({first['epochs']} vs {r['epochs']} in "
          f"{r.get('workdir')}); train them with one config.")
  out = {k: v for k, v in first.items() if k not in quantities}
  out.update(seeds=len(runs), ci={}, per_seed={}, end={}, geometric={})
  for key in quantities:
    if key not in first:
      continue
    v_SxE = np.stack([_floats(r[key]) for r in runs])
    t = _track(v_SxE, BOUNDS.get(key))
    out[key], out['ci'][key], out['per_seed'][key] = (
        t['mean'], t['ci'], t['per_seed'])
    out['end'][key] = _end(v_SxE[:, -1], BOUNDS.get(key))
    if key in GEOMETRIC:
      out['geometric'][key] = geometric(v_SxE)
  if 'segment' in first:
    out['segment'] = _segment([r['segment'] for r in runs])
    out['end']['bend'] = _end(np.array([r['segment']['bend'] for r in runs]))
  return out


def _segment(segments: Sequence[dict[str, Any]]) -> dict[str, Any]:
  loss = np.array([s['loss'] for s in segments], np.float64)
  error = np.array([s['error'] for s in segments], np.float64)
  bends = [float(s['bend']) for s in segments]
  return {'lambdas': list(segments[0]['lambdas']),
          'loss': loss.mean(0).tolist(),
          'loss_ci': [_interval(col, _NONNEGATIVE) for col in loss.T],
          'error': error.mean(0).tolist(),
          'bend': float(np.mean(bends)), 'bend_per_seed': bends}


def end_values(entry: dict[str, Any], key: str) -> np.ndarray:
  """Per seed, the last epoch's value of `key` (the segment's bend for
  'bend'; NaN when not measured)."""
  if key == 'bend':
    end = entry['end'].get('bend')
    return _floats(end['per_seed'] if end else [np.nan])
  if key not in entry['per_seed']:
    return np.array([np.nan])
  return _floats([row[-1] for row in entry['per_seed'][key]])


def paired(a: dict[str, Any], b: dict[str, Any], key: str
           ) -> np.ndarray | None:
  """Per training seed, a's end value against b's: a − b, or log10(a / b)
  for LOG_KEYS; None when a value is missing or, for a log key, not
  positive, or the two settings have different numbers of seeds."""
  va, vb = end_values(a, key), end_values(b, key)
  if va.shape != vb.shape or not np.all(np.isfinite(va) & np.isfinite(vb)):
    return None
  if key in LOG_KEYS:
    if np.any(va <= 0) or np.any(vb <= 0):
      return None
    return np.log10(va / vb)
  return va - vb


def column_findings(entries: Sequence[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
  """Per column, the first setting against the last, for COMPARED.

  Args:
    entries: over_seeds entries with 'label' and 'column', in the config's
      order.

  Returns:
    stats.finding dicts (claim "A ≠ B: X at the last epoch", expect
    'nonzero', rule 'interval': the paired t interval over the training
    seeds excludes 0), each with 'every_seed' (the sign of the difference
    is the same in every seed, at least two seeds).
  """
  out = []
  for col in dict.fromkeys(e['column'] for e in entries):
    es = [e for e in entries if e['column'] == col]
    if len(es) < 2:
      continue
    a, b = es[0], es[-1]
    for key, what in COMPARED:
      diff = paired(a, b, key)
      if diff is None:
        continue
      how = (f'log10({what} of {a["label"]} / of {b["label"]})'
             if key in LOG_KEYS else
             f'{what} of {a["label"]} − of {b["label"]}')
      f = stats.finding(f"{col}: {a['label']} vs {b['label']}, {what} at "
                        'the last epoch', stats.summary(diff),
                        expect='nonzero', statistic=how + ', paired by seed')
      f['key'] = key
      f['every_seed'] = bool(diff.size > 1 and (
          np.all(diff > 0) or np.all(diff < 0)))
      out.append(f)
  return out
