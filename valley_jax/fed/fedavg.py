"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks
from Decentralized Data", AISTATS 2017), the paper's Algorithm 1.

Client k starts from θt and minimises its mean cross-entropy with E epochs of
local SGD; the server takes θ_{t+1} = (1/|S_t|) Σ_{k∈S_t} θ_t^k (uniform over
the participants; the engine can weight by sample counts instead).

>>> make().name
'fedavg'
"""

from typing import Any, Mapping

from valley_jax.fed.algorithm import Algorithm, check_hparams


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedAvg; takes no hyperparameters."""
  return Algorithm('fedavg', check_hparams('fedavg', hparams, {}))
