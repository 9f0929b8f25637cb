"""Uncertainty of reported numbers: intervals over seeds and examples, verdicts.

Every comparison a study reports is a statistic with an interval and a
verdict. Two sources of noise are accounted for:

- seeds (training runs, noise draws): the spread between independent repeats;
- the finite evaluation set: the same N test examples serve every seed, so a
  difference of one example is 1/N whatever the number of seeds.

`hierarchical_bootstrap` covers both when the per-example values are kept
(shape [S, N, ...]): each replicate resamples the seeds with replacement and,
independently, the examples with replacement (one index set shared by every
seed, since the seeds were evaluated on the same examples), and the interval
is the percentile interval of the replicates. `summary` is the analytic
interval over seeds alone (Student's t, n − 1 degrees of freedom), for
numbers that have no per-example decomposition. `finding` turns either into
a verdict dict that studies put in `results['findings']`.

>>> import numpy as np
>>> s = summary([1.0, 2.0, 3.0])
>>> s['n'], s['mean'], round(s['std'], 3), [round(c, 2) for c in s['ci']]
(3, 2.0, 1.0, [-0.48, 4.48])
>>> f = finding('x above 0', s, expect='positive')
>>> f['resolved'], verdict(f)
(False, 'not resolved at n = 3')
"""

from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats as sp_stats

Interval = list[float] | None
_EXPECT = ('positive', 'negative', 'nonzero')
_RULES = ('interval', 'every_seed')


def _clip(ci: Interval, bounds: tuple[float, float] | None) -> Interval:
  """An interval clipped to the bounds the quantity cannot cross."""
  if ci is None or bounds is None:
    return ci
  lo, hi = bounds
  return [float(min(max(c, lo), hi)) for c in ci]


def summary(values: Sequence[float], *, confidence: float = 0.95,
            bounds: tuple[float, float] | None = None) -> dict[str, Any]:
  """Mean, sample std and Student-t interval of independent repeats.

  Args:
    values: one number per seed (non-finite values are an error: a diverged
      seed must be reported, not averaged away).
    confidence: the interval's coverage.
    bounds: (low, high) the quantity cannot leave (e.g. (0, 1) for an
      accuracy); the interval is clipped to them.

  Returns:
    {'n', 'mean', 'std' (ddof = 1), 'sem', 'ci' ([low, high]), 'method',
    'per_seed'}; std, sem and ci are None for a single value.

  >>> summary([2.0])['ci'] is None
  True
  """
  v = np.asarray(values, np.float64).ravel()
  if v.size == 0 or not np.all(np.isfinite(v)):
    raise ValueError(f'summary needs finite values, got {v.tolist()}')
  out = {'n': int(v.size), 'mean': float(v.mean()), 'std': None, 'sem': None,
         'ci': None, 'method': f't over seeds ({confidence:.0%})',
         'per_seed': v.tolist()}
  if v.size > 1:
    std = float(v.std(ddof=1))
    sem = float(std / np.sqrt(v.size))
    half = float(sp_stats.t.ppf(0.5 + confidence / 2, v.size - 1)) * sem
    out.update(std=std, sem=sem, ci=_clip(
        [out['mean'] - half, out['mean'] + half], bounds))
  return out


def _mean_per_seed(x_SxN: np.ndarray) -> np.ndarray:
  return x_SxN.reshape(x_SxN.shape[0], -1).mean(axis=1)


