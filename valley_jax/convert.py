"""Torchvision state dicts -> the registry's Flax ResNets (params, batch_stats).

Supports torchvision's resnet18, resnet50 and resnext101_32x8d (the registry
models of the same names; valley_jax.models.resnet explains why their outputs
match). A state dict is read from `.safetensors` (the optional `safetensors`
package: pip install 'valley_jax[weights]'), `.npz` (numpy only) or
`.pth`/`.pt` (when PyTorch is installed; `torch.load(weights_only=True)`).

Names: torchvision's conv1/bn1 are conv_stem/bn_stem, `layer{s}.{b}.X` is
layer{s}_{b}/X, `downsample.0/.1` are conv_shortcut/bn_shortcut, fc is head.
Arrays: conv weights [O, I, H, W] -> kernels [H, W, I, O]; linear weights
[out, in] -> [in, out]; BN weight, bias -> params scale, bias and
running_mean, running_var -> batch_stats mean, var; num_batches_tracked is
ignored. Any missing or unexpected key or wrong shape is an error that names
them all.

>>> torch_key(('params', 'layer1_0', 'conv_shortcut', 'kernel'))
'layer1.0.downsample.0.weight'
>>> torch_key(('batch_stats', 'bn_stem', 'var'))
'bn1.running_var'
"""

import hashlib
import re
from typing import Any

from etils import epath
import flax
import jax.numpy as jnp
import numpy as np

from valley_jax import models
from valley_jax.errors import (InputError, InputFileError, MissingPackageError,
                               UserError)

_MODULES = {'conv_stem': 'conv1', 'bn_stem': 'bn1', 'head': 'fc',
            'conv_shortcut': 'downsample.0', 'bn_shortcut': 'downsample.1'}
_LEAVES = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
           ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
           ('batch_stats', 'var'): 'running_var'}
_IGNORED = 'num_batches_tracked'
_SHOWN = 8  # Names listed per kind of error.


def torch_key(path: tuple[str, ...]) -> str:
  """The torchvision state-dict key of a Flax variable path.

  Args:
    path: (collection, module..., leaf), e.g. ('params', 'head', 'kernel').

  Returns:
    The key, e.g. 'fc.weight'.
  """
  collection, *modules, leaf = path
  names = [_MODULES.get(m) or re.sub(r'^layer(\d+)_(\d+)$', r'layer\1.\2', m)
           for m in modules]
  return '.'.join([*names, _LEAVES[collection, leaf]])


