"""Permutation symmetry of hidden units and weight matching (Git Re-Basin).

Permuting the hidden units of a network (the output channels of a layer,
together with its bias, its BatchNorm's scale, bias and running statistics,
and the input channels of the layers that read it) leaves its function
unchanged. Two independently trained networks may sit in basins that are the
same up to such a permutation. Weight matching (Ainsworth, Hayase and
Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries",
ICLR 2023, Sect. 3.2) looks for the permutations π that bring θB closest to
θA in the L2 sense, maximising Σ_l <W_l^A, P_l W_l^B P_{l-1}^T>: one
permutation at a time, the others fixed, each a linear assignment problem
(scipy.optimize.linear_sum_assignment), until no permutation improves.

The permutation spec is derived from the parameter names of the registry's
models (models/layers.py's naming rule) and their shapes:

* a chain (MLP, the digits CNN, VGG, AlexNet): the hidden ``conv*`` and
  ``dense*`` modules in their numeric order, then MOON's ``projection``
  head, then ``head``; each module's output units are one permutation, read
  by the next module (through VGG's global average pool, which keeps the
  channels); ``bn<suffix>`` belongs to ``conv<suffix>``/``dense<suffix>``;
* a ResNet: the residual stream of a stage is one permutation shared by
  every block's last BN and the shortcut; each block's inner units are
  their own. A projection shortcut (option B) starts a new residual
  permutation. An identity shortcut that zero-pads the channels (option A,
  the CIFAR ResNets) places the old stream in the middle of the new one:
  the new stream's axis is then a union of segments, the middle governed by
  the old stream's permutation and the padded channels by a new one.

An axis of a leaf is therefore a tuple of segments (permutation name,
positions on the axis). Not supported (InputError): the ViT (attention heads
would have to be permuted as blocks), grouped convolutions (ResNeXt), and
FedPAN's position encodings (they tie each unit to its index).

Only `params` are matched; `batch_stats` (BN running means and variances)
are permuted with their units. After interpolating two aligned models the
statistics must still be re-estimated (Jordan et al., "REPAIR", ICLR 2023);
the sweep engine's BN recalibration does that at each point.

>>> import jax, numpy as np
>>> from valley_jax import models
>>> m = models.build_model('mlp', 3, hidden=(4,), bn=False)
>>> v = m.init(jax.random.key(0), np.ones((1, 2)))
>>> s = spec(m, v['params'])
>>> sorted(s.sizes.items())
[('dense1', 4)]
>>> w = permute(s, v, {'dense1': np.array([3, 2, 1, 0])})
>>> x = np.ones((1, 2))
>>> bool(np.allclose(m.apply(v, x), m.apply(w, x), atol=1e-6))
True
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import flax
import numpy as np
from scipy import optimize

from valley_jax.errors import InputError
from valley_jax.models import alexnet, mlp, resnet, vgg

PyTree = Any
# One segment of an axis: (permutation name, positions on the axis).
Segment = tuple[str, np.ndarray]
Axis = tuple[Segment, ...]


@dataclasses.dataclass(frozen=True)
class PermSpec:
  """Which axes of which leaves each permutation acts on.

  Attributes:
    sizes: permutation name -> its number of units.
    axes: module path (tuple of names, without the leaf) -> leaf name ->
      one entry per axis of the leaf: None (not permuted) or the Axis.
      The same module path is used in `params` and in `batch_stats`.
  """

  sizes: dict[str, int]
  axes: dict[tuple[str, ...], dict[str, tuple[Axis | None, ...]]]

  def leaf_axes(self, path: tuple[str, ...]) -> tuple[Axis | None, ...]:
    """The axes of the leaf at `path` (module path + leaf name); () if none
    of its axes is permuted."""
    return self.axes.get(path[:-1], {}).get(path[-1], ())


# -------------------------------------------------------------- the spec


def _plain(name: str, n: int) -> Axis:
  return ((name, np.arange(n)),)


def _natural(name: str) -> tuple:
  """Sort key that orders conv1_2 before conv1_10 and conv2_1."""
  return tuple(int(t) if t.isdigit() else t
               for t in re.split(r'(\d+)', name))


class _Builder:
  """Collects the axes of a spec, module by module."""

  def __init__(self, params: PyTree):
    self.params = params
    self.sizes: dict[str, int] = {}
    self.axes: dict[tuple[str, ...], dict[str, tuple]] = {}

  def new(self, name: str, n: int) -> Axis:
    self.sizes[name] = n
    return _plain(name, n)

  def layer(self, path: tuple[str, ...], axis_in: Axis | None,
            axis_out: Axis | None) -> None:
    """A conv [H, W, I, O] or dense [I, O] module and its bias."""
    mod = _module(self.params, path)
    nd = mod['kernel'].ndim
    self.axes[path] = {'kernel': (None,) * (nd - 2) + (axis_in, axis_out)}
    if 'bias' in mod:
      self.axes[path]['bias'] = (axis_out,)

  def bn(self, path: tuple[str, ...], axis: Axis) -> None:
    """A BatchNorm module: scale and bias, and the statistics."""
    self.axes[path] = {k: (axis,) for k in ('scale', 'bias', 'mean', 'var')}

  def spec(self) -> PermSpec:
    return PermSpec(dict(self.sizes), dict(self.axes))


def _module(params: PyTree, path: tuple[str, ...]) -> PyTree:
  for k in path:
    params = params[k]
  return params


def _out(params: PyTree, path: tuple[str, ...]) -> int:
  return int(_module(params, path)['kernel'].shape[-1])


def _chain_tail(b: _Builder, axis: Axis | None) -> None:
  """MOON's projection head (if any), then the classifier head."""
  if 'projection' in b.params:
    for name in ('dense1', 'dense2'):
      path = ('projection', name)
      out = b.new(f'projection/{name}', _out(b.params, path))
      b.layer(path, axis, out)
      axis = out
  b.layer(('head',), axis, None)


