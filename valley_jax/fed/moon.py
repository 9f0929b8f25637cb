"""MOON, model-contrastive federated learning (Li, He, Song, CVPR 2021).

Client k starts from θt and minimises, per batch,

    L^k = CE(θ) + μ · mean_b CE([cos(z_b, z_glob,b), cos(z_b, z_prev,b)] / τ,
                                target 0),

where z = P(f(x)) is the projection of the model's representation f(x) (the
penultimate features, the input of its classifier `head`) by a head
P: d → d, ReLU, d → `proj_dim` (256); z_glob and z_prev are the same for the
global model θt and for the client's previous local model (with their heads),
both run in eval mode (BN running statistics) and without gradient. In a
client's first participation its previous model is θt. τ = 0.5, μ = 5 by
default; cos(a, b) = a·b / (max(|a|, 1e-8)·max(|b|, 1e-8)) as in PyTorch.

Head placement: P's parameters belong to the algorithm (`Weights.extra`):
they are trained by the local optimiser (weight decay included) and averaged
with the model, but the classifier stays on f(x), so the global model's
architecture and parameters are those of every other algorithm (the authors'
code instead puts the classifier on z). The per-client state is the
previous local model (parameters, BN statistics, head) for all K clients.

>>> make().hparams == {'mu': 5.0, 'tau': 0.5, 'proj_dim': 256}
True
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from valley_jax.fed.algorithm import (Algorithm, Weights, check_hparams,
                                      check_nonnegative, check_positive)
from valley_jax.fed.local import masked_mean
from valley_jax.models import layers

DEFAULTS = {'mu': 5.0, 'tau': 0.5, 'proj_dim': 256}


def _torch_bias(fan_in: int):
  """PyTorch's Linear bias init U(±1/√fan_in)."""
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


class ProjectionHead(nn.Module):
  """MOON's projection head: dense1 (d → d), ReLU, dense2 (d → out).

  Initialised as PyTorch's Linear (the MOON code's): with flax's zero biases
  an example whose features are all zero (dead ReLUs) would project to z = 0
  exactly, where the cosine's gradient is 1/eps.
  """

  width: int
  out: int

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    def dense(n, name):
      return nn.Dense(n, kernel_init=layers.KERNEL_INIT,
                      bias_init=_torch_bias(self.width), name=name)

    return dense(self.out, 'dense2')(nn.relu(dense(self.width, 'dense1')(h)))


def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Row-wise cosine similarity of [B, D] arrays (PyTorch's eps rule)."""
  na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
  nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
  return jnp.sum(a * b, axis=-1) / (na * nb)


def contrastive_loss(z, z_glob, z_prev, w, tau: float) -> jax.Array:
  """mean_w CE([cos(z, z_glob), cos(z, z_prev)] / τ, 0)."""
  logits = jnp.stack([cosine(z, z_glob), cosine(z, z_prev)], -1) / tau
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.zeros(logits.shape[0], jnp.int32))
  return masked_mean(ce, w)


def previous(ctx) -> Weights:
  """The client's previous local model, θt in its first participation."""
  return jax.tree.map(lambda g, p: jnp.where(ctx.first, g, p), ctx.anchor,
                      ctx.client_aux['prev'])


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """MOON with mu (>= 0), tau (> 0) and the head's output size proj_dim."""
  hp = check_hparams('moon', hparams, DEFAULTS)
  check_nonnegative(hp, 'mu')
  check_positive(hp, 'tau', 'proj_dim')
  mu, tau, out = float(hp['mu']), float(hp['tau']), int(hp['proj_dim'])

  def init_extra(key, dim: int):
    return ProjectionHead(dim, out).init(key, jnp.zeros((1, dim)))['params']

  def project(extra, f):
    f = f.reshape(f.shape[0], -1)
    return ProjectionHead(f.shape[-1], out).apply({'params': extra}, f)

  def local_loss(trainable, features, batch, ctx):
    z = project(trainable['extra'], features)
    others = []
    for w in (ctx.anchor, previous(ctx)):
      f = ctx.features_fn(w, batch.x)
      others.append(jax.lax.stop_gradient(project(w.extra, f)))
    return mu * contrastive_loss(z, *others, batch.w, tau)

  def client_update(ctx, local: Weights, steps):
    del steps
    return {'prev': local}, {}

  return Algorithm('moon', hp, init_client=lambda w: {'prev': w},
                   init_extra=init_extra, local_loss=local_loss,
                   client_update=client_update, needs_features=True)
