"""Watching a run: TensorBoard event files and progress lines in the log.

`Watcher` is what train.py and fedsim.py (each run, each table cell) write
through besides metrics.jsonl, which stays the record a resume rebuilds from:

* TensorBoard event files in the run's workdir, so that
  `tensorboard --logdir runs` shows every run under it (a training run, a
  fedsim run, each cell of a table) with its scalars, its config (text
  `config`) and its hyperparameters (the HParams tab). A resumed run starts
  a new event file whose first event discards the steps after the resumed
  one in the older files (TensorBoard's purge), so a curve is never drawn
  twice.
* One line on stderr every `every_s` seconds (and at the end): steps done,
  % done, steps/s since the last line and the ETA, the form batch systems
  keep in their logs where a progress bar is a stream of carriage returns.

Only the lead process (process 0) writes; the others keep a silent Watcher.

The event files are written with tensorboardX, not CLU's
`metric_writers.create_default_writer`: CLU's TensorBoard writer (and
`import clu.metric_writers` as a whole) needs TensorFlow, about 605 MB of
downloads (tensorflow 572 MB, libclang 25 MB, h5py, keras, ...), against
0.1 MB for tensorboardX, whose other needs (protobuf, numpy) the default
install has already. The files are the same TFRecord event format, read by
TensorBoard and by `tensorboard.backend.event_processing` (the test extra).
gs:// workdirs are written through etils.epath (gcsfs): the event file is
uploaded whole at each flush, as TensorFlow's own writer does on GCS.
"""

import io
import json
import math
import os
import sys
import time
from typing import Any

import tqdm
from absl import logging
from etils import epath

from valley_jax import distributed, outputs

# Seconds between progress lines (and between event file flushes).
EVERY_S = 60.0


# tensorboardX opens event files through a factory chosen by the text before
# the first ':' of the path; local logdirs get this prefix so that they are
# written by _EventFile too.
_LOCAL = 'valleyjaxlocal'


class _EventFile:
  """An event file that a write fault cannot stop the run through: the
  first OSError (a full disk) is logged once and later events are dropped;
  metrics.jsonl remains the record. On gs:// (no appends) the file is kept
  in memory and uploaded whole at each flush.
  """

  def __init__(self, path: str):
    self.remote = not path.startswith(_LOCAL + ':')
    self.path = path if self.remote else path[len(_LOCAL) + 1:]
    self.buffer, self.file, self.broken = io.BytesIO(), None, False

  def _guard(self, fn, *args) -> None:
    if self.broken:
      return
    try:
      fn(*args)
    except OSError as e:
      self.broken = True
      logging.warning('TensorBoard events stop here (%s: %s); metrics.jsonl '
                      'keeps every row.', self.path, e)

  def write(self, data: bytes) -> None:
    if self.remote:
      self.buffer.write(data)
    else:
      self._guard(self._append, data)

  def _append(self, data: bytes) -> None:
    if self.file is None:
      self.file = open(self.path, 'ab')  # pylint: disable=consider-using-with
    self.file.write(data)

  def flush(self) -> None:
    if self.remote:
      self._guard(outputs.write_bytes, self.path, self.buffer.getvalue())
    elif self.file is not None:
      self._guard(self.file.flush)

  def close(self) -> None:
    self.flush()
    if self.file is not None:
      try:
        self.file.close()
      except OSError:
        pass
      self.file = None


class _EventFiles:
  """tensorboardX's writer factory interface, for _EventFile."""

  def open(self, path: str) -> _EventFile:
    return _EventFile(path)

  def directory_check(self, path: str) -> None:
    if path.startswith(_LOCAL + ':'):
      epath.Path(path[len(_LOCAL) + 1:]).mkdir(parents=True, exist_ok=True)


def _writer(logdir: str, purge_step: int | None):
  """A tensorboardX SummaryWriter (imported here: 0.3 s of protobuf)."""
  import tensorboardX  # pylint: disable=g-import-not-at-top
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  if outputs.is_remote(logdir):
    record_writer.register_writer_factory(str(logdir).split('://', 1)[0],
                                          _EventFiles())
  else:
    record_writer.register_writer_factory(_LOCAL, _EventFiles())
    logdir = f'{_LOCAL}:{os.path.abspath(os.path.expanduser(logdir))}'
  return tensorboardX.SummaryWriter(logdir=logdir, purge_step=purge_step,
                                    flush_secs=int(EVERY_S))


