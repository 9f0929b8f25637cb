"""Hyper-parameter study (paper Fig. 9): G(0,1) plain and sign-consistent.

One command trains the runs that are missing (config.train_runs), then
probes them: VGG16-BN on CIFAR-10 with LR 0.1 / 0.003, BS 32 / 2048 and WD
1e-3 / 1e-5 around the paper's LR 0.03, BS 256, WD 5e-4 (six runs of
configs/cifar10_vgg16bn.py, 200 epochs each, a GPU; add
--config.train_data_dir=DIR):
python probe.py --config=configs/probe_hparams.py --workdir=runs/hparams_probe
The same runs by hand:
  for v in lr0.1 lr0.003 bs32 bs2048 wd1e-3 wd1e-5; do
    python train.py --config=configs/cifar10_vgg16bn.py:$v --workdir=runs/hp_$v
  done
Some of them: --config=configs/probe_hparams.py:lr0.1,lr0.003.

Offline on digits: the digits CNN (configs/digits_cnn.py: LR 0.05, BS 64,
WD 5e-4) with LR 0.15 / 0.005 (×3.3 and ÷10, as the paper's), BS 8 / 512
(÷8 and ×8; 2,048 exceeds digits' 1,437 training images) and WD 1e-3 /
1e-5, into runs/digits_<variant> (runs/digits_bs8 and runs/digits_bs512
are shared with probe_interpolate.py:digits):
python probe.py --config=configs/probe_hparams.py:digits \
  --workdir=runs/hparams_digits
Some of them: --config=configs/probe_hparams.py:digits,bs8,bs512.
About 110 s on 2 CPU cores shared with other jobs, the six trainings
included (2026-12-02); test accuracy 98.9 (lr0.15), 98.6 (lr0.005), 99.4
(bs8), 95.3 (bs512), 99.4 (wd1e-3), 99.4% (wd1e-5).
Finding (seed 0): the mean error of the positive minus the negative half is
−0.05 … +0.02 with plain G(0,1) for all six (symmetric) and −0.18 (bs8) to
−0.44 (wd1e-5) with |G(0,1)|·sign(θ) (all flatter on the positive side).
The width changes, the symmetry does not: plain G(0,1)'s mean error over
both halves is 0.05 (bs8), 0.14 (lr0.15), 0.18 / 0.20 (wd1e-3 / wd1e-5),
0.53 / 0.54 (lr0.005 / bs512).
"""

from valley_jax import defaults

_CIFAR = ('lr0.1', 'lr0.003', 'bs32', 'bs2048', 'wd1e-3', 'wd1e-5')
_DIGITS = ('lr0.15', 'lr0.005', 'bs8', 'bs512', 'wd1e-3', 'wd1e-5')


def get_config(arg: str | None = None):
  """arg: CIFAR-10 variants (default all six), or 'digits' and optionally
  digits variants ('digits,bs8,bs512')."""
  items = [a for a in (arg or '').split(',') if a]
  digits = bool(items) and items[0] == 'digits'
  variants = tuple(items[1:] if digits else items) or (
      _DIGITS if digits else _CIFAR)
  c = defaults.probe_config()
  c.kind = 'hparams'
  if digits:
    defaults.digits_probe(c)
    runs = {f'runs/digits_{v}': f'configs/digits_cnn.py:{v}'
            for v in variants}
  else:
    runs = {f'runs/hp_{v}': f'configs/cifar10_vgg16bn.py:{v}'
            for v in variants}
  c.hparams.checkpoints = tuple(runs)
  c.hparams.labels = variants
  c.train_runs = tuple(f'{w}={f}' for w, f in runs.items())
  return c
