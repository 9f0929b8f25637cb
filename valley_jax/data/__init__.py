"""Data: sources (offline, TFDS, CINIC-10), batching, augmentation, splits."""

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
           'subset', 'take_train']


def check_name(name: str, field: str = 'config.data.name') -> None:
  """Raises ValueError unless `name` is a dataset of the registry."""
  if name not in DATASETS:
    raise InputError(f'Unknown dataset {name!r}; choose one of '
                     f'{sorted(DATASETS)} ({field}).')


def from_config(cfg) -> Dataset:
  """The dataset a `config.data` block describes (with subsets and halves)."""
  kwargs = dict(cfg.get('kwargs', {}))
  if cfg.get('data_dir'):
    kwargs['data_dir'] = cfg.data_dir
  ds = load_dataset(cfg.name, **kwargs)
  if cfg.get('n_train') or cfg.get('n_test'):
    ds = subset(ds, cfg.get('n_train'), cfg.get('n_test'), cfg.get('seed', 0))
  if cfg.get('half') is not None:
    ds = half(ds, cfg.half, cfg.get('seed', 0))
  return ds
