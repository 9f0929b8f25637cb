"""Simplexes of independent solutions, Benton et al.'s mode-connecting
complex, ESPRO and deep ensembles (Fort & Jastrzebski 2019; Benton et al.
2021): kinds `simplex` and `ensembles`.

Four runs of one model from four seeds are the solutions. `simplex`
measures their raw simplex and Benton et al.'s complex: two connectors
shared by every run (simplices {run i, c1, c2}), trained one after another
for `config.simplex.epochs` epochs each (10 on digits), five points of the
complex per step, the volume term from the second connector on; every
path between two runs through the complex with its barrier, and the
complex's mean error, with 95 % intervals. `ensembles` compares each run
alone, their deep ensemble, ESPRO (a simplex of two trained vertices around
each run, five samples from each), one trajectory and samples of the
complex, with diversity in function space and weight cosines with and
without BN.

Offline on digits (the default): one command trains the four runs when they
are missing (configs/digits_cnn.py:seed0..seed3 into runs/digits_seed0..3,
30 epochs each), then the connectors (kept in
runs/digits_simplex_connectors) and the ESPRO vertices (in
runs/digits_simplex_connectors_espro), then probes (BN recalibrated on
1,000 training images at every point):
python probe.py --config=configs/probe_simplex.py --workdir=runs/simplex_probe
The digits test set has 360 images (one image = 0.28 points of error):
too few to rank ensembles that differ by an image or two. On mnist1d
(an MLP with BN, 1,000 test sequences; configs/mnist1d_mlp.py):
python probe.py --config=configs/probe_simplex.py:mnist1d \
  --workdir=runs/simplex_mnist1d
What each finds: README.md and docs/reproduce.md (with intervals).

CIFAR-10 (four seeds of configs/cifar10_vgg16bn.py, 200 epochs each, a GPU;
add --config.train_data_dir=DIR; `cifar10_resnet20` for ResNet20):
python probe.py --config=configs/probe_simplex.py:cifar10 \
  --workdir=runs/simplex_cifar10
Not run here (no data, no GPU).
"""

from valley_jax import defaults

# arg -> (training config file, workdir prefix, connector folder).
_SETTINGS = {
    'digits': ('configs/digits_cnn.py', 'runs/digits_seed',
               'runs/digits_simplex_connectors'),
    'mnist1d': ('configs/mnist1d_mlp.py', 'runs/mnist1d_mlp_seed',
                'runs/mnist1d_simplex_connectors'),
    'cifar10': ('configs/cifar10_vgg16bn.py', 'runs/cifar10_vgg16bn_seed',
                'runs/cifar10_vgg16bn_simplex_connectors'),
    'cifar10_resnet20': ('configs/cifar10_resnet20.py',
                         'runs/cifar10_resnet20_seed',
                         'runs/cifar10_resnet20_simplex_connectors'),
}
SEEDS = (0, 1, 2, 3)


def get_config(arg: str | None = None):
  """arg: 'digits' (default, offline), 'mnist1d' (offline), 'cifar10'
  (VGG16-BN) or 'cifar10_resnet20'."""
  arg = arg or 'digits'
  if arg not in _SETTINGS:
    raise ValueError(f'configs/probe_simplex.py:{arg}: choose one of '
                     f'{sorted(_SETTINGS)}.')
  path, prefix, connectors = _SETTINGS[arg]
  c = defaults.probe_config()
  c.kind = 'simplex,ensembles'
  runs = {f'{prefix}{s}': f'{path}:seed{s}' for s in SEEDS}
  c.train_runs = tuple(f'{w}={f}' for w, f in runs.items())
  c.simplex.checkpoints = tuple(runs)
  c.simplex.labels = tuple(f'seed {s}' for s in SEEDS)
  c.simplex.connectors_dir = connectors
  if arg == 'digits':
    defaults.digits_probe(c)
  elif arg == 'mnist1d':
    defaults.digits_probe(c)
    c.sweep.eval_batch_size = 500
  else:  # The runs' recipe: batch 256, SGD; 10 epochs per connector.
    c.simplex.batch_size = 256
    c.simplex.optim.lr = 0.01
  return c
