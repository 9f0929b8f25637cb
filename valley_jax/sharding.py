"""The one module that touches jax.sharding: a 1D 'data' mesh and its specs.

The mesh spans the devices of every process of a multi-process run
(`valley_jax.distributed`). Arrays split over it are built from each
process's own rows (`process_positions`, `gather`, `put_sharded`): a process
reads and transfers only the part of a batch its devices hold, and
`jax.make_array_from_process_local_data` assembles the global array.
Parameters and directions are replicated (`put_replicated`). With one process
all of this is plain `jax.device_put`.

>>> mesh = make_mesh(1)
>>> mesh.shape['data']
1
"""

import functools
from typing import Any

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from valley_jax.errors import InputError

DATA = 'data'


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A mesh over the first `num_devices` devices (0 = all of them).

  `jax.devices()` lists the devices of every process of a multi-process run,
  so the mesh spans them all; such a run must use all of them.
  """
  available = jax.device_count()
  n = num_devices or available
  if not 0 < n <= available:
    raise InputError(f'config.num_devices={num_devices} but {available} '
                     'devices are available; use 0 for all of them.')
  if jax.process_count() > 1 and n != available:
    raise InputError(f'config.num_devices={num_devices}: a run of '
                     f'{jax.process_count()} processes uses all {available} '
                     'devices; set config.num_devices=0.')
  return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh, axis: int = 0) -> NamedSharding:
  """Splits array axis `axis` over the data axis of the mesh."""
  return NamedSharding(mesh, P(*([None] * axis), DATA))


def put_replicated(mesh, tree: Any) -> Any:
  return jax.device_put(tree, replicated(mesh))


@functools.lru_cache(maxsize=64)
def process_positions(mesh, n: int) -> np.ndarray:
  """The positions along a length-n axis split over the mesh that this
  process's devices hold, in order (all of range(n) with one process).

  >>> process_positions(make_mesh(1), 3).tolist()
  [0, 1, 2]
  """
  check_divisible(mesh, n, 'the sharded axis')
  blocks = sharded(mesh).addressable_devices_indices_map((n,)).values()
  ranges = sorted(set(s[0].indices(n)[:2] for s in blocks))
  pos = np.concatenate([np.arange(a, b) for a, b in ranges])
  pos.flags.writeable = False  # Cached: shared by every caller.
  return pos


def _take(a, pos: np.ndarray, axis: int):
  if len(pos) == np.shape(a)[axis]:
    return np.asarray(a)  # One process holds it all: no copy.
  return np.take(np.asarray(a), pos, axis=axis)


def put_process_local(mesh, local: Any, n: int, axis: int = 0) -> Any:
  """Global arrays of length n along `axis`, split over the mesh, from this
  process's part of them (its `process_positions` along that axis)."""
  where = sharded(mesh, axis)
  if jax.process_count() == 1:
    return jax.device_put(local, where)  # The same, with less overhead.

  def one(a):
    a = np.asarray(a)
    shape = (*a.shape[:axis], n, *a.shape[axis + 1:])
    return jax.make_array_from_process_local_data(where, a, shape)
  return jax.tree.map(one, local)


def put_sharded(mesh, tree: Any, axis: int = 0) -> Any:
  """Host arrays split over the mesh along `axis`; each process transfers
  only its own part (all processes pass the same arrays)."""
  def one(a):
    n = np.shape(a)[axis]
    return put_process_local(mesh, _take(a, process_positions(mesh, n), axis),
                             n, axis)
  return jax.tree.map(one, tree)


def gather(mesh, arrays: Any, idx: np.ndarray, axis: int = 0) -> Any:
  """`a[idx]` for every host array `a`, split over the mesh along `axis` of
  `idx`: each process reads only the rows its devices hold, which is what
  keeps a process from touching examples of other processes.

  Args:
    mesh: the mesh.
    arrays: a pytree of host arrays (anything `a[int_array]` reads from),
      indexed on their first axis.
    idx: integer indices, e.g. a batch [B] or batches [S, B].
    axis: the axis of `idx` split over the mesh.
  Returns:
    The pytree of global arrays of shape idx.shape + a.shape[1:].

  >>> x = np.arange(10.0)
  >>> gather(make_mesh(1), x, np.array([[3, 1], [0, 2]]), axis=1).tolist()
  [[3.0, 1.0], [0.0, 2.0]]
  """
  idx = np.asarray(idx)
  n = idx.shape[axis]
  mine = _take(idx, process_positions(mesh, n), axis)
  return put_process_local(
      mesh, jax.tree.map(lambda a: np.asarray(a[mine]), arrays), n, axis)


def to_host(tree: Any) -> Any:
  """NumPy copies of (possibly multi-process) arrays, whole on every process.

  Replicated or fully addressable arrays are read locally; arrays split over
  several processes are gathered first.
  """
  def one(a):
    if isinstance(a, jax.Array) and not (a.is_fully_addressable
                                         or a.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree.map(one, tree)


def check_divisible(mesh, size: int, what: str) -> None:
  n = mesh.shape[DATA]
  if size % n:
    raise InputError(f'{what}={size} must be divisible by the {n} devices of '
                     f'the mesh; change it or set config.num_devices.')


def size(mesh) -> int:
  """Number of devices on the mesh's data axis (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[DATA]


def map_blocks(fn, mesh, sharded: tuple[bool, ...]):
  """fn run on every device with its block of the leading axis.

  Arguments flagged in `sharded` are split on their leading axis over the
  data axis (its size must divide by the devices); the others are passed
  whole to every device. The outputs are concatenated on their leading axis.
  The replication check is off: per-device loops (lax.scan) whose carry starts
  from replicated values and picks up per-device data are what this is for.

  >>> import jax.numpy as jnp
  >>> f = map_blocks(lambda a, b: a * b, make_mesh(1), (True, False))
  >>> f(jnp.arange(3.0), jnp.float32(2)).tolist()
  [0.0, 2.0, 4.0]
  """
  specs = tuple(P(DATA) if s else P() for s in sharded)
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(DATA),
                       check_vma=False)
