"""Hyper-parameter study (paper Fig. 9): G(0,1) plain and sign-consistent.

Train the variants, e.g. for LR:
  for v in lr0.1 lr0.003 bs32 bs2048 wd1e-3 wd1e-5; do
    python train.py --config=configs/cifar10_vgg16bn.py:$v --workdir=runs/hp_$v
  done
python probe.py --config=configs/probe_hparams.py --workdir=runs/hparams_probe
"""

from valley_jax import defaults

_VARIANTS = ('lr0.1', 'lr0.003', 'bs32', 'bs2048', 'wd1e-3', 'wd1e-5')


def get_config(arg: str | None = None):
  variants = tuple(arg.split(',')) if arg else _VARIANTS
  c = defaults.probe_config()
  c.kind = 'hparams'
  c.hparams.checkpoints = tuple(f'runs/hp_{v}' for v in variants)
  c.hparams.labels = variants
  return c
