"""MOON, model-contrastive federated learning (Li, He, Song, CVPR 2021).

Client k starts from θt and minimises, per batch,

    L^k = CE(θ) + μ · mean_b CE([cos(z_b, z_glob,b), cos(z_b, z_prev,b)] / τ,
                                target 0),

where z = P(f(x)) is the projection of the model's representation f(x) (the
output of its feature extractor) by a head P: d → d, ReLU, d → `proj_dim`
(256; `layers.ProjectionHead`); z_glob and z_prev are the same for the
global model θt and for the client's previous local model, both run in eval
mode (BN running statistics) and without gradient. τ = 0.5, μ = 5 by
default; cos(a, b) = a·b / (max(|a|, 1e-8)·max(|b|, 1e-8)) as in PyTorch.
The per-client state is the previous local model of all K clients.

hparams `classifier` (valley_jax.checks.MOON_CLASSIFIERS), what the
classifier `head` reads:

* 'projection' (the default): z, as in the authors' code (github
  QinbinLi/MOON, model.py, ModelFedCon: `x = self.l1(h); x = F.relu(x);
  x = self.l2(x); y = self.l3(x)`). P is part of the model: the registry
  models' option `projection` = proj_dim (`model_kwargs`), so the global
  model, its export and every probe of it carry P, and the features the
  model sows are z.
* 'representation': f(x), so the model is that of every other algorithm;
  P's parameters belong to the algorithm (`Weights.extra`): trained by the
  local optimiser (weight decay included) and averaged with the model, but
  not part of the exported model. (valley_jax's MOON before this option.)

hparams `first_negative` (valley_jax.checks.MOON_FIRST_NEGATIVES), z_prev in
a client's first participation:

* 'initial' (the default): the client's own initial model, an independent
  random initialisation per client (`independent_client_init`: see
  `rounds.init_states` for its keys), and in round 0 no contrastive term at
  all. This is the authors' main.py: every client's `nets[k]` is its own
  `init_nets()` initialisation and only the round's participants load the
  global weights (`for net in nets_this_round.values():
  net.load_state_dict(global_w)`); after each round all K nets are copied
  into the model pool (`old_nets = copy.deepcopy(nets)`,
  `old_nets_pool.append(old_nets)`), which is still empty in round 0, so
  there the logits are [cos(z, z_glob)] alone and their CE is 0.
* 'global': θt (valley_jax's MOON before this option); then both logits are
  the same function of θ and the contrastive gradient is zero, so a first
  participation is FedAvg's.

>>> make().hparams['classifier'], make().model_kwargs
('projection', {'projection': 256})
>>> make({'classifier': 'representation'}).model_kwargs
{}
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from valley_jax.checks import MOON_CLASSIFIERS, MOON_FIRST_NEGATIVES
from valley_jax.fed.algorithm import (Algorithm, Weights, check_choice,
                                      check_hparams, check_nonnegative,
                                      check_positive)
from valley_jax.fed.local import masked_mean
from valley_jax.models import layers

DEFAULTS = {'mu': 5.0, 'tau': 0.5, 'proj_dim': 256,
            'classifier': 'projection', 'first_negative': 'initial'}


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


def previous(ctx, first_negative: str = 'global') -> Weights:
  """The client's negative model: its previous local model; before its
  first participation θt ('global') or its own initial model ('initial',
  the state init_states gave it)."""
  if first_negative == 'initial':
    return ctx.client_aux['prev']
  return jax.tree.map(lambda g, p: jnp.where(ctx.first, g, p), ctx.anchor,
                      ctx.client_aux['prev'])


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """MOON with mu (>= 0), tau (> 0), the head's output size proj_dim (> 0),
  classifier and first_negative (see the module docstring)."""
  hp = check_hparams('moon', hparams, DEFAULTS)
  check_nonnegative(hp, 'mu')
  check_positive(hp, 'tau', 'proj_dim')
  check_choice(hp, 'classifier', MOON_CLASSIFIERS)
  check_choice(hp, 'first_negative', MOON_FIRST_NEGATIVES)
  return _build(hp)


def _build(hp: Mapping[str, Any]) -> Algorithm:
  """MOON of checked hparams; mu and tau may be traced values."""
  mu, tau, out = hp['mu'], hp['tau'], int(hp['proj_dim'])
  in_model = hp['classifier'] == 'projection'
  initial = hp['first_negative'] == 'initial'

  def init_extra(key, dim: int):
    return layers.ProjectionHead(dim, out).init(
        key, jnp.zeros((1, dim)))['params']

  def project(extra, f):
    f = f.reshape(f.shape[0], -1)
    if in_model:  # The model's features are already z.
      return f
    return layers.ProjectionHead(f.shape[-1], out).apply({'params': extra}, f)

  def local_loss(trainable, features, batch, ctx):
    z = project(trainable['extra'], features)
    others = []
    for w in (ctx.anchor, previous(ctx, hp['first_negative'])):
      f = ctx.features_fn(w, batch.x)
      others.append(jax.lax.stop_gradient(project(w.extra, f)))
    term = mu * contrastive_loss(z, *others, batch.w, tau)
    if initial:  # Round 0: the authors' model pool is empty, no negative.
      term = jnp.where(ctx.round_index > 0, term, 0.0)
    return term

  def client_update(ctx, local: Weights, steps):
    del ctx, steps
    return {'prev': local}, {}

  return Algorithm('moon', dict(hp), init_client=lambda w: {'prev': w},
                   init_extra=None if in_model else init_extra,
                   local_loss=local_loss, client_update=client_update,
                   needs_features=True,
                   model_kwargs={'projection': out} if in_model else {},
                   independent_client_init=initial, numeric=('mu', 'tau'),
                   rebuild=_build)
