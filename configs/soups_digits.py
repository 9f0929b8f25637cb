"""Model soups on digits (paper Fig. 11): two halves from one start θI.

The digits CNN with BN (configs/digits_cnn.py), 50 epochs on one half of the
training split, keeping epochs {1, 2, 3, 5, 10, 20, 30, 50}. The arg picks
the run: `a` / `b` (halves 0 / 1 from the fresh init of seed 0: a shared
random start), `pretrain` (θI pre-trained on half 1, seed 1), `ft_a` / `ft_b`
(halves 0 / 1 from runs/soups/pre, i.e. config.train.init_from). Further
variants of defaults.apply_variant follow a comma (`b,seed1`: B from an
independent random init).

From a random start (~30 s per run on 2 CPU cores, ~20 s per probe):
python train.py --config=configs/soups_digits.py:a \
  --workdir=runs/soups/rand_a
python train.py --config=configs/soups_digits.py:b \
  --workdir=runs/soups/rand_b
python probe.py --config=configs/probe_soups.py:rand \
  --workdir=runs/soups/probe_rand
From a start pre-trained on the other half (half 1):
python train.py --config=configs/soups_digits.py:pretrain \
  --workdir=runs/soups/pre
python train.py --config=configs/soups_digits.py:ft_a \
  --workdir=runs/soups/ft_a
python train.py --config=configs/soups_digits.py:ft_b \
  --workdir=runs/soups/ft_b
python probe.py --config=configs/probe_soups.py:ft --workdir=runs/soups/probe_ft
Result (2 CPU cores, see README "Model soups"): SSR-AB at epoch 50 is 0.82
from the random start (gain -0.004) and 0.94 from the pre-trained one (gain
-0.003); independent inits (`b,seed1`) give 0.51 and -0.61.
"""

from valley_jax import checkpoint, defaults

PRETRAINED = 'runs/soups/pre'  # Override: --config.train.init_from=DIR[@N].
_ROLES = {
    'a': dict(half=0),
    'b': dict(half=1),
    'pretrain': dict(half=1, seed=1),
    'ft_a': dict(half=0, init_from=PRETRAINED),
    'ft_b': dict(half=1, init_from=PRETRAINED),
}


def get_config(arg: str | None = None):
  role, _, rest = (arg or 'a').partition(',')
  if role not in _ROLES:
    raise ValueError(f'Unknown soups run {role!r}; choose one of '
                     f'{sorted(_ROLES)} (configs/soups_digits.py:ROLE).')
  c = defaults.digits_cnn()
  c.train.epochs = 50
  c.train.keep_epochs = checkpoint.DEFAULT_KEEP
  r = _ROLES[role]
  c.data.half = r['half']
  c.seed = r.get('seed', 0)
  c.train.init_from = r.get('init_from', '')
  return defaults.apply_variant(c, rest)
