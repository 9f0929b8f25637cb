"""BN initialisation study (paper Fig. 7): three runs along ε ∈ {0,1}.

One command trains the runs that are missing (config.train_runs), then
probes them: VGG16-BN on CIFAR-10 with BN weights initialised to ones,
U(0,1) and G(0,0.1) (configs/cifar10_vgg16bn.py, 200 epochs each, a GPU;
add --config.train_data_dir=DIR where `tfds build` put CIFAR-10):
python probe.py --config=configs/probe_bn_init.py --workdir=runs/bn_init_probe
The same runs by hand (probe.py then trains none of them):
python train.py --config=configs/cifar10_vgg16bn.py:bninit_ones \
  --workdir=runs/bn_ones
python train.py --config=configs/cifar10_vgg16bn.py:bninit_uniform \
  --workdir=runs/bn_uniform
python train.py --config=configs/cifar10_vgg16bn.py:bninit_gaussian \
  --workdir=runs/bn_gaussian

Offline on digits (the digits CNN of configs/digits_cnn.py with :bninit_ones,
:bninit_uniform and :bninit_gaussian into runs/digits_bninit_*):
python probe.py --config=configs/probe_bn_init.py:digits \
  --workdir=runs/bn_init_digits
About 45 s on 2 CPU cores shared with other jobs, the three 30-epoch
trainings included (2026-12-02); 98.9 / 98.6 / 98.3% test accuracy.
Finding (seed 0): after 30 epochs the first BN layer's weights are still
near their init (ones: mean 0.92, all > 0; U(0,1): mean 0.52, all > 0;
G(0,0.1): mean 0.06, 56% > 0, spread to ±0.61), not the paper's ≈0.2 after
200 CIFAR epochs. Along {0,1} all three are asymmetric in CE (λ = −1 / +1:
2.3 / 18.5 ones, 2.3 / 22.3 U(0,1), 2.6 / 36.3 G(0,0.1), NS) and the mean
error of the positive minus the negative half is +0.07, +0.15, +0.18 (NS;
filter NS +0.02, +0.05, +0.05): the G(0,0.1) run is not the nearly
symmetric one of the paper, so digits does not reproduce Fig. 7's contrast.
"""

from valley_jax import defaults

_INITS = (('ones', 'ones'), ('uniform', 'U(0,1)'), ('gaussian', 'G(0,0.1)'))


def get_config(arg: str | None = None):
  """arg: '' (CIFAR-10 VGG16-BN) or 'digits' (offline)."""
  if arg not in (None, '', 'digits'):
    raise ValueError(f'configs/probe_bn_init.py:{arg}: the arg is empty '
                     "(CIFAR-10) or 'digits'.")
  c = defaults.probe_config()
  c.kind = 'bn_init'
  if arg == 'digits':
    defaults.digits_probe(c)
    runs = {f'runs/digits_bninit_{v}': f'configs/digits_cnn.py:bninit_{v}'
            for v, _ in _INITS}
  else:
    runs = {'runs/bn_ones': 'configs/cifar10_vgg16bn.py:bninit_ones',
            'runs/bn_uniform': 'configs/cifar10_vgg16bn.py:bninit_uniform',
            'runs/bn_gaussian': 'configs/cifar10_vgg16bn.py:bninit_gaussian'}
  c.bn_init.checkpoints = tuple(runs)
  c.bn_init.labels = tuple(label for _, label in _INITS)
  c.train_runs = tuple(f'{w}={f}' for w, f in runs.items())
  return c
