"""CIFAR ResNet20 on CIFAR-100 (paper Appendix A).

python train.py --config=configs/cifar100_resnet20.py --workdir=runs/cifar100_resnet20
Variants (Sect. 4.2): --config=configs/cifar100_resnet20.py:lr0.1 (lr0.003, bs32, bs2048,
wd1e-3, wd1e-5, bninit_uniform, bninit_gaussian, half0/half1, seedN).
Needs the TFDS dataset prepared (see README); 200 epochs on one GPU.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('resnet20', 'cifar100')
  return defaults.apply_variant(c, arg)
