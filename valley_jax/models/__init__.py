"""Model registry: every network of the paper as a flax.linen module.

>>> count_params(build_model('resnet20', num_classes=10), (32, 32, 3))
269722
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from valley_jax.errors import InputError
from valley_jax.models import alexnet, layers, mlp, pfl_cnn, resnet, vgg, vit

BN_INITS = tuple(layers.BN_INITS)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build one registry model and which inputs it accepts."""

  make: Callable[..., nn.Module]
  images_only: bool  # Needs [H, W, C] inputs (all conv nets).
  always_bn: bool = False  # BN cannot be switched off (ResNets).


def _vgg(cfg_name, *, num_classes, width, bn, bn_init, head_width=512,
         pan_amplitude=0.0, pan_periods=4.0, projection=0, **kw):
  del kw
  return vgg.VGG(num_classes, vgg.CFGS[cfg_name], head_width, width, bn,
                 bn_init, pan_amplitude, pan_periods, projection)


def _resnet(sizes, feats, imagenet, *, num_classes, width, bn_init,
            pan_amplitude=0.0, pan_periods=4.0, shortcut=None,
            bottleneck=False, groups=1, width_per_group=64, projection=0,
            **kw):
  """CIFAR ResNets default to option A shortcuts, ImageNet ones to B."""
  del kw
  shortcut = shortcut or ('B' if imagenet else 'A')
  if shortcut not in resnet.SHORTCUTS:
    raise InputError(f'Unknown ResNet shortcut {shortcut!r}; choose one of '
                     f'{resnet.SHORTCUTS} (config.model.kwargs.shortcut).')
  return resnet.ResNet(num_classes, sizes, feats, imagenet, width, bn_init,
                       pan_amplitude, pan_periods, shortcut, bottleneck,
                       groups, width_per_group, projection)


def _mlp(*, num_classes, width, bn, bn_init, hidden=(256, 256),
         pan_amplitude=0.0, pan_periods=4.0, projection=0, **kw):
  del kw
  return mlp.MLP(num_classes, tuple(hidden), width, bn, bn_init,
                 pan_amplitude, pan_periods, projection)


def _plain(cls, *, num_classes, width, bn, bn_init, pan_amplitude=0.0,
           pan_periods=4.0, projection=0, **kw):
  """A conv net whose fields are the registry's common ones (AlexNet,
  pfl-research's CNN)."""
  del kw
  return cls(num_classes, width, bn=bn, bn_init=bn_init,
             pan_amplitude=pan_amplitude, pan_periods=pan_periods,
             projection=projection)


def _vit(*, num_classes, width, patch_size=4, depth=12, heads=8, dim=128,
         pan_amplitude=0.0, projection=0, **kw):
  del kw
  if pan_amplitude:
    raise InputError('FedPAN position encodings are not implemented for the '
                     'ViT; set config.model.kwargs.pan_amplitude=0 or pick a '
                     'convolutional or MLP model.')
  return vit.ViT(num_classes, patch_size, depth, heads, dim, width=width,
                 projection=projection)


_CIFAR = (16, 32, 64)
_IMAGENET = (64, 128, 256, 512)
MODELS: dict[str, ModelSpec] = {
    'mlp': ModelSpec(_mlp, images_only=False),
    'cnn': ModelSpec(functools.partial(_vgg, 'cnn', head_width=128), True),
    **{n: ModelSpec(functools.partial(_vgg, n), True)
       for n in ('vgg11', 'vgg13', 'vgg16', 'vgg19')},
    'resnet20': ModelSpec(functools.partial(_resnet, (3,) * 3, _CIFAR, False),
                          True, always_bn=True),
    'resnet32': ModelSpec(functools.partial(_resnet, (5,) * 3, _CIFAR, False),
                          True, always_bn=True),
    'resnet56': ModelSpec(functools.partial(_resnet, (9,) * 3, _CIFAR, False),
                          True, always_bn=True),
    'resnet18': ModelSpec(
        functools.partial(_resnet, (2,) * 4, _IMAGENET, True), True,
        always_bn=True),
    'resnet50': ModelSpec(
        functools.partial(_resnet, (3, 4, 6, 3), _IMAGENET, True,
                          bottleneck=True), True, always_bn=True),
    'resnext101_32x8d': ModelSpec(
        functools.partial(_resnet, (3, 4, 23, 3), _IMAGENET, True,
                          bottleneck=True, groups=32, width_per_group=8),
        True, always_bn=True),
    'alexnet': ModelSpec(functools.partial(_plain, alexnet.AlexNet), True),
    'pfl_cnn': ModelSpec(functools.partial(_plain, pfl_cnn.PflCNN), True),
    'vit': ModelSpec(_vit, True),
}


