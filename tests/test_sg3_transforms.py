"""Per-latent StyleGAN3 input transforms: ``SynthesisNetwork.forward(ws, transforms=...)``,
``networks.stylegan3.make_input_transforms`` and the ``transforms`` arguments of
``optimization.synthesize`` / ``optimization.project``.

The proof of a per-latent transform: latent ``i`` synthesized in a batch with ``transforms[i]``
equals latent ``i`` alone with the network's ``transform`` buffer set to ``transforms[i]``, and
the shared network's buffer is never written.
"""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

import optimization  # noqa: E402
from networks import stylegan3 as sg3  # noqa: E402
from optimization import ProjectionSettings, project, synthesize  # noqa: E402

DATA = Path(__file__).parent / 'data'
FIXTURES = ['sg3-t-tiny', 'sg3-r-tiny']

pytestmark = pytest.mark.usefixtures('one_thread')

PARAMS = [(10.0, 0.1, -0.05), (-35.0, 0.0, 0.2), (90.0, -0.125, 0.0)]  # (angle, tx, ty) for 3 latents


@pytest.fixture(scope='module')
def nets():
    """``name -> (G_ema, ws [4, num_ws, w_dim])`` from the reference's fixture pickles."""
    import legacy
    out = {}
    for name in FIXTURES:
        with open(DATA / f'{name}.pkl', 'rb') as f:
            G = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False)
        out[name] = (G, torch.from_numpy(np.load(DATA / f'{name}-expected.npz')['ws']))
    return out


def _with_buffer(G, m) -> torch.nn.Module:
    """A deep copy of ``G`` whose input transform buffer is ``m`` (the original stays as it is)."""
    G2 = copy.deepcopy(G)
    with torch.no_grad():
        G2.synthesis.input.transform.copy_(torch.as_tensor(m, dtype=torch.float32))
    return G2


def test_make_input_transforms_rows():
    angles, tx, ty = (np.array(v) for v in zip(*PARAMS))
    m = sg3.make_input_transforms(angles, tx, ty)
    assert m.shape == (3, 3, 3) and m.dtype == np.float64
    for row, p in zip(m, PARAMS):
        assert np.allclose(row, sg3.make_input_transform(*p), atol=1e-15)
    assert sg3.make_input_transforms(30.0).shape == (1, 3, 3)
    assert np.allclose(sg3.make_input_transforms([0, 45], 0.1)[:, 0, 2], [-0.1, -0.1 * np.cos(np.pi / 4)])
    with pytest.raises(ValueError):
        sg3.make_input_transforms(np.zeros([2, 2]))


@pytest.mark.parametrize('name', FIXTURES)
def test_per_latent_transform_equals_buffer(nets, name):
    G, ws = nets[name]
    stored = G.synthesis.input.transform.clone()
    ws = ws[:3]
    T = torch.from_numpy(sg3.make_input_transforms(*zip(*PARAMS)))
    with torch.no_grad():
        batch = G.synthesis(ws, transforms=T, force_fp32=True)
        for i in range(3):
            alone = _with_buffer(G, T[i]).synthesis(ws[i:i + 1], force_fp32=True)
            assert float((batch[i:i + 1] - alone).abs().max()) < 1e-5, (name, i)
        # The shared network is not written; without transforms it is the call as before.
        assert torch.equal(G.synthesis.input.transform, stored)
        default = G.synthesis(ws, force_fp32=True)
        assert torch.equal(G.synthesis(ws, transforms=None, force_fp32=True), default)
        # The buffer passed explicitly ([3, 3], broadcast) gives the default image.
        assert float((G.synthesis(ws, transforms=stored, force_fp32=True) - default).abs().max()) < 1e-6
        assert float((G.synthesis(ws, transforms=stored.expand(3, 3, 3), force_fp32=True)
                      - default).abs().max()) < 1e-6
        # Different transforms give different images (the argument is used).
        assert float((batch - default).abs().max()) > 1e-2


