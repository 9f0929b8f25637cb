"""FedAvg on sklearn digits, Dirichlet α = 0.5 over 20 clients (offline).

python fedsim.py --config=configs/fed_digits.py --workdir=runs/fed_digits
Variants: --config=configs/fed_digits.py:fedsign,gamma0.01 (any algorithm of
valley_jax/fed, alphaX, muX, seedN, roundsN, clientsN, iid, fedbn, table).
Table mode: --config=configs/fed_digits.py:table --workdir=runs/fed_digits_table
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.fed_offline('digits', arg)
