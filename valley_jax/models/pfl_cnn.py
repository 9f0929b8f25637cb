"""The simple CNN of pfl-research's CIFAR-10 benchmark (Granqvist et al.,
"pfl-research: simulation framework for accelerating research in Private
Federated Learning", NeurIPS 2024 Datasets and Benchmarks).

conv3×3-32 (valid), ReLU, conv3×3-64 (valid), ReLU, 2×2 max-pool, dropout,
flatten, dense 128, ReLU, dropout, dense 10: 1.6M parameters on 32×32×3
inputs. Dropout is not applied here (valley_jax's local steps pass no
dropout key); docs/fedsim.md lists this difference.
"""

import flax.linen as nn
import jax.numpy as jnp

from valley_jax.models import layers


class PflCNN(nn.Module):
  """Two valid 3×3 convs, a max-pool, a dense layer of 128 and the head."""

  num_classes: int
  width: float = 1.0
  bn: bool = False
  bn_init: str = 'ones'
  pan_amplitude: float = 0.0  # FedPAN encodings (layers.pan); 0 = off.
  pan_periods: float = 4.0
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    for i, c in enumerate((32, 64), start=1):
      x = layers.conv(layers.scaled(c, self.width), 3, f'conv{i}',
                      padding='VALID')(x)
      if self.bn:
        x = layers.batch_norm(train, self.bn_init, f'bn{i}')(x)
      x = nn.relu(layers.pan(x, self.pan_amplitude, self.pan_periods))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = layers.dense(layers.scaled(128, self.width), 'dense1')(x)
    x = nn.relu(layers.pan(x, self.pan_amplitude, self.pan_periods))
    x = layers.sow_features(self, x, self.projection)
    return layers.dense(self.num_classes, 'head')(x)
