"""core/cuts.py and probe/studies/wedges.py: the kinds cuts and paths (Fort &
Jastrzebski 2019). Expected values by hand or by plain float64 NumPy."""

import doctest
import importlib.util
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import plain_loss_error, tiny_train_config

from valley_jax import checkpoint, data, defaults, models
from valley_jax.core import cuts, directions
from valley_jax.errors import InputError
from valley_jax.probe import registry
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import path_seeds, wedges
from valley_jax.train import runner as train_runner


def _tree(rng, scale=1.0):
  """A small parameter-like pytree of two leaves."""
  return {'a': {'kernel': jnp.asarray(scale * rng.normal(size=(3, 4)),
                                      jnp.float32)},
          'b': jnp.asarray(scale * rng.normal(size=(5,)), jnp.float32)}


def _flat(t) -> np.ndarray:
  return np.concatenate([np.asarray(x, np.float64).ravel()
                         for x in jax.tree.leaves(t)])


def test_doctests():
  for module in (cuts, wedges, path_seeds):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, module.__name__


# ---------------------------------------------------------------------- planes


def test_plane_basis_is_orthonormal_and_holds_its_three_points():
  rng = np.random.default_rng(0)
  a, b, c = (_tree(rng) for _ in range(3))
  pl = cuts.plane(a, b, c)
  e1, e2 = _flat(pl.e1), _flat(pl.e2)
  np.testing.assert_allclose([e1 @ e1, e2 @ e2, e1 @ e2], [1.0, 1.0, 0.0],
                             atol=1e-6)
  # Gram-Schmidt in float64 NumPy.
  fa, fb, fc = _flat(a), _flat(b), _flat(c)
  u, v = fb - fa, fc - fa
  g1 = u / np.linalg.norm(u)
  w = v - (v @ g1) * g1
  g2 = w / np.linalg.norm(w)
  np.testing.assert_allclose(e1, g1, atol=1e-6)
  np.testing.assert_allclose(e2, g2, atol=1e-6)
  np.testing.assert_allclose(
      pl.coords_Nx2, [[0, 0], [np.linalg.norm(u), 0], [v @ g1, v @ g2]],
      atol=1e-5)
  # Each point is the plane's point at its coordinates.
  for p, (x, y) in zip((a, b, c), pl.coords_Nx2):
    np.testing.assert_allclose(_flat(cuts.point(pl, x, y)), _flat(p),
                               atol=1e-5)
  # A point off the plane projects onto it.
  off = jax.tree.map(lambda x, y: x + 0.5 * y, c, _tree(rng))
  x, y = cuts.coords(pl, off)
  np.testing.assert_allclose([x, y], [(_flat(off) - fa) @ g1,
                                      (_flat(off) - fa) @ g2], atol=1e-5)


@pytest.mark.parametrize('third', ['collinear', 'coincident'])
def test_a_cut_through_collinear_points_is_refused_naming_the_field(third):
  rng = np.random.default_rng(1)
  a, b = _tree(rng), _tree(rng)
  where = "config.cuts.planes: plane 'finals' (θf seed 0, ...)"
  if third == 'collinear':  # c on the line through a and b.
    c = jax.tree.map(lambda x, y: x + 2.5 * (y - x), a, b)
    with pytest.raises(InputError, match=r'collinear') as e:
      cuts.plane(a, b, c, where=where)
  else:
    with pytest.raises(InputError, match=r'coincide') as e:
      cuts.plane(a, a, b, where=where)
  assert "config.cuts.planes: plane 'finals'" in str(e.value)


def test_square_grid_holds_the_points_with_equal_steps():
  pts = np.array([[0.0, 0.0], [4.0, 0.0], [1.0, 2.0]])
  xs, ys, coeffs = cuts.square_grid(pts, 5, 0.25)
  # Side 1.5 × 4 = 6 around the box's centre (2, 1).
  np.testing.assert_allclose(xs, [-1.0, 0.5, 2.0, 3.5, 5.0])
  np.testing.assert_allclose(ys, [-2.0, -0.5, 1.0, 2.5, 4.0])
  assert coeffs.shape == (25, 2)
  np.testing.assert_allclose(coeffs[1 * 5 + 3], [xs[1], ys[3]])


