"""FedPAN (Li, Li, Zhan, "Federated Learning with Position-Aware Neurons",
CVPR 2022): FedAvg on a model whose neurons carry fixed position encodings.

PANs are a model option (`pan_amplitude`, `pan_periods` of every registry
model but the ViT; formula in `valley_jax.models.layers`): output channel j
of J of every hidden layer is multiplied by e_j = 1 + A·sin(2π·T·j/J), which
ties each neuron to its position and so discourages the permutations that
make averaged models disagree. This entry is FedAvg plus the model options
A = `amplitude` (0.1) and T = `periods` (4), the middle of the authors'
multiplicative settings; the options compose with any algorithm when set in
config.model.kwargs instead.

>>> make().model_kwargs
{'pan_amplitude': 0.1, 'pan_periods': 4.0}
"""

from typing import Any, Mapping

from valley_jax.fed.algorithm import (Algorithm, check_hparams,
                                      check_nonnegative, check_positive)

DEFAULTS = {'amplitude': 0.1, 'periods': 4.0}


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedAvg with FedPAN's model options (amplitude >= 0, periods > 0)."""
  hp = check_hparams('fedpan', hparams, DEFAULTS)
  check_nonnegative(hp, 'amplitude')
  check_positive(hp, 'periods')
  return Algorithm('fedpan', hp, model_kwargs={
      'pan_amplitude': float(hp['amplitude']),
      'pan_periods': float(hp['periods'])})
