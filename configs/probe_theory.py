"""The theory demos (paper Sect. 5, Appendix D), offline on digits.

All five (trains the embedded digits CNN into runs/default first if it holds
no checkpoint; about 50 s on 2 CPU cores with the CNN trained):
  python probe.py --config=configs/probe_theory.py --workdir=runs/theory
One figure each (results.json + figure.png under <workdir>/<kind>/):
  Fig. 10  python probe.py --config=configs/probe_theory.py:softmax_maps \
             --workdir=runs/theory                                  (~8 s)
  Fig. 27  python probe.py --config=configs/probe_theory.py:listing1 \
             --workdir=runs/theory                                  (~7 s)
  Fig. 29  python probe.py --config=configs/probe_theory.py:listing2 \
             --workdir=runs/theory                                 (~14 s)
  Fig. 28  python probe.py --config=configs/probe_theory.py:activations \
             --workdir=runs/theory                                 (~20 s)
  App. D.1 python probe.py --config=configs/probe_theory.py:gradient \
             --workdir=runs/theory                                 (~26 s)
softmax_maps, listing1 and listing2 need no checkpoint (and train none).
Times: 2 CPU cores, JAX start included, 2026-11-23.

Findings measured then (seed 0):
* Fig. 10: corr(w_c + λ·s(w_c), w_c) averaged over 5 classes is 0.83 / 0.77
  at λ = +0.5 / +1 and −0.41 / −0.58 at λ = −0.5 / −1; the error of
  W + λ·s(W) on the digits is 0.20 at λ = +0.5 and 0.99 at λ = −0.5.
* Fig. 27: the mean of (w + λ·s(w))ᵀh is 11.1, 32.3, 53.5, 74.7, 96.0 for
  λ = −1, −0.5, 0, 0.5, 1 (closed form 11.0, 32.2, 53.4, 74.6, 95.8); the
  fraction of positive values is 0.77 at λ = −1 and 0.99 at λ = +1.
* Fig. 29, 100 draws of n (CE clipped as the listing's sklearn log_loss,
  p in [eps, 1 − eps] with eps = 2.2e-16; the exact CE in brackets): with
  |n|·s(W) the error and CE are lower at +λ than at −λ in every draw at
  every λ ≥ 0.5, Σ p(1 − p) and tr H in 88% and 87% of (draw, λ) pairs
  (relative asymmetry +0.41 error, +0.54 CE (+0.71), +0.21 Σ p(1 − p),
  +0.21 tr H); with G(0,1) noise +λ wins in 57%, 56% (50%), 42%, 43% of
  pairs (asymmetry +0.00, +0.01 (+0.01), −0.05, −0.05): no side is
  favoured. Single draws vary: seed 0's own draw has tr H higher at +λ.
  The listing's own draw (np.random.seed(0), results.json listing_draw)
  gives CE 7.13 / 28.74 at λ = ±0.5 along |n|·s(W), the listing's printed
  7.1 / 28.7 (exact CE 7.98 / 48.22; log_loss clips 7% / 67% of the
  samples); with 1e-15, older sklearn's clip, it would be 7.01 / 27.72.
* Fig. 28 (digits CNN, 6 ReLU layers, 500 test images): the fraction of
  units whose state is unchanged is 0.963 / 0.936 / 0.915 / 0.896 / 0.880 at
  λ = +0.2 … +1.0 and 0.952 / 0.885 / 0.807 / 0.733 / 0.674 at λ = −0.2 …
  −1.0 (the first layer alone favours −λ at a = 0.2: 0.981 vs 0.978).
* App. D.1: cos(sign(θf), ∇L(θf)) = −0.17 (θf: −0.34, a G(0,1) direction:
  0.007 ≈ 1/√D = 0.0065); the gradient's first-order prediction of
  L(+1) − L(−1) along the NS sign(θf) direction is −0.024, the measured gap
  −2.34: the asymmetry is not a gradient effect, though sign(θf) is not
  orthogonal to ∇L here (weight decay pulls ∇L towards −θf).
The ResNet20/SVHN setting of Fig. 28: configs/probe_theory_svhn.py.
"""

from valley_jax import defaults

KINDS = 'softmax_maps,listing1,listing2,activations,gradient'


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/default')
  c.train_if_missing = 'runs/default'  # Only this path is trained here.
  c.kind = arg or KINDS
  c.seeds = 100  # Listing 2: draws of n (mean ± std); the listing has one.
  c.sweep.num_points = 21
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  return c
