"""Range checks for every numeric config field, run before any work starts.

Each main declares its numeric fields as a list of `Field`s (the tables in
`TRAIN_FIELDS`, `PROBE_BASE_FIELDS` and `FED_FIELDS`; the probe's studies
add theirs, see valley_jax.probe.registry). `check` rejects a
value of the wrong type, NaN or ±inf, or a value outside its range, with a
message that names the field. `unchecked` lists the numeric leaves of a
config that no field covers, so a test can insist that none is left out.

>>> import ml_collections
>>> c = ml_collections.ConfigDict({'sweep': {'chunk': -1}})
>>> check(c, [Field('sweep.chunk', int, lo=0)])
Traceback (most recent call last):
...
valley_jax.errors.InputError: config.sweep.chunk=-1 must be an integer ≥ 0.
"""

import dataclasses
import fnmatch
import math
from typing import Any, Iterable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from valley_jax.errors import InputError, UserError

NONFINITE_POLICIES = ('stop', 'continue')


class NonFiniteLossError(UserError, FloatingPointError):
  """A training loss became NaN or infinite."""


def check_policy(policy: str, field: str) -> None:
  if policy not in NONFINITE_POLICIES:
    raise InputError(f'{field}={policy!r} must be one of '
                     f'{NONFINITE_POLICIES}.')


def stop_if_nonfinite(losses, where: str, last_good: int, cause: str,
                      policy: str, field: str) -> None:
  """Raises NonFiniteLossError (policy 'stop') or warns ('continue').

  Args:
    losses: the losses of one epoch or round, in order.
    where: 'epoch 3', 'round 12', ... (the unit that is not saved).
    last_good: the last saved epoch or round.
    cause: the likely cause, for the message.
    policy: 'stop' or 'continue'.
    field: the config field that holds the policy.
  """
  losses = np.asarray(losses, np.float64).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(losses))
  if not bad.size:
    return
  msg = (f'The training loss became {losses[bad[0]]} at step {bad[0] + 1} '
         f'of {where}. Likely cause: {cause}.')
  if policy == 'stop':
    raise NonFiniteLossError(
        f'{msg} The checkpoint of the last good one ({last_good}) is kept; '
        f'{where} is not saved. Fix the cause and start a new --workdir (or '
        f'pass --overwrite), or set --{field}=continue to go on.')
  logging.warning('%s Going on (%s=continue).', msg, field)


@dataclasses.dataclass(frozen=True)
class Field:
  """A numeric config field and its allowed range.

  Attributes:
    path: dotted path below the config root; `*` matches any key (e.g.
      'model.kwargs.*'), and a tuple/list value is checked element-wise.
    kind: int or float (an int is accepted where a float is expected;
      a bool is never a number here).
    lo, hi: bounds (None: unbounded).
    lo_open, hi_open: whether the bound itself is excluded.
    optional: None is allowed (the field is unset).
    why: a hint appended to the message.
    also: non-numeric values that are accepted as well (e.g. 'last').
  """

  path: str
  kind: type = float
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  optional: bool = False
  why: str = ''
  also: tuple[Any, ...] = ()

  def describe(self) -> str:
    """'an integer ≥ 1', 'a finite number in (0, 1]', ..."""
    if self.kind is str:
      return 'one of ' + ', '.join(repr(a) for a in self.also)
    what = 'an integer' if self.kind is int else 'a finite number'
    if self.lo is not None and self.hi is not None:
      rng = (f"{'(' if self.lo_open else '['}{_num(self.lo)}, "
             f"{_num(self.hi)}{')' if self.hi_open else ']'}")
      return f'{what} in {rng}'
    if self.lo is not None:
      return f"{what} {'>' if self.lo_open else '≥'} {_num(self.lo)}"
    if self.hi is not None:
      return f"{what} {'<' if self.hi_open else '≤'} {_num(self.hi)}"
    return what

  def ok(self, v: Any) -> bool:
    if self.kind is str:  # A name: one of `also`.
      return isinstance(v, str) and v in self.also
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      return False
    if self.kind is int and not isinstance(v, int):
      return False
    if not math.isfinite(v):
      return False
    if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
      return False
    return not (self.hi is not None and (
        v > self.hi or (self.hi_open and v == self.hi)))


