"""VGG16-BN on CIFAR-10, the paper's main pair (paper Appendix A).

python train.py --config=configs/cifar10_vgg16bn.py --workdir=runs/cifar10_vgg16bn
Variants (Sect. 4.2): --config=configs/cifar10_vgg16bn.py:lr0.1 (lr0.003, bs32, bs2048,
wd1e-3, wd1e-5, bninit_uniform, bninit_gaussian, half0/half1, seedN).
Needs the TFDS dataset prepared (see README); 200 epochs on one GPU.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('vgg16', 'cifar10')
  return defaults.apply_variant(c, arg)
