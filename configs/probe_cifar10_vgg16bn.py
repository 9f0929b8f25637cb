"""Valley studies of VGG16-BN on CIFAR-10 (paper Figs. 3-6), full settings.

Train first: python train.py --config=configs/cifar10_vgg16bn.py \
  --workdir=runs/cifar10_vgg16bn --config.data.data_dir=DIR
Then:        python probe.py --config=configs/probe_cifar10_vgg16bn.py \
  --workdir=runs/cifar10_vgg16bn/probe
Pick studies with the arg, e.g. configs/probe_cifar10_vgg16bn.py:groups.
41 λ points, 10k test images, BN recalibration on 2k training images per point,
bf16; every curve is one compiled sweep (seconds on a GPU).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/cifar10_vgg16bn')
  c.kind = arg or 'noise_types,sign_ratio,special,groups'
  c.sweep.dtype = 'bfloat16'
  c.seeds = 3
  return c