def _chain(params: PyTree) -> PermSpec:
  """MLP, the digits CNN, VGG, AlexNet: conv*, dense*, projection, head."""
  b = _Builder(params)
  names = sorted((k for k in params if re.fullmatch(r'(conv|dense)\d.*', k)),
                 key=lambda k: (not k.startswith('conv'), _natural(k)))
  # BN follows the convolutions of a CNN (bn1 of AlexNet is conv1's, not
  # dense1's) and the dense layers of an MLP.
  kind = 'conv' if any(k.startswith('conv') for k in names) else 'dense'
  axis = None
  for name in names:
    out = b.new(name, _out(params, (name,)))
    b.layer((name,), axis, out)
    bn = 'bn' + name.removeprefix(kind)
    if name.startswith(kind) and bn in params:
      b.bn((bn,), out)
    axis = out
  _chain_tail(b, axis)
  return b.spec()


def _padded(b: _Builder, block: str, axis: Axis, n_in: int,
            n_out: int) -> Axis:
  """The residual axis after an option A shortcut (resnet._shortcut): the
  old stream at offset extra // 2, the padded channels a new permutation."""
  extra = n_out - n_in
  lo = extra // 2
  pads = np.concatenate([np.arange(lo), np.arange(lo + n_in, n_out)])
  name = f'{block}/pad'
  b.sizes[name] = extra
  return tuple((p, pos + lo) for p, pos in axis) + ((name, pads),)


def _resnet(params: PyTree) -> PermSpec:
  """ResNets: stem, blocks layer{s}_{b} (basic or bottleneck), head."""
  b = _Builder(params)
  res = b.new('stem', _out(params, ('conv_stem',)))
  b.layer(('conv_stem',), None, res)
  b.bn(('bn_stem',), res)
  n_res = _out(params, ('conv_stem',))
  for block in sorted((k for k in params if k.startswith('layer')),
                      key=_natural):
    mod = params[block]
    convs = sorted((k for k in mod if re.fullmatch(r'conv\d+', k)),
                   key=_natural)
    n_out = _out(params, (block, convs[-1]))
    if 'conv_shortcut' in mod:
      new_res = b.new(f'{block}/res', n_out)
      b.layer((block, 'conv_shortcut'), res, new_res)
      b.bn((block, 'bn_shortcut'), new_res)
    elif n_out != n_res:
      new_res = _padded(b, block, res, n_res, n_out)
    else:
      new_res = res
    axis = res
    for i, conv in enumerate(convs):
      last = i == len(convs) - 1
      out = new_res if last else b.new(f'{block}/{conv}',
                                       _out(params, (block, conv)))
      b.layer((block, conv), axis, out)
      b.bn((block, 'bn' + conv.removeprefix('conv')), out)
      axis = out
    res, n_res = new_res, n_out
  _chain_tail(b, res)
  return b.spec()


