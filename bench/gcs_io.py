"""What gs:// costs a probe: the default study on object storage vs a disk.

Runs configs/probe_default.py's studies (noise_types, sign_ratio, special)
on the digits CNN twice per round, in one process with a warm compilation
cache, so the two runs differ only in where they read and write:

* `local`: checkpoint on the local disk, --workdir on the local disk;
* `gcs`: the same checkpoint copied to gs://, --workdir on gs://, served by
  a local fake-gcs-server (tests/gcs.py; the `test` extra installs it).

Each run starts from an empty workdir, so everything is computed and
written. One JSON line per run (its seconds), then a summary line with the
medians and the gs:// overhead (the difference of the medians: all of it
is I/O, since the computation is the same). An emulator on loopback has no
network latency; on real GCS each request costs tens of milliseconds more.

  python bench/gcs_io.py --rounds=3 \\
      --out=bench/results/gcs_io_cpu_2cores_$(date +%F).jsonl
"""

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
sys.path.insert(0, _REPO)
sys.path.insert(0, os.path.join(_REPO, 'tests'))

_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Measured (local, gcs) pairs.')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON lines here.')


def _emit(row, out):
  line = json.dumps(row)
  print(line, flush=True)
  if out:
    with open(out, 'a', encoding='utf-8') as f:
      f.write(line + '\n')


def main(argv):
  del argv
  import gcs  # pylint: disable=g-import-not-at-top
  if why := gcs.missing():
    raise SystemExit(why)
  emulator = gcs.Emulator()
  import fsspec  # pylint: disable=g-import-not-at-top
  from valley_jax import compile_cache  # pylint: disable=g-import-not-at-top
  from valley_jax.probe import runner  # pylint: disable=g-import-not-at-top
  from valley_jax.train import runner as train_runner  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'probe_default', os.path.join(_REPO, 'configs', 'probe_default.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  tmp = tempfile.mkdtemp(prefix='gcs_io_')
  compile_cache.enable(os.path.join(tmp, 'jax_cache'), min_compile_secs=0)
  base = module.get_config()
  local_ckpt = os.path.join(tmp, 'ckpt')
  train_runner.run(base.train, local_ckpt)  # Not timed.
  gs_ckpt = f'gs://{gcs.BUCKET}/ckpt'
  fsspec.filesystem('gs').put(local_ckpt, gs_ckpt, recursive=True)

  def probe(ckpt, workdir):
    c = module.get_config()
    c.checkpoint = ckpt
    c.train_if_missing = ''
    t0 = time.perf_counter()
    runner.run(c, workdir)
    return time.perf_counter() - t0

  probe(local_ckpt, os.path.join(tmp, 'warm'))  # Compiles; not timed.
  times = {'local': [], 'gcs': []}
  for i in range(_ROUNDS.value):
    for where, ckpt, work in (
        ('local', local_ckpt, os.path.join(tmp, f'local{i}')),
        ('gcs', gs_ckpt, f'gs://{gcs.BUCKET}/probe{i}')):
      s = probe(ckpt, work)
      times[where].append(s)
      _emit({'run': where, 'round': i, 'seconds': round(s, 2)}, _OUT.value)
  emulator.stop()
  med = {k: statistics.median(v) for k, v in times.items()}
  _emit({'summary': 'probe_default studies, warm compilation cache',
         'local_s': round(med['local'], 2), 'gcs_s': round(med['gcs'], 2),
         'gcs_overhead_s': round(med['gcs'] - med['local'], 2),
         'gcs_over_local': round(med['gcs'] / med['local'], 3),
         'rounds': _ROUNDS.value, 'date': time.strftime('%Y-%m-%d'),
         'machine': f'{os.cpu_count()} CPU cores, gs:// on a loopback '
                    'fake-gcs-server'}, _OUT.value)


if __name__ == '__main__':
  app.run(main)