# ---------------------------------------------------------------------- wedges


def test_interval_by_hand():
  s = [-2.0, -1.0, 0.0, 1.0, 2.0]
  # Crossings by linear interpolation: between 1 (at 0) and 3 (at −1) the
  # threshold 2 is at −0.5; between 0.5 (at 1) and 4.5 (at 2), at 1.375.
  assert cuts.interval(s, [9.0, 3.0, 1.0, 0.5, 4.5], 2.0) == (
      -0.5, 1.375, False)
  # Below everywhere on one side: the grid's end, censored.
  assert cuts.interval(s, [9.0, 3.0, 1.0, 0.5, 1.5], 2.0) == (-0.5, 2.0, True)
  # The point itself is not low-loss: no interval.
  assert cuts.interval(s, [0.0, 0.0, 3.0, 0.0, 0.0], 2.0) == (0.0, 0.0,
                                                                 False)
  # A non-finite value ends the interval at the last finite grid point.
  assert cuts.interval(s, [0.0, np.nan, 1.0, 1.0, np.inf], 2.0) == (
      0.0, 1.0, False)


def _sweep_of(loss_fn):
  """A sweep's `evaluate` for a hand-made loss of the flat parameters."""
  def evaluate(base, dirs, coeffs):
    b = _flat(base)
    ds = np.stack([_flat(d) for d in dirs])
    return {'loss': np.array([loss_fn(b + c @ ds) for c in coeffs])}
  return evaluate


def _unit_dirs(theta, n, seed=2):
  rng = np.random.default_rng(seed)
  return [cuts.orthogonal_unit(_tree(rng), theta) for _ in range(n)]


def test_wedge_width_of_a_cone_grows_with_r_as_by_hand():
  """L(x) = (‖x⊥‖ / x∥)² / k² (x∥, x⊥: along and across θf) is a wedge:
  at t·θf + s·u, L = s² / (k·r)², so L < thr for |s| < k·r·√thr and the
  width is 2·k·√thr·r with r = t·‖θf‖."""
  rng = np.random.default_rng(3)
  theta = _tree(rng)
  f = _flat(theta)
  unit, k, thr = f / np.linalg.norm(f), 0.3, 0.25

  def cone(x):
    par = x @ unit
    return np.sqrt(np.sum((x - par * unit) ** 2)) / (k * par)

  # The cone's square root is linear in |s|, so the threshold √thr on it
  # has no interpolation error.
  dirs = _unit_dirs(theta, 2)
  for d in dirs:
    assert abs(_flat(d) @ f) < 1e-4 and _flat(d) @ _flat(d) == (
        pytest.approx(1.0, abs=1e-6))
  ts = np.array([0.5, 1.0, 2.0, 3.0])
  r = ts * np.linalg.norm(f)
  offs = np.stack([cuts.offsets(0.8 * ri, 17) for ri in r])
  vals = cuts.wedge_values(_sweep_of(cone), theta, dirs, ts, offs)['loss']
  assert vals.shape == (4, 2, 17)
  w = cuts.widths(offs, vals, np.sqrt(thr))
  want = 2 * k * np.sqrt(thr) * r
  np.testing.assert_allclose(w.width_TxD, np.tile(want[:, None], (1, 2)),
                             rtol=1e-4)
  np.testing.assert_allclose(w.lo_TxD, -w.hi_TxD, rtol=1e-4)
  assert not w.censored_TxD.any()


def test_wedge_width_of_a_quadratic_bowl_as_by_hand():
  """L(x) = a·‖x − θf‖²: at t·θf + s·u, L = a·((t − 1)²‖θf‖² + s²), so the
  width is 2·√(thr/a − (t − 1)²‖θf‖²): largest at θf, none far off."""
  rng = np.random.default_rng(4)
  theta = _tree(rng)
  f = _flat(theta)
  nf, a, thr = np.linalg.norm(f), 2.0, 1.0

  def bowl(x):
    return a * np.sum((x - f) ** 2)

  ts = np.array([0.9, 1.0, 1.1, 2.0])
  offs = cuts.offsets(1.0, 401)
  dirs = _unit_dirs(theta, 1)
  vals = cuts.wedge_values(_sweep_of(bowl), theta, dirs, ts, offs)['loss']
  w = cuts.widths(offs, vals, thr)
  want = 2 * np.sqrt(np.maximum(thr / a - (ts - 1) ** 2 * nf ** 2, 0.0))
  np.testing.assert_allclose(w.width_TxD[:, 0], want, atol=1e-4)
  assert w.width_TxD[3, 0] == 0.0  # t = 2 is outside the bowl.


