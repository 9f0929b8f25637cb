"""Curvature along the valley of the embedded default (issue 7), offline:

python probe.py --config=configs/probe_curvature.py --workdir=runs/default/probe

Trains the digits CNN with BN into runs/default if it holds no checkpoint
(as configs/probe_default.py), then writes runs/default/probe/curvature/
results.json and figure.png: for G(0,1) noise, plain and sign-consistent
(NS-normalised), at 21 λ in [-1, 1] the test error and loss, dᵀHd/‖d‖² along
the curve's direction and Hutchinson's tr(H) (16 probes) of the training loss
on 1,000 training examples (BN recalibrated at every point), and the top
eigenvalue at θf (20 power iterations).
About 2.5 min on 2 CPU cores shared with other jobs (131 s CPU time: 42
points of 17 forward-over-forward passes, 20 HVPs), plus about 1 min of
training when runs/default is missing (2026-11-23); 81 s on 2 quieter cores
on 2026-12-01, with the same numbers as below.

Finding (epoch 30, test error 1.1% at θf): sign-consistent noise is flat on
its positive side in curvature too. Mean over λ ∈ [0, 1] vs λ ∈ [-1, 0]:
test error 0.013 vs 0.401, dᵀHd/‖d‖² 0.0054 vs 0.130 and tr(H) 35 vs 762;
at λ = ±0.5, tr(H) 12 vs 1795 (± 2 and ± 248, Hutchinson's standard error).
Plain G(0,1) noise favours no side: error 0.139 vs 0.172, dᵀHd/‖d‖² 0.050
vs 0.034, tr(H) 606 vs 543. At θf tr(H) ≈ 2.4 and the top eigenvalue is
0.61 (residual 4e-4), above dᵀHd/‖d‖² along both directions (0.0002 and
0.0013).
The numbers above are one noise draw (config.seeds = 1), so no interval.
With three draws and intervals (2026-12-08, runs/default retrained with the
same config, test error 1.1% at θf; 2 Intel Xeon cores shared with other
jobs, load 10-12: 714 s wall, 264 s CPU):
python probe.py --config=configs/probe_curvature.py --config.seeds=3 \
  --workdir=runs/default/probe_curv3
λ ∈ [0, 1] vs [-1, 0], mean over the 3 draws; err+ − err− with its
hierarchical bootstrap interval over draws and the 360 test images, the
dᵀHd/‖d‖² difference with a t interval over the draws:
* |G(0,1)|·sign(θ): test error 0.014 vs 0.389, −0.376 [−0.394, −0.360]
  (resolved); dᵀHd/‖d‖² 0.0068 vs 0.115, −0.108 [−0.172, −0.044]
  (resolved); tr(H) 28 vs 746 (per-draw halves are not kept: no interval);
  at λ = ±0.5 tr(H) 11 [1, 22] vs 1657 [810, 2505] (t over draws).
* G(0,1): test error 0.155 vs 0.168, −0.013 [−0.050, +0.028]; dᵀHd/‖d‖²
  0.084 vs 0.039, +0.045 [−0.077, +0.167]: not resolved at n = 3 draws
  (× 360 images); tr(H) 661 vs 616.
At θf tr(H) 2.6 (std 0.4 over the draws' probes), top eigenvalue 0.61
(residual 4e-4).
With --config.curvature.through_bn=True the kind also computes both with
the BN statistics recomputed from θ and differentiated (the bend of the
curves themselves, which recalibrate at every point) beside the default's
statistics held fixed inside H; dotted in the figure. Same checkpoint
(2026-12-02, 2 CPU cores, 7 min on cores shared with five other jobs):
sign-consistent, mean over λ ∈ [0, 1] vs [-1, 0], dᵀHd/‖d‖² 0.0010 vs
0.0135 and tr(H) 9.2 vs 114 (held fixed: 0.0054 vs 0.130, 35 vs 762); plain
G(0,1) 0.032 vs 0.036 and 163 vs 218. The statistics' own dependence on θ
lowers the curvature 3-10× but keeps the flat side; on the far negative
side (λ < −0.6) the sign-consistent curvature turns negative.
Another checkpoint: --config=configs/probe_curvature.py:<workdir>.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/default')
  c.train_if_missing = 'runs/default'  # Only this path is trained here.
  c.kind = 'curvature'
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  c.curvature.num_points = 21
  c.curvature.probes = 16
  if arg:
    c.checkpoint = arg
    c.train_if_missing = ''
  return c
