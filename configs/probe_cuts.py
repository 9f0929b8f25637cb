"""Cuts through the landscape (Fort & Jastrzebski 2019): planes through
init and optima, radial cuts t·θf and wedge widths (kind cuts).

Offline on digits: three seeds of the digits CNN (configs/digits_cnn.py,
seeds 0, 1, 2; runs/default is the embedded default, shared with
configs/probe_default.py), trained first when missing (config.train_runs):
python probe.py --config=configs/probe_cuts.py --workdir=runs/cuts
Writes runs/cuts/cuts/results.json, figure.png (the planes (θ0, θf, θf′),
(θf, θf′, θf″) and (0, θ0, θf), 21 × 21 points each, log10 test CE and
test error) and figure_wedges.png (radial cuts t ∈ [0, 2]; wedge widths at
t·θf, t = 0.5, 0.75, 1, 1.5, 2, 3, along 3 unit directions ⊥ θf per run,
21 offsets in ±r). The same without BN (runs/digits_nobn_seed0-2):
python probe.py --config=configs/probe_cuts.py:nobn --workdir=runs/cuts_nobn
Times on 2 CPU cores shared with other jobs (2026-12-02), the three
trainings (10 s each) included: 104 s with no compilation cache
(--config.compile_cache=none), 75 s with a warm one; nobn 37 s (warm).

Found (BN, test accuracy 98.9 / 99.2 / 99.4%): widths grow with r, and in
proportion to it. By test error (< error(θf) + 0.05), width/‖θf‖ (mean of
3 seeds × 3 directions) 0.47, 0.85, 1.15, 1.72, 2.30, 3.44 at t = 0.5 …
3, i.e. width/r 0.94, then 1.13-1.15 from t = 0.75 on; by CE below 2× the
CE at t·θf, width/r 0.83, 0.67, 0.73, 0.73, 0.73 (t = 0.75 … 3). That is
what BN's scale invariance alone predicts. By CE below 2× the CE at θf (one
level for the whole ray) the width is 0.67‖θf‖ at θf and 0 at every other
t: the ray itself leaves that set (its CE is 0.018-0.024 at t = 1, 0.05-0.09
at t = 1.5, 1.5 at t = 0.5; a temperature effect). Without BN (accuracy
94.7 / 96.1 / 93.9%) the ray leaves the low-error set too: by test error
only seed 1 keeps widths beyond θf (width/r 0.97, 1.04, 1.03, 1.03 at
t = 1 … 3); by CE below 2× the CE at t·θf, width/r 0.82 (t = 1), 0.96,
1.00, 1.02 (t = 1.5, 2, 3), but that threshold is above ln 10 (vacuous,
now marked) at 4-5 of the 6 points t per seed (2026-12-07). Sign consistency with θf (seed 0): θf − θ0
0.67 (0.66, 0.65 for seeds 1, 2; 0.53-0.61 without BN); the plane
(θ0, θf, θf′): e1 0.67, e2 0.38; (θf, θf′, θf″): e1 0.25, e2 0.36; (0, θ0,
θf): e1 (θ0) 0.78, e2 0.66; the wedge directions 0.50. On the plane
(θf, θf′, θf″) each optimum sits in its own low-error region, the three
parted by a Y-shaped band of high error; on (0, θ0, θf) the low-error region
is a wedge that opens away from the origin (figure.png).

Anisotropy at θf (2026-12-07; figure_wedges.png's top right): the low-error
width / ‖θf‖ along the top 3 Hessian eigenvectors is 0.03-0.05, along 12
random directions 0.96-1.34, towards the other optima 0.85-1.17, radially
1.6; random − Hessian 1.08 [1.01, 1.14] over 3 seeds (every seed). Without
BN 0.012 against 0.54-1.17: narrow in a few directions, long in most, with
or without BN. 749 s (BN, one training) and 619 s (nobn, two trainings) on
2 Intel Xeon cores shared with other jobs at load 12-14.

Every width is also measured on the training loss (cuts.train_samples =
500 fixed training images, BN recalibrated as for the test set; results:
each wedge's 'train', each anisotropy kind's 'train_loss' and
'train_error', findings that name the training subset). Found (BN,
2026-12-08, the same three runs; the test-set numbers above reproduced:
random − Hessian 1.08 [1.01, 1.14]): θf's training CE is 2.8e-4 to 4.3e-4
and its training error 0 (test CE 0.018-0.024). By the fixed level 2 ×
the training CE at θf the ray stays in the low-loss set from t = 1 outwards
and the width grows ∝ r: width/r 0.30 [0.27, 0.32] at t = 1, then 0.67
[0.64, 0.70], 0.66 [0.63, 0.70], 0.65 [0.61, 0.69] at t = 1.5, 2, 3 (0 at
t = 0.5, 0.75; t intervals over the 3 seeds), while by the test CE the ray
leaves that set at every t ≠ 1 (above): Fort & Jastrzebski's wedges are a
training-loss object, and on it the fixed-level picture holds. By training
error (< 0 + 0.05) width/r 0.97 [0.67, 1.27] at t = 0.5, then 1.18-1.20
(test 1.13-1.15); growth t = 1 → 3 by 2.40 [2.25, 2.55]‖θf‖ (every seed;
test 2.29 [2.13, 2.44]). By 2 × the training CE at t·θf the level is 0 for
t ≥ 1.5 (the CE underflows to 0 in float32; flagged 'degenerate' in later
runs), so that criterion reads only t ≤ 1. Anisotropy on the training
subset: by training error the top Hessian directions 0.03-0.05‖θf‖ against
random 1.05-1.35 (random − Hessian 1.15 [1.10, 1.21], every seed,
resolved); by training CE < 2 × its value at θf, under 1e-4‖θf‖ against
0.24-0.36 (0.29 [0.28, 0.31], resolved); towards the other optima
0.25-0.33, radially 1.01. 854 s wall (334 s CPU) with the three runs
trained, 2 Intel Xeon cores shared with other jobs (load 10-12),
2026-12-08. The nobn control with the training widths (319 s, same
machine and day): anisotropy holds on both sets, random − Hessian width
0.89 [0.65, 1.12] (test error), 0.90 [0.87, 0.94] (test CE), 0.85 [0.45,
1.26] (training error), 0.50 [0.07, 0.94] (training CE), all resolved;
growth with r is not resolved on either set (training +0.26 [−3.8, +4.3]).

Real data: three seeds of VGG16-BN on CIFAR-10 (configs/cifar10_vgg16bn.py,
200 epochs each, a GPU; add --config.train_data_dir=DIR):
python probe.py --config=configs/probe_cuts.py:cifar10 \
  --workdir=runs/cuts_cifar10
"""

