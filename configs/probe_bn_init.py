"""BN initialisation study (paper Fig. 7): three runs along ε ∈ {0,1}.

python train.py --config=configs/cifar10_vgg16bn.py --workdir=runs/bn_ones
python train.py --config=configs/cifar10_vgg16bn.py:bninit_uniform \
  --workdir=runs/bn_uniform
python train.py --config=configs/cifar10_vgg16bn.py:bninit_gaussian \
  --workdir=runs/bn_gaussian
python probe.py --config=configs/probe_bn_init.py --workdir=runs/bn_init_probe
Offline quick version on digits: train the three with configs/digits_cnn.py
(and :bninit_uniform, :bninit_gaussian) into the same workdirs.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  del arg
  c = defaults.probe_config()
  c.kind = 'bn_init'
  c.bn_init.checkpoints = ('runs/bn_ones', 'runs/bn_uniform',
                           'runs/bn_gaussian')
  c.bn_init.labels = ('ones', 'U(0,1)', 'G(0,0.1)')
  return c
