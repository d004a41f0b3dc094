"""benchmarks/official_pickle.py: a random network written as official persistence records loads
through the safe loader (the benchmarks start projector.py on such files)."""

import io

import torch

import legacy
from benchmarks.official_pickle import save_official_pkl
from networks.generator import Generator

KWARGS = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=1, conv_clamp=256,
                                    architecture='skip'))


def test_written_generator_loads_and_computes_the_same(tmp_path):
    torch.manual_seed(0)
    G = Generator(**KWARGS).eval().requires_grad_(False)
    path = tmp_path / 'g.pkl'
    save_official_pkl(path, G, KWARGS)
    data = legacy.load_network_pkl(io.BytesIO(path.read_bytes()))
    loaded = data['G_ema']
    assert type(loaded) is Generator and data['G'] is None and data['D'] is None
    z = torch.randn([2, 16])
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, None, noise_mode='const'), G(z, None, noise_mode='const'))
    assert b'networks.generator' not in path.read_bytes()       # no class of ours is referenced
