"""The base training config and the paper's variants, for configs/*.py.

>>> cfg = train_config('resnet20', 'svhn_cropped')
>>> apply_variant(cfg, 'lr0.1,bs32').optim.lr, cfg.train.batch_size
(0.1, 32)
"""

import ml_collections
from ml_collections import config_dict

from valley_jax import checkpoint


def train_config(model: str, dataset: str, **model_kwargs) -> ml_collections.ConfigDict:
  """The paper's recipe (Appendix A): SGD 0.9, LR 0.03, BS 256, WD 5e-4,
  cosine decay over 200 epochs, CIFAR augmentation."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_devices = 0  # 0: every local device (data parallel).
  c.model = ml_collections.ConfigDict(dict(
      name=model, width=1.0, bn=True, bn_init='ones',
      kwargs=ml_collections.ConfigDict(model_kwargs)))
  c.data = ml_collections.ConfigDict(dict(
      name=dataset, data_dir='', augment=True, seed=0,
      n_train=config_dict.placeholder(int), n_test=config_dict.placeholder(int),
      half=config_dict.placeholder(int), kwargs=ml_collections.ConfigDict()))
  c.optim = ml_collections.ConfigDict(dict(
      name='sgd', lr=0.03, momentum=0.9, weight_decay=5e-4))
  c.train = ml_collections.ConfigDict(dict(
      epochs=200, batch_size=256, eval_batch_size=1000,
      keep_epochs=checkpoint.DEFAULT_KEEP,
      # 'stop' at the first non-finite training loss, or 'continue'.
      on_nonfinite='stop'))
  return c


# Sect. 4.2: hyper-parameter and BN-initialisation variants.
_VARIANTS = {
    'lr': lambda c, v: setattr(c.optim, 'lr', float(v)),
    'bs': lambda c, v: setattr(c.train, 'batch_size', int(v)),
    'wd': lambda c, v: setattr(c.optim, 'weight_decay', float(v)),
    'bninit': lambda c, v: setattr(c.model, 'bn_init', v),
    'epochs': lambda c, v: setattr(c.train, 'epochs', int(v)),
    'seed': lambda c, v: setattr(c, 'seed', int(v)),
    'half': lambda c, v: setattr(c.data, 'half', int(v)),
    'nobn': lambda c, v: setattr(c.model, 'bn', False),
}


def apply_variant(c: ml_collections.ConfigDict,
                  arg: str | None) -> ml_collections.ConfigDict:
  """Applies 'lr0.1', 'bs32', 'wd1e-5', 'bninit_uniform', 'nobn', 'half0',
  'seed3', 'epochs50' (a comma-separated list) to a config."""
  for item in filter(None, (arg or '').split(',')):
    key = next((k for k in sorted(_VARIANTS, key=len, reverse=True)
                if item.startswith(k)), None)
    if key is None:
      raise ValueError(f'Unknown config variant {item!r}; use one of '
                       f'{sorted(_VARIANTS)} followed by a value, e.g. lr0.1.')
    _VARIANTS[key](c, item[len(key):].lstrip('_='))
  return c


def digits_config(model: str, arg: str | None = None,
                  **model_kwargs) -> ml_collections.ConfigDict:
  """A fast offline run on sklearn digits (30 epochs, batch 64, LR 0.05)."""
  c = train_config(model, 'digits', **model_kwargs)
  c.data.augment = False
  c.optim.lr = 0.05
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.eval_batch_size = 360
  c.train.keep_epochs = (1, 2, 3, 5, 10, 20)
  return apply_variant(c, arg)


def digits_cnn(arg: str | None = None) -> ml_collections.ConfigDict:
  """The embedded default: a small VGG-style CNN with BN on sklearn digits."""
  c = digits_config('cnn', arg)
  c.model.width = 0.5
  return c


def probe_config(checkpoint_dir: str = 'runs/default') -> ml_collections.ConfigDict:
  """Base config of probe.py; see valley_jax/probe_lib.py for the kinds."""
  from valley_jax import directions, groups  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict()
  c.kind = 'noise_types,sign_ratio,special'
  c.checkpoint = checkpoint_dir  # Workdir of the converged model θf.
  c.epoch = 'last'
  # The one workdir probe.py may train (with `c.train`) when it holds no
  # checkpoint: only when c.checkpoint equals it, so a misspelt
  # --config.checkpoint is an error rather than a new run. '' = never.
  c.train_if_missing = ''
  c.train = digits_cnn()
  c.seed = 0
  c.seeds = 1  # Draws per random direction (mean ± std when > 1).
  c.num_devices = 0
  c.normalization = 'ns'
  c.sweep = ml_collections.ConfigDict(dict(
      lam_min=-1.0, lam_max=1.0, num_points=41, chunk=0, dtype='float32',
      recal='auto', recal_samples=2000, recal_batch_size=500,
      eval_batch_size=1000, n_test=0))
  c.noise_types = ml_collections.ConfigDict(dict(
      noises=tuple(directions.NOISES), scales=(0.2, 1.0, 2.0)))
  c.sign_ratio = ml_collections.ConfigDict(dict(
      noise='gaussian', ratios=tuple(i / 10 for i in range(11)), scale=1.0))
  c.special = ml_collections.ConfigDict(dict(
      directions=directions.SPECIAL, scale=1.0))
  c.groups = ml_collections.ConfigDict(dict(
      groups=groups.GROUPS, noise='gaussian', scale=1.0))
  c.bn_init = ml_collections.ConfigDict(dict(
      checkpoints=(), labels=(), noise='binary',
      normalizations=('ns', 'filter'), layer=''))
  c.hparams = ml_collections.ConfigDict(dict(
      checkpoints=(), labels=(), noise='gaussian', scale=1.0))
  c.interpolate = ml_collections.ConfigDict(dict(
      checkpoint_a='', checkpoint_b='', epoch_a='last', epoch_b='last',
      lam_min=-1.0, lam_max=2.0, num_points=31))
  c.surface = ml_collections.ConfigDict(dict(
      noise='gaussian', normalization='filter', lam_min=-1.0, lam_max=1.0,
      num_points=21))
  return c
