"""The base training config and the paper's variants, for configs/*.py.

>>> cfg = train_config('resnet20', 'svhn_cropped')
>>> apply_variant(cfg, 'lr0.1,bs32').optim.lr, cfg.train.batch_size
(0.1, 32)
"""

import functools

import ml_collections
from ml_collections import config_dict

from valley_jax import checkpoint
from valley_jax.errors import InputError
from valley_jax.probe import registry


def train_config(model: str, dataset: str,
                 **model_kwargs) -> ml_collections.ConfigDict:
  """The paper's recipe (Appendix A): SGD 0.9, LR 0.03, BS 256, WD 5e-4,
  cosine decay over 200 epochs, CIFAR augmentation."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_devices = 0  # 0: every local device (data parallel).
  # JAX's persistent compilation cache, set up by train.py/fedsim.py
  # (valley_jax/compile_cache.py): 'default', a directory, or 'none'.
  c.compile_cache = 'default'
  c.model = ml_collections.ConfigDict(dict(
      name=model, width=1.0, bn=True, bn_init='ones',
      kwargs=ml_collections.ConfigDict(model_kwargs)))
  c.data = ml_collections.ConfigDict(dict(
      name=dataset, data_dir='', augment=True, seed=0,
      n_train=config_dict.placeholder(int), n_test=config_dict.placeholder(int),
      half=config_dict.placeholder(int), kwargs=ml_collections.ConfigDict()))
  c.optim = ml_collections.ConfigDict(dict(
      name='sgd', lr=0.03, momentum=0.9, weight_decay=5e-4))
  c.train = ml_collections.ConfigDict(dict(
      epochs=200, batch_size=256, eval_batch_size=1000,
      keep_epochs=checkpoint.DEFAULT_KEEP,
      # 'stop' at the first non-finite training loss, or 'continue'.
      on_nonfinite='stop',
      # 'WORKDIR[@EPOCH]' (default the last epoch): start from that run's
      # params and batch_stats instead of a fresh init (same architecture;
      # the optimiser starts fresh). '' = a fresh init.
      init_from='',
      # A parameter group (e.g. 'CLF') that keeps its fresh init when
      # starting from init_from: a new classifier head for new classes.
      init_fresh='',
      # Also save a mid-epoch checkpoint every this many optimiser steps
      # (0 = at epoch ends only); a pre-emption saves its step anyway.
      checkpoint_every_steps=0))
  return c


# Sect. 4.2: hyper-parameter and BN-initialisation variants.
_VARIANTS = {
    'lr': lambda c, v: setattr(c.optim, 'lr', float(v)),
    'bs': lambda c, v: setattr(c.train, 'batch_size', int(v)),
    'wd': lambda c, v: setattr(c.optim, 'weight_decay', float(v)),
    'bninit': lambda c, v: setattr(c.model, 'bn_init', v),
    'epochs': lambda c, v: setattr(c.train, 'epochs', int(v)),
    'seed': lambda c, v: setattr(c, 'seed', int(v)),
    'half': lambda c, v: setattr(c.data, 'half', int(v)),
    'nobn': lambda c, v: setattr(c.model, 'bn', False),
    'width': lambda c, v: setattr(c.model, 'width', float(v)),
}


def apply_variant(c: ml_collections.ConfigDict,
                  arg: str | None) -> ml_collections.ConfigDict:
  """Applies 'lr0.1', 'bs32', 'wd1e-5', 'bninit_uniform', 'nobn', 'half0',
  'seed3', 'epochs50', 'width2' (model width multiplier) (a comma-separated
  list) to a config."""
  for item in filter(None, (arg or '').split(',')):
    key = next((k for k in sorted(_VARIANTS, key=len, reverse=True)
                if item.startswith(k)), None)
    if key is None:
      raise InputError(f'Unknown config variant {item!r}; use one of '
                       f'{sorted(_VARIANTS)} followed by a value, e.g. lr0.1.')
    _VARIANTS[key](c, item[len(key):].lstrip('_='))
  return c


def digits_config(model: str, arg: str | None = None,
                  **model_kwargs) -> ml_collections.ConfigDict:
  """A fast offline run on sklearn digits (30 epochs, batch 64, LR 0.05)."""
  c = train_config(model, 'digits', **model_kwargs)
  c.data.augment = False
  c.optim.lr = 0.05
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.eval_batch_size = 360
  c.train.keep_epochs = (1, 2, 3, 5, 10, 20)
  return apply_variant(c, arg)


def digits_cnn(arg: str | None = None) -> ml_collections.ConfigDict:
  """The embedded default: a small VGG-style CNN with BN on sklearn digits
  (width 0.5; a widthN variant sets another).

  >>> digits_cnn().model.width, digits_cnn('width1').model.width
  (0.5, 1.0)
  """
  c = digits_config('cnn')
  c.model.width = 0.5
  return apply_variant(c, arg)


def probe_config(
    checkpoint_dir: str = 'runs/default') -> ml_collections.ConfigDict:
  """Base config of probe.py: shared fields and one block per study kind
  (valley_jax/probe/registry.py lists the kinds; each study's own module
  holds its block's defaults)."""
  c = ml_collections.ConfigDict()
  c.kind = 'noise_types,sign_ratio,special'
  c.checkpoint = checkpoint_dir  # Workdir of the converged model θf.
  c.epoch = 'last'
  # The one workdir probe.py may train (with `c.train`) when it holds no
  # checkpoint: only when c.checkpoint equals it, so a misspelt
  # --config.checkpoint is an error rather than a new run. '' = never.
  c.train_if_missing = ''
  c.train = digits_cnn()
  # Runs that probe.py trains before probing when they are missing, one
  # after another (the runs of bn_init, interpolate, hparams; or the
  # checkpoint): a tuple of 'WORKDIR=CONFIG_FILE[:VARIANT]', e.g.
  # 'runs/digits_bs8=configs/digits_cnn.py:bs8' trains what
  # `python train.py --config=configs/digits_cnn.py:bs8
  # --workdir=runs/digits_bs8` would. A relative CONFIG_FILE is looked up in
  # the working directory, then in the repository. Every entry is loaded and
  # validated first; an entry is trained only when a selected kind measures
  # its workdir and that holds no checkpoint, or a run of the same config
  # stopped before its last epoch (resumed). A finished run, or a run of
  # another config, is measured as it is.
  c.train_runs = ()
  # config.data.data_dir of the train_runs whose config leaves it '' (where
  # `tfds build` put CIFAR-10, say); '' = TFDS's default.
  c.train_data_dir = ''
  c.seed = 0
  c.seeds = 1  # Draws per random direction (mean ± std when > 1).
  # Training seeds of every run a multi-run study measures (bn_init,
  # hparams, interpolate): each workdir W of its block stands for W (the
  # config's seed) and W_seed1 ... W_seed{N-1} (seed + k), and each entry
  # 'W=CONFIG' of train_runs trains all N; comparisons become N pairs.
  c.train_seeds = 1
  c.num_devices = 0
  c.normalization = 'ns'
  # dtype: 'float32' (full float32, precision HIGHEST), 'tf32' (XLA's
  # default precision: reduced on GPUs, faster) or 'bfloat16'. Batch sizes
  # 0 = chosen for the device (probe.prober.AUTO_BATCH). fold_bn: fold BN into
  # the convolution before it at evaluation points (same values).
  c.sweep = ml_collections.ConfigDict(dict(
      lam_min=-1.0, lam_max=1.0, num_points=41, chunk=0, dtype='float32',
      recal='auto', recal_samples=2000, recal_batch_size=0,
      eval_batch_size=0, n_test=0, fold_bn=True,
      # 0: the evaluation set lives on the device; N > 0: it stays in host
      # memory and N batches at a time are sent (sets larger than the
      # device memory, e.g. ImageNet).
      stream_batches=0))
  c.figure_formats = 'png'  # Comma-separated: 'png', 'pdf', 'svg'.
  # JAX's persistent compilation cache (valley_jax/compile_cache.py), set up
  # by probe.py: 'default' (~/.cache/valley_jax/jax), a directory, or 'none'.
  c.compile_cache = 'default'
  for name, study in registry.STUDIES.items():
    c[name] = study.config()
  return c


def digits_probe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The sweep settings of the offline digits probes (probe_default.py's):
  21 λ points, BN recalibrated on 1,000 training images, batches of 200
  and 360.

  >>> digits_probe(probe_config()).sweep.num_points
  21
  """
  c.sweep.num_points = 21
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  return c


def fed_config(model: str, dataset: str,
               **model_kwargs) -> ml_collections.ConfigDict:
  """Base config of fedsim.py: the paper's Table 1 protocol (Sect. 6.2).

  K = 100 clients, Q = 10% per round, E = 5 local epochs, B = 64, T = 200
  rounds, Dirichlet(α = 0.5) labels, local SGD (momentum 0.9, LR 0.03, weight
  decay 5e-4; the paper names no LR, this is the FED-ROUND benchmark's).
  """
  c = ml_collections.ConfigDict()
  c.mode = 'run'  # 'run': one simulation; 'table': algorithms × α × seeds.
  c.seed = 0
  c.num_devices = 0  # 0: every local device (the client axis is split).
  c.compile_cache = 'default'  # As in train_config.
  base = train_config(model, dataset, **model_kwargs)
  c.model, c.data, c.optim = base.model, base.data, base.optim
  c.fed = ml_collections.ConfigDict(dict(
      algorithm='fedavg',
      # The algorithm's hyperparameters (gamma, mu, tau, alpha, ...); unset
      # ones take the defaults of valley_jax/fed/<algorithm>.py.
      hparams=ml_collections.ConfigDict(),
      num_clients=100, fraction=0.1, local_epochs=5, batch_size=64,
      rounds=200, partition='dirichlet', alpha=0.5, min_size=10,
      # A fraction of the training set held out from every client, on which
      # the global model is also evaluated (val_accuracy); 0 = none.
      holdout=0.0,
      aggregation='uniform', bn_policy='average',
      # FedBN: a client's BN layers before its first participation, 'init'
      # (θ0's, as FedBN's code) or 'average' (the server's average).
      bn_first='init',
      chunk=0,  # Clients side by side per device; 0 = by measurement.
      dtype='float32',
      # Experimental: permute each participant's units to the server's
      # before averaging (valley_jax/fed/alignment.py; FedAvg, FedProx).
      align=False))
  c.eval = ml_collections.ConfigDict(dict(
      every=1,  # Evaluate the global model every N rounds (and the last).
      batch_size=1000, recal_samples=2000))  # recal: FedBN only.
  c.checkpoint_every = 10  # Rounds between Orbax checkpoints,
  # at most one per `checkpoint_seconds` (0: every checkpoint_every rounds).
  # The last round and a pre-emption's round are always saved.
  c.checkpoint_seconds = 0.0
  c.on_nonfinite = 'stop'
  c.table = _table_config()
  return c


def _table_config() -> ml_collections.ConfigDict:
  """Table mode (docs/fedsim.md): algorithms × alphas × grid values × seeds,
  a grid value selected per (algorithm, α)."""
  from valley_jax import fed  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dict(
      algorithms=('fedavg', 'fedprox', 'moon', 'feddyn', 'fedpan', 'fedsign'),
      alphas=(10.0, 1.0, 0.5), seeds=(0, 1, 2, 3, 4),
      # Every algorithm's hyperparameters in the table, its defaults until
      # set (--config.table.hparams.moon.mu=1).
      hparams={name: dict(fed.build_algorithm(name).hparams)
               for name in fed.ALGORITHMS},
      # Values to select from per (algorithm, α), three for every
      # algorithm with a hyperparameter: the paper's FedSign grid, and the
      # grids the first author's code tunes its baselines over
      # (github.com/lxcnju/MAP, train.py, get_hypers: FedProx, MOON and
      # FedDyn `reg_lamb`; for SCAFFOLD, not in the default table, its
      # `glo_lr` {0.5, 0.75, 0.9} as --config.table.grids in a config file).
      # MAP's FedProx term is a mean of per-tensor smooth-L1 means, ours
      # μ/2·||θ − θt||² (docs/fedsim.md). Several keys of one algorithm
      # make a product.
      grids={'fedsign': {'gamma': (0.001, 0.01, 0.1)},
             'fedprox': {'mu': (1e-4, 1e-3, 1e-2)},
             'moon': {'mu': (1e-3, 1e-2, 1e-1)},
             'feddyn': {'alpha': (1e-3, 1e-2, 1e-1)}},
      # 'validation': the best mean final accuracy on `holdout` of the
      # training set (held out from every client) selects the value, whose
      # test accuracy is reported; 'test': the best mean test accuracy, as
      # the paper selects.
      selection='validation', holdout=0.1,
      # Runs of one algorithm side by side in one compiled program (vmapped
      # over a run axis); 0 = by measurement (runner.auto_batch_runs).
      batch_runs=0,
      # The robust view: the mean test accuracy over the last `last_rounds`
      # evaluations beside the final one, and a run flagged as collapsed
      # when its final accuracy is more than `collapse` below the mean of
      # the evaluations before it (of the last_rounds window).
      last_rounds=10, collapse=0.1))


def _set_hparam(c, key: str, v: str) -> None:
  c.fed.hparams[key] = float(v)


def _set_named(c, v: str, *, key: str) -> None:
  c.fed.hparams[key] = v


_FED_VARIANTS = {
    'alpha': lambda c, v: setattr(c.fed, 'alpha', float(v)),
    'gamma': lambda c, v: _set_hparam(c, 'gamma', v),
    'mu': lambda c, v: _set_hparam(c, 'mu', v),
    'seed': lambda c, v: setattr(c, 'seed', int(v)),
    'rounds': lambda c, v: setattr(c.fed, 'rounds', int(v)),
    'clients': lambda c, v: setattr(c.fed, 'num_clients', int(v)),
    'iid': lambda c, v: setattr(c.fed, 'partition', 'iid'),
    'fedbn': lambda c, v: setattr(c.fed, 'bn_policy', 'local'),
    'bn_first': lambda c, v: setattr(c.fed, 'bn_first', v),
    'table': lambda c, v: setattr(c, 'mode', 'table'),
    # Local weight decay: 5e-4 (the FED-ROUND benchmark's) by default;
    # wd_map is the first author's value (MAP's config.py, 1e-5).
    'wd_map': lambda c, v: setattr(c.optim, 'weight_decay', 1e-5),
    'wd': lambda c, v: setattr(c.optim, 'weight_decay', float(v)),
    # The algorithms' named options (checks.NAMED_HPARAMS), e.g.
    # reduction_sum, classifier_representation, first_negative_global,
    # alpha_scaling_none (or by flag: --config.fed.hparams.reduction=sum,
    # which the mains' flag parsing adds to the empty fed.hparams).
    **{k: functools.partial(_set_named, key=k) for k in (
        'reduction', 'classifier', 'first_negative', 'alpha_scaling')},
}


def apply_fed_variant(c: ml_collections.ConfigDict,
                      arg: str | None) -> ml_collections.ConfigDict:
  """Applies 'alpha0.5', an algorithm name ('fedsign'), 'gamma0.01', 'mu0.01',
  'seed3', 'rounds50', 'clients20', 'iid', 'fedbn', 'bn_first_average',
  'table', an algorithm option ('reduction_sum', 'classifier_representation',
  'first_negative_global', 'alpha_scaling_none') or a model name ('vgg11')
  to a fed config (a comma-separated list). With 'table', the algorithm
  names, α, seeds and hyperparameter values set the table's axes instead
  (`_apply_table_variants`).

  >>> c = apply_fed_variant(fed_config('resnet20', 'cifar10'),
  ...                       'alpha10,fedsign,gamma0.1')
  >>> c.fed.alpha, c.fed.algorithm, c.fed.hparams.gamma
  (10.0, 'fedsign', 0.1)
  """
  from valley_jax import fed, models  # pylint: disable=g-import-not-at-top
  items = list(filter(None, (arg or '').split(',')))
  if 'table' in items:
    items = _apply_table_variants(c, items)
  else:
    names = [i for i in items if i in fed.ALGORITHMS]
    if len(names) > 1:
      raise InputError(
          f'Fed config variant {arg!r} names {len(names)} algorithms '
          f'{names}; a run has one. Name one, or add `table` to run them '
          'all (table,' + ','.join(names) + ').')
  for item in items:
    if item in fed.ALGORITHMS:
      c.fed.algorithm = item
      continue
    if item in models.MODELS:
      c.model.name = item
      continue
    key = next((k for k in sorted(_FED_VARIANTS, key=len, reverse=True)
                if item.startswith(k)), None)
    if key is None:
      raise InputError(
          f'Unknown fed config variant {item!r}; use an algorithm '
          f'{sorted(fed.ALGORITHMS)}, a model name, or one of '
          f'{sorted(_FED_VARIANTS)} followed by a value, e.g. alpha0.5.')
    _FED_VARIANTS[key](c, item[len(key):].lstrip('_='))
  return c


_TABLE_AXES = {'alpha': ('alphas', float), 'seed': ('seeds', int)}
_GRID_VARIANTS = ('gamma', 'mu')


def _apply_table_variants(c: ml_collections.ConfigDict,
                          items: list[str]) -> list[str]:
  """Table mode's variants; returns the items left for apply_fed_variant.

  Algorithm names choose config.table.algorithms (in the order given);
  alphaX and seedN choose table.alphas and table.seeds (repeatable:
  'alpha0.5,alpha10'); gammaX and muX become the grid of the one table
  algorithm that takes that hyperparameter (repeatable: 'gamma0.01,gamma0.1'
  is a grid of two). A value that more than one table algorithm takes (mu:
  fedprox and moon) must name its algorithm.

  >>> c = apply_fed_variant(fed_config('mlp', 'digits'),
  ...                       'table,fedavg,fedsign,alpha0.5,gamma0.1')
  >>> c.table.algorithms, c.table.alphas, c.table.grids.fedsign.gamma
  (('fedavg', 'fedsign'), (0.5,), (0.1,))

  An algorithm option ('reduction_sum') fixes table.hparams of the one
  table algorithm that takes it.
  """
  from valley_jax import checks, fed  # pylint: disable=g-import-not-at-top
  names = tuple(i for i in items if i in fed.ALGORITHMS)
  if names:
    c.table.algorithms = names
    # Only the named algorithms' grids: another's would be ignored.
    for other in [a for a in c.table.grids if a not in names]:
      del c.table.grids[other]
  axes, grids, rest = {}, {}, []
  fixed = {}
  for item in items:
    if item in fed.ALGORITHMS:
      continue
    key = next((k for k in (*checks.NAMED_HPARAMS, *_TABLE_AXES,
                            *_GRID_VARIANTS) if item.startswith(k)), None)
    if key is None:
      rest.append(item)
      continue
    value = item[len(key):].lstrip('_=')
    if key in _TABLE_AXES:
      axes.setdefault(key, []).append(_TABLE_AXES[key][1](value))
      continue
    takers = [a for a in c.table.algorithms if key in c.table.hparams[a]]
    if key in checks.NAMED_HPARAMS and len(takers) == 1:
      fixed[(takers[0], key)] = value
      continue
    if len(takers) != 1:
      raise InputError(
          f'Fed config variant {item!r} with table: {key} is a '
          f'hyperparameter of {takers or "none"} of config.table.algorithms='
          f'{tuple(c.table.algorithms)}. Name one algorithm that takes it '
          f'(table,<algorithm>,{item}), or set '
          f"--config.table.grids.<algorithm>.{key}='({value},)'.")
    grids.setdefault((takers[0], key), []).append(float(value))
  for key, values in axes.items():
    c.table[_TABLE_AXES[key][0]] = tuple(values)
  for (name, key), values in grids.items():
    if name not in c.table.grids:
      c.table.grids[name] = ml_collections.ConfigDict()
    c.table.grids[name][key] = tuple(values)
  for (name, key), value in fixed.items():
    c.table.hparams[name][key] = value
  return rest


def fed_pfl_cifar10(arg: str | None = None) -> ml_collections.ConfigDict:
  """pfl-research's CIFAR-10 benchmark protocol (Granqvist et al., NeurIPS
  2024 Datasets and Benchmarks): 1,000 clients of 50 IID images, a cohort
  of 50 per round (Q = 0.05), 1,500 rounds, 1 local epoch of batch 10,
  client SGD lr 0.1 (no momentum, no weight decay), the server takes the
  average (server lr 1.0), central evaluation every 10 rounds, their simple
  CNN (`models/pfl_cnn.py`, dropout not applied). Variant `synthetic`:
  random CIFAR-shaped data (50,000 + 10,000 images, offline); the others
  are apply_fed_variant's (e.g. rounds3).

  >>> c = fed_pfl_cifar10('synthetic,rounds3')
  >>> c.fed.num_clients, c.fed.fraction, c.fed.rounds, c.data.name
  (1000, 0.05, 3, 'synthetic')
  """
  c = fed_config('pfl_cnn', 'cifar10')
  c.model.bn = False
  c.data.augment = False
  c.optim.update(lr=0.1, momentum=0.0, weight_decay=0.0)
  c.fed.update(num_clients=1000, fraction=0.05, local_epochs=1,
               batch_size=10, rounds=1500, partition='iid', min_size=1)
  c.eval.every = 10
  c.checkpoint_every = 50
  items = [i for i in (arg or '').split(',') if i]
  if 'synthetic' in items:
    items.remove('synthetic')
    synthetic_cifar10(c)
  return apply_fed_variant(c, ','.join(items))


def synthetic_cifar10(c: ml_collections.ConfigDict,
                      n_train: int = 50_000) -> None:
  """Sets c.data to random images of CIFAR-10's shapes (offline runs and
  benchmarks of the CIFAR-10 protocols)."""
  c.data.name = 'synthetic'
  c.data.kwargs.update({'shape': (32, 32, 3), 'num_classes': 10,
                        'n_train': n_train, 'n_test': 10_000})


def fed_offline(dataset: str, arg: str | None = None
                ) -> ml_collections.ConfigDict:
  """A fast offline fed run (digits or mnist1d): an MLP with BN, 20
  clients, 5 per round, 2 local epochs of batch 32, 30 rounds, α = 0.5."""
  c = fed_config('mlp', dataset)
  c.model.width = 0.5
  c.data.augment = False
  c.optim.lr = 0.05
  c.fed.update(num_clients=20, fraction=0.25, local_epochs=2, batch_size=32,
               rounds=30)
  c.eval.batch_size = 360
  # A table's cells (~1 s each on digits) save their last round only; a
  # kill -9 repeats at most 30 s of rounds.
  c.checkpoint_every = 5
  c.checkpoint_seconds = 30.0
  # Table 1's α values; five seeds.
  c.table.update(alphas=(10.0, 1.0, 0.5), seeds=(0, 1, 2, 3, 4))
  return apply_fed_variant(c, arg)
