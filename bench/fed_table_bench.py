"""The fedsim digits table, old code against new, side by side in one run.

Each side runs `python fedsim.py --config=configs/fed_digits.py:<variant>`
in a fresh process with the persistent compilation cache off
(`--config.compile_cache=none`), so compilation is cold on both. The old
side is the tree of --old_commit (exported with `git archive` into a
temporary folder, run there); the new side is this checkout. Both get the
same variant and the same grids, so they run the same cells: by default
the whole digits table (`table`: 5 seeds, α ∈ {10, 1, 0.5}, 210 runs).
The old code's `table` variant was smaller (seeds 0-1, α ∈ {10, 0.5}) and
its default grids covered FedSign and FedProx only, so the old side runs a
config file written into its tree that sets the table's algorithms, α
values, seeds and grids to this checkout's for the variant. Everything
else is each side's own default; in particular the new side saves a
digits cell's last round only (`checkpoint_seconds = 30`, cells take about
a second) where the old one saved every 5 rounds
(`--new_flag=checkpoint_seconds=0` measures the new code with the old
cadence).

It prints (and with --out appends) one JSON line per side: wall seconds of
the whole command, the number of cells, and, for the new side, what its
table.json reports (compile seconds, run seconds, the real-step share),
then one line with the speed-up old / new.

  python bench/fed_table_bench.py \\
      --out=bench/results/fed_table_cpu_2cores_$(date +%F).jsonl
  python bench/fed_table_bench.py --variant=table,seed0   # one seed
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)


_OLD = flags.DEFINE_string('old_commit', 'd5a5214',
                           'The commit whose table code is the baseline.')
_VARIANT = flags.DEFINE_string(
    'variant', 'table',
    'Config variant of configs/fed_digits.py given to both sides.')
_FLAGS = flags.DEFINE_multi_string(
    'flag', [], 'More --config flags for both sides (repeatable).')
_NEW_FLAGS = flags.DEFINE_multi_string(
    'new_flag', [], 'More --config flags for the new side only.')
_SIDES = flags.DEFINE_list('sides', ['old', 'new'], 'Which sides to run.')
_OUT = flags.DEFINE_string('out', '', 'Append the JSON lines here.')


def _export(commit: str, folder: str) -> None:
  """The tree of `commit` into `folder` (git archive, no worktree)."""
  archive = subprocess.run(['git', '-C', _ROOT, 'archive', commit],
                           check=True, capture_output=True).stdout
  subprocess.run(['tar', '-x', '-C', folder], input=archive, check=True)


_TABLE_CONFIG = '''"""The digits table of {commit} with today's cells."""
from valley_jax import defaults


def get_config(arg=None):
  c = defaults.fed_offline('digits', arg)
  c.table.algorithms = {algorithms!r}
  c.table.alphas = {alphas!r}
  c.table.seeds = {seeds!r}
  c.table.grids = {grids!r}
  return c
'''


def _table_config(tree: str) -> str:
  """A config of the old tree whose table has this checkout's cells for
  --variant: its algorithms, α values, seeds and grids (the old `table`
  variant was smaller, and its default grids covered two algorithms)."""
  from valley_jax import defaults  # pylint: disable=g-import-not-at-top
  t = defaults.fed_offline('digits', _VARIANT.value).table
  grids = {a: {k: tuple(v) for k, v in g.items()}
           for a, g in t.grids.to_dict().items()}
  name = 'configs/bench_fed_digits_table.py'
  with open(os.path.join(tree, name), 'w') as f:
    f.write(_TABLE_CONFIG.format(
        commit=_OLD.value, algorithms=tuple(t.algorithms),
        alphas=tuple(t.alphas), seeds=tuple(t.seeds), grids=grids))
  return name


def _run_side(name: str, tree: str, workdir: str, extra,
              config: str = 'configs/fed_digits.py') -> dict:
  cmd = [sys.executable, 'fedsim.py',
         f'--config={config}:{_VARIANT.value}',
         f'--workdir={workdir}', '--config.compile_cache=none',
         *[f'--config.{f}' for f in (*_FLAGS.value, *extra)]]
  env = {**os.environ, 'PYTHONPATH': tree}
  t0 = time.time()
  proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True,
                        text=True, check=False)
  wall = time.time() - t0
  if proc.returncode:
    sys.stderr.write(proc.stderr[-4000:])
    raise SystemExit(f'{name} side failed with status {proc.returncode}')
  with open(os.path.join(workdir, 'table.json')) as f:
    table = json.load(f)
  row = {'side': name, 'wall_s': round(wall, 1),
         'cells': len(table['cells']), 'variant': _VARIANT.value,
         'flags': list(_FLAGS.value) + list(extra)}
  if 'timing' in table:
    row['timing'] = table['timing']
  row['table'] = table['rows']
  return row


def _device() -> str:
  """bench/timing.device() asked in a child process: a backend held by
  this process would take accelerator memory from the runs it times."""
  return subprocess.run(
      [sys.executable, '-c', 'from timing import device; print(device())'],
      cwd=os.path.dirname(os.path.abspath(__file__)), check=True,
      capture_output=True, text=True).stdout.strip().splitlines()[-1]


def main(argv):
  del argv
  stamp = {'device': _device(), 'date': time.strftime('%Y-%m-%d'),
           'load_avg': os.getloadavg()[0]}
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for side in _SIDES.value:
      if side == 'old':
        tree = os.path.join(tmp, 'old')
        os.makedirs(tree)
        _export(_OLD.value, tree)
        row = _run_side('old', tree, os.path.join(tmp, 'old_run'), (),
                        config=_table_config(tree))
        row['commit'] = _OLD.value
      else:
        row = _run_side('new', _ROOT, os.path.join(tmp, 'new_run'),
                        _NEW_FLAGS.value)
      rows.append({**stamp, **row})
      print(json.dumps({k: v for k, v in rows[-1].items() if k != 'table'}),
            flush=True)
  by = {r['side']: r for r in rows}
  if {'old', 'new'} <= set(by):
    rows.append({**stamp, 'speedup': round(
        by['old']['wall_s'] / by['new']['wall_s'], 2)})
    print(json.dumps(rows[-1]))
  if _OUT.value:
    with open(_OUT.value, 'a') as f:
      for r in rows:
        f.write(json.dumps(r) + '\n')


if __name__ == '__main__':
  app.run(main)
