"""defaults.py: the paper's config variants."""

import pytest

from valley_jax import defaults


def test_variants():
  c = defaults.apply_variant(defaults.train_config('vgg16', 'cifar10'),
                             'lr0.003,bs2048,wd1e-5,bninit_uniform')
  assert (c.optim.lr, c.train.batch_size, c.optim.weight_decay,
          c.model.bn_init) == (0.003, 2048, 1e-5, 'uniform')
  with pytest.raises(ValueError, match='Unknown config variant'):
    defaults.apply_variant(c, 'momentum0.5')