def test_wedge_coefficients_are_t_theta_plus_s_u():
  c = cuts.wedge_coeffs([0.5, 2.0], [[-1.0, 0.0, 1.0], [-4.0, 0.0, 4.0]], 2)
  assert c.shape == (2 * 2 * 3, 3)
  # Point (t = 2, direction 2, offset 4): θf + 1·θf + 0·u1 + 4·u2.
  np.testing.assert_allclose(c[1 * 6 + 1 * 3 + 2], [1.0, 0.0, 4.0])
  np.testing.assert_allclose(c[0], [-0.5, -1.0, 0.0])


# ------------------------------------------------------------------ trajectory


def test_trajectory_equals_numpy():
  rng = np.random.default_rng(5)
  thetas = [_tree(rng) for _ in range(5)]
  got = cuts.trajectory(thetas)
  f = [_flat(t) for t in thetas]
  cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)
  ups = [f[i + 1] - f[i] for i in range(4)]
  np.testing.assert_allclose(got['norm'], [np.linalg.norm(x) for x in f],
                             rtol=1e-6)
  np.testing.assert_allclose(got['dist'],
                             [np.linalg.norm(x - f[0]) for x in f],
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(got['cos_init'], [cos(x, f[0]) for x in f],
                             rtol=1e-5)
  np.testing.assert_allclose(
      got['update_cos'],
      [np.nan] + [cos(ups[i - 1], ups[i]) for i in range(1, 4)] + [np.nan],
      rtol=1e-5)
  np.testing.assert_allclose(got['step'],
                             [np.nan] + [np.linalg.norm(u) for u in ups],
                             rtol=1e-6)
  np.testing.assert_allclose(cuts.degrees([0.5, np.nan]), [60.0, np.nan])


# ------------------------------------------------------------------- bad input


def _cuts_config(**cuts_fields):
  c = defaults.probe_config()
  c.kind = 'cuts'
  c.cuts.update(cuts_fields)
  return c


@pytest.mark.parametrize('fields,match', [
    (dict(checkpoints=('r0', 'r1'), planes=('finals',)),
     r'config\.cuts\.checkpoints has 2 run\(s\).*needs 3'),
    (dict(checkpoints=('r0',), planes=('origin', 'init_finals')),
     r'config\.cuts\.checkpoints has 1 run.*needs 2'),
    (dict(planes=('sideways',)), r'config\.cuts\.planes.*sideways'),
    (dict(checkpoints=('r0', 'r0', 'r1')), r'config\.cuts\.checkpoints.*twice'),
    (dict(checkpoints=('r0', 'r1', 'r2'), labels=('a',)),
     r'config\.cuts\.labels'),
    (dict(num_points=0), r'config\.cuts\.num_points=0'),
    (dict(num_points=1), r'config\.cuts\.num_points=1'),
    (dict(radial_points=0), r'config\.cuts\.radial_points=0'),
    (dict(wedge_points=-3), r'config\.cuts\.wedge_points=-3'),
    (dict(wedge_directions=0), r'config\.cuts\.wedge_directions=0'),
    (dict(wedge_t=(1.0, -1.0)), r'config\.cuts\.wedge_t'),
    (dict(wedge_t=()), r'config\.cuts\.wedge_t is empty'),
    (dict(wedge_max=0.0), r'config\.cuts\.wedge_max=0'),
    (dict(t_min=2.0, t_max=0.0), r'config\.cuts'),
])
def test_bad_cuts_config_is_refused_naming_the_field(fields, match):
  with pytest.raises(InputError, match=match):
    probe_runner.check_names(_cuts_config(**fields))


@pytest.mark.parametrize('fields,match', [
    (dict(probes=0), r'config\.paths\.probes=0'),
    (dict(batch_size=0), r'config\.paths\.batch_size=0'),
    (dict(split='val'), r'config\.paths\.split'),
    (dict(checkpoints=('r0', 'r1'), columns=('LR',)),
     r'config\.paths\.columns'),
])
def test_bad_paths_config_is_refused_naming_the_field(fields, match):
  c = defaults.probe_config()
  c.kind = 'paths'
  c.paths.update(fields)
  with pytest.raises(InputError, match=match):
    probe_runner.check_names(c)


@pytest.mark.parametrize('kind', ['cuts', 'paths'])
def test_no_runs_is_refused_before_any_work(kind, tmp_path):
  c = defaults.probe_config()
  c.kind = kind
  with pytest.raises(InputError, match=rf'config\.{kind}\.checkpoints is '
                     'empty'):
    probe_runner.run(c, str(tmp_path))


def _load_config(path, arg):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize('path,arg', [
    (f'configs/probe_{k}.py', a) for k in ('cuts', 'paths')
    for a in (None, 'cifar10')] + [('configs/probe_cuts.py', 'nobn')])
def test_configs_name_a_training_config_for_every_run(path, arg):
  config = _load_config(path, arg)
  kind = probe_runner.kinds_of(config)[0]
  measured = list(dict.fromkeys(
      w for w, _ in registry.STUDIES[kind].checkpoints(config)))
  assert [r.workdir for r in probe_runner.train_runs(config)] == measured
  if kind == 'paths':
    assert set(config.paths.columns) == {'LR', 'width', 'L2'}


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope='module')
def three_runs(tmp_path_factory):
  """Three 2-epoch digits MLPs without BN (seeds 0-2), epochs 0-2 kept."""
  out = []
  for seed in range(3):
    c = tiny_train_config(epochs=2, bn=False)
    c.seed = seed
    w = str(tmp_path_factory.mktemp(f'seed{seed}'))
    train_runner.run(c, w)
    out.append(w)
  return out


