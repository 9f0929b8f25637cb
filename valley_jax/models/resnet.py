"""ResNets (He et al. 2016): CIFAR ResNet20/32/56, ImageNet ResNet18/50 and
ResNeXt101 32x8d (Xie et al. 2017).

CIFAR ResNets follow the paper's CIFAR section: basic blocks and identity
shortcuts; when a block changes shape the shortcut subsamples with stride 2
(x[:, ::2, ::2]) and pads the new channels with zeros (option A, no
parameters), which gives ResNet20 269,722 parameters. Option B (a 1x1 conv +
BN shortcut, ResNet20 272,474) is `shortcut='B'`.

ImageNet ResNets have torchvision's layout and parameter counts (resnet18
11,689,512; resnet50 25,557,032; resnext101_32x8d 88,791,336): option B
shortcuts, bottleneck blocks with the stride on the 3x3 conv (torchvision's
"v1.5"), and PyTorch's symmetric padding (k // 2 on each side, also for the
max pool), so converted torchvision weights give torchvision's logits
(valley_jax.convert).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers

SHORTCUTS = ('A', 'B')


def _conv(features: int, kernel: int, name: str, strides: int = 1,
          groups: int = 1) -> nn.Conv:
  """A bias-free conv with PyTorch's padding k // 2 on every side."""
  return layers.conv(features, kernel, name, strides, use_bias=False,
                     padding=kernel // 2, groups=groups)


def _shortcut(module: nn.Module, x: jnp.ndarray, features: int, train: bool):
  """The shortcut of a block of `module` (its strides, bn_init, pan, kind)."""
  s = module.strides
  if s == 1 and x.shape[-1] == features:
    return x
  if module.shortcut == 'A':  # Identity: subsample, zero-pad the channels.
    extra = features - x.shape[-1]
    return jnp.pad(x[:, ::s, ::s, :],
                   ((0, 0),) * 3 + ((extra // 2, extra - extra // 2),))
  x = _conv(features, 1, 'conv_shortcut', s)(x)
  x = layers.batch_norm(train, module.bn_init, 'bn_shortcut')(x)
  return layers.pan(x, *module.pan)


class BasicBlock(nn.Module):
  """conv-BN-ReLU, conv-BN, plus the shortcut, ReLU.

  With FedPAN on, the encodings multiply the outputs of bn1, bn2 and
  bn_shortcut (as in the FedPAN authors' ResNet); an identity shortcut
  (option A, or an unchanged shape) has none.
  """

  features: int
  strides: int
  bn_init: str
  pan: tuple[float, float] = (0.0, 4.0)  # (amplitude, periods)
  shortcut: str = 'B'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    y = _conv(self.features, 3, 'conv1', self.strides)(x)
    y = layers.batch_norm(train, self.bn_init, 'bn1')(y)
    y = nn.relu(layers.pan(y, *self.pan))
    y = _conv(self.features, 3, 'conv2')(y)
    y = layers.pan(layers.batch_norm(train, self.bn_init, 'bn2')(y), *self.pan)
    return nn.relu(_shortcut(self, x, self.features, train) + y)


class Bottleneck(nn.Module):
  """1x1 conv-BN-ReLU, 3x3 (grouped, strided) conv-BN-ReLU, 1x1 conv-BN to
  4·features channels, plus the shortcut, ReLU (torchvision's Bottleneck).

  The inner width is int(features · width_per_group / 64) · groups, at least
  one channel per group. FedPAN encodings follow bn1, bn2, bn3, bn_shortcut.
  """

  features: int
  strides: int
  bn_init: str
  pan: tuple[float, float] = (0.0, 4.0)
  shortcut: str = 'B'
  groups: int = 1
  width_per_group: int = 64

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    inner = max(1, self.features * self.width_per_group // 64) * self.groups
    out = 4 * self.features
    y = x
    for i, (f, k, s, g) in enumerate(
        [(inner, 1, 1, 1), (inner, 3, self.strides, self.groups),
         (out, 1, 1, 1)], start=1):
      y = _conv(f, k, f'conv{i}', s, g)(y)
      y = layers.pan(layers.batch_norm(train, self.bn_init, f'bn{i}')(y),
                     *self.pan)
      y = nn.relu(y) if i < 3 else y
    return nn.relu(_shortcut(self, x, out, train) + y)


class ResNet(nn.Module):
  """Stem, stages of blocks named layer{stage}_{block}, head."""

  num_classes: int
  stage_sizes: Sequence[int]
  stage_features: Sequence[int]
  imagenet_stem: bool = False
  width: float = 1.0
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0
  shortcut: str = 'B'  # 'A' identity + zero padding, 'B' 1x1 conv + BN.
  bottleneck: bool = False
  groups: int = 1  # Bottleneck only (ResNeXt).
  width_per_group: int = 64
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    feats = [layers.scaled(f, self.width) for f in self.stage_features]
    if self.imagenet_stem:
      x = _conv(feats[0], 7, 'conv_stem', 2)(x)
    else:
      x = _conv(feats[0], 3, 'conv_stem')(x)
    pan = (self.pan_amplitude, self.pan_periods)
    x = layers.batch_norm(train, self.bn_init, 'bn_stem')(x)
    x = nn.relu(layers.pan(x, *pan))
    if self.imagenet_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, (n, f) in enumerate(zip(self.stage_sizes, feats), start=1):
      for b in range(n):
        strides = 2 if (b == 0 and s > 1) else 1
        name = f'layer{s}_{b}'
        if self.bottleneck:
          block = Bottleneck(f, strides, self.bn_init, pan, self.shortcut,
                             self.groups, self.width_per_group, name=name)
        else:
          block = BasicBlock(f, strides, self.bn_init, pan, self.shortcut,
                             name=name)
        x = block(x, train)
    x = layers.sow_features(self, layers.global_avg_pool(x),
                            self.projection)
    return layers.dense(self.num_classes, 'head')(x)
