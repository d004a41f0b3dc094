"""The batched optimization core: B latents in one loop, each equal to its own single run.

Tiny generator, a cheap per-latent MSE objective: nothing here needs FAN or VGG.
"""

import copy

import numpy as np
import pytest
import torch

import optimization as opt

pytestmark = pytest.mark.usefixtures('one_thread')

SEEDS = [5, 17, 303]
STEPS = 8


@pytest.fixture(scope='module')
def targets(tiny_G):
    """Three images G makes (const noise): one target per latent, ``[3, 3, 32, 32]``."""
    z = torch.from_numpy(np.random.RandomState(11).randn(3, tiny_G.z_dim)).float()
    with torch.no_grad():
        return tiny_G.synthesis(tiny_G.mapping(z, None), noise_mode='const')


def mse_to(targets):
    """Per-latent MSE to ``targets[index]``: an objective holding one target per latent."""
    def objective(image, ws, index):
        return {'mse': (image - targets[index]).square().mean(dim=[1, 2, 3])}
    return objective


def single(G, target, seed, steps=STEPS, **kwargs):
    settings = opt.ProjectionSettings(num_steps=steps, seed=seed, **kwargs)
    return opt.project(G, mse_to(target), settings)


@pytest.fixture(scope='module')
def batched(tiny_G, targets):
    return opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=STEPS), seeds=SEEDS)


def test_batched_latent_equals_its_single_run(tiny_G, targets, batched):
    assert batched.ws.shape == (3, tiny_G.num_ws, tiny_G.w_dim)
    assert batched.seeds == SEEDS
    assert all(v.shape[0] == 3 for v in batched.noise.values())
    for i, seed in enumerate(SEEDS):
        alone = single(tiny_G, targets[i:i + 1], seed)
        torch.testing.assert_close(batched.ws[i:i + 1], alone.ws, atol=1e-5, rtol=1e-5)
        for name, value in alone.noise.items():
            torch.testing.assert_close(batched.noise[name][i:i + 1], value, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.image[i:i + 1], alone.image, atol=1e-4, rtol=1e-4)
        for key in ('mse', 'noise_reg', 'total'):
            assert batched.losses[i][key] == pytest.approx(alone.losses[0][key], rel=1e-4)
        # select(i) is that latent as a one-latent result.
        one = batched.select(i)
        assert one.ws.shape == alone.ws.shape and one.losses == [batched.losses[i]]
        assert [h['losses'] for h in one.history] == [[h['losses'][i]] for h in batched.history]
    # Different seeds really are different runs.
    assert (batched.ws[0] - batched.ws[1]).abs().max() > 1e-3


def test_batched_w_plus_equals_single(tiny_G, targets):
    res = opt.project(tiny_G, mse_to(targets[:2]), opt.ProjectionSettings(num_steps=4, latent='w+'), seeds=SEEDS[:2])
    for i in range(2):
        alone = single(tiny_G, targets[i:i + 1], SEEDS[i], steps=4, latent='w+')
        torch.testing.assert_close(res.ws[i:i + 1], alone.ws, atol=1e-5, rtol=1e-5)


def test_chunked_equals_unchunked(tiny_G, targets, batched):
    seen = []
    infos = []
    objective = mse_to(targets)

    def spy(image, ws, index):
        seen.append(index.tolist())
        return objective(image, ws, index)

    chunked = opt.project(tiny_G, spy, opt.ProjectionSettings(num_steps=STEPS), seeds=SEEDS, chunk_size=2,
                          callbacks=[infos.append])
    assert seen[:2] == [[0, 1], [2]]                           # at most 2 latents per forward
    assert len(seen) == 2 * (STEPS + 1)                        # every step, and the final evaluation
    torch.testing.assert_close(chunked.ws, batched.ws, atol=1e-5, rtol=1e-5)
    for name in batched.noise:
        torch.testing.assert_close(chunked.noise[name], batched.noise[name], atol=1e-5, rtol=1e-5)
    assert [d['total'] for d in chunked.losses] == pytest.approx([d['total'] for d in batched.losses], rel=1e-4)
    # One Adam step per pass: the callback sees all B images and latents of a step together.
    assert len(infos) == STEPS
    assert infos[0].image.shape[0] == 3 and infos[0].ws.shape[0] == 3 and len(infos[0].losses) == 3
    assert chunked.history[-1]['total'] == pytest.approx(sum(d['total'] for d in infos[-1].losses))


def test_latent_objective_is_added_once_per_step(tiny_G, targets):
    """A joint term on all latents (here: pull them together) acts on every latent's gradient."""
    calls = []

    def together(ws):
        calls.append(ws.shape)
        return {'spread': 1000.0 * (ws - ws.mean(dim=0, keepdim=True)).square().sum()}

    settings = opt.ProjectionSettings(num_steps=6, seed=1)
    free = opt.project(tiny_G, mse_to(targets), settings, seeds=SEEDS)
    joint = opt.project(tiny_G, mse_to(targets), settings, seeds=SEEDS, latent_objective=together, chunk_size=2)
    assert calls[0] == (3, tiny_G.num_ws, tiny_G.w_dim)
    assert len(calls) == 6 + 1                                   # once per step, once at the end
    spread = lambda ws: float((ws - ws.mean(dim=0, keepdim=True)).norm())  # noqa: E731
    assert spread(joint.ws) < 0.5 * spread(free.ws)
    assert set(joint.latent_losses) == {'spread'}
    h = joint.history[0]
    assert h['total'] == pytest.approx(sum(d['total'] for d in h['losses']) + h['spread'], rel=1e-6)
    with pytest.raises(ValueError, match='spread'):
        opt.project(tiny_G, mse_to(targets), settings, seeds=SEEDS,
                    latent_objective=lambda ws: {'spread': ws.sum(dim=[1, 2])})


