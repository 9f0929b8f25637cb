"""2D loss surface along two filter-normalised Gaussian directions
(Li et al. 2018), e.g. of the embedded default:

python probe.py --config=configs/probe_surface.py --workdir=runs/default/probe
A 21 x 21 grid on the digits CNN takes about 10 s on 2 CPU cores.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config(arg or 'runs/default')
  c.kind = 'surface'
  c.sweep.recal_samples = 1000
  c.sweep.recal_batch_size = 200
  return c