def _to_flax(a: np.ndarray) -> np.ndarray:
  """OIHW -> HWIO, [out, in] -> [in, out]; vectors unchanged."""
  return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _to_torch(a: np.ndarray) -> np.ndarray:
  return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  """The torchvision shape of a Flax variable's shape."""
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape))


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a state dict as numpy arrays from .safetensors, .npz or .pth.

  Args:
    path: the file (an epath: local or gs://).

  Returns:
    key -> array.
  """
  p = epath.Path(path)
  if not p.exists():
    raise InputFileError(f'Weights file {path} does not exist.')
  if p.is_dir():
    raise InputError(f'Weights file {path} is a folder; name a .safetensors, '
                     '.npz or .pth file.')
  try:
    return _read(p, path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # numpy, safetensors and torch each fail in their own way on a file
    # that is not what its name says (numpy suggests allow_pickle, which
    # would run code from the file: never).
    raise InputError(
        f'Weights file {path} cannot be read as {p.suffix.lower()!r} '
        f'({type(e).__name__}). Is it whole, and of the format its name '
        'says? Pickled arrays are not read.') from None


def _read(p: epath.Path, path: str) -> dict[str, np.ndarray]:
  """load_state_dict's reading, by the file's suffix."""
  suffix = p.suffix.lower()
  if suffix == '.npz':
    with p.open('rb') as f:
      with np.load(f, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    if not out:
      raise InputError(f'Weights file {path} holds no arrays.')
    return out
  if suffix == '.safetensors':
    try:
      from safetensors import numpy as st  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise MissingPackageError(
          'Reading .safetensors needs the safetensors package: '
          "pip install 'valley_jax[weights]'.") from e
    return dict(st.load(p.read_bytes()))
  if suffix in ('.pth', '.pt'):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise MissingPackageError(
          f'Reading {path} needs PyTorch; or convert it to .safetensors or '
          '.npz where PyTorch is installed.') from e
    with p.open('rb') as f:
      sd = torch.load(f, map_location='cpu', weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in sd.items()}
  raise InputError(f'Unknown weights format {suffix!r} of {path}; use '
                   '.safetensors, .npz or .pth.')


def _listed(what: str, names: list[str]) -> str:
  more = f' (+{len(names) - _SHOWN} more)' if len(names) > _SHOWN else ''
  return f'{len(names)} {what}: {", ".join(names[:_SHOWN])}{more}'


def convert(state_dict: dict[str, Any], model, input_shape=(64, 64, 3),
            where: str = 'the state dict') -> dict[str, Any]:
  """A torchvision state dict as {'params', 'batch_stats'} of `model`.

  Args:
    state_dict: key -> array (numpy or anything np.asarray takes).
    model: the registry model (valley_jax.models.build_model) to fill.
    input_shape: one image's shape (the parameters' shapes do not depend on
      it; it only has to pass through the network).
    where: names the source in error messages.

  Returns:
    The variables, float32 jax arrays.

  Raises:
    ValueError: naming every missing and unexpected key and every shape
      mismatch.
  """
  target = models.abstract_variables(model, input_shape)
  flat = flax.traverse_util.flatten_dict(
      {c: target[c] for c in ('params', 'batch_stats') if c in target})
  keys = {torch_key(p): p for p in flat}
  given = {k for k in state_dict if not k.endswith(_IGNORED)}
  errors = []
  if missing := sorted(set(keys) - given):
    errors.append(_listed('missing keys', missing))
  if unexpected := sorted(given - set(keys)):
    errors.append(_listed('unexpected keys', unexpected))
  out = {}
  for k, path in keys.items():
    if k not in given:
      continue
    a, need = np.asarray(state_dict[k]), _torch_shape(flat[path].shape)
    if a.shape != need:
      errors.append(f'{k} has shape {a.shape}, the model needs {need}')
      continue
    out[path] = jnp.asarray(_to_flax(a), flat[path].dtype)
  if errors:
    raise InputError(f'{where} does not fit {type(model).__name__} '
                     f'({len(keys)} tensors): ' + '; '.join(errors))
  return flax.traverse_util.unflatten_dict(out)


def to_state_dict(variables: dict[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `convert`: torchvision keys and layouts (numpy).

  Args:
    variables: {'params', 'batch_stats'} of a registry ResNet.

  Returns:
    key -> array, ready for np.savez or safetensors.
  """
  flat = flax.traverse_util.flatten_dict(
      {c: variables[c] for c in ('params', 'batch_stats') if c in variables})
  # Contiguous: safetensors writes an array's buffer as it lies in memory.
  return {torch_key(p): np.ascontiguousarray(_to_torch(np.asarray(v)))
          for p, v in flat.items()}


def load_variables(path: str, model, input_shape=(64, 64, 3)) -> dict[str, Any]:
  """`convert(load_state_dict(path), model)`; errors name the file."""
  return convert(load_state_dict(path), model, input_shape, where=str(path))


def sha256(path: str) -> str:
  """The SHA-256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with epath.Path(path).open('rb') as f:
    while block := f.read(1 << 20):
      h.update(block)
  return h.hexdigest()


def provenance(path: str) -> dict[str, str]:
  """What a probe of a weights file measured: its path and SHA-256."""
  return {'weights': str(path), 'sha256': sha256(path)}
