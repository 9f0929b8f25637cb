"""Model soups (paper Fig. 11): interpolation, SSRs and the soup gain.

The arg names runs A and B (trained from one start on the two halves):
`rand` / `ft` (digits from a random / pre-trained start, runs/soups/...,
configs/soups_digits.py), `flowers` / `flowers_rand` (runs/flowers/...,
configs/soups_flowers.py), or 'RUN_A,RUN_B[,INIT]' with θI as 'DIR[@EPOCH]'
(default: epoch 0 of run A, which is the shared start). For every epoch kept
by both runs it writes the accuracy of (1-λ)θA + λθB for λ ∈ {0, 0.1, ...,
1} (BN recalibrated on both halves), SSR-IA, SSR-IB, SSR-AB and the gain
Acc(½θA + ½θB) - ½(Acc θA + Acc θB).

Digits (train the runs first, see configs/soups_digits.py), ~20 s each:
python probe.py --config=configs/probe_soups.py:rand \
  --workdir=runs/soups/probe_rand
python probe.py --config=configs/probe_soups.py:ft --workdir=runs/soups/probe_ft
Flowers/ResNet18 (configs/soups_flowers.py; the data are read from the runs'
stored config.data.data_dir; not run here, no data and no GPU):
python probe.py --config=configs/probe_soups.py:flowers \
  --workdir=runs/flowers/probe_ft
"""

from valley_jax import defaults

_PAIRS = {
    'rand': 'runs/soups/rand_a,runs/soups/rand_b',
    'ft': 'runs/soups/ft_a,runs/soups/ft_b',
    'flowers': 'runs/flowers/ft_a,runs/flowers/ft_b',
    'flowers_rand': 'runs/flowers/rand_a,runs/flowers/rand_b',
}


def get_config(arg: str | None = None):
  parts = _PAIRS.get(arg or 'ft', arg).split(',')
  if len(parts) not in (2, 3):
    raise ValueError(f'configs/probe_soups.py:{arg}: give one of '
                     f'{sorted(_PAIRS)} or RUN_A,RUN_B[,INIT].')
  c = defaults.probe_config()
  c.kind = 'soups'
  c.soups.checkpoint_a, c.soups.checkpoint_b = parts[0], parts[1]
  c.soups.init = parts[2] if len(parts) > 2 else ''
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  return c
