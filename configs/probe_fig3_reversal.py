"""Fig. 3's plain non-centred noises on digits: which side is sharper.

On the digits CNN plain noise that is not centred on zero is sharper on the
positive side, the opposite of the paper's slight asymmetry; this probe shows
it on runs/default (trained if missing, as configs/probe_default.py):
python probe.py --config=configs/probe_fig3_reversal.py \
  --workdir=runs/default/probe_fig3_reversal
About 90 s on 2 shared CPU cores once runs/default is trained (2026-12-02);
there (seed 0) {1} reads err+ − err− = +0.021, +0.163, +0.075, +0.018 at
s = 0.2, 0.5, 1, 2 ({1} is not random: its 3 draws are equal).
Variants: :filter, :layer (config.normalization). The study behind the
finding (7 training configs × seeds 0-2, each replicate k trained with
variant seedk and probed with config.seed = k, config.seeds = 1; about
12 min on 2 shared CPU cores, 2026-12-02):
python bench/fig3_reversal.py
(bench/results/fig3_reversal_cpu_2cores_2026-12-02.jsonl, fig3_reversal.png).
Finding, err+ − err− (mean test error of λ ∈ [0, 1] minus λ ∈ [−1, 0]) of
plain {1}, mean ± std over seeds 0-2; G(0,1) stays within ±0.01 at s = 0.2:
* CNN with BN, NS: +0.016 ± 0.005 at s = 0.2 (2.2× ratio), +0.116 ± 0.050 at
  0.5, +0.056 ± 0.025 at 1, +0.022 ± 0.016 at 2; U(0,1), G(1,1), {0,1}
  likewise (+0.07 … +0.13 at s = 0.5 and 1).
* Not BN: the CNN without BN is reversed too (+0.097 ± 0.041 at s = 0.2,
  +0.033 ± 0.013 at 1). The MLP with BN is slightly reversed (+0.007 ±
  0.005, +0.026 ± 0.010); the MLP without BN is not: −0.005 ± 0.004 at
  s = 0.2 and −0.303 ± 0.035 at s = 1 (the − side sharper, ratio 0.24).
* Not the data: the CNN with BN on synthetic 8×8×1 images is more
  reversed (+0.101 ± 0.021 at s = 0.2, ratio 10.7 ± 1.2; +0.081 ± 0.016 at
  1); the MLP with BN on mnist1d +0.011 ± 0.004 / +0.024 ± 0.003.
* The normalisation: filter NS removes it (+0.002 ± 0.002 at s = 0.2,
  +0.003 ± 0.011 at 1; the four noises within ±0.03); layer
  normalisation leaves +0.004 ± 0.001 and +0.030 ± 0.020.
* Where (kind groups, {1} at s = 0.5 on one group, NS within it): the conv
  kernels (CONV +0.055 ± 0.019 with BN, +0.106 ± 0.017 without); not the
  classifier (0: {1} on the head shifts every logit alike), not BN
  parameters (−0.003 ± 0.002), not the first stage (−0.006 ± 0.045).
So the reversal belongs to the convolutional layers under NS, with or
without BN, on either dataset; no mechanism is proven (cos(θf, 1) does not
predict its sign).
"""

from valley_jax import defaults

# The four noises that are not centred on zero, and G(0,1) as the centred
# reference (the paper: "the last four ... show slight asymmetry at s = 0.2
# in networks with BN").
NOISES = ('ones', 'uniform01', 'gaussian_mean1', 'binary', 'gaussian')


def get_config(arg: str | None = None):
  """arg: a normalisation ('ns', the default; 'filter' or 'layer')."""
  c = defaults.digits_probe(defaults.probe_config('runs/default'))
  c.train_if_missing = 'runs/default'  # As configs/probe_default.py.
  c.kind = 'noise_types'
  c.noise_types.noises = NOISES
  c.noise_types.scales = (0.2, 0.5, 1.0, 2.0)
  c.seeds = 3
  if arg:
    c.normalization = arg
  return c
