"""Every file a main writes goes through here: atomic, strict JSON, checked.

* Atomic: a reader sees the old content or the new one, never a torn file.
  On a local disk a file is written to a temporary sibling and renamed over
  its destination. An object store (gs://) has no rename (gcsfs emulates it
  by copy + delete), but an object is created whole when its upload ends:
  there the file is uploaded in one write, straight to its name.
* Strict JSON: non-finite floats are written as `null`, never as the bare
  `NaN`/`Infinity` tokens that other JSON readers reject.
* Written once: in a multi-process run only process 0 writes (the others
  compute the same values and skip the write); the files belong on storage
  every process reads (a shared disk or gs://).
* Damaged outputs: `read_json`/`read_jsonl` return None for a file that is
  missing or cannot be parsed, so a rerun rebuilds it instead of crashing.

>>> import tempfile
>>> d = epath.Path(tempfile.mkdtemp())
>>> write_json(d / 'r.json', {'a': float('nan'), 'b': [1.0, float('inf')]})
>>> read_json(d / 'r.json')
{'a': None, 'b': [1.0, None]}
>>> (d / 'torn.json').write_text('{"a": 1')
7
>>> read_json(d / 'torn.json') is None
True
"""

import importlib.util
import json
import math
import os
import re
import threading
import uuid
from typing import Any, Iterable

from absl import logging
from etils import epath
import numpy as np

from valley_jax import distributed
from valley_jax.errors import InputError, MissingPackageError

# Object stores whose paths epath opens through a package of their own: the
# package, and the extra of valley_jax that installs it.
_STORES = {'gs': ('gcsfs', 'gcs')}


def finite_or_none(obj: Any) -> Any:
  """Non-finite floats become None (JSON null), recursively.

  NumPy scalars and arrays become Python numbers and lists.
  """
  if isinstance(obj, np.ndarray):
    obj = obj.tolist()
  elif isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: finite_or_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [finite_or_none(v) for v in obj]
  return obj


def dumps(obj: Any, indent: int | None = None) -> str:
  """Strict JSON text of `obj` (non-finite numbers as null)."""
  return json.dumps(finite_or_none(obj), indent=indent, allow_nan=False)


def is_remote(path: epath.PathLike) -> bool:
  """Whether `path` names an object store (gs://, s3://), not a local disk.

  >>> is_remote('gs://bucket/run'), is_remote('/tmp/run')
  (True, False)
  """
  return '://' in str(path)


def check_storage(path: epath.PathLike, what: str) -> None:
  """Raises MissingPackageError if `path` needs a package not installed.

  epath opens gs:// through gcsfs (or TensorFlow's gfile, where TensorFlow
  is installed); without either, the first read or write would stop a run
  with a bare ImportError. The mains check every path before any work.

  Args:
    path: a path (local or remote).
    what: the flag or config field naming it, for the message.
  """
  if not is_remote(path):
    return
  scheme = str(path).split('://', 1)[0].lower()
  if not re.fullmatch(r'[a-z][a-z0-9+.-]*', scheme):
    raise InputError(
        f"{what}={str(path)!r} holds '://' after {scheme!r}, which is not a "
        "storage scheme: a local name cannot contain '://'. Rename the "
        'folder, or write gs://BUCKET/FOLDER for Cloud Storage.')
  if scheme not in _STORES:
    raise InputError(
        f'{what}={str(path)!r} is on {scheme}://, which valley_jax does not '
        f'support: use a local (or mounted) folder, or '
        f'{" or ".join(f"{s}://" for s in _STORES)} (checkpoints, outputs and '
        "the compilation cache are written through Orbax's TensorStore and "
        'etils.epath, tested on those only).')
  module, extra = _STORES[scheme]
  if not any(importlib.util.find_spec(m) for m in (module, 'tensorflow')):
    raise MissingPackageError(
        f'{what}={str(path)!r} is on {scheme}://, which needs {module}: '
        f'pip install -e ".[{extra}]" (or pip install {module}), then run '
        'the same command again.')


# Seconds to wait for a gs:// bucket to answer (VALLEY_JAX_STORAGE_TIMEOUT).
STORAGE_TIMEOUT_ENV = 'VALLEY_JAX_STORAGE_TIMEOUT'
_STORAGE_TIMEOUT_S = 10.0


def bucket_of(path: epath.PathLike) -> str:
  """'gs://bucket' of a gs:// path.

  >>> bucket_of('gs://b/runs/x')
  'gs://b'
  """
  scheme, rest = str(path).split('://', 1)
  return f'{scheme}://{rest.split("/", 1)[0]}'


