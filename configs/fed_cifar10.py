"""Table 1, CIFAR-10: K = 100, Q = 10%, E = 5, B = 64, T = 200 (Sect. 6.2).

python fedsim.py --config=configs/fed_cifar10.py:alpha0.5,fedsign,gamma0.01 \
    --workdir=runs/fed_cifar10/fedsign --config.data.data_dir=/data/tfds
The whole table (6 algorithms × α ∈ {10, 1, 0.5} × 5 seeds, resumable):
python fedsim.py --config=configs/fed_cifar10.py:table --workdir=runs/table1_cifar10
The paper does not name Table 1's network: CIFAR ResNet20 here (a model name
as a variant picks another, e.g. :vgg11). Needs the TFDS dataset (README).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.apply_fed_variant(defaults.fed_config('resnet20', 'cifar10'),
                                    arg)
