"""FIG3-REVERSAL: which factor makes plain non-centred noise sharper at λ > 0.

On the digits CNN with BN the plain noises that are not centred on zero
({1}, U(0,1), G(1,1), {0,1}) give a valley whose positive side (λ ∈ [0, 1])
has the higher mean test error, the opposite of the paper's slight asymmetry
(Fig. 3). This script varies one factor at a time around that model:

* BN: the CNN without BN; the MLP (configs/digits_mlp.py) with and without;
* data: the CNN with BN on synthetic 8×8×1 images (class prototypes plus
  noise, `load_synthetic`); the MLP with BN on mnist1d and on synthetic;
* normalisation: filter and layer instead of NS (the same CNN runs);
* scale s: 0.2, 0.5, 1, 2 (the same CNN runs, NS).

Each condition is trained with --seeds training seeds (configs/digits_*.py
variant seedK) and probed with configs/probe_fig3_reversal.py (kind
noise_types restricted to the four non-centred noises and G(0,1)) with
config.seed = K, so each replicate has its own training seed and its own
noise draw. Per replicate and noise: diff = err+ − err− (mean test error of
the λ ∈ [0, 1] half minus that of the λ ∈ [−1, 0] half) and ratio =
err+ / err−; per condition their mean ± std over the replicates. Each line
also records two properties of θf: the fraction of parameters > 0 (the sign
consistency of {1} with θf) and cos(θf, 1) = Σθ / (‖θ‖·√n).

  python bench/fig3_reversal.py
      # -> bench/results/fig3_reversal_cpu_2cores_2026-12-02.jsonl, .png

Runs are trained under --root and reused (training and probing resume);
--plot_only redraws the figure from --out. On 2 CPU cores shared with other
jobs (2026-12-02): about 12 min from nothing; 9 min (538 s wall, 352 s CPU)
with the 21 runs trained and every probe recomputed, which gave the same
numbers to the last digit; under 2 min when the probes' results are reused.
Test accuracy: CNN+BN digits 98.9-99.4%, CNN 93.9-96.1%, MLP+BN 97.5-98.1%,
MLP 97.2-97.8%, MLP+BN mnist1d 71-72%, synthetic 99.6-100%.
"""

import importlib.util
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
sys.path.insert(0, _REPO)
from valley_jax.core import stats  # pylint: disable=g-import-not-at-top

_ROOT = flags.DEFINE_string('root', '/tmp/fig3_reversal',
                            'Training runs and probe workdirs.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Replicates (training seed = '
                              'probe noise seed = 0 .. seeds-1).')
_FACTORS = flags.DEFINE_list('factors',
                             ['bn', 'data', 'normalization', 'groups'],
                             'Which factors besides the default model '
                             "(whose scales are the 'scale' factor).")
_OUT = flags.DEFINE_string(
    'out', os.path.join(_HERE, 'results',
                        'fig3_reversal_cpu_2cores_2026-12-02.jsonl'),
    'JSON lines (rewritten after every condition).')
_FIGURE = flags.DEFINE_string(
    'figure', os.path.join(_HERE, 'results', 'fig3_reversal.png'),
    'The figure.')
_PLOT_ONLY = flags.DEFINE_bool('plot_only', False,
                               'Only redraw the figure from --out.')
_SUMMARY_ONLY = flags.DEFINE_bool(
    'summary_only', False, "Only recompute --out's summary lines (means, "
    'intervals, verdicts) from its replicate lines, and redraw.')

NONCENTRED = ('ones', 'uniform01', 'gaussian_mean1', 'binary')
LABELS = {'ones': '{1}', 'uniform01': 'U(0,1)', 'gaussian_mean1': 'G(1,1)',
          'binary': '{0,1}', 'gaussian': 'G(0,1)'}
_SYNTHETIC = {'shape': (8, 8, 1), 'num_classes': 10, 'n_train': 1024,
              'n_test': 512, 'noise': 1.0}

