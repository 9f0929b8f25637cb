"""ResNets (He et al. 2016): CIFAR ResNet20/32/56 and ImageNet ResNet18.

Basic blocks with BN before ReLU. When a block changes shape its shortcut is a
1x1 conv + BN (option B), which gives CIFAR ResNet20 272,474 parameters.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers


class BasicBlock(nn.Module):
  """conv-BN-ReLU, conv-BN, plus the shortcut, ReLU.

  With FedPAN on, the encodings multiply the outputs of bn1, bn2 and
  bn_shortcut (as in the FedPAN authors' ResNet); an identity shortcut has none.
  """

  features: int
  strides: int
  bn_init: str
  pan: tuple[float, float] = (0.0, 4.0)  # (amplitude, periods)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    y = layers.conv(self.features, 3, 'conv1', self.strides, use_bias=False)(x)
    y = layers.batch_norm(train, self.bn_init, 'bn1')(y)
    y = nn.relu(layers.pan(y, *self.pan))
    y = layers.conv(self.features, 3, 'conv2', use_bias=False)(y)
    y = layers.pan(layers.batch_norm(train, self.bn_init, 'bn2')(y), *self.pan)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = layers.conv(self.features, 1, 'conv_shortcut', self.strides,
                      use_bias=False)(x)
      x = layers.batch_norm(train, self.bn_init, 'bn_shortcut')(x)
      x = layers.pan(x, *self.pan)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Stem, stages of basic blocks named layer{stage}_{block}, head."""

  num_classes: int
  stage_sizes: Sequence[int]
  stage_features: Sequence[int]
  imagenet_stem: bool = False
  width: float = 1.0
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    feats = [layers.scaled(f, self.width) for f in self.stage_features]
    if self.imagenet_stem:
      x = layers.conv(feats[0], 7, 'conv_stem', 2, use_bias=False)(x)
    else:
      x = layers.conv(feats[0], 3, 'conv_stem', use_bias=False)(x)
    pan = (self.pan_amplitude, self.pan_periods)
    x = layers.batch_norm(train, self.bn_init, 'bn_stem')(x)
    x = nn.relu(layers.pan(x, *pan))
    if self.imagenet_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    for s, (n, f) in enumerate(zip(self.stage_sizes, feats), start=1):
      for b in range(n):
        strides = 2 if (b == 0 and s > 1) else 1
        x = BasicBlock(f, strides, self.bn_init, pan,
                       name=f'layer{s}_{b}')(x, train)
    x = layers.sow_features(self, layers.global_avg_pool(x))
    return layers.dense(self.num_classes, 'head')(x)
