"""Shared by the benchmark scripts: the device's name and best-of timing."""

import time

import jax


def device() -> str:
  """'gpu:NVIDIA H100 80GB HBM3', 'cpu:cpu', ..."""
  d = jax.devices()[0]
  return f'{d.platform}:{d.device_kind}'


def best(fn, repeats: int) -> tuple[float, float]:
  """(first call, best of `repeats` further calls) in seconds."""
  t = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return first, min(times)
