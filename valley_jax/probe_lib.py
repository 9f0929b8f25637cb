"""run(config, workdir): the paper's valley studies on trained checkpoints.

Each kind writes `<workdir>/<kind>/results.json` and a figure (PNG + PDF) and
prints a table: per curve, the mean test error of the positive half
(λ ∈ [0, 1]), of the negative half (λ ∈ [-1, 0]) and their difference.

Choices the paper leaves open:
* A direction restricted to a group is NS-normalised against θ restricted to
  the same group, so the step is relative to that group's own scale.
* Several seeds of a direction are reported as mean and standard deviation.
* Models with BN are recalibrated per point by default (config.sweep.recal =
  'auto'); the sweep then evaluates with the recomputed statistics.
* Interpolation without recalibration keeps θA's batch statistics.

Failure behaviour: names and every numeric field (`checks.PROBE_FIELDS`) are
checked, the workdir is proven writable and the checkpoints are found before
anything is compiled. results.json and the figures are written atomically;
results.json records the provenance of every checkpoint it measured (the
resolved epoch, a fingerprint of the parameters and batch statistics, the
training config). A rerun skips a kind only when its results.json is readable
and holds the same probe config and the same provenance; a missing figure
beside it is redrawn.
"""

import dataclasses
import functools
import json
import math
from typing import Any, Callable

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import flax
import ml_collections
import numpy as np
import tqdm

from valley_jax import (checkpoint, checks, data, directions, groups,
                        landscape, normalize, outputs, plots, sharding,
                        train_lib, tree)

KINDS = ('noise_types', 'sign_ratio', 'special', 'groups', 'bn_init',
         'hparams', 'interpolate', 'surface')
# Kinds that compare several runs; the others probe config.checkpoint.
MULTI_RUN = ('bn_init', 'hparams', 'interpolate')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def kinds_of(config) -> list[str]:
  kinds = [k.strip() for k in config.kind.split(',') if k.strip()]
  bad = [k for k in kinds if k not in KINDS]
  if bad or not kinds:
    raise ValueError(f'Unknown probe kind(s) {bad or config.kind!r}; choose '
                     f'from {KINDS} (config.kind, comma-separated).')
  return kinds


# ----------------------------------------------------------------- validation


def _check_range(lo, hi, num, where):
  try:
    landscape.linspace_coeffs(lo, hi, num)
  except ValueError as e:
    raise ValueError(f'{e} ({where})') from None


def _check_checkpoint(workdir: str, epoch='last', what='config.checkpoint'):
  kept = checkpoint.epochs(workdir) if workdir else []
  if not kept:
    raise FileNotFoundError(f'{what}={workdir!r} holds no checkpoint; train '
                            'it first with train.py --workdir=...')
  if epoch != 'last' and int(epoch) not in kept:
    raise FileNotFoundError(f'Epoch {epoch} of {workdir} is not kept; kept: '
                            f'{kept}.')


def _architecture(cfg: dict[str, Any]) -> str:
  """The model config without what only affects initialisation."""
  return json.dumps({k: v for k, v in cfg['model'].items() if k != 'bn_init'},
                    sort_keys=True)


