"""Deterministic batching, on-device normalisation and augmentation, splits."""

import jax
import jax.numpy as jnp
import numpy as np

from valley_jax.data.sources import Dataset
from valley_jax.errors import InputError


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch: a pure function of (seed, epoch)."""
  return np.random.default_rng((seed, epoch)).permutation(n)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int,
                  shuffle: bool = True) -> np.ndarray:
  """Index batches [num_batches, batch_size] of one epoch (drop remainder).

  >>> epoch_batches(10, 4, seed=0, epoch=0, shuffle=False).tolist()
  [[0, 1, 2, 3], [4, 5, 6, 7]]
  """
  if batch_size <= 0:
    raise InputError(f'batch_size must be positive, got {batch_size}.')
  if batch_size > n:
    raise InputError(f'batch_size {batch_size} exceeds the {n} examples.')
  order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
  steps = n // batch_size
  return order[:steps * batch_size].reshape(steps, batch_size)


def padded_batches(n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """All n examples in order, padded to full batches, with a 0/1 weight."""
  steps = -(-n // batch_size)
  idx = np.arange(steps * batch_size)
  return (np.minimum(idx, n - 1).reshape(steps, batch_size),
          (idx < n).astype(np.float32).reshape(steps, batch_size))


def normalize(x: jnp.ndarray, mean, std) -> jnp.ndarray:
  """uint8 images to standardised float32; float inputs pass through."""
  if x.dtype == jnp.uint8:
    x = x.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
  return x.astype(jnp.float32)


def augment(key: jax.Array, x_BHWC: jnp.ndarray, pad: int = 4) -> jnp.ndarray:
  """Random crop with zero padding `pad` and a random horizontal flip."""
  b, h, w, _ = x_BHWC.shape
  k_crop, k_flip = jax.random.split(key)
  padded = jnp.pad(x_BHWC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(
      im, (o[0], o[1], 0), (h, w, im.shape[-1])))
  x = crop(padded, offsets)
  flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1], x)


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Two disjoint halves of range(n), uniformly at random (model soups)."""
  perm = np.random.default_rng((seed, 1_000_003)).permutation(n)
  return np.sort(perm[:n // 2]), np.sort(perm[n // 2:])


def take_train(ds: Dataset, idx: np.ndarray) -> Dataset:
  """The dataset with its training set restricted to `idx`."""
  return Dataset(ds.name, ds.x_train[idx], ds.y_train[idx], ds.x_test,
                 ds.y_test, ds.num_classes, ds.mean, ds.std)


def subset(ds: Dataset, n_train: int | None, n_test: int | None,
           seed: int = 0) -> Dataset:
  """A fixed random subset (seeded) of the train and/or test sets."""
  def pick(n_all, n, salt):
    if n is None or n >= n_all:
      return np.arange(n_all)
    return np.sort(np.random.default_rng((seed, salt)).permutation(n_all)[:n])
  tr, te = pick(len(ds.y_train), n_train, 1), pick(len(ds.y_test), n_test, 2)
  return Dataset(ds.name, ds.x_train[tr], ds.y_train[tr], ds.x_test[te],
                 ds.y_test[te], ds.num_classes, ds.mean, ds.std)


def half(ds: Dataset, which: int, seed: int) -> Dataset:
  """Half `which` (0 or 1) of the training set, from split_halves."""
  if which not in (0, 1):
    raise InputError(f'config.data.half must be 0 or 1, got {which}.')
  return take_train(ds, split_halves(len(ds.y_train), seed)[which])
