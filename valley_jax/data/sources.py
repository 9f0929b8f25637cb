"""Dataset sources: offline (digits, mnist1d, synthetic), TFDS, CINIC-10.

Every source returns a `Dataset` of in-memory numpy arrays. Images from real
datasets stay uint8 and are normalised on the device (`pipeline.normalize`);
offline sources are already float32 and standardised (mean 0, std 1).
"""

from concurrent import futures
import dataclasses
from typing import Any, Callable

from etils import epath
import numpy as np

from valley_jax.errors import InputError, InputFileError

# Per-channel statistics of the raw [0, 1] pixels.
_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_SVHN = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CINIC = ((0.4789, 0.4723, 0.4305), (0.2421, 0.2383, 0.2587))


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test arrays plus what is needed to normalise them."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.x_train.shape[1:])

  @property
  def augmentable(self) -> bool:
    """Random crop + flip apply to colour images only."""
    return self.x_train.ndim == 4 and self.x_train.shape[-1] == 3


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  """How a TFDS dataset is read.

  A split with a count is read as a fixed seeded subset of that many
  examples (`subset_indices`), so a large split is never read whole.
  """

  train_split: str
  test_split: str
  num_classes: int
  stats: tuple[tuple[float, ...], tuple[float, ...]]
  image_size: int | None = None  # None: images already have a fixed size.
  train_count: int | None = None  # None: the whole split.
  test_count: int | None = None
  # Shorter side before the centre crop, as a multiple of image_size:
  # 256 / 224 is torchvision's ImageNet evaluation transform.
  resize_ratio: float = 1.0


TFDS = {
    'cifar10': TfdsSpec('train', 'test', 10, _CIFAR10),
    'cifar100': TfdsSpec('train', 'test', 100, _CIFAR100),
    'svhn_cropped': TfdsSpec('train', 'test', 10, _SVHN),
    # Paper: Flowers 2,000 train images (of the 2,040 of train + validation)
    # and 2,000 test images (of 6,149).
    'oxford_flowers102': TfdsSpec('train+validation', 'test', 102, _IMAGENET,
                                  224, train_count=2000, test_count=2000),
    # 750 train and 250 test images per class.
    'food101': TfdsSpec('train', 'validation', 101, _IMAGENET, 224),
    # The curves use 5,000 of the 50,000 validation images; 2,000 training
    # images serve BN recalibration (config.sweep.recal_samples).
    'imagenet2012': TfdsSpec('train', 'validation', 1000, _IMAGENET, 224,
                             train_count=2000, test_count=5000,
                             resize_ratio=256 / 224),
}

# Images decoded and resized at a time: the memory beyond the output arrays.
READ_BATCH = 256


def _standardise(x_tr, x_te):
  mu, sd = x_tr.mean(), x_tr.std()
  return ((x_tr - mu) / sd).astype(np.float32), ((x_te - mu) / sd).astype(
      np.float32)


def load_digits(seed: int = 0, test_fraction: float = 0.2, **_) -> Dataset:
  """sklearn's 1,797 8x8 digits, a fixed stratified split, standardised."""
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top
  d = datasets.load_digits()
  x = d.images.astype(np.float32)[..., None]
  x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
      x, d.target, test_size=test_fraction, random_state=seed,
      stratify=d.target)
  x_tr, x_te = _standardise(x_tr, x_te)
  return Dataset('digits', x_tr, y_tr.astype(np.int32), x_te,
                 y_te.astype(np.int32), 10)