def _model_signature(workdir: str) -> tuple[str, str]:
  """Architecture and dataset of a run."""
  cfg = checkpoint.load_config(workdir)
  return _architecture(cfg), cfg['data']['name']


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Every name, range and checkpoint, before anything is compiled."""
  kinds = check_names(config)
  if any(k not in MULTI_RUN for k in kinds) and not _will_train(config):
    if not checkpoint.epochs(config.checkpoint):
      raise FileNotFoundError(
          f'config.checkpoint={config.checkpoint!r} holds no checkpoint. '
          'Check the path, or train it first: python train.py '
          f'--config=configs/<config>.py --workdir={config.checkpoint}')
    _check_checkpoint(config.checkpoint, config.epoch)
  for kind in ('bn_init', 'hparams'):
    if kind in kinds:
      _check_list(config[kind], f'config.{kind}')
  if 'interpolate' in kinds:
    _check_pair(config.interpolate)
  return kinds


def _will_train(config) -> bool:
  """Whether probe.py trains config.checkpoint itself (the embedded default
  only: config.train_if_missing names that one workdir)."""
  return bool(config.train_if_missing) and (
      config.checkpoint == config.train_if_missing) and not checkpoint.epochs(
          config.checkpoint)


def check_names(config: ml_collections.ConfigDict) -> list[str]:
  """Kinds, names and ranges of a probe config (no file is read)."""
  checks.check(config, checks.PROBE_FIELDS)
  kinds = kinds_of(config)
  sw = config.sweep
  _check_range(sw.lam_min, sw.lam_max, sw.num_points, 'config.sweep')
  if sw.dtype not in DTYPES:
    raise ValueError(f'Unknown dtype {sw.dtype!r}; choose one of '
                     f'{tuple(DTYPES)} (config.sweep.dtype).')
  if sw.recal not in ('auto', 'on', 'off'):
    raise ValueError("config.sweep.recal must be 'auto', 'on' or 'off'.")
  if config.seeds < 1:
    raise ValueError('config.seeds must be >= 1.')
  normalize.check_normalization(config.normalization)
  for n in config.noise_types.noises:
    directions.check_noise(n)
  for n in (config.sign_ratio.noise, config.groups.noise, config.bn_init.noise,
            config.hparams.noise, config.surface.noise):
    directions.check_noise(n)
  for g in config.groups.groups:
    groups.check_group(g)
  for name in config.special.directions:
    directions.check_special(name)
  for n in (*config.bn_init.normalizations, config.surface.normalization):
    normalize.check_normalization(n)
  if any(r < 0 or r > 1 for r in config.sign_ratio.ratios):
    raise ValueError('config.sign_ratio.ratios must lie in [0, 1].')
  s = config.surface
  _check_range(s.lam_min, s.lam_max, s.num_points, 'config.surface')
  i = config.interpolate
  _check_range(i.lam_min, i.lam_max, i.num_points, 'config.interpolate')
  return kinds


def _check_list(c, where):
  if not c.checkpoints:
    raise ValueError(f'{where}.checkpoints is empty: give the workdirs of the '
                     'runs to compare.')
  if c.labels and len(c.labels) != len(c.checkpoints):
    raise ValueError(f'{where}.labels must match {where}.checkpoints.')
  for w in c.checkpoints:
    _check_checkpoint(w, 'last', f'{where}.checkpoints')


def _check_pair(c):
  _check_checkpoint(c.checkpoint_a, c.epoch_a, 'config.interpolate.'
                    'checkpoint_a')
  _check_checkpoint(c.checkpoint_b, c.epoch_b, 'config.interpolate.'
                    'checkpoint_b')
  a, b = _model_signature(c.checkpoint_a), _model_signature(c.checkpoint_b)
  if a != b:
    raise ValueError('interpolate needs two checkpoints of the same model and '
                     f'dataset; got {a} and {b}.')


# ------------------------------------------------------------------ subjects


@dataclasses.dataclass
class Subject:
  """One trained checkpoint, ready to sweep."""

  label: str
  workdir: str
  epoch: int | str
  train_config: dict[str, Any]
  model: Any
  params: Any
  batch_stats: Any
  dataset: data.Dataset
  sweep: landscape.Setting

  @functools.cached_property
  def theta0(self):
    return checkpoint.restore_model(self.workdir, 0,
                                    self.sweep.mesh)[0]['params']


class Prober:
  """Loads checkpoints and data once and compiles one sweep per model."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.mesh = sharding.make_mesh(config.get('num_devices', 0))
    self.root = jax.random.key(config.seed)
    self._datasets: dict[str, data.Dataset] = {}
    self._settings: dict[str, landscape.Setting] = {}
    self.bar = tqdm.tqdm(desc='probe', unit='curve', disable=None)

  def dataset(self, data_cfg: dict[str, Any]) -> data.Dataset:
    key = json.dumps(data_cfg, sort_keys=True)
    if key not in self._datasets:
      self._datasets[key] = data.from_config(
          ml_collections.ConfigDict(data_cfg))
    return self._datasets[key]

  def subject(self, workdir: str, epoch='last', label: str = '') -> Subject:
    variables, cfg = checkpoint.restore_model(workdir, epoch, self.mesh)
    ds = self.dataset(cfg['data'])
    model = train_lib.build(ml_collections.ConfigDict(cfg), ds)
    # Runs of the same architecture on the same data share one compiled sweep.
    key = _architecture(cfg) + json.dumps(cfg['data'], sort_keys=True)
    if key not in self._settings:
      self._settings[key] = self._setting(model, ds,
                                          bool(variables['batch_stats']))
    return Subject(label or workdir, workdir, epoch, cfg, model,
                   variables['params'], variables['batch_stats'], ds,
                   self._settings[key])

  def _setting(self, model, ds: data.Dataset,
               has_bn: bool) -> landscape.Setting:
    sw = self.config.sweep
    recal = sw.recal == 'on' or (sw.recal == 'auto' and has_bn)
    if sw.recal == 'on' and not has_bn:
      logging.warning("config.sweep.recal='on', but %s has no BatchNorm: "
                      'there is nothing to recalibrate, so every point is '
                      'evaluated as it is.', type(model).__name__)
      recal = False
    n_dev = self.mesh.shape[sharding.DATA]
    x, y = ds.x_test, ds.y_test
    if sw.n_test:
      x, y = x[:sw.n_test], y[:sw.n_test]
    eval_bs = _round_up(min(sw.eval_batch_size, len(y)), n_dev)
    eval_data = landscape.make_batches(x, y, eval_bs, self.mesh)
    recal_x = None
    if recal:
      rb = _round_up(min(sw.recal_batch_size, sw.recal_samples,
                         len(ds.y_train)), n_dev)
      n = min(sw.recal_samples, len(ds.y_train)) // rb * rb
      order = np.random.default_rng(self.config.seed).permutation(
          len(ds.y_train))
      recal_x = landscape.make_recal_batches(ds.x_train[order], n, rb,
                                             self.mesh)
    fn = landscape.make_sweep(model, ds.mean, ds.std, recal=recal,
                              chunk=sw.chunk or None,
                              dtype=DTYPES[sw.dtype], mesh=self.mesh)
    return landscape.Setting(fn, eval_data, recal_x, self.mesh)


