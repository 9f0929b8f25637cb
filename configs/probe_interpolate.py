"""Interpolating two solutions (paper Fig. 8): BS 32 vs BS 2048.

Writes the error of (1-λ)θA + λθB for λ ∈ [-1, 2], the mean/std of the five
statistics groups and the sign consistency ratios with ε = θB − θA. One
command trains the two runs when they are missing (config.train_runs), then
probes them: VGG16-BN on CIFAR-10 (configs/cifar10_vgg16bn.py:bs32 and
:bs2048, 200 epochs each, a GPU; add --config.train_data_dir=DIR):
python probe.py --config=configs/probe_interpolate.py --workdir=runs/interp
The same runs by hand (they are also runs of configs/probe_hparams.py):
python train.py --config=configs/cifar10_vgg16bn.py:bs32 --workdir=runs/hp_bs32
python train.py --config=configs/cifar10_vgg16bn.py:bs2048 \
  --workdir=runs/hp_bs2048
Two runs of your own: --config=configs/probe_interpolate.py:RUN_A,RUN_B
(trains neither).

Offline on digits: its 1,437 training images are fewer than one batch of
2,048, so the pair is BS 8 vs BS 512, the paper's ratio of 64 around the
digits CNN's BS 64 (configs/digits_cnn.py:bs8 and :bs512 into
runs/digits_bs8 and runs/digits_bs512, shared with probe_hparams.py:digits):
python probe.py --config=configs/probe_interpolate.py:digits \
  --workdir=runs/interp_digits
About 70 s on 2 CPU cores shared with other jobs, both trainings included
(2026-12-02); BS 8: 99.4% test accuracy, BS 512 (60 steps in all): 95.3%.
Finding (seed 0): the error of (1-λ)θA + λθB stays ≤ 0.014 for λ ∈ [-1,
0.5] (θA's side is flat), has a barrier of 0.49 at λ = 0.8, is 0.044 at θB
and 0.63 at λ = 1.1, 0.90 from λ = 1.3 (θB's side is sharp). Over all
parameters SSR(θA, ε) = 0.22 (0.78 with −ε, the way θA's side goes) and
SSR(θB, ε) = 0.59: as the paper says, the flatter side is the model that
agrees more in sign with its way out. Unlike the paper's pair, the small
batch gives the larger parameter scale here (std 0.19 vs 0.09).
"""

from valley_jax import defaults

_CIFAR = ('runs/hp_bs32=configs/cifar10_vgg16bn.py:bs32',
          'runs/hp_bs2048=configs/cifar10_vgg16bn.py:bs2048')
_DIGITS = ('runs/digits_bs8=configs/digits_cnn.py:bs8',
           'runs/digits_bs512=configs/digits_cnn.py:bs512')


def get_config(arg: str | None = None):
  """arg: '' (CIFAR-10), 'digits' (offline) or 'RUN_A,RUN_B'."""
  c = defaults.probe_config()
  c.kind = 'interpolate'
  if arg and arg != 'digits':
    runs = arg.split(',')
    if len(runs) != 2:
      raise ValueError(f'configs/probe_interpolate.py:{arg}: give '
                       "'digits' or two workdirs RUN_A,RUN_B.")
  else:
    c.train_runs = _DIGITS if arg == 'digits' else _CIFAR
    runs = [e.split('=')[0] for e in c.train_runs]
    if arg == 'digits':
      defaults.digits_probe(c)
  c.interpolate.checkpoint_a, c.interpolate.checkpoint_b = runs
  return c
