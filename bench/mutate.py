"""Checks the tests: plants one mutation at a time and sees if a test fails.

Each line of a JSON-lines list (default bench/mutations.jsonl) is one
mutation: {"id", "file", "find", "replace", "tests"}. `find` must occur
exactly once in `file`. For each mutation the tracked tree is copied to a
temporary folder, the mutation planted, and `pytest` runs the mutation's
`tests` there (with the copy first on PYTHONPATH, so the mutated package is
the one imported). A mutation is *killed* when a test fails, *survives*
when every test passes, and is *broken* when the mutation could not be
planted or no test ran. One JSON line per mutation, then a summary line:

  python bench/mutate.py                    # every mutation, 2 workers
  python bench/mutate.py --only scale-squared --workers 1

A survivor is a behaviour no test pins down: add a test that fails on it.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _tracked() -> list[str]:
  out = subprocess.run(['git', 'ls-files', '--cached', '--others',
                        '--exclude-standard'], cwd=_REPO, check=True,
                       capture_output=True, text=True).stdout
  return [f for f in out.splitlines() if (_REPO / f).is_file()]


def _copy(dest: pathlib.Path) -> None:
  for f in _tracked():
    target = dest / f
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_REPO / f, target)


def run_one(m: dict, workers: int) -> dict:
  """Plants mutation `m` in a copy of the tree and runs its tests."""
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix='mutant-') as tmp:
    root = pathlib.Path(tmp)
    _copy(root)
    path = root / m['file']
    src = path.read_text()
    if src.count(m['find']) != 1:
      return {'id': m['id'], 'status': 'broken',
              'why': f"'find' occurs {src.count(m['find'])} times"}
    path.write_text(src.replace(m['find'], m['replace']))
    tests = [t for t in m['tests'] if (root / t).exists()]
    if not tests:
      return {'id': m['id'], 'status': 'broken', 'why': 'no test file'}
    # tests/conftest.py gives each pytest run its own compilation cache.
    env = {k: v for k, v in os.environ.items()
           if k not in ('VALLEY_JAX_COMPILE_CACHE',
                        'JAX_COMPILATION_CACHE_DIR')}
    env['PYTHONPATH'] = str(root)
    cmd = [sys.executable, '-m', 'pytest', '-x', '-q', '-p',
           'no:cacheprovider', *(['-n', str(workers)] if workers > 1 else
                                 ['-p', 'no:xdist']), *tests]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True,
                         text=True)
    tail = out.stdout.strip().splitlines()[-1:] or ['']
    # pytest: 0 all passed, 1 a test failed, 5 no test ran; with xdist, -x
    # ends a run with a failure by status 2 ("Interrupted: stopping after 1
    # failures").
    stopped = out.returncode == 2 and 'stopping after' in out.stdout
    status = ('killed' if out.returncode == 1 or stopped else
              {0: 'survived'}.get(out.returncode, 'broken'))
    return {'id': m['id'], 'file': m['file'], 'status': status,
            'tests': tests, 'pytest': tail[0],
            'seconds': round(time.time() - t0, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--list', default=str(_REPO / 'bench' /
                                            'mutations.jsonl'))
  parser.add_argument('--only', nargs='*', default=None,
                      help='ids of the mutations to run (default: all)')
  parser.add_argument('--workers', type=int, default=2)
  args = parser.parse_args()
  mutations = [json.loads(line) for line in
               pathlib.Path(args.list).read_text().splitlines() if line]
  if args.only:
    mutations = [m for m in mutations if m['id'] in args.only]
  counts = {'killed': 0, 'survived': 0, 'broken': 0}
  for m in mutations:
    r = run_one(m, args.workers)
    counts[r['status']] += 1
    print(json.dumps(r, ensure_ascii=False), flush=True)
  tried = counts['killed'] + counts['survived']
  print(json.dumps({'summary': counts, 'kill_ratio': (
      round(counts['killed'] / tried, 3) if tried else None),
                    'date': time.strftime('%Y-%m-%d')}), flush=True)


if __name__ == '__main__':
  main()
