"""JAX's persistent compilation cache, switched on from a config directory.

A rerun of a probe (or a second study on the same model) then loads its
executables from disk instead of compiling them again. The mains call
`enable(config.compile_cache)` before anything is compiled:

* '' or 'none': the cache stays off (as JAX starts).
* 'default': `default_dir()`, i.e. $VALLEY_JAX_COMPILE_CACHE if set, else
  $XDG_CACHE_HOME/valley_jax/jax (~/.cache/valley_jax/jax).
* any other string: that directory (a local or gs:// path).

Executables that compiled in under `min_compile_secs` are not written: for
them, reading the file costs about as much as compiling.

>>> enable('none') is None
True
"""

import os

from absl import logging
import jax
from jax.experimental.compilation_cache import compilation_cache

from valley_jax import outputs
from valley_jax.errors import InputError

# Values of config.compile_cache that leave the cache off.
OFF = ('', 'none')
# Words that mean "off" to a reader but are not OFF: refused, not taken
# as a folder name (./off).
_OFF_WORDS = ('off', 'false', 'no', '0', 'disable', 'disabled', 'null')
# The env variable that overrides the default directory (tests point it to a
# temporary directory, CI to 'none').
ENV = 'VALLEY_JAX_COMPILE_CACHE'


def default_dir() -> str:
  """$VALLEY_JAX_COMPILE_CACHE, else <user cache>/valley_jax/jax.

  Returns:
    The directory (may be 'none': the env variable switches the cache off).
  """
  if os.environ.get(ENV) is not None:
    return os.environ[ENV]
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'valley_jax', 'jax')


def check(value: str, field: str = 'config.compile_cache') -> None:
  """Raises InputError unless `value` names a usable cache (module doc).

  A word that reads as "off" but is not 'none' ('off', 'false', ...) is
  refused rather than taken as a folder of that name; so are a path that is
  a file and a folder that cannot be created or written. Nothing is created.

  Args:
    value: the config value.
    field: the config field, for the message.
  """
  if not isinstance(value, str):
    raise InputError(f"{field}={value!r} must be a directory, 'default' or "
                     "'none' (a string).")
  word = value.strip().lower()
  if word in _OFF_WORDS:
    raise InputError(f'{field}={value!r} would cache in a folder named '
                     f"{value!r}. To switch the cache off, pass "
                     f"--{field}=none; to use such a folder, name it as a "
                     f'path (./{value.strip()}).')
  path = default_dir() if word == 'default' else value.strip()
  if path.lower() in OFF or outputs.is_remote(path):
    return
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f'{field}={value!r} is a file ({path}); name a '
                     "directory, or 'none' for no cache.")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK | os.X_OK):
    raise InputError(f'{field}={value!r}: {parent} is not writable, so the '
                     "cache cannot live there; name another directory, or "
                     "'none' for no cache.")


def enable(value: str = 'default', min_compile_secs: float = 0.1,
           min_entry_bytes: int = 0) -> str | None:
  """Points JAX's persistent compilation cache at a directory.

  Args:
    value: '' / 'none' (off), 'default' (default_dir()) or a directory.
    min_compile_secs: executables that compiled faster are not cached.
    min_entry_bytes: smaller executables are not cached.

  Returns:
    The directory in use, or None when the cache is off.
  """
  check(value)
  path = default_dir() if value.strip().lower() == 'default' else value
  if path.strip().lower() in OFF:
    _set_dir(None)
    return None
  if not outputs.is_remote(path):
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
  _set_dir(path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    float(min_compile_secs))
  jax.config.update('jax_persistent_cache_min_entry_size_bytes',
                    int(min_entry_bytes))
  logging.info('JAX compilation cache: %s', path)
  return path


def _set_dir(path: str | None) -> None:
  """Sets the cache directory; a changed one is opened anew on next use."""
  if jax.config.jax_compilation_cache_dir == path:
    return
  jax.config.update('jax_compilation_cache_dir', path)
  compilation_cache.reset_cache()
