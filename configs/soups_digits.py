"""Model soups on digits (paper Fig. 11): two halves from one start θI.

Task of A and B: digits 5-9 (config.data.classes='5-9'), the two halves of
their 716 training images (config.data.half), tested on their 180 test
images (one image = 0.0056 of accuracy). The digits CNN with BN, 50 epochs,
keeping epochs {1, 2, 3, 5, 10, 20, 30, 50}. The arg picks the run: `a` /
`b` (halves 0 / 1 from the fresh init of seed 0: a shared random start),
`pretrain` (θI: digits 0-4, all 721 of their training images, seed 1),
`ft_a` / `ft_b` (halves 0 / 1 from runs/soups/pre with a fresh head,
config.train.init_fresh='CLF'). Variants of defaults.apply_variant follow a
comma: `b,seed1` (independent inits), `a,lr0.2` (give every run the same).

Why this pre-training task: the paper fine-tunes ImageNet weights on Flowers,
other images of other classes, with a new head. Digits 0-4 are images of the
same kind (8x8 strokes: the features transfer), but the two tasks share no
class, hence no image, and A and B replace θI's head. Pre-training on one
half (as this config did before) made B continue its own training (SSR-IB
0.99). A and B get the harder five digits: on 0-4 every model reaches
99.4-100% and the gain has no room. mnist1d does not fit the 8x8 CNN.

Shared random start (~30 s per run on 2 CPU cores, ~20 s per pair probed):
python train.py --config=configs/soups_digits.py:a \
  --workdir=runs/soups/rand_a
python train.py --config=configs/soups_digits.py:b \
  --workdir=runs/soups/rand_b
python probe.py --config=configs/probe_soups.py:rand \
  --workdir=runs/soups/probe_rand
Start pre-trained on digits 0-4:
python train.py --config=configs/soups_digits.py:pretrain \
  --workdir=runs/soups/pre
python train.py --config=configs/soups_digits.py:ft_a \
  --workdir=runs/soups/ft_a
python train.py --config=configs/soups_digits.py:ft_b \
  --workdir=runs/soups/ft_b
python probe.py --config=configs/probe_soups.py:ft --workdir=runs/soups/probe_ft
Both starts in one figure:
python probe.py --config=configs/probe_soups.py:digits \
  --workdir=runs/soups/probe
The same on mnist1d (an MLP, 256-256 with BN; 1,000 training signals of
digits 5-9 split in halves, 493 test signals: one = 0.0020 of accuracy),
into runs/soups_mnist1d/: train.py with mnist1d_a, mnist1d_b,
mnist1d_pretrain, mnist1d_ft_a, mnist1d_ft_b, then
python probe.py --config=configs/probe_soups.py:mnist1d \
  --workdir=runs/soups_mnist1d/probe
Result at epoch 50, mean ± std of 3 seeds (A/B seeds 0, 1, 2; θI seeds 1,
11, 21), 2 CPU cores, 2026-12-02. LR 0.05 (as above): pre-trained SSR-AB
0.924 ± 0.010, gain +0.000 ± 0.003; random SSR-AB 0.841 ± 0.031, gain
+0.007 ± 0.008: SSR separates the starts, the gain (≤ 1.5 test images) does
not. LR 0.2 (`,lr0.2` on every run): pre-trained SSR-AB 0.900 ± 0.026, gain
-0.018 ± 0.021; random SSR-AB 0.679 ± 0.009, gain -0.169 ± 0.143 (per seed
-0.19, -0.30, -0.01): the paper's barrier from a random start, tracked by
SSR; the pre-trained soup does not beat its models here.
"""

from valley_jax import checkpoint, defaults

PRETRAINED = 'runs/soups/pre'  # Override: --config.train.init_from=DIR[@N].
# The same five roles on mnist1d with an MLP (`mnist1d_a`, ...): the task
# of A and B has 493 test signals instead of digits' 180.
PRETRAINED_MNIST1D = 'runs/soups_mnist1d/pre'
# The task of A and B, and θI's task: no class, hence no image, in common.
TASK, PRETRAIN_TASK = '5-9', '0-4'
_ROLES = {
    'a': dict(half=0),
    'b': dict(half=1),
    'pretrain': dict(half=None, seed=1, classes=PRETRAIN_TASK),
    'ft_a': dict(half=0, init_from=PRETRAINED),
    'ft_b': dict(half=1, init_from=PRETRAINED),
}


def get_config(arg: str | None = None):
  role, _, rest = (arg or 'a').partition(',')
  mnist1d = role.startswith('mnist1d_')
  role = role.removeprefix('mnist1d_')
  if role not in _ROLES:
    raise ValueError(f'Unknown soups run {role!r}; choose one of '
                     f'{sorted(_ROLES)}, or mnist1d_ before one of them '
                     '(configs/soups_digits.py:ROLE).')
  if mnist1d:
    c = defaults.digits_config('mlp', hidden=(256, 256))
    c.data.name = 'mnist1d'
    c.train.eval_batch_size = 500
  else:
    c = defaults.digits_cnn()
  c.train.epochs = 50
  c.train.keep_epochs = checkpoint.DEFAULT_KEEP
  r = _ROLES[role]
  c.data.classes = r.get('classes', TASK)
  c.data.half = r['half']
  c.seed = r.get('seed', 0)
  c.train.init_from = r.get('init_from', '')
  if mnist1d and c.train.init_from:
    c.train.init_from = PRETRAINED_MNIST1D
  c.train.init_fresh = 'CLF' if c.train.init_from else ''
  return defaults.apply_variant(c, rest)
