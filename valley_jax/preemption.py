"""Pre-emption: SIGTERM and SIGINT stop a main at a step it can resume from.

A batch scheduler pre-empts a job with SIGTERM and a grace period; a person
stops one with Ctrl-C (SIGINT). Inside `graceful()` neither kills the
process: the handler only records the signal, and the runner asks
`requested(step)` after every step (an optimiser step of train.py, a round
of fedsim.py). When it says yes, the runner saves an exact checkpoint of
that step, writes its outputs and raises `Preempted`, whose message says
what was saved and how to resume; the mains' error boundary
(`valley_jax.cli.boundary`) prints it and exits with `STATUS` (75,
EX_TEMPFAIL of sysexits.h: a temporary failure, run the same command again).
A second Ctrl-C stops at once (KeyboardInterrupt), as without a handler.

`graceful(interrupt=True)` (probe.py) raises `Preempted` from the handler
itself, between two Python bytecodes of the main thread: the kind in flight
stops after the compiled call it is in (a sweep chunk), and only that kind
is lost; every finished kind's results are on disk.

Several processes (`jax.distributed` initialised): JAX's preemption service
catches SIGTERM on every host and agrees on one step at which all hosts stop
(`multihost_utils.reached_preemption_sync_point`), so all save the same step
together; no Python handler is installed then, and `requested` asks the
service. Every process must call `requested` at every step, with the same
step numbers.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

import jax
from absl import logging
from jax.experimental import multihost_utils

# Exit status of a pre-empted main (EX_TEMPFAIL: run the same command again).
STATUS = 75
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(BaseException):
  """A run stopped by a signal after saving what a resume needs.

  A BaseException, like KeyboardInterrupt: the probe raises it from the
  signal handler wherever the main thread is, and the `except Exception`
  blocks that turn a library's failure into a message (a checkpoint that
  cannot be read, say) must not swallow it; cli.boundary catches it.

  Attributes:
    saved: what was saved, e.g. 'epoch 3, step 17 of 40 (global step 137)'.
    resume: how to resume ('run the same command again').
  """

  def __init__(self, saved: str, resume: str = 'run the same command again'):
    self.saved, self.resume = saved, resume
    super().__init__(f'Stopped by {signal_name()}: saved {saved}. To resume, '
                     f'{resume}.')


class _State:
  signum: int | None = None
  depth: int = 0
  interrupt: bool = False


_state = _State()


def signal_name() -> str:
  """'SIGTERM' or 'SIGINT': the signal received (or 'a signal')."""
  if _state.signum is None:
    return ('a preemption notice (SIGTERM to a process of this run)'
            if _distributed() else 'a signal')
  return signal.Signals(_state.signum).name


def _distributed() -> bool:
  return jax.process_count() > 1 and jax.distributed.is_initialized()


def _handler(signum, frame) -> None:
  del frame
  if _state.signum == signal.SIGINT and signum == signal.SIGINT:
    raise KeyboardInterrupt  # A second Ctrl-C stops at once.
  first = _state.signum is None
  _state.signum = signum
  if first:
    logging.warning('%s received: %s', signal.Signals(signum).name,
                    'stopping now; finished results are kept.'
                    if _state.interrupt else
                    'finishing the step in flight, then saving a checkpoint.')
  if _state.interrupt and first:
    raise Preempted('every finished part (the part in flight is computed '
                    'again)')


@contextlib.contextmanager
def graceful(interrupt: bool = False) -> Iterator[None]:
  """Within the block SIGTERM and SIGINT are recorded, not fatal.

  Nested blocks keep the outer block's handler until they end; the innermost
  `interrupt` setting is in force. Outside the main thread, and when
  jax.distributed is initialised (JAX's preemption service handles SIGTERM
  there), no handler is installed.

  Args:
    interrupt: raise Preempted from the handler at once (probe.py) instead
      of waiting for the runner to ask `requested`.

  Yields:
    None.
  """
  if threading.current_thread() is not threading.main_thread() or (
      _distributed()):
    yield
    return
  previous = {s: signal.getsignal(s) for s in _SIGNALS}
  outer_interrupt = _state.interrupt
  _state.interrupt = interrupt
  if _state.depth == 0:
    _state.signum = None
  _state.depth += 1
  for s in _SIGNALS:
    signal.signal(s, _handler)
  try:
    yield
  finally:
    _state.depth -= 1
    _state.interrupt = outer_interrupt
    if _state.depth == 0:
      _state.signum = None
    for s, h in previous.items():
      signal.signal(s, h)


def requested(step: int) -> bool:
  """Whether to stop after `step` (a signal came; with several processes,
  whether all have reached the step the preemption service chose).

  Args:
    step: the number of the step just finished (the same on every process).

  Returns:
    True once the run should save `step` and stop.
  """
  if _distributed():
    return multihost_utils.reached_preemption_sync_point(step)
  return _state.signum is not None


def pending() -> bool:
  """Whether a signal has been received in this `graceful` block (no sync:
  for decisions that every process takes the same way anyway)."""
  return _state.signum is not None