# Training runs: name -> (config file, variant, dataset override).
RUNS = {
    'cnn_bn_digits': ('configs/digits_cnn.py', '', None),
    'cnn_nobn_digits': ('configs/digits_cnn.py', 'nobn', None),
    'mlp_bn_digits': ('configs/digits_mlp.py', '', None),
    'mlp_nobn_digits': ('configs/digits_mlp.py', 'nobn', None),
    'cnn_bn_synthetic': ('configs/digits_cnn.py', '', 'synthetic'),
    'mlp_bn_mnist1d': ('configs/digits_mlp.py', '', 'mnist1d'),
    'mlp_bn_synthetic': ('configs/digits_mlp.py', '', 'synthetic'),
}
_BASE_SCALES = (0.2, 0.5, 1.0, 2.0)
_SCALES = (0.2, 1.0)
GROUP_SCALE = 0.5
GROUPS = ('ALL', 'CLF', 'FEAT', 'LAYER1', 'CONV', 'BN')
# Conditions: (factor, label, run, normalisation, scales). The default model
# (first) is the reference of every factor.
CONDITIONS = {
    'default': [('default', 'CNN+BN digits NS', 'cnn_bn_digits', 'ns',
                 _BASE_SCALES)],
    'bn': [('bn', 'CNN digits', 'cnn_nobn_digits', 'ns', _SCALES),
           ('bn', 'MLP+BN digits', 'mlp_bn_digits', 'ns', _SCALES),
           ('bn', 'MLP digits', 'mlp_nobn_digits', 'ns', _SCALES)],
    'normalization': [
        ('normalization', 'CNN+BN filter', 'cnn_bn_digits', 'filter',
         _SCALES),
        ('normalization', 'CNN+BN layer', 'cnn_bn_digits', 'layer',
         _SCALES)],
    'data': [('data', 'CNN+BN synthetic', 'cnn_bn_synthetic', 'ns', _SCALES),
             ('data', 'MLP+BN mnist1d', 'mlp_bn_mnist1d', 'ns', _SCALES),
             ('data', 'MLP+BN synthetic', 'mlp_bn_synthetic', 'ns',
              _SCALES)],
    # {1} restricted to one parameter group at a time (kind `groups`), at
    # the scale of the largest reversal: where in the network it arises.
    'groups': [('groups', f'{name} groups', run, 'ns', (GROUP_SCALE,))
               for name, run in (('CNN+BN', 'cnn_bn_digits'),
                                 ('CNN', 'cnn_nobn_digits'),
                                 ('MLP+BN', 'mlp_bn_digits'),
                                 ('MLP', 'mlp_nobn_digits'))],
}


def _load(path: str):
  spec = importlib.util.spec_from_file_location(
      os.path.basename(path)[:-3], os.path.join(_REPO, path))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def train_config(run: str, seed: int):
  """The training config of `run` and seed, and the equivalent command."""
  path, variant, dataset = RUNS[run]
  arg = ','.join(filter(None, (variant, f'seed{seed}')))
  c = _load(path).get_config(arg)
  cmd = f'python train.py --config={path}:{arg}'
  if dataset == 'mnist1d':
    c.data.name = 'mnist1d'
    cmd += ' --config.data.name=mnist1d'
  elif dataset == 'synthetic':
    c.data.name = 'synthetic'
    c.data.kwargs.update(_SYNTHETIC)
    cmd += (' --config.data.name=synthetic (kwargs: '
            + json.dumps(_SYNTHETIC) + ')')
  return c, cmd


def probe_config(workdir: str, norm: str, scales, seed: int,
                 groups: bool = False):
  """configs/probe_fig3_reversal.py on `workdir`, one noise draw `seed`;
  with `groups`, kind groups: {1} on each parameter group at scales[0]."""
  c = _load('configs/probe_fig3_reversal.py').get_config(norm)
  c.checkpoint, c.train_if_missing = workdir, ''
  c.seed, c.seeds = seed, 1
  c.noise_types.scales = tuple(scales)
  if groups:
    c.kind = 'groups'
    c.groups.update(noise='ones', scale=scales[0], groups=GROUPS)
  return c


def theta_stats(workdir: str) -> dict:
  """Fraction of θf > 0 and cos(θf, 1), over every parameter."""
  import jax  # pylint: disable=g-import-not-at-top

  from valley_jax import checkpoint  # pylint: disable=g-import-not-at-top
  variables, _ = checkpoint.restore_model(workdir)
  flat = np.concatenate([np.ravel(np.asarray(x))
                         for x in jax.tree.leaves(variables['params'])])
  return {'frac_positive': float((flat > 0).mean()),
          'cos_ones': float(flat.sum() / (np.linalg.norm(flat) *
                                          np.sqrt(flat.size)))}


