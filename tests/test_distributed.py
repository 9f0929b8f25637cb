"""Two processes on localhost run as one process with as many devices does.

`python probe.py` with its default config, started from another directory
as two CPU processes with two fake devices each (coordinator on a free
port): it trains the digits model for two epochs into runs/default (its
train_if_missing) and probes it (sign_ratio). A single process with four
devices does the same. The final parameters, the metrics and the curves
agree to float tolerance (cross-process sums add in another order).
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import free_port, launch_two

from valley_jax import checkpoint, defaults, distributed, rundir
from valley_jax.probe import runner as probe_runner


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRAIN = {'model.name': 'mlp', 'model.width': 0.125, 'train.epochs': 2,
          'data.n_train': 512, 'train.batch_size': 64,
          'train.eval_batch_size': 120}
_PROBE = {'kind': 'sign_ratio', 'seeds': 1, 'sweep.num_points': 5,
          'sweep.recal_samples': 200, 'sweep.recal_batch_size': 200,
          'sweep.eval_batch_size': 360, 'sign_ratio.ratios': (0.0, 1.0)}


def _flags(overrides, prefix: str = '') -> list[str]:
  return [f'--config.{prefix}{k}={v}' for k, v in overrides.items()]


def _reference(tmp_path):
  """The same run and probe in this process on four of its devices."""
  p = defaults.probe_config(str(tmp_path / 'ref'))
  p.update_from_flattened_dict(
      {**_PROBE, **{f'train.{k}': v for k, v in _TRAIN.items()}})
  p.train.num_devices = p.num_devices = 4
  p.train_if_missing = p.checkpoint
  paths = probe_runner.run(p, str(tmp_path / 'ref_probe'))
  return p.checkpoint, paths['sign_ratio']


def _rows(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _assert_close(a, b):
  np.testing.assert_allclose(np.asarray(a, np.float64),
                             np.asarray(b, np.float64), rtol=1e-5, atol=1e-6)


# One test uses the run: xdist would build a module fixture once per worker.
@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
  """probe.py's default run as two processes, from another directory."""
  tmp = tmp_path_factory.mktemp('multihost')
  dist = [f'--coordinator_address=localhost:{free_port()}',
          '--num_processes=2']
  flags = [*_flags(_PROBE), *_flags(_TRAIN, 'train.')]
  launch_two(lambda i: [sys.executable, os.path.join(_REPO, 'probe.py'),
                         *dist, f'--process_id={i}', *flags], tmp)
  return tmp


@pytest.mark.slow
def test_two_processes_equal_one_process(two_process_run, tmp_path):
  ref_work, ref_results = _reference(tmp_path)
  work = str(two_process_run / 'runs/default')
  assert checkpoint.epochs(work) == [0, 1, 2]
  got, cfg = checkpoint.restore_model(work)
  want, ref_cfg = checkpoint.restore_model(ref_work)
  assert cfg['model'] == ref_cfg['model'] and cfg['train'] == ref_cfg['train']
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    _assert_close(a, b)
  rows, ref_rows = (_rows(os.path.join(w, rundir.METRICS))
                    for w in (work, ref_work))
  assert [r['epoch'] for r in rows] == [1, 2]
  for key in ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy'):
    _assert_close([r[key] for r in rows], [r[key] for r in ref_rows])
  with open(two_process_run / 'runs/default/probe/sign_ratio/results.json'
            ) as f:
    res = json.load(f)
  with open(ref_results) as f:
    ref = json.load(f)
  assert len(res['curves']) == len(ref['curves']) == 2
  for c, r in zip(res['curves'], ref['curves']):
    assert c['label'] == r['label']
    _assert_close(c['loss'], r['loss'])
    _assert_close(c['error'], r['error'])
    # Per-example errors gathered over both processes: the same intervals.
    _assert_close(c['error_ci'], r['error_ci'])
  assert res['provenance'][0]['epoch'] == 2
  # Process 1 wrote nothing of its own, and no temporary file was left.
  stray = [f for _, _, fs in os.walk(two_process_run) for f in fs
           if '.tmp-' in f or '.write-test-' in f]
  assert not stray


def test_cluster_found_as_jax_finds_it(monkeypatch):
  """A SLURM step of 4 tasks is 4 processes; one task is nothing to join."""
  env = {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'node[1-2]',
         'SLURM_NTASKS': '4', 'SLURM_PROCID': '1', 'SLURM_LOCALID': '1'}
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert distributed.cluster_processes() == 4
  # --num_processes=1: one process whatever the environment says (a batch
  # script of an --ntasks=4 allocation that runs python without srun).
  assert distributed.initialize(num_processes=1) is False
  monkeypatch.setenv('SLURM_NTASKS', '1')
  assert distributed.cluster_processes() == 1
  assert distributed.initialize() is False  # One task: left alone.


@pytest.mark.parametrize('args', [('', 2, 0), ('localhost:1', 2, -1),
                                  ('localhost:1', 2, 2), ('', 0, 1)])
def test_partial_flags_refused(args):
  with pytest.raises(ValueError, match='needs all three'):
    distributed.initialize(*args)


@pytest.mark.slow
def test_help_names_the_flags_and_the_default_config(tmp_path):
  """--help (not only --helpfull) names --config, --workdir and the fields'
  doc; the default configs live beside the mains, not in the cwd."""
  for main, name in (('train.py', 'digits_cnn.py'),
                     ('probe.py', 'probe_default.py'),
                     ('fedsim.py', 'fed_digits.py')):
    out = subprocess.run([sys.executable, os.path.join(_REPO, main),
                          '--help'], cwd=tmp_path, capture_output=True,
                         text=True, check=False)
    assert os.path.join(_REPO, 'configs', name) in out.stdout, out.stderr[-500:]
    for needed in ('--config:', '--workdir:', '--config.FIELD=VALUE',
                   'docs/config-fields.md', '--num_processes'):
      assert needed in out.stdout, (main, needed)