def flat_hparams(config: dict[str, Any]) -> dict[str, Any]:
  """A config dict as TensorBoard hyperparameters: dotted keys, values that
  are bool, int, float or str (others as their JSON text).

  >>> flat_hparams({'optim': {'lr': 0.1, 'name': 'sgd'}, 'keep': (1, 2)})
  {'optim.lr': 0.1, 'optim.name': 'sgd', 'keep': '[1, 2]'}
  """
  out = {}
  for k, v in config.items():
    if isinstance(v, dict):
      out.update({f'{k}.{kk}': vv for kk, vv in flat_hparams(v).items()})
    elif isinstance(v, (bool, int, float, str)):
      out[k] = v
    else:
      out[k] = json.dumps(v)
  return out


def progress_line(what: str, done: int, total: int, rate: float,
                  unit: str = 'steps') -> str:
  """One progress line.

  >>> progress_line('train', 50, 200, 2.5)
  'train: 50/200 steps (25.0%), 2.50 steps/s, ETA 0:01:00'
  """
  if rate > 0:
    h, rem = divmod(round((total - done) / rate), 3600)
    eta = f'{h}:{rem // 60:02d}:{rem % 60:02d}'
  else:
    eta = '?'
  return (f'{what}: {done}/{total} {unit} ({100 * done / max(total, 1):.1f}%)'
          f', {rate:.2f} {unit}/s, ETA {eta}')


class Watcher:
  """TensorBoard scalars and progress lines of one run (see module doc).

  Args:
    workdir: the run's folder; the event files go there.
    what: names the run in progress lines ('train', 'fedsim fedavg').
    config: the run's config dict (recorded as text and hyperparameters).
    total: the number of steps (or rounds) of the whole run.
    start: the steps already done (a resumed run).
    unit: what a step is called in progress lines ('steps', 'rounds').
    every_s: seconds between progress lines.
    tensorboard: write event files (progress lines are written either way).
  """

  def __init__(self, workdir: str, what: str, config: dict[str, Any], *,
               total: int, start: int = 0, unit: str = 'steps',
               every_s: float = EVERY_S, tensorboard: bool = True):
    self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
    self.lead = distributed.is_primary()
    self.last_t, self.last_done = time.monotonic(), start
    self.writer = None
    if self.lead and tensorboard:
      # Steps after `start` in older event files were lost with the process
      # that wrote them: TensorBoard drops them (purge) from this step on.
      self.writer = _writer(workdir, start + 1 if start else None)
      self._record_config(config, start)

  def _record_config(self, config: dict[str, Any], step: int) -> None:
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    text = outputs.dumps(config, indent=2)
    self.writer.add_text('config', f'```\n{text}\n```', step)
    for event in summary.hparams(flat_hparams(config), {}):
      self.writer.file_writer.add_summary(event)

  def scalars(self, step: int, values: dict[str, Any]) -> None:
    """Writes the finite numbers of `values` at `step` (others skipped)."""
    if self.writer is None:
      return
    for k, v in values.items():
      if isinstance(v, (int, float)) and not isinstance(v, bool) and (
          math.isfinite(v)):
        self.writer.add_scalar(k, v, step)

  def step(self, done: int, *, force: bool = False) -> None:
    """Called after each step: a progress line when `every_s` have passed
    (or `force`), with the rate since the last line (also as the scalar
    `<unit>_per_second`)."""
    now = time.monotonic()
    if not self.lead or (now - self.last_t < self.every_s and not force):
      return
    if done == self.last_done:
      return
    rate = (done - self.last_done) / max(now - self.last_t, 1e-9)
    tqdm.tqdm.write(progress_line(self.what, done, self.total, rate,
                                  self.unit), file=sys.stderr)
    self.scalars(done, {f'{self.unit}_per_second': rate})
    self.last_t, self.last_done = now, done

  def close(self) -> None:
    """Flushes and closes the event file."""
    if self.writer is not None:
      self.writer.close()
      self.writer = None