def measure(condition, seed: int) -> list[dict]:
  """Trains (if missing) and probes one condition's replicate."""
  # pylint: disable=g-import-not-at-top
  from valley_jax.probe import runner as probe_runner
  from valley_jax.train import runner as train_runner
  # pylint: enable=g-import-not-at-top
  factor, label, run, norm, scales = condition
  workdir = os.path.join(_ROOT.value, f'{run}_seed{seed}')
  tc, cmd = train_config(run, seed)
  t0 = time.time()
  last = train_runner.run(tc, workdir)
  groups = factor == 'groups'
  pc = probe_config(workdir, norm, scales, seed, groups)
  folder = os.path.join(workdir, 'probe_groups' if groups else
                        f'probe_{norm}')
  path = probe_runner.run(pc, folder)[pc.kind]
  with open(path) as f:
    curves = json.load(f)['curves']
  stats = theta_stats(workdir)
  sc = {(c['direction'], c['scale'], c['group']): c for c in curves
        if c['sign_consistent']}
  rows = []
  for c in curves:
    if c['sign_consistent']:
      continue
    pos, neg = c['positive_error'], c['negative_error']
    lam = np.asarray(c['lambdas'])
    partner = sc[(c['direction'], c['scale'], c['group'])]
    rows.append(dict(
        kind='replicate', factor=factor, condition=label, run=run,
        normalization=norm, seed=seed, noise=c['direction'], group=c['group'],
        scale=c['scale'], positive_error=pos, negative_error=neg,
        diff=pos - neg, ratio=pos / neg if neg else None,
        error_at_0=float(np.asarray(c['error'])[np.argmin(np.abs(lam))]),
        sc_diff=partner['positive_error'] - partner['negative_error'],
        test_accuracy=last.get('test_accuracy'), train_command=cmd,
        probe_command=_probe_command(pc, norm, workdir, folder),
        seconds=round(time.time() - t0, 1), **stats))
  return rows


def _probe_command(pc, norm: str, workdir: str, folder: str) -> str:
  cmd = (f'python probe.py --config=configs/probe_fig3_reversal.py'
         f'{":" + norm if norm != "ns" else ""} --config.checkpoint={workdir}'
         f" --config.train_if_missing='' --config.seed={pc.seed}"
         f' --config.seeds=1')
  if pc.kind == 'groups':
    cmd += (f' --config.kind=groups --config.groups.noise=ones'
            f' --config.groups.scale={pc.groups.scale}'
            f" --config.groups.groups='{GROUPS}'")
  else:
    cmd += f' --config.noise_types.scales="{tuple(pc.noise_types.scales)}"'
  return cmd + f' --workdir={folder}'


def summarise(rows: list[dict]) -> list[dict]:
  """Mean ± std over replicates per (condition, noise, scale)."""
  groups = {}
  for r in rows:
    if r['kind'] == 'replicate':
      groups.setdefault((r['factor'], r['condition'], r['noise'],
                         r['scale'], r['group']), []).append(r)
  out = []
  for (factor, label, noise, scale, group), rs in groups.items():
    line = {'kind': 'summary', 'factor': factor, 'condition': label,
            'noise': noise, 'scale': scale, 'group': group,
            'seeds': sorted(r['seed'] for r in rs)}
    for key in ('diff', 'ratio', 'positive_error', 'negative_error',
                'error_at_0', 'sc_diff', 'frac_positive', 'cos_ones'):
      v = np.array([r[key] for r in rs if r[key] is not None], np.float64)
      line[key] = float(v.mean()) if v.size else None
      line[key + '_std'] = float(v.std()) if v.size else None
    line.update(diff_verdict([r['diff'] for r in rs]))
    out.append(line)
  return out


