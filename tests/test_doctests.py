"""The >>> examples in the docstrings run and give what they show."""

import doctest
import importlib

import pytest

_MODULES = ['valley_jax.models', 'valley_jax.core.tree',
            'valley_jax.core.groups', 'valley_jax.core.directions',
            'valley_jax.core.normalize', 'valley_jax.core.stats',
            'valley_jax.core.sweep', 'valley_jax.sharding',
            'valley_jax.defaults', 'valley_jax.data.pipeline',
            'valley_jax.outputs', 'valley_jax.checks', 'valley_jax.checkpoint',
            'valley_jax.data.partition', 'valley_jax.distributed',
            'valley_jax.convert', 'valley_jax.data.sources']


@pytest.mark.parametrize('name', _MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0, f'{name} has no examples'
  assert result.failed == 0
