"""data/pipeline.py: deterministic batching, augmentation, normalisation,
halves and subsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