def check_model(model: Any) -> None:
  """Raises InputError unless `model`'s units can be permuted."""
  if not isinstance(model, (mlp.MLP, vgg.VGG, alexnet.AlexNet,
                            resnet.ResNet)):
    raise InputError(f'Weight matching supports the MLP, CNN/VGG, AlexNet '
                     f'and ResNet models, not {type(model).__name__} '
                     '(attention heads would '
                     'have to be permuted as blocks); pick another '
                     'config.model.name or drop the alignment.')
  if getattr(model, 'pan_amplitude', 0.0):
    raise InputError('FedPAN position encodings tie each unit to its index, '
                     'so permuting units changes the function; set '
                     'config.model.kwargs.pan_amplitude=0 or drop the '
                     'alignment.')
  if getattr(model, 'groups', 1) != 1:
    raise InputError('Weight matching does not permute grouped '
                     'convolutions (ResNeXt); pick a model with groups=1 '
                     'or drop the alignment.')


def spec(model: Any, params: PyTree) -> PermSpec:
  """The permutation spec of a registry model (module doc).

  Args:
    model: the registry module (models.build_model); its class picks the
      layout and its options are checked.
    params: its parameters (arrays or jax.ShapeDtypeStructs).

  Returns:
    The PermSpec; InputError for an unsupported model.
  """
  check_model(model)
  s = _resnet(params) if isinstance(model, resnet.ResNet) else _chain(params)
  check(s, params)
  return s


def check(s: PermSpec, params: PyTree) -> None:
  """Raises InputError unless the spec fits the parameters' shapes.

  Every permuted axis must be split exactly into its segments, each segment
  as long as its permutation, and every permutation must act on some
  leaf's output axis and on what reads it.

  Args:
    s: the spec.
    params: the parameters (arrays or jax.ShapeDtypeStructs).
  """
  count = dict.fromkeys(s.sizes, 0)
  for path, x in flax.traverse_util.flatten_dict(params).items():
    for ax, axis in enumerate(s.leaf_axes(path)):
      if axis is None:
        continue
      pos = np.sort(np.concatenate([p for _, p in axis]))
      if not np.array_equal(pos, np.arange(x.shape[ax])):
        raise InputError(f'Permutation spec does not cover axis {ax} of '
                         f'{"/".join(path)} {tuple(x.shape)}.')
      for name, p in axis:
        if len(p) != s.sizes[name]:
          raise InputError(f'Permutation {name} has {s.sizes[name]} units '
                           f'but {"/".join(path)} gives it {len(p)}.')
        count[name] += 1
  if unused := [k for k, c in count.items() if c < 2]:
    raise InputError(f'Permutations {unused} act on fewer than two axes.')


# ------------------------------------------------------------ permuting


def _index(axis: Axis, perms: dict[str, np.ndarray], n: int,
           skip: str | None = None) -> np.ndarray:
  """Gather indices of one axis: position q takes θB's position idx[q]."""
  idx = np.arange(n)
  for name, pos in axis:
    if name != skip:
      idx[pos] = pos[np.asarray(perms[name])]
  return idx


def _permute_leaf(x: Any, axes: tuple[Axis | None, ...],
                  perms: dict[str, np.ndarray], skip_axis: int = -1
                  ) -> np.ndarray:
  x = np.asarray(x)
  for ax, axis in enumerate(axes):
    if axis is not None and ax != skip_axis:
      x = np.take(x, _index(axis, perms, x.shape[ax]), axis=ax)
  return x


def permute(s: PermSpec, variables: PyTree,
            perms: dict[str, np.ndarray]) -> PyTree:
  """Applies permutations to a model's variables (same function).

  Args:
    s: the model's spec.
    variables: {'params': ..., 'batch_stats': ...} (either may be absent),
      or a params tree alone when it has no such keys.
    perms: permutation name -> index array; unit k of the result is unit
      perms[name][k] of `variables`.

  Returns:
    The permuted variables, as numpy arrays, in the same tree structure.
  """
  flat = flax.traverse_util.flatten_dict(variables)
  collections = {'params', 'batch_stats'}
  out = {}
  for path, x in flat.items():
    rel = path[1:] if path[0] in collections else path
    axes = s.leaf_axes(rel)
    out[path] = _permute_leaf(x, axes, perms) if axes else np.asarray(x)
  return flax.traverse_util.unflatten_dict(out)


def identity(s: PermSpec) -> dict[str, np.ndarray]:
  """The identity permutations of a spec."""
  return {name: np.arange(n) for name, n in s.sizes.items()}


