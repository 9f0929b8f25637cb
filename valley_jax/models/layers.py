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

Projection head (MOON, Li, He, Song, CVPR 2021): with ``projection`` P > 0 a
registry model maps its representation h (width d) through the module
``projection`` (``dense1`` d → d, ReLU, ``dense2`` d → P, `ProjectionHead`)
before the classifier, as the MOON authors' ModelFedCon does (github
QinbinLi/MOON, model.py: l1, ReLU, l2, then l3 on their output); the
projection's output is what is sown as the features and what ``head`` reads.
P = 0 (the default) adds nothing: the model is exactly the plain one.

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
import jax
import jax.numpy as jnp
import numpy as np

from valley_jax.models import conv as conv_lib

# BN weight initialisation of paper Sect. 4.2.1.
BN_INITS = {
    'ones': nn.initializers.ones,
    'uniform': nn.initializers.uniform(scale=1.0),  # U(0, 1)
    'gaussian': nn.initializers.normal(stddev=0.1),  # G(0, 0.1)
}

# Flax BatchNorm momentum equal to PyTorch's 0.1 (recalibration reads each
# layer's own momentum: core.sweep.recalibrate).
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
                    pan_periods: float = 4.0,
                    projection: int = 0) -> jnp.ndarray:
  """Global average pool, dense1-ReLU, dense2-ReLU, head (VGG, AlexNet).

  Call inside the compact method of `module`: the layers become its
  dense1/dense2/head, and the input of head is sown as its features (after
  the projection head when projection > 0; see sow_features).
  """
  x = global_avg_pool(x)
  x = nn.relu(pan(dense(hidden, 'dense1')(x), pan_amplitude, pan_periods))
  x = nn.relu(pan(dense(hidden, 'dense2')(x), pan_amplitude, pan_periods))
  return dense(num_classes, 'head')(sow_features(module, x, projection))


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


def torch_bias(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's Linear bias init U(±1/√fan_in)."""
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


class ProjectionHead(nn.Module):
  """MOON's projection head: dense1 (d → d), ReLU, dense2 (d → out).

  Initialised as PyTorch's Linear (the MOON code's): with flax's zero biases
  an example whose features are all zero (dead ReLUs) would project to z = 0
  exactly, where the cosine's gradient is 1/eps.

  >>> h = ProjectionHead(3, 2)
  >>> v = h.init(jax.random.key(0), jnp.ones((1, 3)))
  >>> jax.tree.map(jnp.shape, v['params'])['dense2']
  {'bias': (2,), 'kernel': (3, 2)}
  """

  width: int
  out: int

  @nn.compact
  def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
    def linear(n, name):
      return nn.Dense(n, kernel_init=KERNEL_INIT,
                      bias_init=torch_bias(self.width), name=name)

    return linear(self.out, 'dense2')(nn.relu(linear(self.width,
                                                     'dense1')(h)))


def sow_features(module: nn.Module, x: jnp.ndarray,
                 projection: int = 0) -> jnp.ndarray:
  """The classifier's input, recorded as intermediates/features.

  Call inside the compact method of `module`, on its representation x
  [B, d]. With projection P > 0, x first goes through the submodule
  `projection` (ProjectionHead(d, P)); P = 0 returns x as it is.
  """
  if projection:
    x = ProjectionHead(x.shape[-1], projection, name='projection')(x)
  module.sow('intermediates', 'features', x)
  return x
