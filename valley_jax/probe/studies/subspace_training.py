"""Training in random low-dimensional subspaces, for a network and for Fort &
Jastrzebski's wedge model (kind `subspace`).

Fort & Jastrzebski 2019 explain with their model (core/wedge_model.py) why
training restricted to a random d-dimensional affine subspace θ0 + P·z
succeeds above a threshold d, and how that threshold depends on where the
subspace starts. Measured here:

* the network: for each start (config.subspace.starts: epochs of
  config.checkpoint, e.g. its initialisation and a later epoch) and each d
  of config.subspace.dims, only z is trained (Adam, config.subspace.steps
  minibatch steps of config.subspace.batch_size, BatchNorm in train mode as
  a train step), P a random D×d matrix with orthonormal columns (one per
  seed of config.subspace.seeds); reported: the test accuracy (BN
  recalibrated) and the training loss, with a 95 % hierarchical bootstrap
  over the seeds and the test examples; and the start's own accuracy;
* the wedge model (D = toy_dim, n = toy_long, N = toy_wedges, ε =
  toy_eps): for the same kind of question, the loss reached from two starts
  (a random point of norm 1, and the same point with its short coordinates
  for wedge 0 halved, i.e. half-way to that wedge) against d, and the
  fraction of seeds that reach zero loss (L ≤ 1e-8). The model predicts
  that every seed reaches zero loss for d ≥ D − n.

results['findings']: whether the later start reaches a higher accuracy (its
accuracy minus the initialisation's, per subspace seed) at the smallest and
at the largest d, and whether the wedge model reaches zero loss from every
seed at d = D − n. The curves' err+/err− halves mean nothing here
(results['err_table'] is False).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import flatten_util

from valley_jax import checks, plots
from valley_jax.core import stats, steps, wedge_model
from valley_jax.data import pipeline
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common, members
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
_BOOT = 1000
_ZERO_LOSS = 1e-8


def make_subspace_step(model, unravel, theta0, proj_DxD, tx, mean, std):
  """A jit step (z, opt_state, stats, x, y) -> (z, opt_state, loss) of the
  training CE at θ0 + P·z, BatchNorm in train mode (its running statistics
  dropped)."""

  @jax.jit
  def step(z, opt_state, stats, x, y):
    x = pipeline.normalize(x, mean, std)

    def loss_fn(z):
      params = unravel(theta0 + proj_DxD @ z)
      logits, _ = steps.apply_model(model, params, stats, x, True)
      return steps.cross_entropy(logits, y).mean()

    loss, g = jax.value_and_grad(loss_fn)(z)
    upd, opt_state = tx.update(g, opt_state, z)
    return optax.apply_updates(z, upd), opt_state, loss

  return step


def train_network(s: Subject, d: int, seed: int, c: Config
                  ) -> tuple[Any, float]:
  """The params after training z in θ0 + P·z from this start, and the
  mean training CE of the last 10 steps."""
  ds = s.dataset
  flat, unravel = flatten_util.ravel_pytree(s.params)
  proj = wedge_model.projection(
      jax.random.fold_in(jax.random.key(seed), d), flat.size, d)
  tx = optax.adam(c.lr)
  z = jnp.zeros((d,), flat.dtype)
  opt = tx.init(z)
  stats = jax.tree.map(jnp.zeros_like, s.batch_stats)
  step = make_subspace_step(s.model, unravel, flat, proj, tx, ds.mean, ds.std)
  n, done, losses, epoch = len(ds.y_train), 0, [], 0
  bs = min(c.batch_size, n)
  while done < c.steps:
    epoch += 1
    for idx in pipeline.epoch_batches(n, bs, seed, epoch):
      if done == c.steps:
        break
      z, opt, loss = step(z, opt, stats, jnp.asarray(ds.x_train[idx]),
                          jnp.asarray(ds.y_train[idx]))
      losses.append(float(loss))
      done += 1
  return unravel(flat + proj @ z), float(np.mean(losses[-10:]))


def network_part(p: Prober, c: Config) -> dict[str, Any]:
  """Accuracy against d for every start (see the module doc)."""
  out = {}
  for epoch in c.starts:
    s = p.subject(p.config.checkpoint, int(epoch), f'epoch {epoch}')
    pred = members.Predictor(s)
    err0, _ = pred.outcomes(s.params, s.batch_stats)
    rows = []
    for d in c.dims:
      errs, train = [], []
      for seed in range(c.seeds):
        params, loss = train_network(s, int(d), seed, c)
        errs.append(pred.outcomes(params, s.batch_stats)[0])
        train.append(loss)
      acc = stats.hierarchical_bootstrap(1.0 - np.stack(errs), n_boot=_BOOT,
                                         bounds=(0.0, 1.0))
      acc['method'] = acc['method'].replace('seeds', 'random subspaces')
      rows.append({'d': int(d), 'accuracy': acc,
                   'train_loss': stats.summary(train)})
      p.bar.update(0)
    out[f'epoch {epoch}'] = {
        'epoch': int(epoch), 'start_accuracy': float(1.0 - err0.mean()),
        'dims': rows,
        'n_params': int(flatten_util.ravel_pytree(s.params)[0].size),
        'n_test': int(len(pred.labels))}
  return out


def toy_part(c: Config) -> dict[str, Any]:
  """The wedge model's loss against d from two starts."""
  m = wedge_model.WedgeModel.random(jax.random.key(c.toy_seed), c.toy_dim,
                                    c.toy_long, c.toy_wedges, c.toy_eps)
  dims = sorted({max(1, min(c.toy_dim, int(x))) for x in c.toy_dims} |
                {c.toy_dim - c.toy_long})
  out = {'dim': c.toy_dim, 'n_long': c.toy_long, 'n_wedges': c.toy_wedges,
         'eps': c.toy_eps, 'predicted_threshold': c.toy_dim - c.toy_long,
         'starts': {}}
  short0 = jnp.asarray(m.short_mask[0], jnp.float32)
  for name in ('random', 'half-way to wedge 0'):
    rows = []
    for d in dims:
      losses = []
      for seed in range(c.seeds):
        key = jax.random.fold_in(jax.random.key(c.toy_seed + 1), seed)
        t0 = jax.random.normal(key, (c.toy_dim,))
        t0 = t0 / jnp.linalg.norm(t0)
        if name != 'random':
          t0 = t0 * (1.0 - 0.5 * short0)
        proj = wedge_model.projection(jax.random.fold_in(key, d), c.toy_dim, d)
        theta, _ = wedge_model.train_in_subspace(
            m.loss, t0, proj, optax.adam(c.toy_lr), c.toy_steps)
        losses.append(float(m.loss(theta)))
      rows.append({'d': d, 'loss': losses,
                   'zero_fraction': float(np.mean(np.asarray(losses) <=
                                                  _ZERO_LOSS))})
    out['starts'][name] = rows
  return out


