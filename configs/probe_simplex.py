"""Simplexes of independent solutions and their ensembles (Fort & Jastrzebski
2019; PAPER.md Sect. 8): kinds `simplex` and `ensembles`.

Three runs of one model from three seeds are the vertices of a simplex. The
probe measures the raw simplex (test error and loss on a barycentric grid of
its triangle, BN recalibrated at every point), trains one connector vertex so
that points drawn uniformly from the triangles (run a, run b, connector) have
a low training loss (SPRO, Benton et al. 2021), measures that complex alike,
and compares ensembles of the three runs, of three checkpoints of the first
run and of three points of the trained complex (ESPRO).

Offline on digits (the default): one command trains the three runs when they
are missing (configs/digits_cnn.py:seed0, :seed1, :seed2 into
runs/digits_seed0..2, 30 epochs each), then the connector (10 epochs, kept
in runs/digits_simplex_connectors), then probes (BN recalibrated on 1,000
training images at every point; grid resolution 10, 203 points):
python probe.py --config=configs/probe_simplex.py --workdir=runs/simplex_probe
About 45 s on 2 CPU cores shared with other jobs, the three trainings and the
connector's included (2026-12-02); started again, 3 s (nothing recomputed).
Found (seed 0): the runs' test errors are 0.011, 0.008, 0.006. The raw
triangle has a barrier: error 0.48-0.71 at the middle of its edges (barrier
0.71 over the vertices' mean), 0.87 at its centre, mean 0.20 over the grid.
The trained complex (one connector, 20 epochs) is low-error almost
throughout: every path run a -> c1 -> run b stays at or below 0.022 (barrier
0.014), the connector itself 0.019, mean 0.036 over the grid, 90% of its
grid points below 0.05 (raw: 53%). Not everywhere: the raw edges are sides
of its triangles, and a band next to them keeps part of their barrier (max
0.30 off the raw edges, 0.71 on them). Ensembles of 3 (test accuracy):
independent runs 0.997 (members 0.992, NLL 0.013 vs 0.021, disagreement
0.015, weight cosine 0.35, their weight average 0.13); one trajectory
(epochs 10, 20, 30) 0.989 (members 0.990, disagreement 0.002, cosine 1.00);
three points of the trained complex 0.997 (members 0.994, NLL 0.065 vs
0.074, disagreement 0.007, cosine 0.79, weight average 0.986). As the paper
says, the independent solutions are the most diverse (least aligned, most
disagreeing) and their ensemble gains the most; the trajectory gains
nothing; the complex's samples lie between.

CIFAR-10 (three seeds of configs/cifar10_vgg16bn.py, 200 epochs each, a GPU;
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
    'cifar10': ('configs/cifar10_vgg16bn.py', 'runs/cifar10_vgg16bn_seed',
                'runs/cifar10_vgg16bn_simplex_connectors'),
    'cifar10_resnet20': ('configs/cifar10_resnet20.py',
                         'runs/cifar10_resnet20_seed',
                         'runs/cifar10_resnet20_simplex_connectors'),
}
SEEDS = (0, 1, 2)


def get_config(arg: str | None = None):
  """arg: 'digits' (default, offline), 'cifar10' (VGG16-BN) or
  'cifar10_resnet20'."""
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
    c.simplex.epochs = 20  # 10 left a barrier of 0.04 along the paths.
  else:  # The runs' recipe: batch 256, SGD; 20 epochs for the connector.
    c.simplex.update(epochs=20, batch_size=256)
    c.simplex.optim.lr = 0.01
  return c
