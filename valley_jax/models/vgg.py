"""VGG for small images (Simonyan & Zisserman 2015), CIFAR head 512-512-C.

BN (when on) sits after each conv and before its ReLU. Max-pooling halves the
spatial size while it is above one pixel, so 8x8 digits work too; after the
features a global average pool makes the head independent of the input size
(an identity for 32x32 inputs, where the feature map is 1x1).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers

CFGS = {
    'vgg11': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512,
              'M'),
    'vgg13': (64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512,
              512, 'M'),
    'vgg16': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512,
              'M', 512, 512, 512, 'M'),
    'vgg19': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512,
              512, 512, 'M', 512, 512, 512, 512, 'M'),
    # A small VGG-style CNN for the fast offline digits configs.
    'cnn': (32, 32, 'M', 64, 64, 'M'),
}


class VGG(nn.Module):
  """VGG features + three fully connected layers; modules conv{stage}_{i}."""

  num_classes: int
  cfg: Sequence[int | str]
  head_width: int = 512
  width: float = 1.0
  bn: bool = True
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    stage, i = 1, 0
    for v in self.cfg:
      if v == 'M':
        if x.shape[1] > 1:
          x = nn.max_pool(x, (2, 2), strides=(2, 2))
        stage, i = stage + 1, 0
        continue
      i += 1
      name = f'{stage}_{i}'
      x = layers.conv(layers.scaled(v, self.width), 3, f'conv{name}')(x)
      if self.bn:
        x = layers.batch_norm(train, self.bn_init, f'bn{name}')(x)
      x = nn.relu(layers.pan(x, self.pan_amplitude, self.pan_periods))
    return layers.classifier_head(
        self, x, layers.scaled(self.head_width, self.width), self.num_classes,
        self.pan_amplitude, self.pan_periods, self.projection)
