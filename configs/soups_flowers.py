"""Model soups on Flowers with ResNet18 (paper Fig. 11, right).

Runs A and B fine-tune one ResNet18 θI on the two halves of Flowers (1,000
images each at 224x224), 50 epochs with the paper's recipe, keeping epochs
{1, 2, 3, 5, 10, 20, 30, 50}. The arg picks the run: `ft_a` / `ft_b` (halves
0 / 1 from the pre-trained start runs/flowers/pre, with a fresh 102-class
head: train.init_fresh='CLF'), `a` / `b` (the same from a shared random
init), `pretrain` (θI: ResNet18 on ImageNet). Needs the TFDS datasets
prepared (README, "Real datasets"); add --config.data.data_dir=DIR.

The paper starts from ImageNet weights. Any ResNet18 checkpoint of this
project can be the start (--config.train.init_from=DIR[@EPOCH]); `pretrain`
trains one here on a fixed seeded subset of 100,000 ImageNet training
images (the loader holds a split in memory: ~15 GB at 224x224), 30 epochs.
Not run here (no TFDS data, no GPU): runtimes untimed; the config loads and
validates.
python train.py --config=configs/soups_flowers.py:pretrain \
  --workdir=runs/flowers/pre
python train.py --config=configs/soups_flowers.py:ft_a \
  --workdir=runs/flowers/ft_a
python train.py --config=configs/soups_flowers.py:ft_b \
  --workdir=runs/flowers/ft_b
python probe.py --config=configs/probe_soups.py:flowers \
  --workdir=runs/flowers/probe_ft
From a random start (compare): `:a` and `:b` into runs/flowers/rand_{a,b},
then probe_soups.py:flowers_rand.
"""

from valley_jax import checkpoint, defaults

PRETRAINED = 'runs/flowers/pre'  # Override: --config.train.init_from=DIR[@N].
_ROLES = {
    'a': dict(half=0),
    'b': dict(half=1),
    'ft_a': dict(half=0, init_from=PRETRAINED),
    'ft_b': dict(half=1, init_from=PRETRAINED),
}


def _pretrain():
  c = defaults.train_config('resnet18', 'imagenet2012')
  c.data.kwargs.train_count = 100_000
  c.train.epochs = 30
  c.train.eval_batch_size = 256
  return c


def get_config(arg: str | None = None):
  role, _, rest = (arg or 'ft_a').partition(',')
  if role == 'pretrain':
    return defaults.apply_variant(_pretrain(), rest)
  if role not in _ROLES:
    raise ValueError(f'Unknown soups run {role!r}; choose one of '
                     f"{sorted(_ROLES) + ['pretrain']} "
                     '(configs/soups_flowers.py:ROLE).')
  c = defaults.train_config('resnet18', 'oxford_flowers102')
  c.train.epochs = 50
  c.train.keep_epochs = checkpoint.DEFAULT_KEEP
  c.train.eval_batch_size = 256
  r = _ROLES[role]
  c.data.half = r['half']
  c.train.init_from = r.get('init_from', '')
  c.train.init_fresh = 'CLF' if c.train.init_from else ''
  return defaults.apply_variant(c, rest)
