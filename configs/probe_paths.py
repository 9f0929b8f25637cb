"""Paths of runs that differ in LR, width or L2 (Fort & Jastrzebski 2019):
distance and angle to θ0, angle between successive updates, curvature along
the update and tr(H)/P along the kept epochs, one column per hyperparameter
(kind paths).

Offline on digits: the digits CNN (configs/digits_cnn.py: LR 0.05, width
0.5, WD 5e-4; runs/default, shared with configs/probe_default.py) and its
variants LR 0.15 / 0.015, width 0.25 / 1 and WD 1e-3 / 1e-5 (runs/digits_lr0.15
and the WD runs are shared with configs/probe_hparams.py:digits), trained
first when missing (config.train_runs); epochs 0, 1, 2, 3, 5, 10, 20, 30
are kept (the digits configs' keep_epochs):
python probe.py --config=configs/probe_paths.py --workdir=runs/paths
H is the Hessian of the training CE on 500 training images (8 Hutchinson
probes), BN statistics recalibrated at each θt. Times on 2 CPU cores shared
with other jobs (2026-12-02), the six trainings (46 s) included: 106 s with
no compilation cache (--config.compile_cache=none), 96 s with a warm one.

Found (epoch 30; test accuracy 98.9 / 98.9 / 99.4% for LR 0.15 / 0.05 /
0.015, 98.3 / 98.9 / 99.7% for width 0.25 / 0.5 / 1, 99.4 / 98.9 / 99.4% for
WD 1e-3 / 5e-4 / 1e-5): the three act alike on the curvature at the end,
not on the path. Larger LR, larger width and smaller WD all end flatter:
tr(H)/P 1.5e-3 → 8.4e-5 → 5.7e-5 as LR grows, 1.3e-3 → 8.4e-5 → 2.2e-5 as
width grows (raw tr(H) 8.0, 2.0, 2.0), 1.9e-4 → 8.4e-5 → 4.4e-5 as WD
falls; dᵀHd/‖d‖² along the last update 0.026 / 0.0065 / 0.0093 (LR),
0.025 / 0.0065 / 0.0030 (width), 0.020 / 0.0065 / 0.0036 (WD). But
‖θ30 − θ0‖/‖θ0‖ grows with LR (0.40, 0.72, 2.42; cos(θ30, θ0) 0.94, 0.82,
0.35), falls with width (1.03, 0.72, 0.45; cos 0.75, 0.82, 0.91) and hardly
moves with WD (0.64, 0.72, 0.70; cos 0.83, 0.82, 0.85; ‖θ30‖/‖θ0‖ 1.16,
1.26, 1.31). Successive updates are far from parallel in every run: 42-95°
between epochs 1 and 10, then 11-64° between the last two (the LR has
decayed). With BN the curvature of scale-invariant weights scales as
1/‖θ‖², part of WD's effect.

The same columns without BN (configs/digits_cnn.py:nobn,...; 7 runs into
runs/digits_nobn_*): python probe.py --config=configs/probe_paths.py:nobn \
  --workdir=runs/paths_nobn
Both also report the radius ‖θt‖/‖θ0‖ beside the distance from θ0, the
scale-free curvature tr(H)·‖θt‖²/P, the training CE beside the test error,
the test loss along the segment θ0 → θ_last and its bend over the chord, and
findings (one run per setting: not resolved).
Found (2026-12-07): by the radius ‖θ30‖/‖θ0‖ larger LR and smaller WD both
push outwards (1.12 / 1.26 / 2.58 for LR 0.015 / 0.05 / 0.15; 1.16 / 1.26 /
1.31 for WD 1e-3 / 5e-4 / 1e-5), wider nets less (1.55 / 1.26 / 1.07); the
scale-free tr(H)·‖θ‖²/P is not monotone in LR (0.33 / 0.023 / 0.067), falls
with width (0.28 / 0.023 / 0.009) and as WD falls (0.044 / 0.023 / 0.013).
Without BN, LR 0.15 and 0.015 do not train in 30 epochs (test error 0.90,
0.79). 593 s (BN) and 253 s (nobn) with their trainings, loaded machine.

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
