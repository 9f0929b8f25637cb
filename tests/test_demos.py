"""probe/studies/demos.py: the theory demo kinds end to end and each
figure's finding."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import flat, small_probe_config as _config, tiny_train_config

from valley_jax.core import theory
from valley_jax.data import pipeline
from valley_jax.probe import prober
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import common
from valley_jax.probe.studies import demos as theory_study


def _load(path):
  with open(path) as f:
    return json.load(f)


@pytest.mark.slow
def test_checkpoint_free_kinds_and_their_findings(tmp_path):
  """Fig. 10, 27, 29: no checkpoint exists, none is checked or trained."""
  nothing = str(tmp_path / 'nothing')
  c = _config(nothing, 'softmax_maps,listing1,listing2')
  c.train_if_missing = nothing  # Would train if a kind needed it.
  c.train = tiny_train_config(epochs=1)
  c.seeds = 8
  c.softmax_maps.classes = (0, 3)
  c.softmax_maps.lambdas = (-1.0, -0.5, 0.0, 0.5, 1.0)
  c.listing1.draws = 2000
  c.listing1.bins = 40
  c.listing2.num_points = 11
  paths = probe_runner.run(c, str(tmp_path / 'probe'))
  assert not (tmp_path / 'nothing').exists()
  for kind in ('softmax_maps', 'listing1', 'listing2'):
    res = _load(paths[kind])
    assert res['provenance'] == [] and res['checkpoint'] is None
    assert res['model'] and res['dataset'] and 'curves' in res
    assert (tmp_path / 'probe' / kind / 'figure.png').exists()
  _check_softmax_maps(_load(paths['softmax_maps']))
  s = _load(paths['listing1'])['summary']
  assert s['mean_increases'] and s['mean'][-1] - s['mean'][0] > 60
  _check_listing2(_load(paths['listing2']))


def _check_softmax_maps(res):
  m = res['maps']
  lams, corr = np.asarray(m['lambdas']), np.asarray(m['correlation'])
  for lam in (0.5, 1.0):
    plus, minus = corr[lams == lam][0], corr[lams == -lam][0]
    assert np.all(plus > 0.5) and np.all(minus < 0.0)  # Kept vs destroyed.
  err = dict(zip(res['curves'][0]['lambdas'], res['curves'][0]['error']))
  assert err[0.0] < 0.01 and err[0.5] + 0.4 < err[-0.5]


def _check_listing2(res):
  r = res['listing2']
  assert set(r['definitions']) == set(theory.LISTING2_METRICS)
  assert r['log_loss_eps'] == np.finfo(np.float64).eps
  sc, g = r['favoured']['|G(0,1)|·s(W)'], r['favoured']['G(0,1)']
  assert sc['error'] == sc['loss'] == 1.0  # Every draw, every λ ≥ 0.5.
  assert sc['loss_unclipped'] == 1.0
  assert sc['spread'] >= 0.6 and sc['trace'] >= 0.6
  assert 0.1 <= g['error'] <= 0.9 and 0.1 <= g['loss'] <= 0.9
  asym_sc, asym_g = r['asymmetry']['|G(0,1)|·s(W)'], r['asymmetry']['G(0,1)']
  # 100 draws: SC 0.41, 0.54 (0.71 unclipped); G 0.00, 0.01 (0.01).
  for k in ('error', 'loss', 'loss_unclipped'):
    assert asym_sc[k] > 0.3 > 4 * abs(asym_g[k])
  for k in ('spread', 'trace'):  # 100 draws: SC 0.21; G -0.05.
    assert asym_sc[k] > max(0.05, asym_g[k] + 0.1)
  for name, m in r['metrics'].items():
    assert set(m) == set(theory.LISTING2_METRICS)
    assert len(m['trace']) == 8  # One row per draw.
    clipped, exact = np.asarray(m['loss']), np.asarray(m['loss_unclipped'])
    assert np.all(clipped <= exact + 1e-12)
    cap = -np.log(np.finfo(np.float64).eps)
    assert np.all(clipped < cap) and np.all(np.asarray(m['clipped']) <= 1)
  # Findings (issue 25): each draw's asymmetry, a t interval over draws.
  f = {x['claim']: x for x in res['findings']}
  sc_err = f['|G(0,1)|·s(W): error lower on the positive side']
  assert sc_err['resolved'] and sc_err['n'] == 8
  assert sc_err['mean'] == pytest.approx(asym_sc['error'])
  assert f['G(0,1): loss sides differ']['mean'] == pytest.approx(
      asym_g['loss'])
  draw = r['listing_draw']
  assert draw['seed'] == 0 and set(draw['metrics']) == set(r['metrics'])
  assert len(draw['metrics']['G(0,1)']['first_text']) == 11
  lams = np.asarray(r['lambdas'])
  assert lams.tolist() == np.linspace(-1, 1, 11).tolist()


def _listing2_results(rng, draws=3):
  lams = np.linspace(-1.0, 1.0, 5)

  def block(scale, rows):
    return {k: (rng.random((rows, 5)) * scale).tolist() if rows else (
        rng.random(5) * scale).tolist() for k in theory.LISTING2_METRICS}

  names = ('G(0,1)', '|G(0,1)|·s(W)')
  return {'kind': 'listing2', 'model': 'softmax regression',
          'dataset': 'digits',
          'config': {'seed': 0, 'listing2': {'max_iter': 500}},
          'listing2': {
              'lambdas': lams.tolist(),
              'metrics': {n: block(s, draws) for n, s in zip(names, (1, 3))},
              'listing_draw': {'seed': 0, 'metrics': {
                  n: block(s, 0) for n, s in zip(names, (2, 5))}}}}


def test_listing2_figure_is_one_row_of_six_panels_per_noise(tmp_path,
                                                            monkeypatch):
  """Fig. 29's layout: a row per noise, both Taylor definitions labelled,
  one legend, a y range per quantity, a title naming the run."""
  figs = []
  monkeypatch.setattr(theory_study.plots, 'save',
                      lambda fig, folder, name: figs.append(fig) or [name])
  results = _listing2_results(np.random.default_rng(0))
  theory_study.listing2_figure(results, str(tmp_path / 'run' / 'listing2'))
  (fig,) = figs
  try:
    titled = [ax for ax in fig.axes if ax.get_title()]
    rows = {}
    for ax in titled:
      rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax)
    assert sorted(rows) == [0, 1]
    want = ['error', 'CE loss', 'mean Σ_c p_c(1 − p_c)', 'tr H',
            'first-order term', 'second-order term']
    for row in rows.values():
      row.sort(key=lambda ax: ax.get_subplotspec().colspan.start)
      assert [ax.get_title() for ax in row] == want
      assert all(ax.get_xlabel() == 'λ' for ax in row)
      assert row[0].get_ylim()[0] == 0.0  # Error from zero.
      for ax in row[4:]:
        assert ax.get_ylabel().startswith('listing: ')
    twins = [ax for ax in fig.axes if not ax.get_title()]
    assert len(twins) == 4
    assert sorted(ax.get_ylabel() for ax in twins) == sorted(
        ['text: εᵀg_λ = ⟨∇L(Wn), ε⟩'] * 2 +
        ['text: εᵀH_λε = vec(ε)ᵀ H(Wn) vec(ε)'] * 2)
    for top, bottom in zip(rows[0], rows[1]):  # One range per quantity.
      assert top.get_ylim() == bottom.get_ylim()
    by_col = {}
    for ax in twins:
      by_col.setdefault(ax.get_subplotspec().colspan.start, []).append(ax)
    assert all(a.get_ylim() == b.get_ylim() for a, b in by_col.values())
    assert len(fig.legends) == 1
    assert all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any('Listing 2' in t for t in labels)
    assert any('text' in t for t in labels)
    title = fig._suptitle.get_text()  # pylint: disable=protected-access
    assert 'listing2' in title and str(tmp_path / 'run') in title
    assert 'seed 0' in title
  finally:
    theory_study.plt.close(fig)


@pytest.mark.slow
def test_activations_and_gradient_kinds(trained_mlp, tmp_path):
  c = _config(trained_mlp, 'activations,gradient')
  c.sweep.eval_batch_size = 0  # The default: chosen for the device.
  c.activations.amplitudes = (0.5, 1.0)
  c.activations.n_samples = 100
  paths = probe_runner.run(c, str(tmp_path))
  res = _load(paths['activations'])
  a = res['activations']
  assert a['lambdas'] == [-1.0, -0.5, 0.5, 1.0] and a['layers'] == ['bn1',
                                                                   'bn2']
  counts = np.asarray(a['counts'])
  assert counts.shape == (4, 2, 2, 2)
  assert np.all(counts.sum((2, 3)) == 100 * 32)  # 100 images × 32 units.
  s = res['summary']
  assert all(p > n for p, n in zip(s['positive'], s['negative']))
  assert (tmp_path / 'activations' / 'figure.png').exists()
  g = _load(paths['gradient'])
  assert [cv['label'] for cv in g['curves']] == ['∇L(θf)', 'sign(θf)']
  cos = g['gradient']['cosines']
  assert abs(cos['G(0,1)']) < 5 * g['gradient']['random_scale']
  assert (tmp_path / 'gradient' / 'figure_cosine.png').exists()
  _check_gradient_cosines(c, trained_mlp, g['gradient'])


def _np_cosine(a, b):
  return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _check_gradient_cosines(c, trained_mlp, got):
  """∇L(θf) as one full-batch jax.grad of the mean CE over the training
  split (eval mode), then its norm and cosines in float64 numpy."""
  s = prober.Prober(c).subject(trained_mlp)
  ds = s.dataset
  x = pipeline.normalize(jnp.asarray(ds.x_train), ds.mean, ds.std)

  def loss(params):
    logits = s.model.apply({'params': params, 'batch_stats': s.batch_stats},
                           x, train=False)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(logp[jnp.arange(len(ds.y_train)), ds.y_train])

  g = flat(jax.jit(jax.grad(loss))(s.params)).astype(np.float64)
  theta = flat(s.params).astype(np.float64)
  sign = np.where(theta >= 0, 1.0, -1.0)  # tree.sign: 0 -> +1.
  assert got['norm'] == pytest.approx(np.linalg.norm(g), rel=1e-4)
  assert got['num_params'] == theta.size
  cos = got['cosines']
  assert cos['sign(θf)'] == pytest.approx(_np_cosine(sign, g), abs=1e-5)
  assert cos['θf'] == pytest.approx(_np_cosine(theta, g), abs=1e-5)


@pytest.mark.slow
def test_activation_counts_match_a_direct_count(trained_mlp):
  """One point by hand: relu_inputs at θf and θf + λd, counted in numpy."""
  c = _config(trained_mlp, 'activations')
  c.sweep.recal = 'off'
  p = prober.Prober(c)
  s = p.subject(trained_mlp)
  d = common.make_direction(p, s, 0, noise='gaussian', sign_consistent=True)
  got = theory_study._confusions(p, s, d, [0.5], 50)[0]
  x = s.dataset.x_test[:50]
  base = {'params': s.params, 'batch_stats': s.batch_stats}
  moved = {'params': jax.tree.map(lambda t, e: t + 0.5 * e, s.params, d),
           'batch_stats': s.batch_stats}
  capture = jax.jit(functools.partial(theory.relu_inputs, s.model))
  a0, a1 = capture(base, x), capture(moved, x)
  for k in ('bn1', 'bn2'):
    on0, on1 = np.asarray(a0[k]) > 0, np.asarray(a1[k]) > 0
    assert got[k].tolist() == [[np.sum(on0 & on1), np.sum(on0 & ~on1)],
                               [np.sum(~on0 & on1), np.sum(~on0 & ~on1)]]
