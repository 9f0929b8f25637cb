"""Multi-layer perceptron with optional BatchNorm (BN before ReLU)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers


class MLP(nn.Module):
  """Flattens its input, then Dense(-BN)-ReLU blocks and a linear head."""

  num_classes: int
  hidden: Sequence[int] = (256, 256)
  width: float = 1.0
  bn: bool = False
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = x.reshape(x.shape[0], -1)
    for i, h in enumerate(self.hidden, start=1):
      x = layers.dense(layers.scaled(h, self.width), f'dense{i}')(x)
      if self.bn:
        x = layers.batch_norm(train, self.bn_init, f'bn{i}')(x)
      x = nn.relu(layers.pan(x, self.pan_amplitude, self.pan_periods))
    x = layers.sow_features(self, x, self.projection)
    return layers.dense(self.num_classes, 'head')(x)
