"""pfl-research's CIFAR-10 benchmark protocol (Granqvist et al., NeurIPS 2024).

1,000 clients × 50 IID images, cohort 50, 1,500 rounds, 1 local epoch,
batch 10, client SGD lr 0.1, server lr 1.0 (FedAvg), central evaluation
every 10 rounds, their simple CNN (valley_jax/models/pfl_cnn.py).

python fedsim.py --config=configs/fed_pfl_cifar10.py \
    --workdir=runs/pfl_cifar10 --config.data.data_dir=/data/tfds
Offline, on random CIFAR-shaped data (a few rounds, as CI runs it):
python fedsim.py --config=configs/fed_pfl_cifar10.py:synthetic,rounds3 \
    --workdir=runs/pfl_synthetic
Timed end to end: bench/pfl_bench.py.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.fed_pfl_cifar10(arg)
