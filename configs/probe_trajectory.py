"""The loss surface on the plane of the optimiser's path (Li et al. 2018).

The plane of the top two principal components of θ_e − θ_final over the
kept epochs (config.surface.directions='pca'), a 21 × 21 grid over it and
the path drawn on the surface. Offline, on the embedded default (the digits
CNN with BN, trained into runs/default if it holds no checkpoint; it keeps
epochs 0, 1, 2, 3, 5, 10, 20 before its last, 30):
python probe.py --config=configs/probe_trajectory.py \
  --workdir=runs/default/probe_trajectory
Another run: --config=configs/probe_trajectory.py:WORKDIR (trains nothing).
About 65 s on 2 CPU cores shared with other jobs, the training included
(2026-12-07).
Finding (seed 0): PC1 and PC2 explain 85% and 9% of the path's variance;
in units of R = 9.4 (the largest |coordinate|) the path runs from the
initialisation at (1.00, 0.05) through epochs 1-3 at (0.89, −0.06), (0.58,
−0.31), (0.28, −0.29) and is within 0.06 of θf from epoch 5 on; the test
error is ≤ 0.02 in a basin around that part of the path and above 0.9 past
α ≈ 1.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  """arg: the run's workdir (default runs/default, trained if missing)."""
  c = defaults.probe_config(arg or 'runs/default')
  if not arg:
    c.train_if_missing = 'runs/default'
  c.kind = 'surface'
  c.surface.directions = 'pca'
  c.surface.lam_min, c.surface.lam_max = -1.2, 1.2
  c.surface.num_points = 25
  defaults.digits_probe(c)
  return c