def subspace(p: Prober, _) -> dict[str, Any]:
  """Random-subspace training of the network and of the wedge model.

  Args:
    p: the Prober.

  Returns:
    'subspace': {'network', 'toy', 'seconds'}; 'findings'; no curves.
  """
  c = p.config.subspace
  t0 = time.time()
  net = network_part(p, c)
  t_net = time.time() - t0
  toy = toy_part(c)
  p.bar.update(1)
  return {'curves': [], 'err_table': False,
          'findings': findings(net, toy, c),
          'subspace': {'network': net, 'toy': toy, 'seconds': {
              'network': round(t_net, 1),
              'toy': round(time.time() - t0 - t_net, 1)}}}


def findings(net: dict[str, Any], toy: dict[str, Any], c: Config
             ) -> list[dict[str, Any]]:
  """The verdicts of the module doc."""
  out = []
  starts = list(net)
  if len(starts) >= 2:
    a, b = net[starts[0]], net[starts[-1]]
    # The smallest d (where the start's own accuracy weighs most) and the
    # largest (where training in the subspace weighs most).
    for i in sorted({0, len(c.dims) - 1}):
      diff = (np.asarray(b['dims'][i]['accuracy']['per_seed']) -
              np.asarray(a['dims'][i]['accuracy']['per_seed']))
      out.append(stats.finding(
          f'a subspace from {starts[-1]} reaches a higher test accuracy '
          f'than one from {starts[0]} at d = {c.dims[i]}',
          stats.summary(diff), rule='every_seed',
          statistic='test accuracy difference, per subspace seed'))
  thr = toy['predicted_threshold']
  for name, rows in toy['starts'].items():
    row = next(r for r in rows if r['d'] == thr)
    loss = np.asarray(row['loss'])
    out.append(stats.finding(
        f'the wedge model reaches zero loss from every seed at d = D − n = '
        f'{thr} ({name} start)', stats.summary(_ZERO_LOSS - loss),
        rule='every_seed', statistic=f'{_ZERO_LOSS} − final loss'))
  return out


# ------------------------------------------------------------------ figure