def test_per_latent_transform_generator_and_gradient(nets):
    G, ws = nets['sg3-r-tiny']
    z = torch.from_numpy(np.random.RandomState(0).randn(2, G.z_dim)).float()
    c = torch.zeros([2, 0])
    T = torch.from_numpy(sg3.make_input_transforms([20, -20], [0.1, 0.0], [0.0, 0.1]))
    with torch.no_grad():
        img = G(z, c, transforms=T)
        ref = G.synthesis(G.mapping(z, c), transforms=T)
    assert torch.equal(img, ref)
    # Gradients flow to ws (and to a transform that asks for them).
    w = ws[:2].clone().requires_grad_(True)
    t = T.float().clone().requires_grad_(True)
    G.synthesis(w, transforms=t).square().mean().backward()
    assert w.grad is not None and float(w.grad.abs().sum()) > 0
    assert t.grad is not None and float(t.grad[:, :2, :].abs().sum()) > 0


def test_transform_shape_errors(nets):
    G, ws = nets['sg3-t-tiny']
    for bad in (torch.eye(3)[None].repeat(2, 1, 1), torch.eye(2), torch.zeros([3, 3, 4])):
        with pytest.raises(ValueError, match='input transforms must be'):
            G.synthesis(ws[:3], transforms=bad)


# ----------------------------------------------------------------------------
# optimization.synthesize / project.

def test_synthesize_transforms(nets, tiny_G):
    G, ws = nets['sg3-t-tiny']
    T = sg3.make_input_transforms(*zip(*PARAMS))  # numpy is accepted
    assert optimization.has_input_transform(G) and not optimization.has_input_transform(tiny_G)
    with torch.no_grad():
        img = synthesize(G, ws[:3], transforms=T)
        assert torch.equal(img, G.synthesis(ws[:3], transforms=torch.from_numpy(T).float(),
                                            noise_mode='const', force_fp32=True))
        assert torch.equal(synthesize(G, ws[:3]), synthesize(G, ws[:3], transforms=None))
        one = synthesize(G, ws[:3], transforms=T[1])  # [3, 3]: the same for all
        assert float((one[1] - img[1]).abs().max()) < 1e-6
    with pytest.raises(ValueError, match='transforms must be'):
        synthesize(G, ws[:3], transforms=T[:2])
    with pytest.raises(ValueError, match='need a StyleGAN3 generator'):
        synthesize(tiny_G, torch.zeros([1, tiny_G.num_ws, tiny_G.w_dim]), transforms=np.eye(3))
    with pytest.raises(ValueError, match='need a StyleGAN3 generator'):
        project(tiny_G, lambda img, w, idx: {'x': img.mean([1, 2, 3])}, ProjectionSettings(num_steps=1),
                transforms=np.eye(3))


def _mse_objective(targets: torch.Tensor):
    def objective(image, ws, index):
        return {'mse': (image - targets[index]).square().mean(dim=[1, 2, 3])}
    return objective


def test_project_transforms_chunked_and_per_latent(nets):
    """Latent i of a chunked batch run with transforms[i] == latent i alone on a network with that buffer."""
    G, ws = nets['sg3-r-tiny']
    with torch.no_grad():
        targets = G.synthesis(ws[:3], noise_mode='const')
    T = torch.from_numpy(sg3.make_input_transforms(*zip(*PARAMS)))
    settings = ProjectionSettings(num_steps=3, latent='w', initial_learning_rate=0.05)
    objective = _mse_objective(targets)
    seeds = [5, 6, 7]
    full = project(G, objective, settings, seeds=seeds, transforms=T)
    chunked = project(G, objective, settings, seeds=seeds, transforms=T, chunk_size=2)
    assert float((full.ws - chunked.ws).abs().max()) < 1e-5
    assert float((full.image - chunked.image).abs().max()) < 1e-5
    plain = project(G, objective, settings, seeds=seeds)
    assert float((plain.ws - full.ws).abs().max()) > 1e-6  # the transforms reach the objective
    for i in range(3):
        alone = project(_with_buffer(G, T[i]), _mse_objective(targets[i:i + 1]), settings, seeds=[seeds[i]])
        assert float((alone.ws[0] - full.ws[i]).abs().max()) < 1e-4, i
        assert float((alone.image[0] - full.image[i]).abs().max()) < 1e-4, i
        assert abs(alone.losses[0]['mse'] - full.losses[i]['mse']) < 1e-5
    with pytest.raises(ValueError, match=r'transforms must be \[3, 3, 3\]'):
        project(G, objective, settings, seeds=seeds, transforms=T[:2])
