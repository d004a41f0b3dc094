"""Shared test fixtures: the tiny generator, random FAN/VGG weight files, images rendered by G;
torch on one thread (``one_thread``) and an offline ``torch.hub`` (``offline_hub``).

Nothing here downloads anything: FAN and VGG16 get random weights, saved to temporary files
and passed with --fan-weights / --vgg-weights exactly as an offline user would.
"""

import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import cpu_memory

DATA = Path(__file__).parent / 'data'
TINY_PKL = DATA / 'tiny-skip.pkl'


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (``-n``), torch in each worker, and every command a test starts, gets its share
    of the cores: without it each of N workers would run as many threads as there are cores."""
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if not workers:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    threads = max(1, cores // int(workers))
    torch.set_num_threads(threads)
    os.environ['OMP_NUM_THREADS'] = str(threads)


_share_the_cores_between_workers()

# As every command does (cli_common.run): the tests' own steps reuse freed activations too.
cpu_memory.keep_freed_memory()


@pytest.fixture(scope='module')
def one_thread():
    """Torch on one thread while the module runs: ``pytestmark = pytest.mark.usefixtures('one_thread')``.

    The tensors and networks of the tests are small, and several test processes may share few cores:
    intra-op threads then wait on each other and make the runs many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_hub(monkeypatch):
    """No network: ``torch.hub.load_state_dict_from_url`` raises ``URLError``.

    Returns the list of URLs asked for, in order.
    """
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError('offline')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    return calls


def one_line_message(excinfo) -> str:
    """The message of the exception in ``excinfo``, checked to be one non-empty line."""
    msg = str(excinfo.value)
    assert msg and '\n' not in msg
    return msg


@pytest.fixture(scope='session')
def tiny_pkl() -> str:
    return str(TINY_PKL)


@pytest.fixture(scope='session')
def tiny_G():
    import legacy
    return legacy.load_generator(str(TINY_PKL), 'cpu')


@pytest.fixture(scope='session')
def fan_weights(tmp_path_factory) -> str:
    """A random 1-hourglass FAN state dict file."""
    from face_alignment.models import FAN
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp('weights') / 'fan1.pth'
    torch.save(FAN(1).state_dict(), path)
    return str(path)


@pytest.fixture(scope='session')
def detector_weights(tmp_path_factory) -> str:
    """A random S3FD face detector state dict file (face_alignment's network)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    torch.manual_seed(2468)
    path = tmp_path_factory.mktemp('weights') / 's3fd.pth'
    torch.save(s3fd().state_dict(), path)
    return str(path)


@pytest.fixture(scope='session')
def vgg_weights(tmp_path_factory) -> str:
    """A random torchvision VGG16 state dict file."""
    import torchvision
    torch.manual_seed(4321)
    path = tmp_path_factory.mktemp('weights') / 'vgg16.pth'
    torch.save(torchvision.models.vgg16().state_dict(), path)
    return str(path)


@pytest.fixture(scope='session')
def nets(tiny_pkl, fan_weights, vgg_weights):
    """``loaders.Networks`` of the tiny generator with the random FAN and VGG (read-only, so shared)."""
    import loaders
    return loaders.load_networks(tiny_pkl, torch.device('cpu'), fan_weights=fan_weights, vgg_weights=vgg_weights)


def render(G, seed: int) -> np.ndarray:
    """``uint8 [R, R, 3]`` image G makes from ``z`` drawn with ``seed`` (const noise)."""
    import image_io
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return image_io.to_uint8(G(z, None, noise_mode='const')[0])


@pytest.fixture(scope='session')
def face_images(tiny_G, tmp_path_factory):
    """Two PNGs rendered by the tiny generator: (look_path, landmarks_path)."""
    import image_io
    folder = tmp_path_factory.mktemp('faces')
    paths = []
    for name, seed in [('look', 1), ('landmarks', 2)]:
        path = folder / f'{name}.png'
        image_io.save_png(path, render(tiny_G, seed))
        paths.append(str(path))
    return tuple(paths)


def facenet_state(G, seed: int = 0) -> dict:
    """A random FaceNet state dict with the published layout, batch norms fitted to 8 renders of ``G``."""
    import identity
    import image_io
    torch.manual_seed(seed)
    net = identity.InceptionResnetV1()
    images = torch.cat([image_io.to_tensor(render(G, s)) for s in range(10, 18)])
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None                                     # cumulative average: the batch's statistics
    net.train()
    with torch.no_grad():
        identity.embed(net, images, identity.ffhq_box(G.img_resolution))
    return net.state_dict()


@pytest.fixture(scope='session')
def facenet_weights(tiny_G, tmp_path_factory) -> str:
    """A random FaceNet weight file (``facenet_state`` of the tiny generator)."""
    path = tmp_path_factory.mktemp('facenet') / 'facenet-random.pt'
    torch.save(facenet_state(tiny_G), path)
    return str(path)


@pytest.fixture(scope='module')
def shared_projector_networks():
    """projector.py runs of one test module load each distinct set of networks once (they are read-only)."""
    import projector
    from cli_helpers import memoized_loader
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(projector, 'load_networks', memoized_loader(projector.load_networks))
        yield

