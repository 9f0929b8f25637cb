"""FedAvg on mnist1d (generated locally), Dirichlet α = 0.5, 20 clients.

python fedsim.py --config=configs/fed_mnist1d.py --workdir=runs/fed_mnist1d
Variants as configs/fed_digits.py.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.fed_offline('mnist1d', arg)
  c.eval.batch_size = 1000
  return c
