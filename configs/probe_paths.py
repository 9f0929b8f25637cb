"""Paths of runs that differ in LR, width or L2 (Fort & Jastrzebski 2019):
distance and angle to θ0, angle between successive updates, curvature along
the update and tr(H)/P along the kept epochs, one column per hyperparameter
(kind paths).

Offline on digits: the digits CNN (configs/digits_cnn.py: LR 0.05, width
0.5, WD 5e-4; runs/default, shared with configs/probe_default.py) and its
variants LR 0.15 / 0.015, width 0.25 / 1 and WD 1e-3 / 1e-5 (runs/digits_lr0.15
and the WD runs are shared with configs/probe_hparams.py:digits), each over
3 training seeds (config.train_seeds: WORKDIR, WORKDIR_seed1,
WORKDIR_seed2, trained with seed +0, +1, +2), 21 runs trained first when
missing (config.train_runs); epochs 0, 1, 3, 10 and 30 of each are measured
(config.paths.epochs; the digits configs keep 0, 1, 2, 3, 5, 10, 20, 30):
python probe.py --config=configs/probe_paths.py --workdir=runs/paths
H is the Hessian of the training CE on 500 training images (8 Hutchinson
probes), BN statistics recalibrated at each θt. Every quantity is the mean
over the 3 seeds with a 95 % t interval over them (the figure: bands; on
its log axes the geometric mean and the interval of log10). Findings: per
column, the first setting against the last at epoch 30, paired by training
seed (log10 of the ratio for tr(H)/P, tr(H)·‖θ‖²/P, the radius, the
distance and the training CE; the difference otherwise); resolved when the
paired 95 % t interval over the 3 seeds excludes 0 (every resolved one
below also holds in every seed). Time on 2 Intel Xeon cores shared with
other jobs (load 10-12), 2026-12-08: the 21 trainings 357 s, the
measurement 309 s wall (108 s CPU); a rerun with the runs trained, at load
7-9: 189 s wall (84 s CPU), the same numbers.

Found (2026-12-08, epoch 30, geometric means for the log quantities;
intervals in brackets are over seeds, "ratio" the paired log10 ratio):
* Test error 0.010 / 0.008 / 0.008 for LR 0.15 / 0.05 / 0.015, 0.019 /
  0.008 / 0.007 for width 0.25 / 0.5 / 1, 0.005 / 0.008 / 0.009 for WD
  1e-3 / 5e-4 / 1e-5: no test-error difference is resolved.
* Larger LR, larger width and smaller WD all end flatter (resolved): tr(H)/P
  3.6e-5 [1.3e-5, 1.0e-4] / 1.1e-4 / 1.9e-3 [0.9e-3, 3.9e-3] (LR 0.15 /
  0.05 / 0.015; ratio −1.72 [−2.42, −1.02]), 8.3e-4 / 1.1e-4 / 2.9e-5
  (width; +1.45 [+0.68, +2.23]), 2.0e-4 / 1.1e-4 / 5.0e-5 (WD; +0.61
  [+0.56, +0.66]).
* Also with the radius divided out: tr(H)·‖θ30‖²/P 0.026 [0.003, 0.20] /
  0.030 / 0.41 [0.20, 0.85] (LR; ratio −1.19 [−2.33, −0.06], resolved),
  0.18 / 0.030 / 0.012 (width; +1.19 [+0.42, +1.96]), 0.047 / 0.030 /
  0.016 (WD; +0.48 [+0.39, +0.57]). The single-seed reading of 2026-12-07
  ("not monotone in LR", 0.067 at LR 0.15) lies inside LR 0.15's seed
  spread; LR 0.15 against LR 0.05 is not compared.
* By the radius ‖θ30‖/‖θ0‖ larger LR and smaller WD push outwards, wider
  nets less: 2.06 [1.24, 3.41] / 1.25 / 1.12 (LR; ratio +0.27 [+0.05,
  +0.49]), 1.56 / 1.25 / 1.07 (width; +0.16 [+0.16, +0.17]), 1.16 / 1.25 /
  1.34 (WD; −0.063 [−0.083, −0.044]); all resolved. The distance
  ‖θ30 − θ0‖/‖θ0‖ 1.79 / 0.71 / 0.40 (LR), 1.05 / 0.71 / 0.45 (width),
  0.64 / 0.71 / 0.75 (WD), all resolved; cos(θ30, θ0) 0.48 / 0.83 / 0.94
  (LR) and 0.75 / 0.83 / 0.91 (width) resolved, 0.83 / 0.83 / 0.84 (WD)
  not.
* dᵀHd/‖d‖² along the last update: 0.0037 / 0.0077 / 0.046 (LR) and 0.018
  / 0.0077 / 0.0034 (width) not resolved; 0.021 / 0.0077 / 0.0028 (WD;
  +0.019 [+0.014, +0.024]) resolved. Training CE 4.1e-4 / 3.6e-4 / 1.5e-3
  (LR), 6.3e-4 / 3.6e-4 / 2.5e-4 (width), 7.4e-4 / 3.6e-4 / 1.3e-4 (WD),
  each first-vs-last resolved. The test loss along θ0 → θ30 bends above
  its chord by 0.10 / 0.081 / 0.20 (LR; not resolved), 0.12 / 0.081 /
  0.041 (width; resolved) and 0.10 / 0.081 / 0.068 (WD; resolved).
So the three act alike on the end point's curvature, raw and scale-free,
and LR and WD alike on the radius; on the distance from θ0 they differ in
size (larger LR goes 4.5× as far, larger width less far, smaller WD 1.2×
as far). Successive updates are far from parallel in every setting (means
of 50-107° between the updates 0 → 1 → 3 → 10 → 30; the figure).

The same columns without BN (configs/digits_cnn.py:nobn,...; 21 runs into
runs/digits_nobn_*, 3 seeds each; the base run's replicas are
runs/digits_nobn_seed0_seed1 and _seed2):
python probe.py --config=configs/probe_paths.py:nobn \
  --workdir=runs/paths_nobn
Found (2026-12-08): LR 0.15 and LR 0.015 do not train reliably in 30
epochs: test error per seed 0.90 / 0.28 / 0.02 (LR 0.15) and 0.79 / 0.69 /
0.30 (LR 0.015) against 0.04-0.06 for LR 0.05, so no LR curvature
comparison is resolved (tr(H)/P ratio −0.18 [−5.4, +5.0]); only the
distance from θ0 (LR 0.15 farther, ratio +1.10 [+0.31, +1.88]) and
cos(θ30, θ0) (0.47 vs 0.98) are. Width: narrower ends sharper, resolved
for tr(H)/P (2.6e-2 / 2.4e-3 / 2.4e-4 for width 0.25 / 0.5 / 1, ratio
+2.04 [+1.04, +3.05]) and for tr(H)·‖θ‖²/P (+1.71 [+0.65, +2.77]), and
the radius 1.72 / 1.52 / 1.30 (+0.12 [+0.02, +0.22]). WD: smaller WD
pushes outwards (radius 1.46 / 1.52 / 1.64, ratio −0.050 [−0.066,
−0.035]; distance too), but no curvature difference is resolved (tr(H)/P
1.4e-3 / 2.4e-3 / 1.4e-3; ratio −0.01 [−1.8, +1.7]). Without BN the test
loss along θ0 → θ30 bends above its chord by 0.63-0.79 (0.04-0.20 with
BN). Time (load 10-12): the 21 trainings 637 s, the measurement 252 s wall
(62 s CPU).

Real data: VGG16-BN on CIFAR-10 (configs/cifar10_vgg16bn.py: LR 0.03, width
1, WD 5e-4) with LR 0.1 / 0.003 and WD 1e-3 / 1e-5 (the runs of
configs/probe_hparams.py) and width 0.25 / 0.5, 200 epochs each, a GPU;
add --config.train_data_dir=DIR:
python probe.py --config=configs/probe_paths.py:cifar10 \
  --workdir=runs/paths_cifar10
"""

