"""Interpolating two solutions (paper Fig. 8): BS 32 vs BS 2048.

python train.py --config=configs/cifar10_vgg16bn.py:bs32 --workdir=runs/hp_bs32
python train.py --config=configs/cifar10_vgg16bn.py:bs2048 \
  --workdir=runs/hp_bs2048
python probe.py --config=configs/probe_interpolate.py --workdir=runs/interp
Writes the error of (1-λ)θA + λθB for λ ∈ [-1, 2], the mean/std of the five
statistics groups and the sign consistency ratios with ε = θB − θA.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  a, b = (arg or 'runs/hp_bs32,runs/hp_bs2048').split(',')
  c = defaults.probe_config()
  c.kind = 'interpolate'
  c.interpolate.checkpoint_a = a
  c.interpolate.checkpoint_b = b
  return c
