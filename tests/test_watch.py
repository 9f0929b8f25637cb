"""valley_jax.watch: TensorBoard event files read back with TensorBoard's
own reader, progress lines, and event writing that a full disk cannot stop."""

import json
import pathlib

import numpy as np
import pytest
from conftest import tensorboard_scalars as scalars

from valley_jax import watch


def plugin_tags(workdir, plugin: str) -> set[str]:
  """The tags a TensorBoard plugin ('text', 'hparams') finds in a run."""
  accumulator = pytest.importorskip(
      'tensorboard.backend.event_processing.event_accumulator')
  acc = accumulator.EventAccumulator(str(workdir))
  acc.Reload()
  return set(acc.PluginTagToContent(plugin))


def _rows(workdir):
  return [json.loads(line) for line in
          pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_train_run_scalars_read_back(trained_mlp):
  """trained_mlp: 3 epochs of 8 steps; epoch rows at steps 8, 16, 24."""
  got = scalars(trained_mlp)
  rows = _rows(trained_mlp)
  for key in ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy',
              'lr'):
    assert [s for s, _ in got[key]] == [8, 16, 24]
    np.testing.assert_array_equal(
        [v for _, v in got[key]], np.float32([r[key] for r in rows]))
  assert 'epoch' not in got and 'steps_per_second' in got
  assert plugin_tags(trained_mlp, 'text') == {'config/text_summary'}
  assert '_hparams_/experiment' in plugin_tags(trained_mlp, 'hparams')


def test_progress_line_every_interval(tmp_path, capsys):
  w = watch.Watcher(str(tmp_path), 'train', {}, total=200, start=50,
                    every_s=0.0, tensorboard=False)
  w.step(50)  # Nothing done since the start: no line.
  w.step(150)
  line = capsys.readouterr().err.strip()
  assert line.startswith('train: 150/200 steps (75.0%), ')
  rate = float(line.split(', ')[1].split()[0])
  assert rate > 0 and line == watch.progress_line('train', 150, 200, rate)
  w.close()
  assert not list(tmp_path.iterdir())  # tensorboard=False writes nothing.


def test_eta_by_hand():
  assert watch.progress_line('x', 0, 36000, 1.0).endswith('ETA 10:00:00')
  assert watch.progress_line('x', 10, 10, 3.0).endswith('ETA 0:00:00')
  assert watch.progress_line('x', 1, 10, 0.0).endswith('ETA ?')


def test_event_file_write_fault_is_logged_once_not_raised(tmp_path, caplog):
  # pylint: disable=protected-access
  f = watch._EventFile(f'{watch._LOCAL}:{tmp_path}/missing/events')
  f.write(b'x')  # The folder does not exist: open fails.
  f.write(b'y')
  f.flush()
  f.close()
  assert f.broken
  assert sum('TensorBoard events stop here' in r.getMessage()
             for r in caplog.records) == 1


def test_config_is_recorded_as_hyperparameters(tmp_path):
  pytest.importorskip('tensorboard')
  w = watch.Watcher(str(tmp_path), 'fed', {'optim': {'lr': 0.1}, 'seed': 3},
                    total=2, unit='rounds')
  w.scalars(1, {'test_accuracy': 0.5, 'clients': [1, 2], 'flag': True,
                'bad': float('nan')})
  w.close()
  assert scalars(tmp_path) == {'test_accuracy': [(1, 0.5)]}
  assert {'_hparams_/experiment', '_hparams_/session_start_info'} <= (
      plugin_tags(tmp_path, 'hparams'))
