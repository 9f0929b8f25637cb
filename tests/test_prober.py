"""probe/prober.py: batch sizes for the device, checkpoints of another
architecture."""

import pytest

from valley_jax import defaults
from valley_jax.probe import prober


def test_batch_sizes_for_the_device():
  c = defaults.probe_config()
  assert prober.batch_sizes(c, 'gpu') == (2500, 2000)
  assert prober.batch_sizes(c, 'cpu') == (1000, 500)
  c.sweep.eval_batch_size, c.sweep.recal_batch_size = 300, 100
  assert prober.batch_sizes(c, 'gpu') == (300, 100)


# ------------------------------------------ checkpoints of earlier versions


def test_checkpoint_of_another_architecture_is_refused():
  """An option-B CIFAR ResNet20 (earlier versions' default) restored into
  today's option-A model: Flax would ignore the extra shortcut arrays."""
  from valley_jax import models  # pylint: disable=g-import-not-at-top
  old = models.abstract_variables(
      models.build_model('resnet20', 10, width=0.125, shortcut='B'),
      (16, 16, 3))
  new = models.build_model('resnet20', 10, width=0.125)
  with pytest.raises(ValueError, match='shortcut.*train it again'):
    prober.check_fits(new, old, (16, 16, 3), 'runs/old')
  prober.check_fits(new, models.abstract_variables(new, (16, 16, 3)),
                    (16, 16, 3), 'runs/new')
