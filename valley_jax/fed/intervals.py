"""A federated table's intervals over seeds and test images.

One test image of digits is 0.28 points (360 images): an interval over
seeds alone says nothing about that resolution. So each run keeps the 0/1
correctness of every test image, and a table cell's interval is the
hierarchical bootstrap (`valley_jax.core.stats`) over its seeds and the test
images; a comparison of two algorithms is the same bootstrap of the paired
per-example differences (the same seed is the same partition, and every run
is tested on the same images).

A run keeps, in `<workdir>/per_example.npz` (NumPy's npz, written whole
and atomically through etils.epath):

* `round<r>` (uint8 [N]): the global model's correctness on each test image
  after round r, for the rounds of the last `config.table.last_rounds`
  evaluations only (`window`);
* `pooled_recal` (uint8 [N]) with `pooled_round`, `pooled_fingerprint`,
  `pooled_accuracy`, `pooled_loss`: the final model with BN statistics
  recomputed on the clients' pooled training data.

A resumed run recomputes only the rounds after its checkpoint (rewriting
the same values) and a finished run is read back, not recomputed. A cell's
views (`views`) are then: 'final', the final round's correctness; 'last',
each image's mean correctness over the window (its mean over images is the
mean accuracy of the last evaluations); 'pooled_recal'.
"""

import io
import zipfile
from typing import Any, Sequence

from absl import logging
from etils import epath
import numpy as np

from valley_jax import outputs
from valley_jax.core import stats

FILE = 'per_example.npz'
VIEWS = ('final', 'last', 'pooled_recal')
METHOD = 'hierarchical bootstrap over seeds and test images, 95 %'
N_BOOT = 2000


def window(rounds: int, every: int, last: int) -> list[int]:
  """The rounds (1-based) of the last `last` evaluations of a run that
  evaluates every `every` rounds and after its last round.

  >>> window(30, 1, 3), window(30, 4, 3)
  ([28, 29, 30], [24, 28, 30])
  """
  evaluated = [r for r in range(1, rounds + 1)
               if r % every == 0 or r == rounds]
  return evaluated[-last:] if last > 0 else []


def read(workdir: str) -> dict[str, np.ndarray]:
  """The arrays of a run's per_example.npz ({} if missing or damaged)."""
  path = epath.Path(workdir) / FILE
  if not path.exists():
    return {}
  try:
    with np.load(io.BytesIO(path.read_bytes())) as z:
      return {k: z[k] for k in z.files}
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    logging.warning('Ignoring the unreadable %s (%s).', path, e)
    return {}


def _write(workdir: str, arrays: dict[str, np.ndarray]) -> None:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  outputs.write_bytes(epath.Path(workdir) / FILE, buf.getvalue())


def _bits(correct) -> np.ndarray:
  c = np.asarray(correct)
  if not np.all((c == 0) | (c == 1)):
    raise ValueError('correctness must be 0/1 per example')
  return c.astype(np.uint8)


def save_round(workdir: str, done: int, correct) -> None:
  """Stores the correctness [N] of the global model after round `done`."""
  arrays = read(workdir)
  arrays[f'round{done}'] = _bits(correct)
  _write(workdir, arrays)


def save_pooled(workdir: str, done: int, fingerprint: str, correct,
                accuracy: float, loss: float) -> None:
  """Stores the pooled-recalibrated view of the model after round `done`
  (`fingerprint`: checkpoint.fingerprint of the global model)."""
  arrays = read(workdir)
  arrays.update(pooled_recal=_bits(correct), pooled_round=np.int64(done),
                pooled_fingerprint=np.str_(fingerprint),
                pooled_accuracy=np.float64(accuracy),
                pooled_loss=np.float64(loss))
  _write(workdir, arrays)


def pooled(workdir: str, done: int, fingerprint: str
           ) -> dict[str, Any] | None:
  """The stored pooled view of this very model ({'correct', 'accuracy',
  'loss'}), or None when none is stored for it."""
  a = read(workdir)
  if ('pooled_recal' not in a or int(a['pooled_round']) != done or
      str(a['pooled_fingerprint']) != fingerprint):
    return None
  return {'correct': a['pooled_recal'].astype(np.float64),
          'accuracy': float(a['pooled_accuracy']),
          'loss': float(a['pooled_loss'])}


def views(workdir: str, rounds: Sequence[int]) -> dict[str, np.ndarray]:
  """A finished run's per-example views, for its evaluated `rounds` (the
  last `last_rounds` of its curve, final last): 'final' when the final
  round is stored, 'last' when every one of them is, 'pooled_recal' when
  stored for the final round. Views that are not stored are left out."""
  a = read(workdir)
  rounds = list(rounds)
  if not rounds:
    return {}
  out = {}
  if f'round{rounds[-1]}' in a:
    out['final'] = a[f'round{rounds[-1]}'].astype(np.float64)
  if all(f'round{r}' in a for r in rounds):
    out['last'] = np.stack([a[f'round{r}'] for r in rounds]).astype(
        np.float64).mean(0)
  if 'pooled_recal' in a and int(a['pooled_round']) == rounds[-1]:
    out['pooled_recal'] = a['pooled_recal'].astype(np.float64)
  return out


def cell_interval(per_example: Sequence[np.ndarray | None], *,
                  n_boot: int = N_BOOT) -> dict[str, Any] | None:
  """The hierarchical bootstrap of a cell's accuracy from one per-example
  vector [N] per seed (None if a seed has none), clipped to [0, 1]."""
  if not per_example or any(v is None for v in per_example):
    return None
  x_SxNx1 = np.stack([np.asarray(v, np.float64) for v in per_example]
                     )[:, :, None]
  return stats.bootstrap_means(x_SxNx1, n_boot=n_boot,
                               bounds=[(0.0, 1.0)])[0]


def paired_finding(name: str, alpha: float, statistic: str,
                   mine: dict[int, np.ndarray | None],
                   base: dict[int, np.ndarray | None],
                   baseline: str = 'fedavg', *, n_boot: int = N_BOOT
                   ) -> dict[str, Any] | None:
  """'<name> > <baseline> at α = a' from per-example correctness by seed:
  the hierarchical bootstrap of the paired differences (seeds both have,
  the same test images), resolved when its interval lies above 0. None
  without a common seed that has per-example values in both."""
  seeds = sorted(s for s in set(mine) & set(base)
                 if mine[s] is not None and base[s] is not None)
  if not seeds:
    return None
  diff_SxNx1 = np.stack([np.asarray(mine[s], np.float64) -
                         np.asarray(base[s], np.float64)
                         for s in seeds])[:, :, None]
  boot = stats.bootstrap_means(diff_SxNx1, n_boot=n_boot,
                               bounds=[(-1.0, 1.0)])[0]
  f = stats.finding(f'{name} > {baseline} at α = {alpha:g}', boot,
                    expect='positive', statistic=statistic)
  f['seeds'] = seeds
  return f
