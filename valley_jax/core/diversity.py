"""How different the members of an ensemble are, in function space and in
weight space.

Function space, example by example (so that every measure has an interval
over the test set): each member's 0/1 error and CE, the ensemble's (the
mean of the members' predicted probabilities), the mean over pairs of
members of their disagreement (different predicted classes) and of the
Jensen-Shannon divergence and the KL divergence (both orders) between
their predictive distributions. Fort, Hu & Lakshminarayanan 2019 ("Deep
Ensembles: A Loss Landscape Perspective") normalise the disagreement by the
members' error: two members that are each wrong on 10 % of the examples
cannot disagree on much more than 20 %, so the fraction of predictions
changed is divided by the error (`normalised_disagreement`). The ensemble
gain is the members' mean error (or CE) minus the ensemble's.

Weight space: cosines between the members' parameter vectors, over all
parameters and per group (`masked_flat`); BatchNorm's scales hold much of
‖θ‖² in a BN network and are positive in every run, so the cosine without
them is the one that says whether the runs' weights align.

>>> import numpy as np
>>> p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.6, 0.4]]])
>>> m = per_example(p, np.array([0, 1]))
>>> m['disagreement'].tolist(), m['member_error'].tolist()
([0.0, 1.0], [0.0, 0.5])
"""

import itertools
from typing import Any

import jax
import numpy as np

COLUMNS = ('ensemble_error', 'ensemble_nll', 'member_error', 'member_nll',
           'disagreement', 'js', 'kl')
_TINY = 1e-12


def kl(p_NxC: np.ndarray, q_NxC: np.ndarray) -> np.ndarray:
  """KL(p ‖ q) per row (nats).

  >>> round(float(kl(np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]]))[0]), 4)
  0.5108
  """
  p = np.asarray(p_NxC, np.float64)
  q = np.asarray(q_NxC, np.float64)
  return np.sum(p * (np.log(np.maximum(p, _TINY)) -
                     np.log(np.maximum(q, _TINY))), -1)


def js(p_NxC: np.ndarray, q_NxC: np.ndarray) -> np.ndarray:
  """Jensen-Shannon divergence per row (nats; at most ln 2).

  >>> round(float(js(np.array([[1., 0]]), np.array([[0., 1]]))[0]), 4)
  0.6931
  """
  m = 0.5 * (np.asarray(p_NxC, np.float64) + np.asarray(q_NxC, np.float64))
  return 0.5 * kl(p_NxC, m) + 0.5 * kl(q_NxC, m)


def per_example(probs_MxNxC: np.ndarray,
                labels_N: np.ndarray) -> dict[str, np.ndarray]:
  """Every function-space measure of COLUMNS, one value per example.

  Args:
    probs_MxNxC: each member's predicted probabilities.
    labels_N: the labels.

  Returns:
    COLUMNS -> [N] float64: the ensemble's 0/1 error and CE, the members'
    mean 0/1 error and CE, and over pairs of members the mean disagreement,
    JS divergence and KL divergence (both orders; all 0 for one member).
  """
  p = np.asarray(probs_MxNxC, np.float64)
  y = np.asarray(labels_N)
  idx = np.arange(len(y))
  ens = p.mean(0)
  pred = p.argmax(-1)
  pairs = list(itertools.combinations(range(len(p)), 2))
  zero = np.zeros(len(y))
  return {
      'ensemble_error': (ens.argmax(-1) != y).astype(np.float64),
      'ensemble_nll': -np.log(np.maximum(ens[idx, y], _TINY)),
      'member_error': (pred != y[None]).mean(0).astype(np.float64),
      'member_nll': -np.log(np.maximum(p[:, idx, y], _TINY)).mean(0),
      'disagreement': (np.mean([pred[i] != pred[j] for i, j in pairs], 0)
                       .astype(np.float64) if pairs else zero),
      'js': (np.mean([js(p[i], p[j]) for i, j in pairs], 0)
             if pairs else zero),
      'kl': (np.mean([0.5 * (kl(p[i], p[j]) + kl(p[j], p[i]))
                      for i, j in pairs], 0) if pairs else zero)}


def normalised_disagreement(disagreement: float, member_error: float
                            ) -> float:
  """Disagreement divided by the members' mean error (Fort, Hu &
  Lakshminarayanan 2019); NaN when the members make no error.

  >>> normalised_disagreement(0.02, 0.01)
  2.0
  """
  return float(disagreement / member_error) if member_error else float('nan')


def summary(columns: dict[str, np.ndarray]) -> dict[str, float]:
  """The means of per_example's columns, the gains and the normalised
  disagreement.

  >>> c = {k: np.array([0.0, 1.0]) for k in COLUMNS}
  >>> s = summary(c)
  >>> s['disagreement'], s['normalised_disagreement'], s['gain_error']
  (0.5, 1.0, 0.0)
  """
  out = {k: float(np.mean(columns[k])) for k in COLUMNS}
  out['gain_error'] = out['member_error'] - out['ensemble_error']
  out['gain_nll'] = out['member_nll'] - out['ensemble_nll']
  out['normalised_disagreement'] = normalised_disagreement(
      out['disagreement'], out['member_error'])
  return out


def masked_flat(params: Any, mask: Any) -> np.ndarray:
  """The leaves of params where mask is True, flattened and concatenated.

  >>> masked_flat({'a': np.ones(2), 'b': np.zeros(3)},
  ...             {'a': True, 'b': False}).tolist()
  [1.0, 1.0]
  """
  leaves = [np.ravel(np.asarray(x, np.float64)) for x, keep in
            zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if keep]
  return np.concatenate(leaves) if leaves else np.zeros(0)


def mean_pairwise_cosine(flat_MxP: np.ndarray) -> float:
  """The mean cosine over pairs of rows (NaN for one row or empty rows).

  >>> round(mean_pairwise_cosine(np.array([[1., 0], [1, 1], [0, 1]])), 4)
  0.4714
  """
  v = np.asarray(flat_MxP, np.float64)
  if len(v) < 2 or v.shape[1] == 0:
    return float('nan')
  v = v / np.linalg.norm(v, axis=1, keepdims=True)
  c = v @ v.T
  return float(c[~np.eye(len(v), dtype=bool)].mean())
