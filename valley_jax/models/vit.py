"""Vision Transformer (Dosovitskiy et al. 2021), paper size: 12 layers, 8 heads,
embedding 128. Attention projections are plain Dense layers so that every
kernel is a 2D [in, out] matrix whose columns are the filters.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from valley_jax.models import layers


class EncoderBlock(nn.Module):
  dim: int
  heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, t, _ = x.shape
    h = nn.LayerNorm(name='ln1')(x)
    qkv = layers.dense(3 * self.dim, 'dense_qkv')(h)
    q, k, v = jnp.split(qkv.reshape(b, t, 3, self.heads, -1), 3, axis=2)
    att = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    x = x + layers.dense(self.dim, 'dense_out')(att.reshape(b, t, self.dim))
    h = nn.LayerNorm(name='ln2')(x)
    h = nn.gelu(layers.dense(self.mlp_dim, 'dense_mlp1')(h))
    return x + layers.dense(self.dim, 'dense_mlp2')(h)


class ViT(nn.Module):
  """Patch conv, class token, learned positions, pre-LN encoder, head."""

  num_classes: int
  patch_size: int = 4
  depth: int = 12
  heads: int = 8
  dim: int = 128
  mlp_ratio: int = 2
  width: float = 1.0
  projection: int = 0  # MOON's projection head (layers.sow_features).

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # No BN or dropout.
    per_head = round(self.dim * self.width / self.heads)
    dim = max(self.heads, per_head * self.heads)
    p = self.patch_size
    x = layers.conv(dim, p, 'conv_patch', strides=p, padding='VALID')(x)
    x = x.reshape(x.shape[0], -1, dim)
    cls = self.param('cls_token', nn.initializers.zeros, (1, 1, dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, dim)), x], 1)
    pos = self.param('pos_embedding', nn.initializers.normal(0.02),
                     (1, x.shape[1], dim))
    x = x + pos
    for i in range(1, self.depth + 1):
      x = EncoderBlock(dim, self.heads, self.mlp_ratio * dim,
                       name=f'block{i}')(x)
    x = nn.LayerNorm(name='ln_final')(x[:, 0])
    x = layers.sow_features(self, x, self.projection)
    return layers.dense(self.num_classes, 'head')(x)
