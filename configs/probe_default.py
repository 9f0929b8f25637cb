"""The main job on the embedded default: python probe.py (no flags).

Trains the digits CNN with BN into runs/default if it holds no checkpoint, then
runs noise_types (Fig. 3), sign_ratio (Fig. 4) and special (Fig. 5) and writes
results.json + figures under runs/default/probe/<kind>/.
About 30 s on 2 loaded CPU cores once trained (2026-12-01,
bench/results/probe_cpu_2cores_2026-12-01.jsonl).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/default')
  c.train_if_missing = 'runs/default'  # Only this path is trained here.
  c.sweep.num_points = 21
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  if arg:
    c.kind = arg
  return c
