"""Shared building blocks and the parameter naming rule.

Naming rule (later code in `valley_jax.groups` relies on it):
  * convolution modules are named ``conv*`` (leaves ``kernel`` [H, W, I, O]
    and, when present, ``bias``);
  * BatchNorm modules are named ``bn*`` (leaves ``scale`` and ``bias``; their
    running statistics live in the separate ``batch_stats`` collection);
  * LayerNorm modules are named ``ln*``;
  * hidden fully connected modules are named ``dense*`` (kernel [I, O]);
  * the final classifier is the top-level module ``head``;
  * the stem / first stage of a network carries the index 1 or the word
    ``stem``/``patch`` in its top-level name (``conv1_1``, ``layer1_0``,
    ``conv_stem``, ``block1``), which defines the LAYER1 group.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# BN weight initialisation of paper Sect. 4.2.1.
BN_INITS = {
    'ones': nn.initializers.ones,
    'uniform': nn.initializers.uniform(scale=1.0),  # U(0, 1)
    'gaussian': nn.initializers.normal(stddev=0.1),  # G(0, 0.1)
}

# Flax BatchNorm momentum equal to PyTorch's 0.1 (see landscape.recalibrate).
BN_MOMENTUM = 0.9

# PyTorch's defaults: kaiming-uniform-like fan-in scaling for conv/dense.
KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def batch_norm(train: bool, bn_init: str, name: str) -> nn.BatchNorm:
  """BatchNorm with PyTorch's momentum (0.1, i.e. flax 0.9) and epsilon."""
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BN_MOMENTUM,
      epsilon=1e-5,
      scale_init=BN_INITS[bn_init],
      name=name,
  )


def scaled(channels: int, width: float) -> int:
  """Channel count under a width multiplier (at least one channel)."""
  return max(1, int(round(channels * width)))


def conv(features: int, kernel: int, name: str, strides: int = 1,
         use_bias: bool = True, padding: Any = 'SAME') -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=padding, use_bias=use_bias, kernel_init=KERNEL_INIT,
                 name=name)


def dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=KERNEL_INIT, name=name)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  return jnp.mean(x, axis=(1, 2))


def classifier_head(x: jnp.ndarray, hidden: int,
                    num_classes: int) -> jnp.ndarray:
  """Global average pool, dense1-ReLU, dense2-ReLU, head (VGG, AlexNet).

  Call inside a compact module: the layers become its dense1/dense2/head.
  """
  x = global_avg_pool(x)
  x = nn.relu(dense(hidden, 'dense1')(x))
  x = nn.relu(dense(hidden, 'dense2')(x))
  return dense(num_classes, 'head')(x)