def diff_verdict(diffs: list[float]) -> dict:
  """err+ − err−'s interval over the replicates and its verdict.

  Args:
    diffs: err+ − err− of each replicate (training seed = noise seed).

  Returns:
    {'diff_ci' (Student-t 95 % over the replicates, stats.summary),
    'diff_n', 'diff_resolved' (the interval excludes 0), 'diff_every_seed'
    (every replicate has the sign of the mean; at least two)}.
  """
  f = stats.finding('err+ − err− ≠ 0', stats.summary(diffs),
                    expect='nonzero')
  sign = np.sign(np.asarray(diffs, np.float64))
  return {'diff_ci': f['ci'], 'diff_n': f['n'],
          'diff_resolved': f['resolved'],
          'diff_every_seed': bool(len(diffs) > 1 and sign[0] != 0
                                  and np.all(sign == sign[0]))}


def _write(rows: list[dict]) -> None:
  tmp = _OUT.value + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows + summarise(rows))
  os.replace(tmp, _OUT.value)


def _verdict_line(line: dict) -> str:
  """One summary line as text: condition, noise, s, mean [interval]."""
  lo, hi = line['diff_ci'] or (float('nan'),) * 2
  return (f"{line['condition']:<18} {line['group']:<6} "
          f"{LABELS[line['noise']]:<7} s = {line['scale']:<4g} "
          f"{line['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] n = {line['diff_n']} "
          + ('resolved' if line['diff_resolved'] else
             f"not resolved at n = {line['diff_n']}"))


def _half_widths(lines: list[dict]) -> np.ndarray:
  """[2, L] distances from each mean to its interval's ends (error bars)."""
  return np.array([[l['diff'] - l['diff_ci'][0], l['diff_ci'][1] - l['diff']]
                   for l in lines]).T