def _probe_config(runs):
  c = defaults.probe_config(runs[0])
  c.kind = 'cuts,paths'
  c.sweep.update(eval_batch_size=360, recal_samples=200, recal_batch_size=200)
  c.cuts.update(checkpoints=tuple(runs), num_points=3, radial_points=3,
                wedge_t=(1.0, 2.0), wedge_directions=1, wedge_points=5,
                anisotropy_hessian=1, anisotropy_random=2, anisotropy_iters=3,
                samples=64, batch_size=64, train_samples=360)
  c.paths.update(checkpoints=tuple(runs[:2]), labels=('a', 'b'),
                 columns=('LR', 'LR'), probes=2, samples=64, batch_size=64)
  return c


def _model_and_data(workdir):
  variables, cfg = checkpoint.restore_model(workdir)
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  return model, ds, variables['params']


@pytest.mark.slow
def test_kinds_end_to_end_against_plain_numpy(three_runs, tmp_path):
  paths = probe_runner.run(_probe_config(three_runs), str(tmp_path))
  with open(paths['cuts']) as f:
    res = json.load(f)
  assert res['figures'] == ['figure.png', 'figure_wedges.png']
  model, ds, theta_f = _model_and_data(three_runs[0])
  # The radial cut at t = 1 is θf itself.
  radial = res['curves'][0]
  assert radial['lambdas'] == [0.0, 1.0, 2.0]
  loss, err = plain_loss_error(model, theta_f, ds.x_test, ds.y_test)
  np.testing.assert_allclose(radial['loss'][1], loss, rtol=2e-4)
  assert abs(radial['error'][1] - err) <= 1.5 / len(ds.y_test)
  # A grid point of the plane (θ0, θf, θf′) is a + x·e1 + y·e2.
  pl = res['planes'][0]
  assert pl['name'] == 'init_finals'
  theta0 = checkpoint.restore_model(three_runs[0], 0)[0]['params']
  theta_f1 = checkpoint.restore_model(three_runs[1])[0]['params']
  plane = cuts.plane(theta0, theta_f, theta_f1)
  np.testing.assert_allclose([[q['x'], q['y']] for q in pl['points']],
                             plane.coords_Nx2, rtol=1e-6)
  x, y = pl['xs'][2], pl['ys'][1]
  loss, _ = plain_loss_error(model, cuts.point(plane, x, y), ds.x_test,
                             ds.y_test)
  np.testing.assert_allclose(pl['loss'][2][1], loss, rtol=2e-4)
  # Sign consistency of e1 with θf, counted in NumPy.
  sign = lambda v: np.where(v >= 0, 1, -1)  # tree.sign: 0 counts as +.
  same = np.mean(sign(_flat(plane.e1)) == sign(_flat(theta_f)))
  assert pl['ssr']['e1'] == pytest.approx(same, abs=1e-6)
  wedge = res['wedges'][0]
  assert np.shape(wedge['error']['width']) == (2, 1)
  # A criterion's threshold is vacuous when it admits chance (ln 10, 0.9).
  for name in ('loss', 'loss_ray', 'error'):
    level = 0.9 if name == 'error' else np.log(10)
    assert wedge[name]['vacuous'] == [t >= level for t in
                                      wedge[name]['threshold']]
  # Anisotropy: every kind of direction; the radial width is the extent
  # along ±θf/‖θf‖ of the radial cut's low-error set (at least the grid).
  an = res['anisotropy'][0]
  assert {k: v['n'] for k, v in an['kinds'].items()} == {
      'hessian': 1, 'random': 2, 'optima': 2, 'radial': 1}
  assert len(an['eigenvalues']) == 1 and an['eigenvalues'][0] > 0
  assert res['err_table'] is False and len(res['findings']) == 6
  _check_training_widths(res, three_runs[0], model, theta_f)
  # paths: the geometry of the kept epochs, in float64 NumPy.
  with open(paths['paths']) as f:
    pres = json.load(f)
  q = pres['paths'][0]
  assert q['epochs'] == [0, 1, 2] and q['column'] == 'LR'
  f = [_flat(checkpoint.restore_model(three_runs[0], e)[0]['params'])
       for e in q['epochs']]
  np.testing.assert_allclose(q['norm'], [np.linalg.norm(v) for v in f],
                             rtol=1e-5)
  np.testing.assert_allclose(q['rel_dist'][2],
                             np.linalg.norm(f[2] - f[0]) / np.linalg.norm(f[0]),
                             rtol=1e-5)
  u, v = f[1] - f[0], f[2] - f[1]
  angle = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
  assert q['update_angle'][1] == pytest.approx(angle, abs=1e-3)
  assert q['curvature'][0] is None and q['trace'][2] > 0
  assert q['num_params'] == f[0].size
  assert q['trace_per_param'][2] == pytest.approx(q['trace'][2] / f[0].size)
  loss, _ = plain_loss_error(model, theta_f, ds.x_test, ds.y_test)
  np.testing.assert_allclose(q['loss'][2], loss, rtol=2e-4)
  # Scale-free curvature tr(H)·‖θ‖²/P; the segment θ0 → θ_last ends at the
  # two points' test losses.
  assert q['trace_scale_free'][2] == pytest.approx(
      q['trace'][2] * q['norm'][2] ** 2 / f[0].size, rel=1e-6)
  np.testing.assert_allclose(q['segment']['loss'][-1], loss, rtol=2e-4)
  np.testing.assert_allclose(q['segment']['loss'][0], q['loss'][0],
                             rtol=2e-4)
  assert all(np.isfinite(q['train_loss']))
  assert pres['findings'] and pres['err_table'] is False