def test_noise_init_by_buffer_name_and_list(tiny_G, targets):
    names = opt.noise_buffer_names(tiny_G)
    gen = torch.Generator().manual_seed(3)
    maps = {n: torch.randn([1, 1, l.resolution, l.resolution], generator=gen)
            for n, (_, l) in zip(names, tiny_G.synthesis.noise_layers())}
    settings = opt.ProjectionSettings(num_steps=3, optimize_noise=False)
    by_name = opt.project(tiny_G, mse_to(targets[:1]), settings, noise_init=maps)
    by_list = opt.project(tiny_G, mse_to(targets[:1]), settings, noise_init=list(maps.values()))
    torch.testing.assert_close(by_name.ws, by_list.ws)
    for n in names:
        assert torch.equal(by_name.noise[n], maps[n])
    # A [1, ...] start broadcasts to every latent (each then has its own copy).
    three = opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=2), noise_init=maps, seeds=SEEDS)
    assert all(three.noise[n].shape[0] == 3 for n in names)
    with pytest.raises(ValueError, match='missing'):
        opt.project(tiny_G, mse_to(targets[:1]), settings, noise_init={names[0]: maps[names[0]]})
    with pytest.raises(ValueError, match='unexpected'):
        opt.project(tiny_G, mse_to(targets[:1]), settings, noise_init={**maps, 'b4.conv9.noise_const': maps[names[0]]})


def test_shared_noise(tiny_G, targets):
    """share_noise: one noise set for all latents (the original's joint video schedule)."""
    res = opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=3, share_noise=True), seeds=SEEDS)
    assert all(v.shape[0] == 1 for v in res.noise.values())
    assert 'noise_reg' in res.latent_losses and all('noise_reg' not in d for d in res.losses)


def test_number_of_latents(tiny_G, targets):
    w_start = opt.w_stats(tiny_G)[0].expand(3, 1, tiny_G.w_dim) + torch.randn([3, 1, tiny_G.w_dim])
    res = opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=0), w_init=w_start)
    assert res.ws.shape[0] == 3 and res.seeds == [303] * 3
    torch.testing.assert_close(res.ws, w_start.expand(3, tiny_G.num_ws, tiny_G.w_dim))
    res = opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=0), num_latents=3)
    assert res.ws.shape[0] == 3
    with pytest.raises(ValueError):
        opt.project(tiny_G, mse_to(targets), opt.ProjectionSettings(num_steps=0), w_init=w_start[:2], seeds=SEEDS)


class _NoNoiseSynthesis(torch.nn.Module):
    """A synthesis network without noise inputs (as StyleGAN3's): ``noise_layers() == []``."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def noise_layers(self):
        return []

    def forward(self, ws, noise=None, **kwargs):
        assert not noise, 'no noise maps may be passed to a generator without noise inputs'
        self.calls.append(kwargs)
        return self.inner(ws, noise_mode='none', **{k: v for k, v in kwargs.items() if k != 'noise_mode'})


def test_generator_without_noise_inputs(tiny_G, targets):
    G = copy.deepcopy(tiny_G)
    G.synthesis = _NoNoiseSynthesis(G.synthesis)
    res = opt.project(G, mse_to(targets), opt.ProjectionSettings(num_steps=3), seeds=SEEDS[:2])
    assert res.noise == {}
    assert all(set(d) == {'mse', 'total'} for d in res.losses)           # no noise term
    assert res.ws.shape == (2, tiny_G.num_ws, tiny_G.w_dim)
    assert G.synthesis.calls and all(c.get('force_fp32') is True for c in G.synthesis.calls)


def test_stylegan3_fixture_projects(tmp_path):
    """A real generator without noise inputs (StyleGAN3 fixture), when that network is available."""
    import conftest
    path = conftest.DATA / 'sg3-t-tiny.pkl'
    if not path.is_file():
        pytest.skip('no StyleGAN3 fixture')
    import legacy
    try:
        G = legacy.load_generator(str(path), 'cpu')
    except Exception as exc:  # the StyleGAN3 network is another module's work in progress
        pytest.skip(f'StyleGAN3 fixture does not load here: {exc.__class__.__name__}')
    assert G.synthesis.noise_layers() == []
    with torch.no_grad():
        target = G.synthesis(opt.w_stats(G)[0].expand(1, G.num_ws, G.w_dim) + 0.3)
    res = opt.project(G, mse_to(target), opt.ProjectionSettings(num_steps=2))
    assert res.noise == {} and 'noise_reg' not in res.losses[0]
