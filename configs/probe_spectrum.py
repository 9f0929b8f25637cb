"""The Hessian's eigenvalue density along the valley (PyHessian's density).

The curvature kind with its `spectrum` output: stochastic Lanczos
quadrature (core/hessian.slq on matfree's Lanczos, 16 steps, one probe per
point) of H at θf and at λ = ±0.5 of G(0,1) noise, plain and
sign-consistent (NS), on the training CE of 300 training images, BN
recalibrated at each point and held fixed in H; beside it the curvature
track at 3 λ and the top eigenvalue at θf by 40 power iterations, to
compare with the density's largest node. Sized for 2 CPU cores (each
Hessian-vector product is a forward and backward pass over the images). Offline,
on the embedded default (the digits CNN with BN, trained into runs/default
if it holds no checkpoint):
python probe.py --config=configs/probe_spectrum.py \
  --workdir=runs/default/probe_spectrum
Another checkpoint: --config=configs/probe_spectrum.py:WORKDIR.
About 7 min on 2 CPU cores shared with other jobs (load average 10-14),
runs/default already trained (2026-12-07).

Finding (epoch 30, seed 0, one SLQ probe per point): at θf the largest
node is 0.40237 and 40 power iterations give 0.40236 (residual 3e-5): they
agree to 2.5e-5 relative; 99.9% of the density's weight lies within 0.01 of
0 (no node below −0.003). Along sign-consistent noise the top eigenvalue is
2.3 at λ = +0.5 and 421 at λ = −0.5 (with negative eigenvalues down to
−24); along plain G(0,1) it is 51 and 116: the flat side of the valley is
flat in the whole spectrum, not only along the curve. These are one noise
draw on one seed (n = 1): no interval; with 3 draws the curvature kind
resolves the sign-consistent asymmetry of dᵀHd and not the plain noise's
(configs/probe_curvature.py).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  """arg: the run's workdir (default runs/default, trained if missing)."""
  c = defaults.probe_config(arg or 'runs/default')
  if not arg:
    c.train_if_missing = 'runs/default'
  c.kind = 'curvature'
  defaults.digits_probe(c)
  c.curvature.update(num_points=3, probes=2, samples=300, batch_size=100,
                     power_iters=40, spectrum_steps=16, spectrum_probes=1,
                     spectrum_lams=(-0.5, 0.5))
  return c
