"""Training in random d-dimensional subspaces θ0 + P·z of the digits CNN,
from its initialisation and from its first epoch, and of Fort &
Jastrzebski's wedge model (kind `subspace`).

Offline on digits: the digits CNN (configs/digits_cnn.py, runs/default,
shared with configs/probe_default.py), trained first when missing:
python probe.py --config=configs/probe_subspace.py --workdir=runs/subspace
What it finds: README.md and docs/reproduce.md.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  """No arg: digits."""
  del arg
  c = defaults.probe_config()
  c.kind = 'subspace'
  defaults.digits_probe(c)
  c.train_runs = ('runs/default=configs/digits_cnn.py',)
  return c