from valley_jax import defaults
from valley_jax.errors import InputError

# Training seeds per setting on digits (config.train_seeds: the listed run
# and its replicas WORKDIR_seed1, ...; findings pair them by seed).
TRAIN_SEEDS = 3
# (column, label, workdir, config): the base run appears in every column.
_DIGITS = (
    ('LR', 'LR 0.15', 'runs/digits_lr0.15', 'configs/digits_cnn.py:lr0.15'),
    ('LR', 'LR 0.05', 'runs/default', 'configs/digits_cnn.py'),
    ('LR', 'LR 0.015', 'runs/digits_lr0.015',
     'configs/digits_cnn.py:lr0.015'),
    ('width', 'width 0.25', 'runs/digits_width0.25',
     'configs/digits_cnn.py:width0.25'),
    ('width', 'width 0.5', 'runs/default', 'configs/digits_cnn.py'),
    ('width', 'width 1', 'runs/digits_width1', 'configs/digits_cnn.py:width1'),
    ('L2', 'WD 1e-3', 'runs/digits_wd1e-3', 'configs/digits_cnn.py:wd1e-3'),
    ('L2', 'WD 5e-4', 'runs/default', 'configs/digits_cnn.py'),
    ('L2', 'WD 1e-5', 'runs/digits_wd1e-5', 'configs/digits_cnn.py:wd1e-5'),
)
# The same without BN (no scale invariance): the base run is the one of
# configs/probe_cuts.py:nobn.
_NOBN_BASE = ('runs/digits_nobn_seed0', 'configs/digits_cnn.py:nobn,seed0')