def check_name(name: str, field: str = 'config.model.name') -> None:
  """Raises ValueError unless `name` is a model of the registry.

  >>> check_name('vgg')
  Traceback (most recent call last):
  ...
  valley_jax.errors.InputError: Unknown model 'vgg'; choose one of [...
  """
  if name not in MODELS:
    raise InputError(f'Unknown model {name!r}; choose one of {sorted(MODELS)}'
                     f' ({field}).')


def from_config(m, num_classes: int, input_shape: tuple[int, ...]
                ) -> nn.Module:
  """The model a `config.model` block describes, its input shape checked.

  Args:
    m: the config.model block (name, width, bn, bn_init, kwargs).
    num_classes: the dataset's number of classes.
    input_shape: one example's shape, without the batch axis.

  Returns:
    The module; ValueError for a bad name, option or input shape.
  """
  model = build_model(m.name, num_classes, width=m.width, bn=m.bn,
                      bn_init=m.bn_init, **m.get('kwargs', {}))
  check_input_shape(m.name, model, tuple(input_shape))
  return model


def build_model(name: str, num_classes: int, *, width: float = 1.0,
                bn: bool = True, bn_init: str = 'ones',
                **kwargs: Any) -> nn.Module:
  """Builds a registry model; raises ValueError on a bad name or option.

  Args:
    name: a key of MODELS.
    num_classes: size of the classifier head.
    width: channel multiplier (tests use tiny widths).
    bn: BatchNorm on/off where the architecture allows both.
    bn_init: one of 'ones', 'uniform' (U(0,1)), 'gaussian' (G(0,0.1)).
    **kwargs: model-specific options (hidden, patch_size, depth, heads, dim;
      ResNet shortcut 'A' or 'B'), FedPAN's pan_amplitude (0 = off)
      and pan_periods (layers.pan), and MOON's projection head size
      `projection` (0 = none; layers.sow_features).
  Returns:
    A flax.linen module called as model.apply(variables, x, train=...).
  """
  check_name(name)
  if bn_init not in layers.BN_INITS:
    raise InputError(f'Unknown bn_init {bn_init!r}; choose one of '
                     f'{BN_INITS} (config.model.bn_init).')
  if num_classes < 2:
    raise InputError(f'num_classes must be >= 2, got {num_classes}.')
  if width <= 0:
    raise InputError(f'config.model.width must be positive, got {width}.')
  amplitude = kwargs.get('pan_amplitude', 0.0)
  periods = kwargs.get('pan_periods', 4.0)
  if amplitude < 0 or periods <= 0:
    raise InputError('FedPAN needs config.model.kwargs.pan_amplitude >= 0 and '
                     f'pan_periods > 0, got {amplitude} and {periods}.')
  projection = kwargs.get('projection', 0)
  if (isinstance(projection, bool) or not isinstance(
      projection, (int, np.integer)) or projection < 0):
    raise InputError('config.model.kwargs.projection (MOON\'s projection '
                     'head size) must be an integer >= 0 (0 = none), got '
                     f'{projection!r}.')
  spec = MODELS[name]
  if not bn and spec.always_bn:
    raise InputError(f'{name} always has BatchNorm; drop '
                     'config.model.bn=False.')
  return spec.make(num_classes=num_classes, width=width, bn=bn,
                   bn_init=bn_init, **kwargs)


def check_input_shape(name: str, model: nn.Module,
                      shape: tuple[int, ...]) -> None:
  """Raises ValueError (before any compile) if `model` cannot take `shape`.

  Args:
    name: the registry name, for the message.
    model: the built module.
    shape: one example's shape, without the batch axis.
  """
  if MODELS[name].images_only and len(shape) != 3:
    raise InputError(
        f'Model {name!r} needs image inputs [H, W, C] but the dataset gives '
        f'examples of shape {tuple(shape)}; use model "mlp" or an image '
        'dataset.')
  if isinstance(model, vit.ViT) and (shape[0] % model.patch_size or
                                     shape[1] % model.patch_size):
    raise InputError(f'ViT patch size {model.patch_size} does not divide the '
                     f'image size {shape[:2]}; set config.model.patch_size.')
  if len(shape) == 3 and min(shape[:2]) < 4:
    raise InputError(f'Images of shape {shape} are too small for {name!r}.')


def abstract_variables(model: nn.Module, shape: tuple[int, ...]) -> Any:
  """Variables of `model` as ShapeDtypeStructs (jax.eval_shape: no compile)."""
  x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  return jax.eval_shape(lambda k, x: model.init(k, x, train=False),
                        jax.random.key(0), x)


def count_params(model: nn.Module, shape: tuple[int, ...]) -> int:
  """Number of trainable parameters (batch statistics excluded)."""
  params = abstract_variables(model, shape)['params']
  return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def has_batch_norm(variables: Any) -> bool:
  """Whether a variables dict carries BatchNorm running statistics."""
  return bool(jax.tree.leaves(variables.get('batch_stats', {})))