def random_perms(s: PermSpec, seed: int) -> dict[str, np.ndarray]:
  """A uniformly random permutation of each name (numpy Generator)."""
  rng = np.random.default_rng(seed)
  return {name: rng.permutation(n) for name, n in sorted(s.sizes.items())}


def inverse(perms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The inverse of each permutation."""
  return {k: np.argsort(v) for k, v in perms.items()}


# ------------------------------------------------------- weight matching


def _uses(s: PermSpec, flat_a: dict) -> dict[str, list]:
  """permutation name -> [(leaf path, axis index, positions)]."""
  uses: dict[str, list] = {name: [] for name in s.sizes}
  for path in flat_a:
    for ax, axis in enumerate(s.leaf_axes(path)):
      for name, pos in axis or ():
        uses[name].append((path, ax, pos))
  return uses


def _cost(s: PermSpec, name: str, uses: list, flat_a: dict, flat_b: dict,
          perms: dict[str, np.ndarray]) -> np.ndarray:
  """C[k, l] = Σ <θA's unit k, θB's unit l> over the leaves that hold the
  units of `name`, θB's other axes permuted by the current permutations."""
  n = s.sizes[name]
  cost = np.zeros((n, n))
  for path, ax, pos in uses:
    wb = _permute_leaf(flat_b[path], s.leaf_axes(path), perms, skip_axis=ax)
    wa = np.moveaxis(flat_a[path], ax, 0)[pos].reshape(n, -1)
    wb = np.moveaxis(wb, ax, 0)[pos].reshape(n, -1)
    cost += wa @ wb.T
  return cost


def weight_matching(s: PermSpec, params_a: PyTree, params_b: PyTree, *,
                    seed: int = 0, max_iter: int = 100
                    ) -> dict[str, np.ndarray]:
  """Permutations of θB's units that bring it closest to θA (module doc).

  Coordinate ascent: in a random order (numpy Generator `seed`), each
  permutation is solved exactly as a linear assignment with the others
  fixed; stops after a sweep over all of them that improved none (float64
  sums), or after `max_iter` sweeps.

  Args:
    s: the spec of the model both belong to.
    params_a, params_b: the two `params` trees (same structure).
    seed: the order of the permutations in each sweep.
    max_iter: the most sweeps.

  Returns:
    permutation name -> index array, to pass to `permute(s, θB, ...)`.

  >>> import jax
  >>> from valley_jax import models
  >>> m = models.build_model('mlp', 3, hidden=(5, 4), bn=False)
  >>> p = m.init(jax.random.key(0), np.ones((1, 2)))['params']
  >>> s = spec(m, p)
  >>> q = permute(s, p, random_perms(s, 1))
  >>> back = permute(s, q, weight_matching(s, p, q))
  >>> all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back),
  ...                                          jax.tree.leaves(p)))
  True
  """
  flat_a = {k: np.asarray(v, np.float64) for k, v in
            flax.traverse_util.flatten_dict(params_a).items()}
  flat_b = {k: np.asarray(v, np.float64) for k, v in
            flax.traverse_util.flatten_dict(params_b).items()}
  if flat_a.keys() != flat_b.keys():
    raise InputError('Weight matching needs two models with the same '
                     'parameters.')
  uses = _uses(s, flat_a)
  perms = identity(s)
  names = sorted(s.sizes)
  rng = np.random.default_rng(seed)
  for _ in range(max_iter):
    improved = False
    for i in rng.permutation(len(names)):
      name = names[i]
      cost = _cost(s, name, uses[name], flat_a, flat_b, perms)
      _, cols = optimize.linear_sum_assignment(cost, maximize=True)
      rows = np.arange(len(cols))
      old, new = cost[rows, perms[name]].sum(), cost[rows, cols].sum()
      if new > old + 1e-12 * max(1.0, abs(old)):
        improved = True
        perms[name] = cols
    if not improved:
      break
  return perms


def align(model: Any, variables_a: PyTree, variables_b: PyTree, *,
          seed: int = 0) -> tuple[PyTree, dict[str, np.ndarray]]:
  """θB's variables permuted to match θA's units (weight matching).

  Args:
    model: the registry module both belong to.
    variables_a, variables_b: {'params': ..., 'batch_stats': ...} (no
      batch_stats for a model without BN).
    seed: weight_matching's order seed.

  Returns:
    (θB's permuted variables, the permutations).
  """
  s = spec(model, variables_a['params'])
  perms = weight_matching(s, variables_a['params'], variables_b['params'],
                          seed=seed)
  return permute(s, variables_b, perms), perms