def _num(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else str(x)


def positive(path: str, kind: type = float, **kw) -> Field:
  return Field(path, kind, lo=0, lo_open=True, **kw)


def count(path: str, lo: int = 1, **kw) -> Field:
  return Field(path, int, lo=lo, **kw)


def finite(path: str, **kw) -> Field:
  return Field(path, float, **kw)


def _leaves(tree: Any, prefix: str = '') -> Iterable[tuple[str, Any]]:
  if isinstance(tree, (dict, ml_collections.ConfigDict)):
    for k, v in tree.items():
      yield from _leaves(v, f'{prefix}{k}.')
  else:
    yield prefix[:-1], tree


def _is_numeric(v: Any) -> bool:
  if isinstance(v, (list, tuple)):
    return bool(v) and all(_is_numeric(e) for e in v)
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _matches(path: str, field: Field) -> bool:
  return fnmatch.fnmatchcase(path, field.path)


def check(config: ml_collections.ConfigDict | dict, fields: Iterable[Field],
          root: str = 'config') -> None:
  """Raises ValueError naming the first field whose value is out of range.

  A leaf is checked by the first field that matches it, so specific fields
  go before wildcards.
  """
  fields = list(fields)
  for path, value in _leaves(config):
    f = next((f for f in fields if _matches(path, f)), None)  # First match.
    if f is not None:
      _check_value(f'{root}.{path}', value, f)


def _check_value(name: str, value: Any, f: Field) -> None:
  if value is None and f.optional:
    return
  values = value if isinstance(value, (list, tuple)) else [value]
  for v in values:
    if v is None and f.optional:
      continue
    if isinstance(v, str) and f.also:
      # A field that also takes names arrives from absl as a string, so a
      # number given on the command line is a digit string.
      if v in f.also or (f.kind is int and v.isdigit()):
        continue
    if not f.ok(v):
      hint = f' ({f.why})' if f.why else ''
      names = '' if f.kind is str else ''.join(f', or {a!r}' for a in f.also)
      raise InputError(
          f'{name}={value!r} must be {f.describe()}{names}{hint}.')


def unchecked(config: ml_collections.ConfigDict | dict,
              fields: Iterable[Field]) -> list[str]:
  """Numeric leaves of `config` that no field covers."""
  fields = list(fields)
  return [p for p, v in _leaves(config)
          if _is_numeric(v) and not any(_matches(p, f) for f in fields)]


def markdown(fields: Iterable[Field], root: str = 'config') -> str:
  """The fields as a markdown table (for the README)."""
  rows = ['| field | allowed |', '|---|---|']
  for f in fields:
    extra = ', or unset' if f.optional else ''
    if f.kind is not str:
      extra += ''.join(f', or {a!r}' for a in f.also)
    rows.append(f'| `{root}.{f.path}` | {f.describe()}{extra} |')
  return '\n'.join(rows)


def nested(prefix: str, fields: Iterable[Field]) -> list[Field]:
  """The same fields under `prefix.` (a training config inside a probe's)."""
  return [dataclasses.replace(f, path=f'{prefix}.{f.path}') for f in fields]


# The training config (valley_jax.defaults.train_config).
TRAIN_FIELDS = [
    count('seed', 0),
    count('num_devices', 0, why='0 = every local device'),
    positive('model.width'),
    Field('model.kwargs.pan_amplitude', float, lo=0, why='FedPAN'),
    positive('model.kwargs.pan_periods', why='FedPAN'),
    count('model.kwargs.*', why='model sizes such as hidden, depth, dim'),
    count('data.seed', 0),
    count('data.n_train', optional=True),
    count('data.n_test', optional=True),
    Field('data.half', int, lo=0, hi=1, optional=True),
    positive('data.kwargs.*', why='dataset options such as image_size'),
    positive('optim.lr'),
    Field('optim.momentum', float, lo=0, hi=1, hi_open=True),
    Field('optim.weight_decay', float, lo=0, hi=1),
    count('train.epochs'),
    count('train.batch_size'),
    count('train.eval_batch_size'),
    count('train.keep_epochs', 0),
    count('train.checkpoint_every_steps', 0, optional=True,
          why='0 = at epoch ends only'),
]

# The probe config (valley_jax.defaults.probe_config) without its `train` and
# its studies' blocks; each study declares its own fields, and
# valley_jax.probe.registry.fields() joins them.
PROBE_BASE_FIELDS = [
    count('seed', 0),
    count('seeds'),
    count('train_seeds'),
    count('num_devices', 0, why='0 = every local device'),
    count('epoch', 0, also=('last',)),
    finite('sweep.lam_min'),
    finite('sweep.lam_max'),
    count('sweep.num_points'),
    count('sweep.chunk', 0, why='0 = chosen by the architecture'),
    count('sweep.recal_samples'),
    count('sweep.recal_batch_size', 0, why='0 = chosen for the device'),
    count('sweep.eval_batch_size', 0, why='0 = chosen for the device'),
    count('sweep.n_test', 0, why='0 = the whole test split'),
    count('sweep.stream_batches', 0,
          why='0 = the whole evaluation set on the device'),
]


# The fedsim config (valley_jax.defaults.fed_config).
_HP = 'an algorithm hyperparameter (γ, μ, τ, α, ...) is never negative'
# The algorithm hyperparameters that are names, not numbers, and the names
# each takes (valley_jax/fed/<algorithm>.py; docs/fedsim.md).
# How FedSign reduces its sign term over the model (fedsign.py).
FEDSIGN_REDUCTIONS = ('tensor_mean', 'sum', 'element_mean', 'mean_of_means')
# What MOON's classifier reads (moon.py).
MOON_CLASSIFIERS = ('projection', 'representation')
# MOON's negative in a client's first participation (moon.py).
MOON_FIRST_NEGATIVES = ('initial', 'global')
# Whether FedDyn divides α by the client's relative data size (feddyn.py).
FEDDYN_ALPHA_SCALINGS = ('data_size', 'none')
NAMED_HPARAMS = {'reduction': FEDSIGN_REDUCTIONS,
                 'classifier': MOON_CLASSIFIERS,
                 'first_negative': MOON_FIRST_NEGATIVES,
                 'alpha_scaling': FEDDYN_ALPHA_SCALINGS}
_NAMED = 'an algorithm option; see docs/fedsim.md'
# FedBN: a client's BN layers before its first participation.
FEDBN_FIRST = ('init', 'average')
# How table mode selects a grid value (valley_jax/fed/runner.py).
TABLE_SELECTIONS = ('validation', 'test')


def _named_hparam_fields(prefix: str) -> list[Field]:
  return [Field(f'{prefix}.{k}', str, also=v, why=_NAMED)
          for k, v in NAMED_HPARAMS.items()]


FED_OWN_FIELDS = [
    count('fed.num_clients'),
    Field('fed.fraction', float, lo=0, hi=1, lo_open=True),
    count('fed.local_epochs'),
    count('fed.batch_size'),
    count('fed.rounds'),
    positive('fed.alpha', why='the Dirichlet concentration; smaller is more '
             'heterogeneous'),
    count('fed.min_size'),
    Field('fed.holdout', float, lo=0, hi=1, hi_open=True,
          why='a fraction of the training set; 0 = none'),
    Field('fed.bn_first', str, also=FEDBN_FIRST,
          why="FedBN: 'init' as FedBN's code, or the server's average"),
    count('fed.chunk', 0, why='0 = chosen by measurement'),
    *_named_hparam_fields('fed.hparams'),
    Field('fed.hparams.*', float, lo=0, why=_HP),
    count('eval.every'),
    count('eval.batch_size'),
    count('eval.recal_samples'),
    count('checkpoint_every'),
    Field('checkpoint_seconds', float, lo=0,
          why='the least seconds between two checkpoints; 0 = no limit'),
    positive('table.alphas'),
    count('table.seeds', 0),
    *_named_hparam_fields('table.hparams.*'),
    Field('table.hparams.*', float, lo=0, why=_HP),
    *_named_hparam_fields('table.grids.*'),
    Field('table.grids.*', float, lo=0, why=_HP),
    Field('table.selection', str, also=TABLE_SELECTIONS,
          why='what selects a grid value; see docs/fedsim.md'),
    Field('table.holdout', float, lo=0, hi=1, lo_open=True, hi_open=True,
          why="the validation slice of selection='validation'"),
    count('table.batch_runs', 0, why='runs side by side in one program; '
          '0 = chosen by measurement (docs/fedsim.md)'),
    Field('table.collapse', float, lo=0, hi=1,
          why='a final-round drop that flags a collapsed run'),
    count('table.last_rounds'),
]
FED_FIELDS = [f for f in TRAIN_FIELDS if not f.path.startswith('train.')
              ] + FED_OWN_FIELDS


def check_finite_variables(variables: Any, where: str) -> None:
  """Raises InputError naming the arrays of `variables` that hold NaN or inf.

  For weights and checkpoints on load: a probe of non-finite weights would
  report an error of 1 − 1/C on every curve and exit as if all went well.

  Args:
    variables: a pytree of arrays ({'params', 'batch_stats'}).
    where: names the file or checkpoint in the message.

  >>> check_finite_variables({'params': {'w': np.array([1.0, np.nan])}}, 'x')
  Traceback (most recent call last):
  ...
  valley_jax.errors.InputError: x holds non-finite values (NaN or inf) in ...
  """
  bad = ['/'.join(str(getattr(k, 'key', k)) for k in path)
         for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
         if not bool(jnp.all(jnp.isfinite(leaf)))]
  if bad:
    raise InputError(
        f'{where} holds non-finite values (NaN or inf) in {len(bad)} '
        f"array(s): {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}. "
        'These weights cannot be probed: check the file, or the training '
        'run that wrote it (config.train.on_nonfinite).')
