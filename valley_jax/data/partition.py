"""Client partitions for federated learning: Dirichlet label skew and IID.

The Dirichlet split follows NIID-Bench (Li et al., "Federated Learning on
Non-IID Data Silos: An Experimental Study", ICDE 2022). The paper does not
say which Dirichlet split its Table 1 uses, and the first author's code
splits differently (github.com/lxcnju/MAP, datasets/feddata.py, split
'dirichlet': Dir(α) over the classes per client, scaled by a log-normal
size factor, normalised per class; clients with fewer than 5 samples
dropped; 20% of each client held out as its local test split). This one:
for each class c in turn, proportions p ~ Dir(α·1_K) over the K clients; a
client that already holds at least N/K samples (all classes so far) gets
none of class c (p_k = 0, then renormalise); the shuffled samples of c are
cut at the cumulative proportions. The whole partition is drawn again
until every client holds at least `min_size` samples.

Smaller α gives more skewed clients. Everything is plain numpy, seeded with
`np.random.default_rng(seed)`, and checked before any random draw.

>>> labels = np.repeat(np.arange(4), 25)
>>> parts = partition(labels, 4, method='dirichlet', alpha=0.5, seed=0)
>>> sorted(np.concatenate(parts).tolist()) == list(range(100))
True
"""

import math
from typing import NamedTuple

import numpy as np

from valley_jax.errors import InputError

# NIID-Bench redraws without bound. A try draws counts only, not indices
# (about 0.25 ms for 10 classes, 3 ms for 100, on one CPU core), so 1,000
# tries give up within a second or a few. Measured on CIFAR-10-sized labels
# with K = 100 and min_size = 10 over 10 seeds: α >= 0.2 succeeds at the first
# try, α = 0.1 within 13; α = 0.05 mostly exhausts the 1,000.
MAX_TRIES = 1000

METHODS = ('dirichlet', 'iid')
_HOLD_OUT = 7  # Salt of the hold-out draw.


class ClientArrays(NamedTuple):
  """Client data stacked on a leading axis and zero-padded to the largest.

  Attributes:
    x: [K, M, ...] inputs, M the largest client; rows from counts[k] on are 0.
    y: [K, M] labels; padding rows are 0.
    counts: [K] int32, the number of valid rows of each client.
  """

  x: np.ndarray
  y: np.ndarray
  counts: np.ndarray


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
  return _is_int(v) or isinstance(v, (float, np.floating))


def check_alpha(alpha: float) -> None:
  """Raises ValueError unless α is a finite positive number."""
  if not (_is_real(alpha) and math.isfinite(alpha) and alpha > 0):
    raise InputError(f'config.fed.alpha={alpha} must be a finite number > 0 '
                     '(the Dirichlet concentration; smaller is more skewed).')


