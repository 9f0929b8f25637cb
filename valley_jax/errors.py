"""The project's errors for user mistakes: one base class, one boundary.

Every error that means "what was asked for cannot be done as asked" (a
config value, a file, a dataset, a workdir, a missing package, a busy
workdir) is a `UserError`. The three mains catch it at one boundary
(`valley_jax.cli.boundary`) and print its message (what, where, the fix)
without a traceback, exiting with status 2; `--verbosity=1` or
VALLEY_JAX_TRACEBACK=1 shows the traceback too. Any other exception is a
bug or an unexpected fault and keeps its traceback.

Each class also derives from the built-in exception that code and tests
caught before (ValueError, FileNotFoundError, ...), so
`except ValueError` still catches an `InputError`.

>>> issubclass(InputError, ValueError), issubclass(InputError, UserError)
(True, True)
"""


class UserError(Exception):
  """A mistake in what the user asked for; its message names the fix."""


class InputError(UserError, ValueError):
  """A config value, argument or file content that cannot be used."""


class InputFileError(UserError, FileNotFoundError):
  """A file or folder the user named does not exist or holds nothing."""


class MissingPackageError(UserError, ImportError):
  """An optional package that this input needs is not installed."""


class WorkdirBusyError(UserError, RuntimeError):
  """Another process writes into this workdir now."""