def hierarchical_bootstrap(
    per_example: np.ndarray, stat: Callable[[np.ndarray], np.ndarray] = None,
    *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
    bounds: tuple[float, float] | None = None) -> dict[str, Any]:
  """Interval of a per-seed statistic over seeds and evaluation examples.

  Args:
    per_example: [S, N, ...] values: seed s, example n (for instance the
      0/1 error of each test image, or its loss at every λ point, [S, N, P]).
    stat: maps an [S', N, ...] array to the [S'] per-seed statistic
      (default: the mean over every axis but the first). A barrier, for
      example, is `lambda e: e.mean(1).max(-1)` on [S, N, P] errors.
    n_boot: bootstrap replicates.
    confidence: the interval's coverage (percentile interval).
    seed: seed of the resampling (results are reproducible).
    bounds: (low, high) the statistic cannot leave.

  Returns:
    {'n' (seeds), 'n_examples', 'mean' (the mean over seeds of the per-seed
    statistic on all examples), 'std' (ddof = 1 over seeds, None for one),
    'ci', 'method', 'per_seed', 'resolution' (one example's share, 1/N)}.

  >>> x = np.zeros((2, 4)); x[:, 0] = 1.0
  >>> b = hierarchical_bootstrap(x, n_boot=200)
  >>> b['mean'], b['resolution']
  (0.25, 0.25)
  """
  x = np.asarray(per_example, np.float64)
  if x.ndim < 2:
    raise ValueError('per_example needs shape [seeds, examples, ...], got '
                     f'{x.shape}')
  stat = stat or _mean_per_seed
  s, n = x.shape[:2]
  per_seed = np.asarray(stat(x), np.float64)
  rng = np.random.default_rng(seed)
  reps = np.empty(n_boot)
  for b in range(n_boot):
    seeds = rng.integers(0, s, s)
    examples = rng.integers(0, n, n)
    reps[b] = np.mean(stat(x[:, examples])[seeds])
  tail = (1 - confidence) / 2 * 100
  ci = np.percentile(reps, [tail, 100 - tail]).tolist()
  return {'n': int(s), 'n_examples': int(n), 'mean': float(per_seed.mean()),
          'std': float(per_seed.std(ddof=1)) if s > 1 else None,
          'ci': _clip([float(c) for c in ci], bounds),
          'method': (f'hierarchical bootstrap over {s} seeds and {n} '
                     f'examples, {n_boot} replicates, percentile '
                     f'{confidence:.0%}'),
          'per_seed': per_seed.tolist(), 'resolution': 1.0 / n}


def finding(claim: str, stat: dict[str, Any], *, expect: str = 'positive',
            rule: str = 'interval', statistic: str = '') -> dict[str, Any]:
  """A claim's verdict from a `summary` or `hierarchical_bootstrap` result.

  Args:
    claim: the claim in words ("sign-consistent noise: positive side
      flatter").
    stat: the statistic's summary (must hold 'n', 'mean', 'ci', 'per_seed').
    expect: the sign the claim predicts: 'positive', 'negative' or
      'nonzero'.
    rule: 'interval' (resolved when the interval excludes 0 on the predicted
      side) or 'every_seed' (resolved when every seed has the predicted sign,
      with at least two seeds).
    statistic: what the number is ("err- − err+ of the test error").

  Returns:
    The summary's fields plus 'claim', 'statistic', 'expect', 'rule' and
    'resolved' (bool).

  >>> f = finding('a > b', summary([0.2, 0.3, 0.25]))
  >>> f['resolved']
  True
  """
  if expect not in _EXPECT:
    raise ValueError(f'expect must be one of {_EXPECT}, got {expect!r}')
  if rule not in _RULES:
    raise ValueError(f'rule must be one of {_RULES}, got {rule!r}')
  out = dict(stat, claim=claim, statistic=statistic, expect=expect,
             rule=rule)
  out['resolved'] = _resolved(stat, expect, rule)
  return out


def _side(lo: float, hi: float, expect: str) -> bool:
  """Whether all of [lo, hi] lies on the predicted side of zero."""
  return {'positive': lo > 0, 'negative': hi < 0,
          'nonzero': lo > 0 or hi < 0}[expect]


def _resolved(stat: dict[str, Any], expect: str, rule: str) -> bool:
  if rule == 'every_seed':
    v = np.asarray(stat['per_seed'], np.float64)
    return bool(v.size > 1 and _side(v.min(), v.max(), expect))
  ci = stat.get('ci')
  return bool(ci is not None and _side(ci[0], ci[1], expect))


def verdict(f: dict[str, Any]) -> str:
  """'resolved' or 'not resolved at n = …' (seeds, and examples if known)."""
  if f['resolved']:
    return 'resolved'
  n = f"{f['n']}"
  if f.get('n_examples'):
    n += f" seeds × {f['n_examples']} examples"
  return f'not resolved at n = {n}'


def describe(f: dict[str, Any], digits: int = 3) -> str:
  """One line for a printed table: claim, mean [interval], verdict.

  >>> describe(finding('a > b', summary([0.2, 0.3, 0.25])))
  'a > b: 0.250 [0.126, 0.374] (n = 3, t over seeds (95%)): resolved'
  """
  ci = ('no interval' if f.get('ci') is None else
        f"[{f['ci'][0]:.{digits}f}, {f['ci'][1]:.{digits}f}]")
  return (f"{f['claim']}: {f['mean']:.{digits}f} {ci} (n = {f['n']}, "
          f"{f['method'].split(',')[0]}): {verdict(f)}")
