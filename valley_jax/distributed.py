"""Several processes, one run: jax.distributed set-up and who writes files.

A run launched as several processes (a TPU pod slice: one process per host;
a GPU cluster: one per host or per GPU) is the same program in every process.
`initialize` joins them into one JAX runtime before anything touches a
device, so `jax.devices()` lists the devices of all processes and the mesh
of `valley_jax.sharding` spans them all. The processes are found

* from explicit flags (`--coordinator_address`, `--num_processes`,
  `--process_id`, see `define_flags`), for a launcher JAX does not know
  (several processes on one machine, as the two-process test does), or
* from the environment, as `jax.distributed.initialize()` does with no
  arguments: Cloud TPU VMs (GCE or GKE), SLURM (`srun`), Open MPI
  (`mpirun`). A cluster environment with a single process (one SLURM task,
  one TPU host) is left alone: nothing to join.

On CPU, cross-process collectives use Gloo, which is JAX's default
(`jax_cpu_collectives_implementation='gloo'` since JAX 0.5); nothing is set
here.

Every process computes the same things in the same order (the collectives
and Orbax's checkpoint barriers need it), but only the primary process
(`jax.process_index() == 0`) writes metrics.jsonl, results.json and figures
(`is_primary`, used by `valley_jax.outputs`).

>>> initialize()  # One process and no cluster: nothing to do.
False
"""

import contextlib
import os
import sys
import threading
from typing import Any

from absl import flags, logging
import jax

from valley_jax.errors import InputError

# Environment variables of the launchers whose processes JAX can find
# (SLURM, Open MPI, TPU on GKE); on Cloud TPU VMs JAX itself knows
# (`running_in_cloud_tpu_vm`) and asks the metadata server.
_CLUSTER_HINTS = ('SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri',
                  'TPU_WORKER_HOSTNAMES', 'TPU_PROCESS_ADDRESSES',
                  'MEGASCALE_COORDINATOR_ADDRESS')


# Seconds a process waits for the others to join (--process_timeout).
DEFAULT_TIMEOUT = 180


def define_flags(flag_values=flags.FLAGS) -> tuple[Any, Any, Any, Any]:
  """Defines --coordinator_address, --num_processes, --process_id and
  --process_timeout.

  For the mains; they pass the values to `initialize`. Left at their
  defaults, the processes are found from the environment.

  Args:
    flag_values: the absl FlagValues to define them in.
  Returns:
    The four FlagHolders.
  """
  return (
      flags.DEFINE_string(
          'coordinator_address', '',
          'host:port of process 0 for a multi-process run (empty: found '
          'from the environment on TPU pods, SLURM and Open MPI).',
          flag_values=flag_values),
      flags.DEFINE_integer(
          'num_processes', 0, 'Number of processes of a multi-process run '
          '(0: from the environment).', flag_values=flag_values),
      flags.DEFINE_integer(
          'process_id', -1, 'This process: 0 .. num_processes - 1 (-1: from '
          'the environment).', flag_values=flag_values),
      flags.DEFINE_integer(
          'process_timeout', DEFAULT_TIMEOUT, 'Seconds to wait for every '
          'process of a multi-process run to join before giving up with a '
          'message.', flag_values=flag_values))


def cluster_processes() -> int:
  """The number of processes a known cluster launcher started (1 if none).

  Asks the cluster environments of JAX (`jax._src.clusters`, the ones
  `jax.distributed.initialize()` tries, in its order) on a Cloud TPU VM or
  when a launcher's environment variables are set; if JAX's private module
  moved, it warns and counts as no cluster (the flags still work).

  >>> cluster_processes()  # Not started by a cluster launcher.
  1
  """
  try:
    # pylint: disable=g-import-not-at-top
    from jax._src import cloud_tpu_init, clusters
    if not (cloud_tpu_init.running_in_cloud_tpu_vm
            or any(k in os.environ for k in _CLUSTER_HINTS)):
      return 1  # An ordinary machine: no cluster to ask.
    # pylint: disable-next=protected-access
    envs = [e for e in clusters.ClusterEnv._cluster_types
            if not e.opt_in_only_method]
    env = next((e for e in envs if e.is_env_present()), None)
    return 1 if env is None else int(env.get_process_count())
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not ask JAX for the cluster (%r); running as one '
                    'process. Pass --coordinator_address, --num_processes '
                    'and --process_id to join several.', e)
    return 1


def _check_explicit(coordinator_address: str, num_processes: int,
                    process_id: int) -> None:
  if not coordinator_address or num_processes < 1 or not (
      0 <= process_id < num_processes):
    raise InputError(
        f'--coordinator_address={coordinator_address!r}, --num_processes='
        f'{num_processes}, --process_id={process_id}: a multi-process run '
        'named by flags needs all three (host:port of process 0, the count, '
        'and this process in 0 .. count - 1).')


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1,
               timeout_s: int = DEFAULT_TIMEOUT) -> bool:
  """Joins the processes of a multi-process run (call before any JAX work).

  Args:
    coordinator_address: 'host:port' of process 0 ('' = from the
      environment).
    num_processes: the number of processes (0 = from the environment; 1 =
      a single process even inside a cluster allocation).
    process_id: this process (-1 = from the environment).
    timeout_s: how long to wait for the other processes. When they have not
      all joined by then, this process prints which run it waited for and
      exits with status 2 (JAX itself would abort the interpreter).
  Returns:
    Whether jax.distributed was initialised (False for a single process).
  Raises:
    ValueError: the flags name a multi-process run only in part.
  """
  if jax.distributed.is_initialized():
    return True
  if num_processes == 1:  # Said by hand: one process, whatever the cluster.
    return False
  if coordinator_address or num_processes > 1 or process_id >= 0:
    _check_explicit(coordinator_address, num_processes, process_id)
    if num_processes == 1:
      return False
    with _watchdog(timeout_s, coordinator_address, num_processes,
                   process_id):
      jax.distributed.initialize(coordinator_address, num_processes,
                                 process_id,
                                 initialization_timeout=timeout_s + 30)
  elif cluster_processes() > 1:
    with _watchdog(timeout_s, 'from the environment', 0, -1):
      jax.distributed.initialize(initialization_timeout=timeout_s + 30)
  else:
    return False
  logging.info('Process %d of %d; %d devices in all, %d here.',
               jax.process_index(), jax.process_count(), jax.device_count(),
               jax.local_device_count())
  return True


@contextlib.contextmanager
def _watchdog(timeout_s: int, coordinator: str, num_processes: int,
              process_id: int):
  """Exits with a message (status 2) if the block outlives `timeout_s`.

  jax.distributed.initialize blocks in C++ while it waits for the other
  processes and, at its own timeout, aborts the interpreter with a C++
  stack; this timer fires first (JAX is given 30 s more) and says what was
  waited for instead.
  """
  def fire():
    others = (f'processes {sorted(set(range(num_processes)) - {process_id})}'
              if num_processes else 'the other processes')
    sys.stderr.write(
        f'Error: this is process {process_id} of {num_processes or "?"}; '
        f'{others} did not join within {timeout_s} s (coordinator '
        f'{coordinator}). Start every process with the same '
        '--coordinator_address and --num_processes and its own '
        '--process_id, check that the coordinator\'s port is reachable, or '
        'wait longer with --process_timeout. Nothing was written.\n')
    sys.stderr.flush()
    os._exit(2)  # pylint: disable=protected-access

  timer = threading.Timer(timeout_s, fire)
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    timer.cancel()


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def progress_disabled() -> bool | None:
  """tqdm's `disable`: bars on the primary process only (None = when a TTY)."""
  return None if is_primary() else True
