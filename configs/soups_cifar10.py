"""Model soups on CIFAR-10 with VGG16-BN (paper Fig. 11, left; Sect. 6.1).

The paper's setting: runs A and B start from one random init θI (seed 0)
and train VGG16-BN on the two disjoint halves of the CIFAR-10 training set
(25,000 images each, config.data.half 0 / 1), 50 epochs with the paper's
recipe (SGD, momentum 0.9, LR 0.03 with cosine decay over the 50 epochs,
batch 256, weight decay 5e-4, random crop + flip), keeping epochs {1, 2, 3,
5, 10, 20, 30, 50}; the paper reports a barrier that grows with the epochs
and an SSR-AB that falls with it. The arg picks the run: `a` / `b` (the
paper's). For comparison, not in the paper for CIFAR-10: `pretrain` (θI:
VGG16-BN on CIFAR-100, whose images and 100 classes are disjoint from
CIFAR-10's, 200 epochs of the same recipe) and `ft_a` / `ft_b` (halves 0 /
1 fine-tuned from it with a fresh 10-class head, config.train.init_fresh=
'CLF', as the Flowers runs from ImageNet). Further variants of
defaults.apply_variant follow a comma (`b,seed1`: independent inits).

Needs the TFDS datasets prepared (README, "Real datasets"); add
--config.data.data_dir=DIR. Not run here (no data, no GPU): runtimes
untimed; the configs load, validate and their models build (eval_shape).
python train.py --config=configs/soups_cifar10.py:a \
  --workdir=runs/cifar10_soups/rand_a
python train.py --config=configs/soups_cifar10.py:b \
  --workdir=runs/cifar10_soups/rand_b
python probe.py --config=configs/probe_soups.py:cifar10 \
  --workdir=runs/cifar10_soups/probe_rand
Both starts in one figure (after `:pretrain`, `:ft_a`, `:ft_b` into
runs/cifar10_soups/{pre,ft_a,ft_b}):
python probe.py --config=configs/probe_soups.py:cifar10_both \
  --workdir=runs/cifar10_soups/probe
"""

from valley_jax import checkpoint, defaults

PRETRAINED = 'runs/cifar10_soups/pre'  # --config.train.init_from=DIR[@N].
_ROLES = {
    'a': dict(half=0),
    'b': dict(half=1),
    'ft_a': dict(half=0, init_from=PRETRAINED),
    'ft_b': dict(half=1, init_from=PRETRAINED),
}


def get_config(arg: str | None = None):
  role, _, rest = (arg or 'a').partition(',')
  if role == 'pretrain':
    return defaults.apply_variant(defaults.train_config('vgg16', 'cifar100'),
                                  rest)
  if role not in _ROLES:
    raise ValueError(f'Unknown soups run {role!r}; choose one of '
                     f"{sorted(_ROLES) + ['pretrain']} "
                     '(configs/soups_cifar10.py:ROLE).')
  c = defaults.train_config('vgg16', 'cifar10')
  c.train.epochs = 50
  c.train.keep_epochs = checkpoint.DEFAULT_KEEP
  r = _ROLES[role]
  c.data.half = r['half']
  c.train.init_from = r.get('init_from', '')
  c.train.init_fresh = 'CLF' if c.train.init_from else ''
  return defaults.apply_variant(c, rest)