def load_mnist1d(data_dir: str | None = None, seed: int = 42, **_) -> Dataset:
  """MNIST-1D (Greydanus 2020), generated locally and cached as .npz."""
  cache = epath.Path(data_dir or '~/.cache/valley_jax').expanduser()
  path = cache / f'mnist1d_seed{seed}.npz'
  if path.exists():
    with path.open('rb') as f:
      arrays = dict(np.load(f))
  else:
    from mnist1d import data as m1d  # pylint: disable=g-import-not-at-top
    args = m1d.get_dataset_args()
    args.seed = seed
    arrays = {k: m1d.make_dataset(args)[k] for k in ('x', 'y', 'x_test',
                                                     'y_test')}
    cache.mkdir(parents=True, exist_ok=True)
    with path.open('wb') as f:
      np.savez(f, **arrays)
  x_tr, x_te = _standardise(arrays['x'], arrays['x_test'])
  return Dataset('mnist1d', x_tr, arrays['y'].astype(np.int32), x_te,
                 arrays['y_test'].astype(np.int32), 10)


def load_synthetic(shape=(32, 32, 3), num_classes: int = 10,
                   n_train: int = 1024, n_test: int = 512, seed: int = 0,
                   noise: float = 1.0, **_) -> Dataset:
  """Class prototypes plus Gaussian noise: learnable, any shape, seeded."""
  rng = np.random.default_rng(seed)
  protos = rng.normal(size=(num_classes, *shape)).astype(np.float32)

  def draw(n):
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = protos[y] + noise * rng.normal(size=(n, *shape)).astype(np.float32)
    return x, y

  (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
  return Dataset('synthetic', x_tr, y_tr, x_te, y_te, num_classes)


def _prepare_hint(name: str, data_dir: str | None) -> str:
  where = data_dir or '~/tensorflow_datasets'
  return (f'TFDS dataset {name!r} is not prepared in {where}. On a machine '
          f'with internet run `tfds build {name} --file_format=array_record '
          f'--data_dir=DIR` (imagenet2012 needs its manual tar files), copy '
          f'DIR here and pass --config.data.data_dir=DIR.')


def _resize(image: np.ndarray, size: int, shorter: int | None = None
            ) -> np.ndarray:
  """torchvision's Resize(shorter) + CenterCrop(size), bilinear (uint8).

  >>> _resize(np.zeros((40, 60, 3), np.uint8), 16, 20).shape
  (16, 16, 3)
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = Image.fromarray(image)
  w, h = img.size
  s = shorter or size
  if w <= h:
    w, h = s, int(s * h / w)
  else:
    w, h = int(s * w / h), s
  img = img.resize((w, h), Image.BILINEAR)
  left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
  return np.asarray(img.crop((left, top, left + size, top + size)))


def subset_indices(n: int, count: int | None, seed: int = 0) -> np.ndarray:
  """A fixed seeded subset of range(n) of `count` indices, sorted.

  Args:
    n: the split's size.
    count: how many (None or >= n: all of them, in order).
    seed: the subset's seed (the same subset on every machine).

  Returns:
    int64 indices.

  >>> subset_indices(10, 3).tolist(), subset_indices(3, 5).tolist()
  ([5, 6, 9], [0, 1, 2])
  """
  if count is None or count >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def _read_split(source, idx: np.ndarray, size: int | None,
                shorter: int | None):
  """The examples `idx` of a random-access source, READ_BATCH at a time."""
  def one(i):
    ex = source[int(i)]
    img = np.asarray(ex['image'])
    return (img if size is None else _resize(img, size, shorter),
            int(ex['label']))

  xs, ys = None, np.zeros(len(idx), np.int32)
  with futures.ThreadPoolExecutor(8) as pool:
    for start in range(0, len(idx), READ_BATCH):
      batch = list(pool.map(one, idx[start:start + READ_BATCH]))
      if xs is None:
        xs = np.zeros((len(idx), *batch[0][0].shape), np.uint8)
      for j, (img, label) in enumerate(batch):
        xs[start + j], ys[start + j] = img, label
  return xs, ys


def load_tfds(name: str, data_dir: str | None = None,
              image_size: int | None = None, train_split: str | None = None,
              test_split: str | None = None, limit: int | None = None,
              train_count: int | None = None, test_count: int | None = None,
              subset_seed: int = 0, **_) -> Dataset:
  """A TFDS dataset through `tfds.data_source` (random access, no TF).

  Only the examples of the dataset's subsets (TfdsSpec) are read, decoded
  and resized, READ_BATCH at a time, so memory stays bounded by the output
  arrays and one batch, not the split (imagenet2012: 2,000 training and
  5,000 validation images of 224x224).

  Args:
    name: a key of TFDS.
    data_dir: where `tfds build` put the array_record files.
    image_size: resize (shorter side + centre crop) to this size; defaults to
      the dataset's usual size.
    train_split, test_split: TFDS split strings overriding the defaults.
    limit: read at most this many examples per split (quick experiments).
    train_count, test_count: read a fixed seeded subset of this many
      examples of the split (default: the dataset's; 0 = the whole split).
    subset_seed: the seed of those subsets.
  Returns:
    A Dataset with uint8 images.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  spec = TFDS[name]
  splits = (train_split or spec.train_split, test_split or spec.test_split)
  counts = (spec.train_count if train_count is None else train_count or None,
            spec.test_count if test_count is None else test_count or None)
  try:
    sources = [tfds.data_source(name, split=s, data_dir=data_dir,
                                download=False) for s in splits]
  except Exception as e:  # TFDS raises several types for "not prepared".
    raise InputFileError(_prepare_hint(name, data_dir)) from e
  size = image_size or spec.image_size
  shorter = round(size * spec.resize_ratio) if size else None
  (x_tr, y_tr), (x_te, y_te) = (
      _read_split(s, subset_indices(len(s), c, subset_seed)[:limit], size,
                  shorter) for s, c in zip(sources, counts))
  return Dataset(name, x_tr, y_tr, x_te, y_te, spec.num_classes, *spec.stats)


def load_cinic10(data_dir: str | None = None, limit: int | None = None,
                 **_) -> Dataset:
  """CINIC-10 from a local folder (TFDS lacks it).

  Accepts either `DIR/cinic10.npz` with x_train, y_train, x_test, y_test
  (uint8 images) or the official layout `DIR/cinic10/{train,test}/<class>/*.png`
  with the ten CIFAR class folder names (the validation split is unused).
  """
  root = epath.Path(data_dir or '.').expanduser()
  npz = root / 'cinic10.npz'
  if npz.exists():
    with npz.open('rb') as f:
      a = dict(np.load(f))
    return Dataset('cinic10', a['x_train'], a['y_train'].astype(np.int32),
                   a['x_test'], a['y_test'].astype(np.int32), 10, *_CINIC)
  folder = root / 'cinic10'
  if not (folder / 'train').exists():
    raise InputFileError(
        f'CINIC-10 not found under {root}: download it from '
        'https://datashare.ed.ac.uk/handle/10283/3192, unpack it to '
        f'{folder}/{{train,test}}/<class>/*.png (or save {npz}), then pass '
        '--config.data.data_dir.')
  return Dataset('cinic10', *_read_folder(folder / 'train', limit),
                 *_read_folder(folder / 'test', limit), 10, *_CINIC)


def _read_folder(split_dir: epath.Path, limit: int | None):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
  xs, ys = [], []
  for label, c in enumerate(classes):
    files = sorted((split_dir / c).glob('*.png'))[:limit]
    for f in files:
      with f.open('rb') as fh:
        xs.append(np.asarray(Image.open(fh).convert('RGB')))
      ys.append(label)
  return np.stack(xs).astype(np.uint8), np.asarray(ys, np.int32)


DATASETS: dict[str, Callable[..., Dataset]] = {
    'digits': load_digits,
    'mnist1d': load_mnist1d,
    'synthetic': load_synthetic,
    'cinic10': load_cinic10,
    **{n: (lambda n: lambda **kw: load_tfds(n, **kw))(n) for n in TFDS},
}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
  """Loads a registry dataset; kwargs are the source's options."""
  if name not in DATASETS:
    raise InputError(f'Unknown dataset {name!r}; choose one of '
                     f'{sorted(DATASETS)} (config.data.name).')
  return DATASETS[name](**kwargs)