def _nobn(workdir: str, cfg: str) -> tuple[str, str]:
  if workdir == 'runs/default':
    return _NOBN_BASE
  variant = cfg.split(':')[1]
  return (f'runs/digits_nobn_{variant}', f'configs/digits_cnn.py:nobn,'
          f'{variant}')


_NOBN = tuple((col, label, *_nobn(w, cfg)) for col, label, w, cfg in _DIGITS)
_VGG = 'configs/cifar10_vgg16bn.py'
_CIFAR = (
    ('LR', 'LR 0.1', 'runs/hp_lr0.1', f'{_VGG}:lr0.1'),
    ('LR', 'LR 0.03', 'runs/cifar10_vgg16bn', _VGG),
    ('LR', 'LR 0.003', 'runs/hp_lr0.003', f'{_VGG}:lr0.003'),
    ('width', 'width 0.25', 'runs/cifar10_vgg16bn_width0.25',
     f'{_VGG}:width0.25'),
    ('width', 'width 0.5', 'runs/cifar10_vgg16bn_width0.5',
     f'{_VGG}:width0.5'),
    ('width', 'width 1', 'runs/cifar10_vgg16bn', _VGG),
    ('L2', 'WD 1e-3', 'runs/hp_wd1e-3', f'{_VGG}:wd1e-3'),
    ('L2', 'WD 5e-4', 'runs/cifar10_vgg16bn', _VGG),
    ('L2', 'WD 1e-5', 'runs/hp_wd1e-5', f'{_VGG}:wd1e-5'),
)


def get_config(arg: str | None = None):
  """arg: '' (digits, the default), 'nobn' (digits without BN) or
  'cifar10'."""
  c = defaults.probe_config()
  c.kind = 'paths'
  if arg == 'cifar10':
    rows = _CIFAR
  elif arg in ('', None, 'nobn'):
    defaults.digits_probe(c)
    rows = _NOBN if arg else _DIGITS
    c.train_seeds = TRAIN_SEEDS
    # Four of the kept epochs besides 0 (the digits configs keep 0, 1, 2,
    # 3, 5, 10, 20, 30): with three seeds per setting, all eight would
    # take three times as long to measure.
    c.paths.epochs = (1, 3, 10, 30)
  else:
    raise InputError(f"configs/probe_paths.py: unknown arg {arg!r}; use '' "
                     "(digits), 'nobn' or 'cifar10'.")
  c.paths.columns = tuple(r[0] for r in rows)
  c.paths.labels = tuple(r[1] for r in rows)
  c.paths.checkpoints = tuple(r[2] for r in rows)
  runs = dict((r[2], r[3]) for r in rows)
  c.train_runs = tuple(f'{w}={f}' for w, f in runs.items())
  return c
