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

Representation: every registry model sows the input of its classifier ``head``
(the penultimate features z, [B, d]) as ``intermediates/features``. It is
returned only when ``intermediates`` is mutable (MOON reads it), so outputs and
parameters are the same with or without it.

Position-aware neurons (FedPAN, Li, Li, Zhan, "Federated Learning with
Position-Aware Neurons", CVPR 2022): with ``pan_amplitude`` A > 0 the output
channel j of J of every hidden conv/dense layer (after its BN, before the
activation) is multiplied by the fixed encoding

    e_j = 1 + A · sin(2π · T · j / J),

T = ``pan_periods`` sine periods across the layer's channels (the authors'
multiplicative "sin" PANs; their code tries (T, A) = (1, 0.05), (4, 0.1),
(8, 0.15)). The classifier ``head`` has none. A = 0 skips the product, so the
model is exactly the plain one.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from valley_jax.models import conv as conv_lib

# BN weight initialisation of paper Sect. 4.2.1.
BN_INITS = {
    'ones': nn.initializers.ones,
    'uniform': nn.initializers.uniform(scale=1.0),  # U(0, 1)
    'gaussian': nn.initializers.normal(stddev=0.1),  # G(0, 0.1)
}

# Flax BatchNorm momentum equal to PyTorch's 0.1 (see core.sweep.recalibrate).
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
         use_bias: bool = True, padding: Any = 'SAME',
         groups: int = 1) -> nn.Conv:
  """A conv layer with fast gradients in loops on the CPU (models/conv.py)."""
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=padding, use_bias=use_bias,
                 feature_group_count=groups, kernel_init=KERNEL_INIT,
                 conv_general_dilated=conv_lib.conv_general_dilated,
                 name=name)


def dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=KERNEL_INIT, name=name)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  return jnp.mean(x, axis=(1, 2))


def classifier_head(module: nn.Module, x: jnp.ndarray, hidden: int,
                    num_classes: int, pan_amplitude: float = 0.0,
                    pan_periods: float = 4.0) -> jnp.ndarray:
  """Global average pool, dense1-ReLU, dense2-ReLU, head (VGG, AlexNet).

  Call inside the compact method of `module`: the layers become its
  dense1/dense2/head, and the input of head is sown as its features.
  """
  x = global_avg_pool(x)
  x = nn.relu(pan(dense(hidden, 'dense1')(x), pan_amplitude, pan_periods))
  x = nn.relu(pan(dense(hidden, 'dense2')(x), pan_amplitude, pan_periods))
  return dense(num_classes, 'head')(sow_features(module, x))


def position_encoding(channels: int, amplitude: float,
                      periods: float) -> np.ndarray:
  """FedPAN's multiplicative encoding e_j = 1 + A·sin(2π·T·j/J), j < J.

  >>> position_encoding(4, 0.5, 1.0).round(6).tolist()
  [1.0, 1.5, 1.0, 0.5]
  """
  j = np.arange(channels, dtype=np.float64)
  return (1.0 + amplitude * np.sin(2 * np.pi * periods * j / channels)
          ).astype(np.float32)


def pan(x: jnp.ndarray, amplitude: float, periods: float) -> jnp.ndarray:
  """Fuses FedPAN's position encoding into the channels (last axis) of x."""
  if not amplitude:
    return x
  e = position_encoding(x.shape[-1], amplitude, periods)
  return x * jnp.asarray(e, x.dtype)


def sow_features(module: nn.Module, x: jnp.ndarray) -> jnp.ndarray:
  """Records the classifier's input as intermediates/features; returns x."""
  module.sow('intermediates', 'features', x)
  return x
