"""A federated table that survives one bad round: robust views and verdicts.

Table 1 reports the final round's test accuracy. One round can be an outlier
(on digits, FedAvg α = 10 seed 1 fell from 96.4 % to 68.3 % in its last
round), so beside it a table reports, per cell:

* `last`: the mean test accuracy over the last `n` evaluations (the last `n`
  rounds when every round is evaluated);
* `pooled_recal`: the final model with its BN statistics recomputed on the
  clients' training data pooled, a view that a server, which never sees
  the clients' data, does not have (models with BN only);
* `collapsed`: the final accuracy is more than `threshold` below the mean of
  the evaluations before it in the window (`collapsed`).

Selection scores a grid point by the mean over seeds of the mean over the
last `n` evaluations (validation or test accuracy), not one round; points
whose score is within one held-out example of the best are reported as tied
(`select`). Comparisons are verdicts (`valley_jax.core.stats`):
`paired_finding` is the paired difference over seeds (every algorithm and
FedAvg share each seed's partition) with its Student-t interval; a table's
verdicts use the bootstrap over seeds and test images of fed/intervals.py
where the runs kept their per-example correctness, with this t interval
beside it.
"""

import math
from typing import Any, Sequence

import numpy as np

from valley_jax.core import stats


def _values(xs) -> np.ndarray:
  return np.array([np.nan if x is None else x for x in xs], np.float64)


def last_mean(curve: Sequence[float | None], n: int) -> float:
  """Mean of the last n values of an accuracy curve (nan if a value is).

  >>> last_mean([0.1, 0.5, 0.7, 0.9], 2)
  0.8
  """
  v = _values(curve)[-n:]
  return float(v.mean()) if v.size else math.nan


def collapsed(curve: Sequence[float | None], n: int,
              threshold: float) -> bool:
  """Whether the last value is more than `threshold` below the mean of the
  (up to n − 1) values before it; False with fewer than two values.

  >>> collapsed([0.96, 0.97, 0.96, 0.68], 10, 0.1)
  True
  >>> collapsed([0.96, 0.97, 0.96, 0.90], 10, 0.1)
  False
  """
  v = _values(curve)
  if v.size < 2:
    return False
  before = v[-n:-1] if v.size >= n else v[:-1]
  return bool(np.nanmean(before) - v[-1] > threshold)


def select(scores: dict[str, float], resolution: float) -> dict[str, Any]:
  """The best grid point of per-point scores and the points tied with it.

  The best is the largest finite score (the first listed among equals);
  tied are all points within `resolution` (one held-out example) of it.

  >>> select({'a': 0.80, 'b': 0.84, 'c': 0.835}, 0.01)
  {'label': 'b', 'tied': ['b', 'c']}
  """
  finite = {k: v for k, v in scores.items()
            if v is not None and math.isfinite(v)}
  if not finite:
    first = next(iter(scores))
    return {'label': first, 'tied': [first]}
  best = max(finite, key=lambda k: finite[k])
  tied = [k for k, v in finite.items() if finite[best] - v <= resolution]
  return {'label': best, 'tied': tied}


def cell_summary(accs: Sequence[float | None]) -> dict[str, Any]:
  """stats.summary of per-seed accuracies within [0, 1]; a seed without a
  finite value makes the summary {'n', 'mean': None, 'missing'}."""
  v = _values(accs)
  if not v.size or not np.all(np.isfinite(v)):
    return {'n': int(v.size), 'mean': None, 'ci': None, 'std': None,
            'missing': int(np.sum(~np.isfinite(v)))}
  return stats.summary(v, bounds=(0.0, 1.0))


def paired_finding(name: str, alpha: float, statistic: str,
                   mine: dict[int, float], base: dict[int, float],
                   baseline: str = 'fedavg') -> dict[str, Any] | None:
  """'<name> > <baseline> at α = a': the per-seed differences of the seeds
  both have, their t interval, resolved when it lies above 0 (None with
  no common finite seed)."""
  seeds = sorted(s for s in set(mine) & set(base)
                 if mine[s] is not None and base[s] is not None and
                 math.isfinite(mine[s]) and math.isfinite(base[s]))
  if not seeds:
    return None
  diff = [mine[s] - base[s] for s in seeds]
  f = stats.finding(f'{name} > {baseline} at α = {alpha:g}',
                    stats.summary(diff), expect='positive',
                    statistic=statistic)
  f['seeds'] = seeds
  return f
