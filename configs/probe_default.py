"""The main job on the embedded default: python probe.py (no flags).

Trains the digits CNN with BN into runs/default if it holds no checkpoint, then
runs noise_types (Fig. 3), sign_ratio (Fig. 4) and special (Fig. 5) and writes
results.json + figures under runs/default/probe/<kind>/.
Every random direction is drawn config.seeds = 3 times and each curve has
11 λ points: the findings (results.json's `findings`, printed first) need
draws to resolve, and three draws at 11 points cost what one draw at 21 did
plus about half (docs/probe.md#findings-and-intervals).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/default')
  c.train_if_missing = 'runs/default'  # Only this path is trained here.
  c.seeds = 3
  c.sweep.num_points = 11
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  if arg:
    c.kind = arg
  return c
