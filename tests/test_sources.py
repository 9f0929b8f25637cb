"""data/sources.py: offline sources, TFDS (large datasets read only their
subsets), CINIC-10 from a folder, mnist1d."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from valley_jax import data
from valley_jax.data import sources


class _Recorder:
  """Wraps a random-access source and records the indices read."""

  def __init__(self, source, log):
    self.source, self.log = source, log

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    self.log.append(i)
    return self.source[i]


def _record(monkeypatch, make):
  """Replaces tfds.data_source; returns {split: indices read}."""
  reads = {}

  def data_source(name, split, **kw):
    del name, kw
    return _Recorder(make(split), reads.setdefault(split, []))

  monkeypatch.setattr(tfds, 'data_source', data_source)
  return reads


def test_imagenet_reads_only_its_subset(monkeypatch):
  with tfds.testing.mock_data(num_examples=40):
    real = tfds.data_source
    reads = _record(monkeypatch, lambda split: real(
        'imagenet2012', split=split, download=False))
    monkeypatch.setattr(sources, 'READ_BATCH', 2)
    ds = data.load_dataset('imagenet2012', image_size=8, train_count=3,
                           test_count=5)
  assert sorted(reads['validation']) == sources.subset_indices(40, 5).tolist()
  assert len(reads['train']) == 3
  assert ds.x_test.shape == (5, 8, 8, 3) and ds.x_test.dtype == np.uint8
  assert ds.num_classes == 1000 and ds.mean == (0.485, 0.456, 0.406)


def test_imagenet_defaults_are_fixed_subsets():
  spec = data.TFDS['imagenet2012']
  assert (spec.test_split, spec.test_count) == ('validation', 5000)
  assert round(224 * spec.resize_ratio) == 256  # Resize(256), crop 224.
  a, b = sources.subset_indices(50_000, 5000), sources.subset_indices(
      50_000, 5000)
  assert len(set(a.tolist())) == 5000 and np.array_equal(a, b)
  assert np.all(np.diff(a) > 0) and a[-1] < 50_000


class _Fake:
  """A split of `n` tiny images whose label is their index."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {'image': np.full((6, 4, 3), i % 256, np.uint8), 'label': i}


def test_flowers_2000_train_of_train_plus_validation(monkeypatch):
  sizes = {'train+validation': 2040, 'test': 6149}
  reads = _record(monkeypatch, lambda split: _Fake(sizes[split]))
  ds = data.load_dataset('oxford_flowers102', image_size=4)
  assert set(reads) == {'train+validation', 'test'}
  assert len(ds.y_train) == len(ds.y_test) == 2000
  assert ds.y_train.tolist() == sources.subset_indices(2040, 2000).tolist()
  assert len(set(ds.y_test.tolist())) == 2000 and ds.y_test.max() < 6149
  assert sorted(reads['test']) == ds.y_test.tolist()


def test_resize_is_torchvision_eval_transform():
  """A 6x4 (H x W) image under Resize(4) stays 6x4 (its shorter side is 4);
  CenterCrop(2) starts at row round((6 - 2) / 2) = 2, column 1."""
  img = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4, 1).repeat(3, 2)
  out = sources._resize(img, 2, 4)
  np.testing.assert_array_equal(out[..., 0], [[9, 10], [13, 14]])


def test_digits_split_and_standardised():
  ds = data.load_digits()
  assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape[0] == 360
  assert abs(ds.x_train.mean()) < 1e-5 and abs(ds.x_train.std() - 1) < 1e-4


def test_tfds_mock_loading():
  with tfds.testing.mock_data(num_examples=12):
    ds = data.load_dataset('cifar10')
  assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_train.dtype == np.uint8
  assert ds.num_classes == 10 and ds.augmentable


def test_tfds_mock_resizes_large_images():
  with tfds.testing.mock_data(num_examples=3):
    ds = data.load_dataset('oxford_flowers102', image_size=16)
  assert ds.x_train.shape[1:] == (16, 16, 3)


def test_tfds_not_prepared_says_how(tmp_path):
  with pytest.raises(FileNotFoundError, match='tfds build svhn_cropped'):
    data.load_dataset('svhn_cropped', data_dir=str(tmp_path))


def test_cinic10_from_folder(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for split in ('train', 'test'):
    for c in ('airplane', 'cat'):
      d = tmp_path / 'cinic10' / split / c
      d.mkdir(parents=True)
      for i in range(2):
        Image.fromarray(np.full((32, 32, 3), i * 9, np.uint8)).save(
            d / f'{i}.png')
  ds = data.load_dataset('cinic10', data_dir=str(tmp_path))
  assert ds.x_train.shape == (4, 32, 32, 3)
  assert ds.y_train.tolist() == [0, 0, 1, 1]


def test_cinic10_missing_says_how(tmp_path):
  with pytest.raises(FileNotFoundError, match='cinic10'):
    data.load_dataset('cinic10', data_dir=str(tmp_path))


@pytest.mark.slow
def test_mnist1d_generated_and_cached(tmp_path):
  ds = data.load_dataset('mnist1d', data_dir=str(tmp_path))
  assert ds.x_train.shape == (4000, 40) and ds.num_classes == 10
  assert (tmp_path / 'mnist1d_seed42.npz').exists()
  again = data.load_dataset('mnist1d', data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_unknown_dataset():
  with pytest.raises(ValueError, match='Unknown dataset'):
    data.load_dataset('cifar11')