def check_clients(n: int, num_clients: int, min_size: int = 1) -> None:
  """Raises ValueError unless K and min_size fit a training set of n."""
  if not (_is_int(num_clients) and 1 <= num_clients <= n):
    raise InputError(f'config.fed.num_clients={num_clients} must be an '
                     f'integer in [1, {n}] (the training set has {n} '
                     'samples).')
  if not (_is_int(min_size) and 1 <= min_size <= n // num_clients):
    raise InputError(
        f'config.fed.min_size={min_size} must be an integer >= 1 with '
        f'num_clients * min_size <= {n}, the training set size '
        f'(num_clients={num_clients}).')


def _check_labels(labels: np.ndarray) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise InputError(f'labels must be a 1-D integer array, got shape '
                     f'{labels.shape} and dtype {labels.dtype}.')
  if labels.size and labels.min() < 0:
    raise InputError('labels must be non-negative class ids.')
  return labels


def _class_counts(rng, n_c: int, sizes_K: np.ndarray, cap: float,
                  alpha: float) -> np.ndarray:
  """How many of one class's n_c samples each client gets (NIID-Bench rule)."""
  open_K = sizes_K < cap
  p_K = rng.dirichlet(np.full(len(sizes_K), alpha)) * open_K
  if p_K.sum() == 0:
    # Tiny α can put all the mass on full clients. The renormalised open part
    # of Dir(α·1_K) is Dir(α·1) over the open clients, so draw that directly.
    p_K[open_K] = rng.dirichlet(np.full(open_K.sum(), alpha))
  # Cut at the floored cumulative boundaries, as NIID-Bench does: each count
  # is within one of p_k·n_c and they add up to n_c. Dividing the cumulative
  # sum by its last entry (rather than p by its sum) keeps a full client at
  # exactly zero even when it comes last: its boundary equals the one before
  # it bitwise, and the last boundary is exactly n_c.
  cum_K = np.cumsum(p_K)
  bounds_K = np.floor(cum_K / cum_K[-1] * n_c).astype(np.int64)
  return np.diff(bounds_K, prepend=0)


def _draw_counts(rng, class_sizes_C: np.ndarray, num_clients: int,
                 alpha: float) -> np.ndarray:
  """One try: samples of each class per client, [C, K]."""
  cap = class_sizes_C.sum() / num_clients
  sizes_K = np.zeros(num_clients, np.int64)
  counts_CxK = np.zeros((len(class_sizes_C), num_clients), np.int64)
  for c, n_c in enumerate(class_sizes_C):
    if n_c:
      counts_CxK[c] = _class_counts(rng, n_c, sizes_K, cap, alpha)
      sizes_K += counts_CxK[c]
  return counts_CxK


def _assign(rng, labels: np.ndarray, counts_CxK: np.ndarray) -> list:
  """Deals each class's shuffled samples to clients by counts_CxK."""
  num_clients = counts_CxK.shape[1]
  owner_N = np.empty(len(labels), np.int64)
  order_N = rng.permutation(len(labels))
  for c, counts_K in enumerate(counts_CxK):
    owner_N[order_N[labels[order_N] == c]] = np.repeat(np.arange(num_clients),
                                                        counts_K)
  by_owner = np.argsort(owner_N, kind='stable')  # Sorted within each client.
  return np.split(by_owner, np.cumsum(counts_CxK.sum(0))[:-1])


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float,
                        *, seed: int, min_size: int = 10,
                        max_tries: int = MAX_TRIES) -> list[np.ndarray]:
  """NIID-Bench Dirichlet(α) label partition over K clients.

  Args:
    labels: [N] integer class ids of the training set.
    num_clients: K.
    alpha: Dirichlet concentration α > 0; smaller is more skewed.
    seed: seeds `np.random.default_rng`; the split is a function of it.
    min_size: every client must hold at least this many samples.
    max_tries: whole-partition draws before giving up.
  Returns:
    K sorted int64 index arrays; every index in range(N) is in exactly one.
  Raises:
    ValueError: bad inputs, or no draw within max_tries met min_size.

  >>> parts = dirichlet_partition(np.repeat([0, 1], 50), 2, 1.0, seed=0)
  >>> sum(len(p) for p in parts), min(len(p) for p in parts) >= 10
  (100, True)
  """
  labels = _check_labels(labels)
  check_alpha(alpha)
  check_clients(len(labels), num_clients, min_size)
  class_sizes_C = np.bincount(labels)
  rng = np.random.default_rng(seed)
  for _ in range(max_tries):
    counts_CxK = _draw_counts(rng, class_sizes_C, num_clients, alpha)
    if counts_CxK.sum(0).min() >= min_size:
      return _assign(rng, labels, counts_CxK)
  raise InputError(
      f'No Dirichlet partition gave every client at least min_size samples '
      f'in {max_tries} tries with config.fed.alpha={alpha}, '
      f'config.fed.num_clients={num_clients}, config.fed.min_size={min_size} '
      f'({len(labels)} samples). Raise config.fed.alpha, or lower '
      'config.fed.num_clients or config.fed.min_size.')


def iid_partition(n: int, num_clients: int, *, seed: int) -> list[np.ndarray]:
  """A seeded uniform split of range(n) into K parts whose sizes differ <= 1.

  Args:
    n: the number of training samples.
    num_clients: K.
    seed: seeds `np.random.default_rng`.
  Returns:
    K sorted int64 index arrays (the first n % K hold one extra sample).

  >>> [len(p) for p in iid_partition(10, 3, seed=0)]
  [4, 3, 3]
  """
  check_clients(n, num_clients)
  perm_N = np.random.default_rng(seed).permutation(n)
  return [np.sort(p) for p in np.array_split(perm_N, num_clients)]


