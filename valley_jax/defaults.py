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
      keep_epochs=checkpoint.DEFAULT_KEEP))
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