def _plain_width(offs, values, level) -> float:
  """The low-loss interval around offset 0, by a plain loop: walk out from
  0 on each side until a value reaches the level, and end where the line
  between the last two points crosses it."""
  i0 = int(np.argmin(np.abs(offs)))
  if values[i0] >= level:
    return 0.0
  ends = []
  for step in (-1, 1):
    i = i0
    while 0 <= i + step < len(offs) and values[i + step] < level:
      i += step
    if not 0 <= i + step < len(offs):
      ends.append(offs[i])
      continue
    a, b = values[i], values[i + step]
    ends.append(offs[i] + (level - a) / (b - a) * (offs[i + step] - offs[i]))
  return ends[1] - ends[0]


def _check_training_widths(res, workdir, model, theta_f):
  """The wedge width at t = 1 along the first direction on the training
  CE of the fixed subset (the first 360 examples of the seed's permutation
  of the training split: as many as the test set, so the compiled sweep is
  reused), recomputed by NumPy and a loop."""
  config = _probe_config([workdir])
  _, ds, _ = _model_and_data(workdir)
  idx = np.random.default_rng(config.seed).permutation(
      len(ds.y_train))[:config.cuts.train_samples]
  x, y = ds.x_train[idx], ds.y_train[idx]
  w = res['wedges'][0]
  loss_f, err_f = plain_loss_error(model, theta_f, x, y)
  np.testing.assert_allclose(w['at_f_train']['loss'], loss_f, rtol=2e-4)
  assert w['at_f_train']['error'] == pytest.approx(err_f, abs=1e-6)
  key = directions.direction_key(jax.random.key(config.seed), 0, 3000)
  u = cuts.orthogonal_unit(directions.sample('gaussian', key, theta_f),
                           theta_f)
  norm = float(np.linalg.norm(_flat(theta_f)))
  offs = cuts.offsets(config.cuts.wedge_max * norm, 5)
  losses = [plain_loss_error(model, jax.tree.map(
      lambda a, b, o=o: a + o * b, theta_f, u), x, y)[0] for o in offs]
  level = config.cuts.wedge_loss_factor * loss_f
  want = _plain_width(offs, np.asarray(losses), level) / norm
  assert w['train']['loss']['width'][0][0] == pytest.approx(want, rel=1e-3,
                                                            abs=1e-4)
  assert res['train_subset'] == {'samples': 360, 'split': 'train'}
  assert any('training subset' in f['claim'] for f in res['findings'])