from valley_jax import defaults
from valley_jax.errors import InputError

_DIGITS = {'runs/default': 'configs/digits_cnn.py',
           'runs/digits_seed1': 'configs/digits_cnn.py:seed1',
           'runs/digits_seed2': 'configs/digits_cnn.py:seed2'}
_NOBN = {f'runs/digits_nobn_seed{s}': f'configs/digits_cnn.py:nobn,seed{s}'
         for s in range(3)}
_CIFAR = {'runs/cifar10_vgg16bn': 'configs/cifar10_vgg16bn.py',
          'runs/cifar10_vgg16bn_seed1': 'configs/cifar10_vgg16bn.py:seed1',
          'runs/cifar10_vgg16bn_seed2': 'configs/cifar10_vgg16bn.py:seed2'}


def get_config(arg: str | None = None):
  """arg: '' (digits, the default), 'nobn' (digits without BN) or
  'cifar10'."""
  c = defaults.probe_config()
  c.kind = 'cuts'
  if arg == 'cifar10':
    runs = _CIFAR
  elif arg in ('', None, 'nobn'):
    defaults.digits_probe(c)
    runs = _NOBN if arg else _DIGITS
  else:
    raise InputError(f"configs/probe_cuts.py: unknown arg {arg!r}; use '' "
                     "(digits), 'nobn' or 'cifar10'.")
  c.cuts.checkpoints = tuple(runs)
  c.cuts.labels = ('seed 0', 'seed 1', 'seed 2')
  c.train_runs = tuple(f'{w}={f}' for w, f in runs.items())
  return c
