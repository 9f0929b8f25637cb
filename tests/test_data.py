"""Data sources, deterministic batching, augmentation and splits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from valley_jax import data


def test_epoch_batches_deterministic_and_cover():
  a = data.epoch_batches(100, 10, seed=3, epoch=5)
  b = data.epoch_batches(100, 10, seed=3, epoch=5)
  c = data.epoch_batches(100, 10, seed=3, epoch=6)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(np.sort(a.ravel()), np.arange(100))


def test_epoch_batches_drop_remainder_and_errors():
  assert data.epoch_batches(10, 4, 0, 0).shape == (2, 4)
  with pytest.raises(ValueError, match='positive'):
    data.epoch_batches(10, 0, 0, 0)


def test_padded_batches_weights():
  idx, w = data.padded_batches(5, 2)
  assert idx.shape == (3, 2) and w.sum() == 5
  assert idx[-1].tolist() == [4, 4] and w[-1].tolist() == [1.0, 0.0]


def test_split_halves_disjoint_cover():
  a, b = data.split_halves(101, seed=0)
  assert len(a) == 50 and len(b) == 51
  assert not set(a) & set(b)
  np.testing.assert_array_equal(np.sort(np.concatenate([a, b])),
                                np.arange(101))
  a2, _ = data.split_halves(101, seed=0)
  np.testing.assert_array_equal(a, a2)


def test_subset_is_fixed():
  ds = data.load_synthetic((4,), 3, n_train=50, n_test=20)
  s1, s2 = data.subset(ds, 10, 5, seed=1), data.subset(ds, 10, 5, seed=1)
  np.testing.assert_array_equal(s1.x_train, s2.x_train)
  assert len(s1.y_train) == 10 and len(s1.y_test) == 5


def test_digits_split_and_standardised():
  ds = data.load_digits()
  assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape[0] == 360
  assert abs(ds.x_train.mean()) < 1e-5 and abs(ds.x_train.std() - 1) < 1e-4


def test_augment_only_crops_and_flips():
  x = jnp.arange(2 * 6 * 6 * 3, dtype=jnp.float32).reshape(2, 6, 6, 3)
  y = data.augment(jax.random.key(0), x, pad=0)  # No crop: flips only.
  for i in range(2):
    assert (np.array_equal(y[i], x[i]) or
            np.array_equal(y[i], x[i, :, ::-1]))
  z = data.augment(jax.random.key(1), x, pad=2)
  assert z.shape == x.shape
  # Every crop window is a shifted copy: each value lies in the original
  # image or in the zero padding.
  assert set(np.unique(z)) <= set(np.unique(x)) | {0.0}


def test_normalize_uint8():
  x = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
  out = data.normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
  np.testing.assert_allclose(out, 1.0)


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


def test_mnist1d_generated_and_cached(tmp_path):
  ds = data.load_dataset('mnist1d', data_dir=str(tmp_path))
  assert ds.x_train.shape == (4000, 40) and ds.num_classes == 10
  assert (tmp_path / 'mnist1d_seed42.npz').exists()
  again = data.load_dataset('mnist1d', data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_unknown_dataset():
  with pytest.raises(ValueError, match='Unknown dataset'):
    data.load_dataset('cifar11')
