"""The one module that touches jax.sharding: a 1D 'data' mesh and its specs.

>>> mesh = make_mesh(1)
>>> mesh.shape['data']
1
"""

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = 'data'


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A mesh over the first `num_devices` devices (0 = all local devices)."""
  available = jax.device_count()
  n = num_devices or available
  if not 0 < n <= available:
    raise ValueError(f'config.num_devices={num_devices} but {available} '
                     'devices are available; use 0 for all of them.')
  return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh, axis: int = 0) -> NamedSharding:
  """Splits array axis `axis` over the data axis of the mesh."""
  return NamedSharding(mesh, P(*([None] * axis), DATA))


def put_replicated(mesh, tree: Any) -> Any:
  return jax.device_put(tree, replicated(mesh))


def put_sharded(mesh, tree: Any, axis: int = 0) -> Any:
  return jax.device_put(tree, sharded(mesh, axis))


def check_divisible(mesh, size: int, what: str) -> None:
  n = mesh.shape[DATA]
  if size % n:
    raise ValueError(f'{what}={size} must be divisible by the {n} devices of '
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
