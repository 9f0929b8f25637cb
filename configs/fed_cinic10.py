"""Table 1, CINIC-10: K = 100, Q = 10%, E = 5, B = 64, T = 200 (Sect. 6.2).

python fedsim.py --config=configs/fed_cinic10.py:alpha1,fedsign,gamma0.01 \
    --workdir=runs/fed_cinic10/fedsign --config.data.data_dir=DIR
CINIC-10 loads from DIR/cinic10/{train,test}/<class>/*.png or DIR/cinic10.npz
(see README). Network: CIFAR ResNet20, as configs/fed_cifar10.py.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.apply_fed_variant(defaults.fed_config('resnet20', 'cinic10'),
                                    arg)