def figure(lines: list[dict], path: str) -> None:
  """Diff per condition at s = 0.2 and s = 1 (bars: mean and 95 % t
  interval over the replicates), the default model's diff against s, {1}
  on each parameter group, and {1}'s diff at s = 1 against cos(θf, 1) per
  replicate."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  summ = [l for l in lines if l['kind'] == 'summary']
  reps = [l for l in lines if l['kind'] == 'replicate']
  noises = (*NONCENTRED, 'gaussian')
  colors = dict(zip(noises, ('tab:red', 'tab:orange', 'tab:purple',
                             'tab:brown', 'tab:grey')))
  fig, axes = plt.subplots(2, 3, figsize=(17, 8.5),
                           gridspec_kw={'width_ratios': (2.2, 1, 1.2)})
  main = [l for l in summ if l['factor'] != 'groups']
  _bars(axes[0, 0], main, 0.2, noises, colors)
  _bars(axes[1, 0], main, 1.0, noises, colors)
  axes[0, 0].legend(fontsize=8, ncol=5)
  ax = axes[0, 1]
  for n in noises:
    m = sorted((l for l in summ if l['factor'] == 'default'
                and l['noise'] == n), key=lambda l: l['scale'])
    ax.errorbar([l['scale'] for l in m], [l['diff'] for l in m],
                _half_widths(m), marker='o', color=colors[n],
                label=LABELS[n], capsize=2)
  ax.axhline(0, color='k', lw=0.6)
  ax.set_xscale('log')
  ax.minorticks_off()
  ax.set_xticks(_BASE_SCALES, [f'{s:g}' for s in _BASE_SCALES])
  ax.set_xlabel('scale s')
  ax.set_ylabel('err+ − err−')
  ax.set_title('scale: CNN+BN digits, NS', fontsize=9)
  ax.grid(alpha=0.3)
  _groups_panel(axes[0, 2], [l for l in summ if l['factor'] == 'groups'])
  ax = axes[1, 1]
  for r in (r for r in reps if r['noise'] == 'ones' and r['scale'] == 1.0
            and r['normalization'] == 'ns' and r['factor'] != 'groups'):
    ax.scatter(r['cos_ones'], r['diff'], s=18,
               c=('tab:blue' if r['run'].startswith('cnn') else 'tab:green'),
               marker='o' if '_bn_' in r['run'] else 'x')
  ax.axhline(0, color='k', lw=0.6)
  ax.axvline(0, color='k', lw=0.6)
  ax.set_xlabel('cos(θf, 1)')
  ax.set_ylabel('{1}: err+ − err− at s = 1')
  ax.set_title('every NS replicate (blue CNN, green MLP; o BN, x no BN)',
               fontsize=8)
  ax.grid(alpha=0.3)
  axes[1, 2].axis('off')
  axes[1, 2].text(0, 1, _KEY, va='top', fontsize=8, family='monospace')
  fig.suptitle('FIG3-REVERSAL: plain noise, err(λ∈[0,1]) − err(λ∈[−1,0]), '
               'mean and 95 % t interval over seeds '
               f"{sorted({r['seed'] for r in reps})} (training seed = noise "
               'seed); > 0: the + side is sharper (the reversal)',
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


_KEY = '''CNN: configs/digits_cnn.py (width 0.5)
MLP: configs/digits_mlp.py (256, 256)
BN / no BN: variant nobn
digits, mnist1d, synthetic 8x8x1:
  config.data.name (MLP+BN synthetic
  is 0 error at s = 0.2)
NS / filter / layer:
  config.normalization
groups: {1} on one group, NS within
  the group (kind groups)
replicate k: train.py seedk,
  probe config.seed = k'''


def _bars(ax, summ, scale, noises, colors) -> None:
  conds = list(dict.fromkeys(l['condition'] for l in summ))
  width = 0.8 / len(noises)
  for j, n in enumerate(noises):
    xs, ys, es = [], [], []
    for i, cnd in enumerate(conds):
      m = [l for l in summ if l['condition'] == cnd and l['noise'] == n
           and l['scale'] == scale]
      if m:
        xs.append(i + (j - len(noises) / 2 + 0.5) * width)
        ys.append(m[0]['diff'])
        es.append(m[0])
    ax.bar(xs, ys, width, yerr=_half_widths(es) if es else None,
           color=colors[n], label=LABELS[n], capsize=2)
  ax.axhline(0, color='k', lw=0.6)
  ax.set_xticks(range(len(conds)))
  ax.set_xticklabels(conds, rotation=15, ha='right', fontsize=8)
  ax.set_ylabel('err+ − err−')
  ax.set_title(f'BN, data, normalisation: s = {scale:g}', fontsize=9)
  ax.grid(axis='y', alpha=0.3)


def _groups_panel(ax, summ) -> None:
  conds = list(dict.fromkeys(l['condition'] for l in summ))
  width = 0.8 / max(len(conds), 1)
  for j, cnd in enumerate(conds):
    m = {l['group']: l for l in summ if l['condition'] == cnd}
    xs = [i + (j - len(conds) / 2 + 0.5) * width
          for i, g in enumerate(GROUPS) if g in m]
    ax.bar(xs, [m[g]['diff'] for g in GROUPS if g in m], width,
           yerr=_half_widths([m[g] for g in GROUPS if g in m]), capsize=2,
           label=cnd.replace(' groups', ''))
  ax.axhline(0, color='k', lw=0.6)
  ax.set_xticks(range(len(GROUPS)), GROUPS, fontsize=8)
  ax.set_title(f'{{1}} on one parameter group, s = {GROUP_SCALE:g}',
               fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(axis='y', alpha=0.3)


def main(argv):
  del argv
  if _PLOT_ONLY.value or _SUMMARY_ONLY.value:
    with open(_OUT.value) as f:
      lines = [json.loads(l) for l in f]
    if _SUMMARY_ONLY.value:
      lines = [l for l in lines if l['kind'] == 'replicate']
      _write(lines)
      lines += summarise(lines)
      for line in summarise(lines):
        print(_verdict_line(line))
    figure(lines, _FIGURE.value)
    return
  conditions = CONDITIONS['default'] + [
      c for k in _FACTORS.value for c in CONDITIONS[k]]
  rows = []
  for cond in conditions:
    for seed in range(_SEEDS.value):
      new = measure(cond, seed)
      rows += new
      _write(rows)
      ones = [r for r in new if r['noise'] == 'ones']
      print(json.dumps({'condition': cond[1], 'seed': seed,
                        'ones_diff': {r['scale']: round(r['diff'], 3)
                                      for r in ones},
                        'cos_ones': round(new[0]['cos_ones'], 4),
                        'seconds': new[0]['seconds']}), flush=True)
  for line in summarise(rows):
    print(json.dumps(line))
  figure(rows + summarise(rows), _FIGURE.value)


if __name__ == '__main__':
  app.run(main)
