"""What a user sees when a network or weight file is the wrong kind of file: one line that says
what the file is and what to do (QA of 2026-12-06), never a traceback."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest
import torch

import legacy
import pickle_tools
from cli_helpers import invoke
from dnnlib.util import UserError
from torch_utils import misc

DATA = Path(__file__).resolve().parent / 'data'


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('archive/data.pkl', b'not a network')
    return buf.getvalue()


@pytest.mark.parametrize('data, needle', [
    (_zip_bytes(), 'zip archive'),                                       # torch.save checkpoints are zips
    (gzip.compress((DATA / 'tiny-skip.pkl').read_bytes()), 'gunzip'),
])
def test_archives_are_named(data, needle):
    with pytest.raises(legacy.NetworkLoadError, match=needle):
        legacy.load_network_pkl(data)


def test_a_malformed_network_is_a_load_error_not_a_traceback():
    """A parameter name that is not a string (as a hand-edited or damaged pickle may hold)."""
    obj = pickle_tools.read_placeholders((DATA / 'tiny-skip.pkl').read_bytes())
    mapping = obj['G_ema']._pk_args[0]['state']['_modules']['mapping']
    fc0 = mapping._pk_args[0]['state']['_modules']['fc0']._pk_args[0]['state']
    fc0['_parameters'][7] = fc0['_parameters']['weight']
    with pytest.raises(legacy.NetworkLoadError, match='malformed network pickle'):
        legacy.load_network_pkl(pickle_tools.write_placeholders(obj, 4))


def test_a_folder_as_network_says_so(tmp_path):
    from loaders import load_networks
    with pytest.raises(UserError, match='--network: .* is a folder, not a file'):
        load_networks(str(tmp_path), torch.device('cpu'), need_fan=False, need_lpips=False)


def test_info_names_the_bad_file_and_goes_on(tmp_path):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(_zip_bytes())
    code, out, err = invoke(legacy.main, ['--info', str(DATA / 'tiny-skip.pkl'), str(bad), str(DATA / 'tf-tiny.pkl')])
    assert code == 2
    assert 'tiny-skip.pkl:' in out and 'tf-tiny.pkl:' in out
    assert err.strip() == f'error: {bad}: a zip archive, not a network pickle (a PyTorch checkpoint saved with ' \
                          f'torch.save, such as a rosinality .pt, is not a StyleGAN2-ADA / StyleGAN3 / TensorFlow pickle)'


def test_state_dict_mismatch_names_the_key():
    module = torch.nn.Linear(2, 3)
    with pytest.raises(RuntimeError) as info:
        module.load_state_dict({'weight': torch.zeros(3, 2)})
    assert misc.state_dict_mismatch(info.value) == 'Missing key(s) in state_dict: "bias".'


def test_weights_with_nan_are_refused(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'conv.weight': torch.tensor([1.0, float('nan')]), 'steps': torch.tensor([3])}, path)
    with pytest.raises(UserError, match=r'w.pth: the FAN weights hold NaN or infinite values \(conv.weight\)'):
        misc.load_state_dict(str(path), 'https://example.invalid/fan.pth', '--fan-weights', 'FAN weights')


def test_a_damaged_cached_download_is_named(tmp_path, monkeypatch):
    """A truncated file in torch's hub cache: the message names it and says to delete it (it is no
    download failure: nothing was downloaded)."""
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    (tmp_path / 'checkpoints').mkdir()
    cached = tmp_path / 'checkpoints' / 'fan.pth'
    cached.write_bytes(b'PK\x03\x04 cut short')
    with pytest.raises(UserError) as info:
        misc.load_state_dict(None, 'https://example.invalid/models/fan.pth', '--fan-weights', 'FAN weights')
    message = str(info.value)
    assert str(cached) in message and 'Delete it' in message and '--fan-weights' in message


def test_a_bad_cached_network_download_is_named(tmp_path, monkeypatch):
    """A cached copy that is no network (a page a proxy sent once): the message says where it is."""
    import dnnlib
    from loaders import load_networks
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    url = 'https://example.invalid/networks/ffhq.pkl'
    cached = Path(dnnlib.util.cached_path(url))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b'<html>sign in</html>')
    with pytest.raises(UserError) as info:
        load_networks(url, torch.device('cpu'), need_fan=False, need_lpips=False)
    assert str(cached) in str(info.value) and 'delete it' in str(info.value)


def test_a_network_declaring_far_more_weights_than_it_holds_is_refused_before_building():
    """Arguments edited to declare huge layers (a 1 MB file made the loader allocate gigabytes): the
    tensors its constructor asks for are counted against the tensors stored, and the one that would
    go past twice their size is refused before it is allocated."""
    obj = pickle_tools.read_placeholders((DATA / 'tiny-skip.pkl').read_bytes())
    kwargs = obj['G_ema']._pk_args[0]['state']['_init_kwargs']
    kwargs['mapping_kwargs']['layer_features'] = 100_000
    with pytest.raises(legacy.NetworkLoadError,
                       match=r'declares far more weights than the 69,635 it holds: refused while building it'):
        legacy.load_network_pkl(pickle_tools.write_placeholders(obj, 4))
    # A layer of 2^40 weights (4 TiB) would fail or swap if it were allocated.
    kwargs['mapping_kwargs']['layer_features'] = 2 ** 35
    with pytest.raises(legacy.NetworkLoadError, match='refused while building it'):
        legacy.load_network_pkl(pickle_tools.write_placeholders(obj, 4))


def test_the_allocation_budget_counts_every_way_of_asking_for_a_tensor():
    budget = legacy._AllocationBudget(100, 'test')
    with budget:
        torch.randn(2, 3)
        torch.zeros([4, 5])
        torch.full((2, 2), 1.0)
        torch.randint(0, 5, (3,))
        torch.ones_like(torch.empty(0))
        torch.empty(3).new_zeros([2, 5])
        torch.tensor([1.0, 2.0]) * 3  # arithmetic is not counted
    assert budget.used == 6 + 20 + 4 + 3 + 0 + 3 + 10
    with pytest.raises(legacy.NetworkLoadError, match='test: refused while building it'):
        with budget:
            torch.empty(size=[60])


def test_a_conditional_network_says_it_is_used_without_a_class(capsys):
    from loaders import load_networks
    nets = load_networks(str(DATA / 'cond-orig.pkl'), torch.device('cpu'), need_fan=False, need_lpips=False)
    assert nets.G.c_dim == 5
    err = capsys.readouterr().err
    assert 'conditional network (5 classes)' in err and 'all-zero label' in err
    load_networks(str(DATA / 'tiny-skip.pkl'), torch.device('cpu'), need_fan=False, need_lpips=False)
    assert 'conditional' not in capsys.readouterr().err
