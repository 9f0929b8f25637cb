"""Gives JAX 8 fake CPU devices before it starts, so sharded code is tested."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests (and the mains they launch) never write the user's JAX compilation
# cache (valley_jax/compile_cache.py); a test that needs it sets a tmp dir.
os.environ.setdefault('VALLEY_JAX_COMPILE_CACHE', 'none')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import defaults


@pytest.fixture(scope='session', autouse=True)
def _eight_devices():
  assert jax.device_count() == 8, 'conftest must run before JAX starts'


def tiny_train_config(model: str = 'mlp', epochs: int = 3, bn: bool = True):
  """A seconds-long digits run used by many tests."""
  c = defaults.train_config(model, 'digits')
  c.model.width = 0.125
  c.model.bn = bn
  c.data.augment = False
  c.data.n_train = 512
  c.optim.lr = 0.05
  c.train.epochs = epochs
  c.train.batch_size = 64
  c.train.eval_batch_size = 120
  c.train.keep_epochs = (1, 2)
  return c


@pytest.fixture(scope='session')
def trained_mlp(tmp_path_factory):
  """A tiny digits MLP with BN, trained once for the whole session."""
  from valley_jax.train import runner  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('mlp_run'))
  runner.run(tiny_train_config(epochs=3), workdir)
  return workdir


def patch_study_run(monkeypatch, kind: str, run) -> None:
  """Replaces the `run` of one registered probe study for one test."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from valley_jax.probe import registry  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(registry.STUDIES, kind, dataclasses.replace(
      registry.STUDIES[kind], run=run))
