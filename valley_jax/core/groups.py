"""Parameter groups from parameter paths (naming rule: models/layers.py).

Groups for perturbation (paper Fig. 6): ALL, CLF (the classifier `head`), FEAT
(everything but `head`), LAYER1 (stem and first stage), CONV (conv kernels and
biases), BN (BatchNorm scale and bias). Statistics groups (Fig. 8): BN Weight
(BN scales), CLF Weight and CLF Bias (the classifier `head`), Other Weight
and Other Bias (every other parameter, BN layers and classifier excluded).
BN biases belong to none of the five, as in the paper.

>>> import jax.numpy as jnp
>>> p = {'conv1': {'kernel': jnp.ones((3, 3, 1, 2))},
...      'head': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)}}
>>> jax.tree.leaves(mask(p, 'CLF'))
[False, True, True]
"""

import re
from typing import Any, Callable

import jax

from valley_jax.errors import InputError

GROUPS = ('ALL', 'CLF', 'FEAT', 'LAYER1', 'CONV', 'BN')
STATS_GROUPS = ('BN Weight', 'CLF Weight', 'CLF Bias', 'Other Weight',
                'Other Bias')

# The stem and first stage: conv1_*, bn1_*, layer1_*, block1, *_stem, the ViT
# patch embedding; dense1/bn1 count only in networks without convolutions
# (in a CNN, dense1 is the first layer of the head).
_LAYER1 = re.compile(
    r'^([a-z]+1(_\d+)?|\w*stem|\w*patch|pos_embedding|cls_token)$')


def _names(path) -> tuple[str, ...]:
  return tuple(getattr(k, 'key', getattr(k, 'name', str(k))) for k in path)


def _modules(names: tuple[str, ...]) -> tuple[str, ...]:
  return names[:-1] if len(names) > 1 else names


def _layer1(n: tuple[str, ...], has_conv: bool) -> bool:
  if has_conv and n[0].startswith('dense'):
    return False
  return bool(_LAYER1.match(n[0]))


_RULES: dict[str, Callable[[tuple[str, ...], bool], bool]] = {
    'ALL': lambda n, c: True,
    'CLF': lambda n, c: n[0] == 'head',
    'FEAT': lambda n, c: n[0] != 'head',
    'LAYER1': _layer1,
    'CONV': lambda n, c: _modules(n)[-1].startswith('conv'),
    'BN': lambda n, c: _modules(n)[-1].startswith('bn'),
}


def check_group(group: str) -> None:
  if group not in GROUPS:
    raise InputError(f'Unknown parameter group {group!r}; choose one of '
                     f'{GROUPS}.')


def mask(params: Any, group: str) -> Any:
  """A tree of Python bools: which leaves belong to `group`."""
  check_group(group)
  rule = _RULES[group]
  paths = [_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  has_conv = any(_modules(n)[-1].startswith('conv') for n in paths)
  return jax.tree_util.tree_map_with_path(
      lambda p, _: rule(_names(p), has_conv), params)


def stats_group(names: tuple[str, ...]) -> str | None:
  """The statistics group of one leaf path (None for a BN bias).

  >>> stats_group(('bn_stem', 'scale')), stats_group(('bn_stem', 'bias'))
  ('BN Weight', None)
  """
  module, leaf = _modules(names)[-1], names[-1]
  if module.startswith('bn'):
    return 'BN Weight' if leaf == 'scale' else None
  if names[0] == 'head':
    return 'CLF Weight' if leaf == 'kernel' else 'CLF Bias'
  return 'Other Bias' if leaf == 'bias' else 'Other Weight'


def stats_mask(params: Any, group: str) -> Any:
  """A tree of Python bools: which leaves belong to statistics `group`."""
  if group not in STATS_GROUPS:
    raise InputError(f'Unknown statistics group {group!r}; choose one of '
                     f'{STATS_GROUPS}.')
  return jax.tree_util.tree_map_with_path(
      lambda p, _: stats_group(_names(p)) == group, params)
