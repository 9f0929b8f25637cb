"""Model soups (paper Fig. 11): interpolation, SSRs and the soup gain.

The arg names the runs A and B (trained from one start on the two halves).
One pair: `rand` / `ft` (digits from a random / pre-trained start,
runs/soups/..., configs/soups_digits.py), `cifar10` / `cifar10_ft`
(runs/cifar10_soups/..., configs/soups_cifar10.py), `flowers` /
`flowers_rand` (runs/flowers/..., configs/soups_flowers.py), or
'RUN_A,RUN_B[,INIT]' with θI as 'DIR[@EPOCH]' (default: epoch 0 of run A,
which is the shared start). Both starts in one figure, on shared axes
(config.soups.compare): `digits`, `cifar10_both`, `flowers_both`, `mnist1d`
(the runs of configs/soups_digits.py:mnist1d_*, 493 test signals against
digits' 180). For every
epoch kept by both runs it writes the accuracy of (1-λ)θA + λθB for λ ∈ {0,
0.1, ..., 1} (BN recalibrated on both halves), SSR-IA, SSR-IB, SSR-AB and the
gain Acc(½θA + ½θB) - ½(Acc θA + Acc θB).

Digits (train the runs first, see configs/soups_digits.py), ~20 s per pair:
python probe.py --config=configs/probe_soups.py:digits \
  --workdir=runs/soups/probe
mnist1d (train the runs of configs/soups_digits.py:mnist1d_* first):
python probe.py --config=configs/probe_soups.py:mnist1d \
  --workdir=runs/soups_mnist1d/probe
CIFAR-10/VGG16-BN and Flowers/ResNet18 (configs/soups_cifar10.py,
configs/soups_flowers.py; the data are read from the runs' stored
config.data.data_dir; not run here, no data and no GPU):
python probe.py --config=configs/probe_soups.py:cifar10_both \
  --workdir=runs/cifar10_soups/probe
python probe.py --config=configs/probe_soups.py:flowers_both \
  --workdir=runs/flowers/probe
"""

from valley_jax import defaults

_PAIRS = {
    'rand': 'runs/soups/rand_a,runs/soups/rand_b',
    'ft': 'runs/soups/ft_a,runs/soups/ft_b',
    'cifar10': 'runs/cifar10_soups/rand_a,runs/cifar10_soups/rand_b',
    'cifar10_ft': 'runs/cifar10_soups/ft_a,runs/cifar10_soups/ft_b',
    'flowers': 'runs/flowers/ft_a,runs/flowers/ft_b',
    'flowers_rand': 'runs/flowers/rand_a,runs/flowers/rand_b',
    'mnist1d_rand': 'runs/soups_mnist1d/rand_a,runs/soups_mnist1d/rand_b',
    'mnist1d_ft': 'runs/soups_mnist1d/ft_a,runs/soups_mnist1d/ft_b',
}
# Both starts in one figure: (pair, its label, compare pair, its label).
_BOTH = {
    'digits': ('ft', 'pre-trained on digits 0-4', 'rand', 'random init'),
    'cifar10_both': ('cifar10', 'random init (paper)', 'cifar10_ft',
                     'pre-trained on CIFAR-100'),
    'flowers_both': ('flowers', 'pre-trained (paper)', 'flowers_rand',
                     'random init'),
    'mnist1d': ('mnist1d_ft', 'pre-trained on mnist1d 0-4', 'mnist1d_rand',
                'random init'),
}


def get_config(arg: str | None = None):
  arg = arg or 'ft'
  main, label, other, other_label = _BOTH.get(arg, (arg, '', '', ''))
  parts = _PAIRS.get(main, main).split(',')
  if len(parts) not in (2, 3):
    raise ValueError(f'configs/probe_soups.py:{arg}: give one of '
                     f'{sorted(_PAIRS) + sorted(_BOTH)} or '
                     'RUN_A,RUN_B[,INIT].')
  c = defaults.probe_config()
  c.kind = 'soups'
  c.soups.checkpoint_a, c.soups.checkpoint_b = parts[0], parts[1]
  c.soups.init = parts[2] if len(parts) > 2 else ''
  c.soups.label = label
  c.soups.compare = _PAIRS.get(other, '')
  c.soups.compare_label = other_label
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 500 if arg.startswith('mnist1d') else 360
  return c