def subspace_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Test accuracy against d for each start (95 % intervals over subspace
  seeds and test examples), and the wedge model's final loss against d.

  Args:
    results: a `subspace` results.json.
    folder: where figure.png goes.

  Returns:
    The paths written.
  """
  s = results['subspace']
  fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
  ax = axes[0]
  cmap = plt.get_cmap('viridis')
  starts = list(s['network'])
  for i, name in enumerate(starts):
    part = s['network'][name]
    d = [r['d'] for r in part['dims']]
    mean = np.array([r['accuracy']['mean'] for r in part['dims']])
    lo = np.array([r['accuracy']['ci'][0] for r in part['dims']])
    hi = np.array([r['accuracy']['ci'][1] for r in part['dims']])
    color = cmap(i / max(len(starts) - 1, 1) * 0.8)
    ax.plot(d, mean, 'o-', color=color,
            label=f"from {name} (its own accuracy "
                  f"{part['start_accuracy']:.3f})")
    ax.fill_between(d, lo, hi, color=color, alpha=0.25)
  ax.set_xscale('log')
  ax.set_ylim(0.0, 1.0)
  ax.set_xlabel('subspace dimension d')
  ax.set_ylabel('test accuracy (BN recalibrated)')
  ax.set_title(f"{results['model']} on {results['dataset']}: training in "
               'θ0 + P·z', fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  ax = axes[1]
  toy = s['toy']
  for i, (name, rows) in enumerate(toy['starts'].items()):
    d = [r['d'] for r in rows]
    loss = np.array([np.mean(r['loss']) for r in rows])
    ax.plot(d, np.maximum(loss, 1e-12), 'o-', color=f'C{i}',
            label=f'{name} start')
  ax.axvline(toy['predicted_threshold'], color='k', ls=':', lw=1,
             label=f"D − n = {toy['predicted_threshold']} (predicted)")
  ax.set_yscale('log')
  ax.set_xlabel('subspace dimension d')
  ax.set_ylabel('final loss (mean over seeds; 1e-12 = zero)')
  ax.set_title(f"wedge model: D = {toy['dim']}, {toy['n_wedges']} wedges "
               f"long in n = {toy['n_long']}, ε = {toy['eps']}", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.suptitle('random-subspace training (Fort & Jastrzebski 2019)',
               fontsize=10)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


# ------------------------------------------------------------------ config


def _config() -> Config:
  return Config(dict(
      starts=(0, 1),  # Epochs of config.checkpoint the subspaces start at.
      dims=(10, 100, 1000),  # d of the network's subspaces.
      seeds=2,  # Random subspaces per (start, d).
      steps=150, batch_size=128, lr=0.01,
      toy_dim=40, toy_long=30, toy_wedges=3, toy_eps=0.05,
      toy_dims=(1, 2, 5, 8), toy_steps=500, toy_lr=0.05, toy_seed=0))


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  return [(config.checkpoint, int(e)) for e in config.subspace.starts]


def _check(config: Config) -> None:
  for e in config.subspace.starts:
    common.check_checkpoint(config.checkpoint, int(e),
                            'config.subspace.starts')


def _validate(config: Config) -> None:
  c = config.subspace
  if not c.starts or not c.dims:
    raise InputError('config.subspace.starts and config.subspace.dims must '
                     'each name at least one value.')
  if not 0 < c.toy_long < c.toy_dim:
    raise InputError(f'config.subspace.toy_long={c.toy_long} must be in '
                     f'(0, toy_dim={c.toy_dim}).')
  if not 0 <= c.toy_eps < 1:
    raise InputError(f'config.subspace.toy_eps={c.toy_eps} must be in '
                     '[0, 1).')


SUBSPACE = Study(
    'subspace', subspace, _config, validate=_validate,
    figure=subspace_figure,
    fields=(checks.count('subspace.starts', 0),
            checks.count('subspace.dims'),
            checks.count('subspace.seeds'),
            checks.count('subspace.steps'),
            checks.count('subspace.batch_size'),
            checks.positive('subspace.lr'),
            checks.count('subspace.toy_dim', 2),
            checks.count('subspace.toy_long'),
            checks.count('subspace.toy_wedges'),
            checks.Field('subspace.toy_eps', float, lo=0, hi=1, hi_open=True),
            checks.count('subspace.toy_dims'),
            checks.count('subspace.toy_steps'),
            checks.positive('subspace.toy_lr'),
            checks.count('subspace.toy_seed', 0)),
    checkpoints=_checkpoints, multi_run=True, check_checkpoints=_check)

STUDIES = (SUBSPACE,)
