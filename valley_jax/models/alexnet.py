"""AlexNet (Krizhevsky et al. 2012), 5 conv + 3 fc, sized for small images.

3x3 convolutions with 64-192-384-256-256 channels and three 2x2 max-pools (the
CIFAR adaptation common in the literature), a global average pool and two
hidden fully connected layers of 1024 units. BN after each conv is optional.
"""

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers

_CONVS = (64, 192, 384, 256, 256)
_POOL_AFTER = (1, 2, 5)


class AlexNet(nn.Module):
  num_classes: int
  width: float = 1.0
  head_width: int = 1024
  bn: bool = False
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    for i, c in enumerate(_CONVS, start=1):
      x = layers.conv(layers.scaled(c, self.width), 3, f'conv{i}')(x)
      if self.bn:
        x = layers.batch_norm(train, self.bn_init, f'bn{i}')(x)
      x = nn.relu(layers.pan(x, self.pan_amplitude, self.pan_periods))
      if i in _POOL_AFTER and x.shape[1] > 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return layers.classifier_head(
        self, x, layers.scaled(self.head_width, self.width), self.num_classes,
        self.pan_amplitude, self.pan_periods, self.projection)