def _round_up(n: int, k: int) -> int:
  return -(-n // k) * k


# ---------------------------------------------------------------- directions


def make_direction(p: Prober, s: Subject, seed: int, *, noise: str = '',
                   special: str = '', sign_consistent: bool = False,
                   ratio: float | None = None, normalization: str = 'ns',
                   group: str = 'ALL', index: int = 0):
  """One normalised direction; noise i of seed s is the same in any study.

  `index` overrides the noise's own key index (the surface's two directions).
  """
  theta = s.params
  if special:
    eps = directions.special(special, theta,
                             s.theta0 if special == 'init' else None)
  else:
    key = directions.direction_key(
        p.root, seed, index or list(directions.NOISES).index(noise))
    eps = directions.sample(noise, key, theta)
  if ratio is not None:
    eps = directions.partial_sign_consistent(eps, theta, ratio,
                                             jax.random.fold_in(key, 7919))
  elif sign_consistent:
    eps = directions.sign_consistent(eps, theta)
  mask = groups.mask(theta, group)
  return normalize.normalize(tree.masked(eps, mask), tree.masked(theta, mask),
                             normalization)


def halves(lams, error) -> tuple[float, float]:
  """Mean error over λ ∈ [0, 1] and over λ ∈ [-1, 0]."""
  lams, err = np.asarray(lams), np.asarray(error, np.float64)
  pos = err[(lams >= 0) & (lams <= 1)]
  neg = err[(lams <= 0) & (lams >= -1)]
  return (float(pos.mean()) if pos.size else math.nan,
          float(neg.mean()) if neg.size else math.nan)


def line(p: Prober, s: Subject, label: str, panel: str,
         make: Callable[[int], Any], *, scale: float = 1.0, seeds: int = 1,
         lams=None, **meta) -> dict[str, Any]:
  """A 1D curve θ + λ·s·d averaged over `seeds` draws of d = make(seed)."""
  sw = p.config.sweep
  if lams is None:
    lams = np.linspace(sw.lam_min, sw.lam_max, sw.num_points)
  coeffs = (np.asarray(lams) * scale)[:, None]
  runs = [s.sweep(s.params, s.batch_stats, [make(seed)], coeffs)
          for seed in range(seeds)]
  p.bar.update(1)
  return curve(label, panel, lams, np.stack([r['loss'] for r in runs]),
               np.stack([r['error'] for r in runs]), scale=scale, **meta)


def curve(label: str, panel: str, lams, loss_SxP, error_SxP, *,
          scale: float = 1.0, **meta) -> dict[str, Any]:
  """A results.json curve from per-seed [seeds, points] loss and error."""
  loss_SxP, error_SxP = np.atleast_2d(loss_SxP), np.atleast_2d(error_SxP)
  seeds = len(loss_SxP)
  out = dict(label=label, panel=panel, scale=scale, seeds=seeds,
             lambdas=np.asarray(lams).tolist(),
             loss=loss_SxP.mean(0).tolist(), error=error_SxP.mean(0).tolist(),
             **meta)
  if seeds > 1:
    out['loss_std'] = loss_SxP.std(0).tolist()
    out['error_std'] = error_SxP.std(0).tolist()
  out['positive_error'], out['negative_error'] = halves(lams, out['error'])
  return out


def curve_meta(direction: str, sign_consistent=False, ratio=None,
         normalization='ns', group='ALL') -> dict[str, Any]:
  return dict(direction=direction, sign_consistent=sign_consistent,
              ratio=ratio, normalization=normalization, group=group)


def noise_line(p: Prober, s: Subject, noise: str, sc: bool, panel: str, *,
               scale: float = 1.0, group: str = 'ALL',
               normalization: str | None = None, label: str = '',
               seeds: int | None = None) -> dict[str, Any]:
  norm = normalization or p.config.normalization
  name = directions.NOISE_LABELS[noise]
  label = label or (f'|{name}|·sign(θ)' if sc else name)
  return line(p, s, label, panel,
              lambda seed: make_direction(p, s, seed, noise=noise,
                                          sign_consistent=sc,
                                          normalization=norm, group=group),
              scale=scale, seeds=seeds or p.config.seeds,
              **curve_meta(noise, sc, None, norm, group))


# --------------------------------------------------------------------- kinds


def noise_types(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 3: seven noises, plain and sign-consistent, for every scale s."""
  c = p.config.noise_types
  curves = [noise_line(p, s, n, sc, f'{directions.NOISE_LABELS[n]}, s={sc_}',
                       scale=sc_)
            for sc_ in c.scales for n in c.noises for sc in (False, True)]
  return {'curves': curves, 'layout': {'ncols': len(c.noises),
                                       'metrics': ['error']}}


def sign_ratio(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 4: a fraction r of the elements takes θ's sign."""
  c = p.config.sign_ratio
  norm = p.config.normalization
  curves = [
      line(p, s, f'r={r:.1f}', 'r', functools.partial(
          lambda seed, r: make_direction(p, s, seed, noise=c.noise, ratio=r,
                                         normalization=norm), r=r),
           scale=c.scale, seeds=p.config.seeds,
           **curve_meta(c.noise, r == 1.0, float(r), norm))
      for r in c.ratios]
  summary = {'ratios': [float(r) for r in c.ratios],
             'positive': [cv['positive_error'] for cv in curves],
             'negative': [cv['negative_error'] for cv in curves]}
  return {'curves': curves, 'summary': summary}


_SPECIAL_LABELS = {'init': 'ε1 = θ0', 'theta': 'ε2 = θf',
                   'sign': 'ε3 = sign(θf)', 'sign_centered': 'ε4 = sign(θf−μ)',
                   'sgp': 'ε5 = sgp(θf)', 'sgp_centered': 'ε6 = sgp(θf−μ)'}


def special(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 5: the six special directions (deterministic: one seed)."""
  c, norm = p.config.special, p.config.normalization
  sc = {'sign', 'theta', 'sign_centered'}
  curves = [line(p, s, _SPECIAL_LABELS[d], _SPECIAL_LABELS[d],
                 functools.partial(lambda seed, d: make_direction(
                     p, s, seed, special=d, normalization=norm), d=d),
                 scale=c.scale, **curve_meta(d, d in sc, None, norm))
            for d in c.directions]
  return {'curves': curves}


def groups_kind(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 6: plain and sign-consistent noise on each parameter group."""
  c = p.config.groups
  curves = [noise_line(p, s, c.noise, sc, g, scale=c.scale, group=g)
            for g in c.groups for sc in (False, True)
            if tree.size(s.params, groups.mask(s.params, g))]
  return {'curves': curves}


def _bn_layer(params, name: str) -> str:
  bns = sorted({k.rsplit('/', 1)[0] for k in _flat(params)
                if k.rsplit('/', 1)[0].split('/')[-1].startswith('bn')})
  if not bns:
    raise ValueError('bn_init needs models with BatchNorm.')
  if name and name not in bns:
    raise ValueError(f'config.bn_init.layer={name!r} not found; BN layers: '
                     f'{bns}.')
  return name or bns[0]


def _flat(params) -> dict[str, Any]:
  """'module/path/leaf' -> array."""
  return flax.traverse_util.flatten_dict(params, sep='/')


def bn_init(p: Prober, _) -> dict[str, Any]:
  """Fig. 7: runs with different BN inits along ε ∈ {0,1}, NS and filter NS."""
  c = p.config.bn_init
  labels = c.labels or c.checkpoints
  curves, hists = [], []
  for w, label in zip(c.checkpoints, labels):
    s = p.subject(w, label=label)
    for norm in c.normalizations:
      curves.append(noise_line(p, s, c.noise, False, f'{label}, {norm}',
                               normalization=norm, label=f'{label} {norm}'))
    layer = _bn_layer(s.params, c.layer)
    hists.append({'label': label, 'layer': layer,
                  'init': _leaf(s.theta0, layer), 'final': _leaf(s.params,
                                                                 layer)})
  return {'curves': curves, 'histograms': hists}


def _leaf(params, layer: str) -> list[float]:
  return np.asarray(_flat(params)[f'{layer}/scale']).tolist()


def hparams(p: Prober, _) -> dict[str, Any]:
  """Fig. 9: runs with other LR/BS/WD, G(0,1) plain and sign-consistent."""
  c = p.config.hparams
  curves = []
  for w, label in zip(c.checkpoints, c.labels or c.checkpoints):
    s = p.subject(w, label=label)
    curves += [noise_line(p, s, c.noise, sc, label, scale=c.scale)
               for sc in (False, True)]
  return {'curves': curves}


def interpolate(p: Prober, _) -> dict[str, Any]:
  """Fig. 8: (1−λ)θA + λθB, group statistics and sign consistency."""
  c = p.config.interpolate
  a = p.subject(c.checkpoint_a, c.epoch_a, 'θA')
  b = p.subject(c.checkpoint_b, c.epoch_b, 'θB')
  if jax.tree.structure(a.params) != jax.tree.structure(b.params):
    raise ValueError('interpolate needs checkpoints with the same parameters.')
  eps = directions.difference(a.params, b.params)
  lams = np.linspace(c.lam_min, c.lam_max, c.num_points)
  curve = line(p, a, 'θA → θB', 'interpolation', lambda _: eps, lams=lams,
               **curve_meta('difference', False, None, 'none'))
  return {'curves': [curve], 'statistics': pair_statistics(a.params, b.params)}


def pair_statistics(pa, pb) -> dict[str, Any]:
  """Per statistics group: mean/std of θA and θB, SSR of each with θB−θA."""
  eps = directions.difference(pa, pb)
  out = {}
  for g in (*groups.STATS_GROUPS, 'ALL'):
    m = (groups.stats_mask(pa, g) if g != 'ALL' else groups.mask(pa, 'ALL'))
    if not tree.size(pa, m):
      continue
    (ma, sa), (mb, sb) = tree.mean_std(pa, m), tree.mean_std(pb, m)
    out[g] = {'a': {'mean': ma, 'std': sa}, 'b': {'mean': mb, 'std': sb},
              'ssr_a': tree.sign_consistency_ratio(pa, eps, m),
              'ssr_b': tree.sign_consistency_ratio(pb, eps, m)}
  return {'groups': out,
          'ssr_ab': tree.sign_consistency_ratio(pa, pb)}


def surface(p: Prober, s: Subject) -> dict[str, Any]:
  """A 2D surface along two independent (filter-normalised) directions."""
  c = p.config.surface
  ds = [make_direction(p, s, 0, noise=c.noise, normalization=c.normalization,
                       index=1000 + i) for i in range(2)]
  axis, coeffs = landscape.grid_coeffs(c.lam_min, c.lam_max, c.num_points)
  out = s.sweep(s.params, s.batch_stats, ds, coeffs)
  n = len(axis)
  grid = {k: out[k].reshape(n, n) for k in ('loss', 'error')}
  curves = []
  if 0.0 in axis:  # The two axis cross-sections as 1D curves.
    mid = int(np.argmin(np.abs(axis)))
    for name, sl in (('α axis', np.s_[:, mid]), ('β axis', np.s_[mid, :])):
      curves.append(curve(name, name, axis, grid['loss'][sl],
                          grid['error'][sl],
                          **curve_meta(c.noise, False, None,
                                       c.normalization)))
  return {'curves': curves,
          'surface': {'alphas': axis.tolist(), 'betas': axis.tolist(),
                      'loss': grid['loss'].tolist(),
                      'error': grid['error'].tolist()}}


_RUNNERS = {'noise_types': noise_types, 'sign_ratio': sign_ratio,
            'special': special, 'groups': groups_kind, 'bn_init': bn_init,
            'hparams': hparams, 'interpolate': interpolate,
            'surface': surface}
_FIGURES = {'sign_ratio': plots.sign_ratio, 'bn_init': plots.histograms,
            'interpolate': plots.interpolation, 'surface': plots.surface}


# ---------------------------------------------------------------------- run


finite_or_none = outputs.finite_or_none


def table(results: dict[str, Any]) -> str:
  """Per curve: mean error of the positive half, negative half, difference."""
  rows = [f"{'curve':<34} {'panel':<22} {'err+':>7} {'err-':>7} {'diff':>7}"]
  for c in results['curves']:
    pos, neg = c['positive_error'], c['negative_error']
    pos, neg = (math.nan if v is None else v for v in (pos, neg))
    rows.append(f"{c['label'][:34]:<34} {str(c.get('panel', ''))[:22]:<22} "
                f'{pos:7.3f} {neg:7.3f} {pos - neg:+7.3f}')
  return '\n'.join(rows)


def _ensure_trained(config) -> None:
  if _will_train(config):
    logging.warning('No checkpoint in %s: training %s first.',
                    config.checkpoint, config.train.model.name)
    train_lib.run(config.train, config.checkpoint)


def _header(workdir: str, epoch) -> dict[str, Any]:
  cfg = checkpoint.load_config(workdir)
  return {'model': cfg['model']['name'], 'dataset': cfg['data']['name'],
          'checkpoint': {'workdir': workdir, 'epoch': epoch}}


def _checkpoints_of(config, kind: str) -> list[tuple[str, Any]]:
  """The (workdir, epoch) pairs a kind measures; the first names the run."""
  if kind == 'interpolate':
    c = config.interpolate
    return [(c.checkpoint_a, c.epoch_a), (c.checkpoint_b, c.epoch_b)]
  if kind in MULTI_RUN:
    return [(w, 'last') for w in config[kind].checkpoints]
  return [(config.checkpoint, config.epoch)]


def _finished(folder: epath.Path, config,
              prov: list[dict[str, Any]]) -> dict[str, Any] | None:
  """results.json of an earlier run of the same config on the same
  checkpoints (resume), else None; a damaged file counts as missing."""
  old = outputs.read_json(folder / 'results.json')
  if old is None or old.get('config') != checkpoint.as_json(config.to_dict()):
    return None
  if old.get('provenance') != checkpoint.as_json(prov):
    logging.warning('%s was measured on other checkpoints than %s now hold '
                    '(retrained?): recomputing it.', folder / 'results.json',
                    [p['workdir'] for p in prov])
    return None
  return old


def _draw(kind: str, results: dict[str, Any], folder: epath.Path) -> list[str]:
  """Draws a kind's figure files; returns their names."""
  paths = _FIGURES.get(kind, plots.curve_panels)(results, str(folder))
  return [epath.Path(f).name for f in paths]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Runs every kind of config.kind; returns kind -> results.json path.

  A kind whose results.json already holds this config and was measured on
  the same checkpoints (same fingerprints) is not recomputed, so an
  interrupted probe started again resumes after its last finished kind.
  """
  kinds = validate(config)
  outputs.check_writable(workdir, '--workdir')
  _ensure_trained(config)
  p = Prober(config)
  main, paths = None, {}
  for kind in kinds:
    folder = epath.Path(workdir) / kind
    prov = [checkpoint.provenance(w, e) for w, e in _checkpoints_of(config,
                                                                   kind)]
    results = _finished(folder, config, prov)
    if results is None:
      if main is None and kind not in MULTI_RUN:
        main = p.subject(config.checkpoint, config.epoch)
      out = _RUNNERS[kind](p, main)
      results = outputs.finite_or_none({
          'kind': kind, **_header(*_checkpoints_of(config, kind)[0]),
          'provenance': prov, 'config': config.to_dict(), **out})
      folder.mkdir(parents=True, exist_ok=True)
      results['figures'] = _draw(kind, results, folder)
      outputs.write_json(folder / 'results.json', results)
    elif not all((folder / f).exists() for f in results.get('figures', ())):
      _draw(kind, results, folder)  # Results kept, a figure lost: redraw.
    p.bar.write(f'\n== {kind} ({folder}) ==\n{table(results)}')
    paths[kind] = str(folder / 'results.json')
  p.bar.close()
  return paths
