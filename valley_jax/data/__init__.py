"""Data: sources (offline, TFDS, CINIC-10), batching, augmentation, splits."""

import numpy as np

# The dispatcher stays `partition.partition`: exporting it here would hide
# the submodule `valley_jax.data.partition` behind a function of that name.
from valley_jax.data.partition import (ClientArrays, dirichlet_partition,
                                       iid_partition, label_histogram,
                                       mean_label_entropy, pad_clients)
from valley_jax.data.pipeline import (augment, epoch_batches,
                                      epoch_permutation, half, normalize,
                                      padded_batches, split_halves, subset,
                                      take_train)
from valley_jax.data.sources import (DATASETS, TFDS, Dataset, load_cinic10,
                                     load_dataset, load_digits, load_mnist1d,
                                     load_synthetic, load_tfds)
from valley_jax.errors import InputError

__all__ = ['DATASETS', 'TFDS', 'ClientArrays', 'Dataset', 'augment',
           'check_name', 'dirichlet_partition', 'epoch_batches',
           'epoch_permutation', 'from_config', 'half', 'iid_partition',
           'label_histogram', 'load_cinic10', 'load_dataset', 'load_digits',
           'load_mnist1d', 'load_synthetic', 'load_tfds', 'mean_label_entropy',
           'normalize', 'pad_clients', 'padded_batches', 'split_halves',
           'keep_classes', 'parse_classes', 'subset', 'take_train']


def check_name(name: str, field: str = 'config.data.name') -> None:
  """Raises ValueError unless `name` is a dataset of the registry."""
  if name not in DATASETS:
    raise InputError(f'Unknown dataset {name!r}; choose one of '
                     f'{sorted(DATASETS)} ({field}).')


def from_config(cfg) -> Dataset:
  """The dataset a `config.data` block describes: its classes (if
  `classes` is set), then the subsets (n_train, n_test), then the half."""
  kwargs = dict(cfg.get('kwargs', {}))
  if cfg.get('data_dir'):
    kwargs['data_dir'] = cfg.data_dir
  ds = load_dataset(cfg.name, **kwargs)
  if cfg.get('classes'):
    ds = keep_classes(ds, parse_classes(cfg.classes, ds.num_classes))
  if cfg.get('n_train') or cfg.get('n_test'):
    ds = subset(ds, cfg.get('n_train'), cfg.get('n_test'), cfg.get('seed', 0))
  if cfg.get('half') is not None:
    ds = half(ds, cfg.half, cfg.get('seed', 0))
  return ds


def parse_classes(spec: str, num_classes: int) -> tuple[int, ...]:
  """Labels from 'A-B' ranges and single labels, comma-separated.

  `config.data.classes` is this string (not a tuple of numbers: a label may
  be 0, and the string reads the same on the command line).

  Args:
    spec: e.g. '0-4' or '5,7-9'.
    num_classes: the dataset's number of classes (labels must be below it).

  Returns:
    The labels, sorted and unique.

  >>> parse_classes('5,7-9', 10), parse_classes('0-4', 10)
  ((5, 7, 8, 9), (0, 1, 2, 3, 4))
  """
  labels = set()
  try:
    for part in filter(None, str(spec).replace(' ', '').split(',')):
      lo, _, hi = part.partition('-')
      labels.update(range(int(lo), int(hi or lo) + 1))
  except ValueError:
    labels = set()
  if not labels or min(labels) < 0 or max(labels) >= num_classes:
    raise InputError(f'config.data.classes={spec!r}: give labels in [0, '
                     f'{num_classes - 1}] as ranges and single labels, '
                     "comma-separated, e.g. '0-4' or '5,7-9'.")
  return tuple(sorted(labels))


def keep_classes(ds: Dataset, classes) -> Dataset:
  """The train and test examples of these labels only.

  Labels are kept as they are (the model keeps ds.num_classes outputs), so a
  run on classes '5-9' and one on '0-4' share an architecture: the second
  can start from the first with a fresh head (config.train.init_fresh).

  Args:
    ds: a dataset.
    classes: the labels to keep.

  Returns:
    The dataset restricted to those labels (order kept).
  """
  keep = np.asarray(sorted(classes))
  tr, te = np.isin(ds.y_train, keep), np.isin(ds.y_test, keep)
  return Dataset(ds.name, ds.x_train[tr], ds.y_train[tr], ds.x_test[te],
                 ds.y_test[te], ds.num_classes, ds.mean, ds.std)