def test_top_eigenvectors_of_a_known_matrix():
  """Block power iteration against numpy's eigh on a random symmetric
  matrix with a clear gap."""
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
  vals = np.array([9.0, -7.0, 5.0] + [0.5] * 9)
  a = q @ np.diag(vals) @ q.T
  got, vecs = cuts.top_eigenvectors(lambda v: a @ v, 12, 3, 200)
  np.testing.assert_allclose(got, [9.0, -7.0, 5.0], atol=1e-6)
  for g, v in zip((0, 1, 2), vecs):
    assert abs(v @ q[:, g]) == pytest.approx(1.0, abs=1e-6)


def test_wedge_blocks_flag_vacuous_and_degenerate_levels():
  """A level at or above chance is vacuous, a level of 0 (a CE that
  underflowed) degenerate; widths by hand on a V-shaped profile."""
  offs = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]] * 2)
  loss = np.array([[[4.0, 1.0, 0.0, 1.0, 4.0]], [[3.0, 3.0, 3.0, 3.0, 3.0]]])
  vals = {'loss': loss, 'error': np.zeros_like(loss)}
  c = ml_collections.ConfigDict({'wedge_loss_factor': 2.0,
                                 'wedge_error_margin': 0.05})
  out = wedges.wedge_blocks(offs, vals, np.array([1.0, 2.0]), 2.0,
                            {'loss': 1.0, 'error': 0.0}, c,
                            wedges.vacuous_levels(10))
  # loss_ray: 2 × the value at offset 0: 0 at t = 1 (degenerate), 6 at t = 2
  # (above ln 10: vacuous, the whole grid is below it).
  assert out['loss_ray']['degenerate'] == [True, False]
  assert out['loss_ray']['vacuous'] == [False, True]
  # loss: level 2 on the V: from −√2 to √2, in units of ‖θf‖ = 2 (linear
  # interpolation between grid points: 1 + (2 − 1)/(4 − 1) = 4/3).
  assert out['loss']['width'][0][0] == pytest.approx(2 * (4 / 3) / 2.0)
  assert out['loss']['degenerate'] == [False, False]