def hold_out(n: int, fraction: float, *, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
  """(kept, held-out) sorted indices of range(n): round(fraction·n) drawn
  uniformly without replacement for a validation set that no client holds.

  Seeded by (seed, a salt of its own), so the clients' split of the kept
  indices is not the same draw.

  >>> kept, val = hold_out(10, 0.2, seed=0)
  >>> len(kept), len(val), sorted(np.concatenate([kept, val]).tolist())
  (8, 2, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  """
  if not 0 <= fraction < 1:
    raise InputError(f'A held-out fraction must be in [0, 1), got '
                     f'{fraction}.')
  m = round(fraction * n)
  if fraction and not 0 < m < n:
    raise InputError(f'Holding out {fraction} of {n} training samples '
                     f'leaves {m} for validation: choose a fraction that '
                     'holds out at least one sample and keeps one.')
  order = np.random.default_rng([seed, _HOLD_OUT]).permutation(n)
  return np.sort(order[m:]), np.sort(order[:m])


def partition(labels: np.ndarray, num_clients: int, *,
              method: str = 'dirichlet', alpha: float | None = None,
              seed: int = 0, min_size: int = 10) -> list[np.ndarray]:
  """Client index sets from a `config.fed` block; all checks come first.

  Args:
    labels: [N] integer class ids of the training set.
    num_clients: K (config.fed.num_clients).
    method: 'dirichlet' or 'iid' (config.fed.partition).
    alpha: the Dirichlet α (config.fed.alpha); unused by 'iid'.
    seed: seeds `np.random.default_rng`.
    min_size: the smallest client allowed (config.fed.min_size).
  Returns:
    K sorted int64 index arrays covering range(N) exactly once.

  >>> parts = partition(np.zeros(12, int), 3, method='iid', min_size=4)
  >>> [len(p) for p in parts]
  [4, 4, 4]
  """
  if method not in METHODS:
    raise InputError(f'Unknown config.fed.partition={method!r}; choose one '
                     f'of {list(METHODS)}.')
  labels = _check_labels(labels)
  if method == 'dirichlet':
    check_alpha(alpha)
  check_clients(len(labels), num_clients, min_size)
  if method == 'iid':
    return iid_partition(len(labels), num_clients, seed=seed)
  return dirichlet_partition(labels, num_clients, alpha, seed=seed,
                             min_size=min_size)


def label_histogram(labels: np.ndarray, parts: list[np.ndarray],
                    num_classes: int) -> np.ndarray:
  """Samples of each class on each client, [K, C] int64.

  >>> label_histogram(np.array([0, 1, 1, 2]), [[0, 1], [2, 3]], 3).tolist()
  [[1, 1, 0], [0, 1, 1]]
  """
  labels = np.asarray(labels)
  if labels.size and labels.max() >= num_classes:
    raise InputError(f'A label {labels.max()} is >= num_classes '
                     f'{num_classes}.')
  return np.stack([np.bincount(labels[np.asarray(p, np.int64)],
                               minlength=num_classes) for p in parts])


def mean_label_entropy(hist_KxC: np.ndarray) -> float:
  """Mean over non-empty clients of the entropy (nats) of their labels.

  Lower means more skewed clients: ln C for a client with all C classes in
  equal numbers, 0 for a client with one class.

  >>> round(mean_label_entropy(np.array([[5, 5], [3, 0]])), 4)  # (ln 2 + 0)/2
  0.3466
  """
  hist_KxC = np.asarray(hist_KxC, np.float64)
  totals_K = hist_KxC.sum(1)
  p_KxC = hist_KxC[totals_K > 0] / totals_K[totals_K > 0, None]
  if not p_KxC.size:
    return 0.0
  logs = np.log(np.where(p_KxC > 0, p_KxC, 1.0))  # 0 log 0 = 0.
  return float(np.mean(-np.sum(p_KxC * logs, axis=1)))


def pad_clients(x: np.ndarray, y: np.ndarray,
                parts: list[np.ndarray]) -> ClientArrays:
  """Stacks each client's samples on a leading axis, zero-padded.

  Args:
    x: [N, ...] training inputs.
    y: [N] training labels.
    parts: K index arrays into x and y.
  Returns:
    ClientArrays(x [K, M, ...], y [K, M], counts [K] int32), M the largest
    client; row j of client k is x[parts[k][j]] for j < counts[k], else 0.

  >>> c = pad_clients(np.arange(3.0), np.arange(3), [[2], [0, 1]])
  >>> c.x.tolist(), c.y.tolist(), c.counts.tolist()
  ([[2.0, 0.0], [0.0, 1.0]], [[2, 0], [0, 1]], [1, 2])
  """
  x, y = np.asarray(x), np.asarray(y)
  counts_K = np.array([len(p) for p in parts], np.int32)
  size = int(counts_K.max()) if len(parts) else 0
  x_KxM = np.zeros((len(parts), size, *x.shape[1:]), x.dtype)
  y_KxM = np.zeros((len(parts), size), y.dtype)
  for k, idx in enumerate(parts):
    idx = np.asarray(idx, np.int64)
    x_KxM[k, :len(idx)], y_KxM[k, :len(idx)] = x[idx], y[idx]
  return ClientArrays(x_KxM, y_KxM, counts_K)