def check_reachable(path: epath.PathLike, what: str) -> None:
  """Raises InputError unless the bucket of a gs:// path answers within
  STORAGE_TIMEOUT_ENV seconds (default 10): once, before any work, instead of
  a minute of retries and an aiohttp traceback at the first write.

  Args:
    path: a gs:// path (other paths are not checked).
    what: the flag or config field naming it, for the message.
  """
  if not is_remote(path):
    return
  bucket = bucket_of(path)
  timeout = float(os.environ.get(STORAGE_TIMEOUT_ENV) or _STORAGE_TIMEOUT_S)
  out: dict[str, Any] = {}

  def ask():
    try:
      out['exists'] = epath.Path(bucket).exists()
    except Exception as e:  # pylint: disable=broad-except
      out['error'] = e

  thread = threading.Thread(target=ask, daemon=True, name='storage-check')
  thread.start()
  thread.join(timeout)
  hint = ('Check the network and the credentials (gcloud auth '
          'application-default login, or GOOGLE_APPLICATION_CREDENTIALS), '
          f'or wait longer with {STORAGE_TIMEOUT_ENV}=SECONDS.')
  if thread.is_alive():
    raise InputError(f'{what}={str(path)!r}: {bucket} did not answer within '
                     f'{timeout:g} s. {hint}')
  if 'error' in out:
    e = out['error']
    text = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
    if re.search(r'\b(401|403)\b|[Uu]nauthori[sz]ed|[Ff]orbidden|'
                 r'[Cc]redentials', text):
      raise InputError(f'{what}={str(path)!r}: access to {bucket} was '
                       f'refused ({text[:200]}). {hint}')
    raise InputError(f'{what}={str(path)!r}: {bucket} could not be reached '
                     f'({text[:200]}). {hint}')
  if not out['exists']:
    raise InputError(f'{what}={str(path)!r}: the bucket {bucket} does not '
                     'exist (or this account cannot see it). Create it, or '
                     'check its name.')


def write_bytes(path: epath.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically (module doc: 'Atomic').

  In a multi-process run only process 0 writes; the others return at once.
  """
  if not distributed.is_primary():
    return  # A multi-process run's files are written once, by process 0.
  path = epath.Path(path)
  if is_remote(path):
    path.write_bytes(data)  # One upload: the object appears whole.
    return
  tmp = path.parent / f'.{path.name}.tmp-{uuid.uuid4().hex[:8]}'
  try:
    tmp.write_bytes(data)
    tmp.replace(path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_text(path: epath.PathLike, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  write_bytes(path, text.encode('utf-8'))


def write_json(path: epath.PathLike, obj: Any, indent: int | None = 1) -> None:
  """Atomically writes strict JSON."""
  write_text(path, dumps(obj, indent) + '\n')


def write_jsonl(path: epath.PathLike, rows: Iterable[Any]) -> None:
  """Atomically writes JSON lines (the whole file: gs:// cannot append)."""
  write_text(path, ''.join(dumps(r) + '\n' for r in rows))


def append_jsonl(path: epath.PathLike, rows: list[Any]) -> None:
  """The last of `rows` appended as one JSON line, where the file already
  holds the others; object stores (no append) get all `rows` rewritten.

  Per-round logs use it: a rewrite costs O(rows) per row. A line torn by a
  kill is harmless, because a resumed run rewrites the file from its
  checkpoint (`checkpoint.rebuild_metrics`).

  Args:
    path: the JSON-lines file.
    rows: every row so far, the new one last.
  """
  if not distributed.is_primary():
    return
  path = epath.Path(path)
  if is_remote(path) or not path.exists():
    write_jsonl(path, rows)
    return
  with path.open('a') as f:
    f.write(dumps(rows[-1]) + '\n')


def read_json(path: epath.PathLike) -> Any | None:
  """The parsed file, or None when it is missing or damaged (logged)."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except (ValueError, UnicodeDecodeError) as e:
    logging.warning('Ignoring the unreadable %s (%s); it will be rebuilt.',
                    path, e)
    return None


def read_jsonl(path: epath.PathLike) -> list[Any] | None:
  """The rows of a JSON-lines file, or None when missing or damaged."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    text = path.read_text(encoding='utf-8')
    return [json.loads(line) for line in text.splitlines() if line.strip()]
  except (ValueError, UnicodeDecodeError) as e:
    logging.warning('Ignoring the unreadable %s (%s); it will be rebuilt.',
                    path, e)
    return None


def check_writable(path: epath.PathLike, what: str) -> epath.Path:
  """Creates folder `path` if needed and proves a file can be written there.

  Call it before any expensive work, so a bad output location fails at once.

  Args:
    path: an output folder (local or gs://).
    what: the flag or config field that names it, for the message.
  Returns:
    The folder as an epath.Path.
  Raises:
    ValueError: the path is a file, or cannot be created or written.
  """
  path = epath.Path(path)
  if path.exists() and not path.is_dir():
    raise InputError(f'{what}={str(path)!r} is a file, not a folder; choose '
                     'another path.')
  probe = path / f'.write-test-{uuid.uuid4().hex[:8]}'
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise InputError(f'{what}={str(path)!r} is not writable ({e}); choose a '
                     'folder you can write to.') from None
  return path
