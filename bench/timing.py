"""Shared by the benchmark scripts: the device's name, best-of timing and
the JSON line each result is printed (and appended) as."""

import json
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


def emit(record: dict, out: str = '') -> None:
  """Prints `record` as one JSON line and appends it to `out` if given."""
  line = json.dumps(record, ensure_ascii=False)
  print(line, flush=True)
  if out:
    with open(out, 'a', encoding='utf-8') as f:
      f.write(line + '\n')
