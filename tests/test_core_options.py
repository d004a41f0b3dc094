"""Issue 10.3: every option of the original ``projector.py`` is accepted, and ``--d_loss`` works.

The original's options are held here as data (name, its default there, a value to pass), read
from lukasuz/stylegan2-landmark-projection's ``projector.py``; the README's option table lists
the same names with their defaults there and here.
"""

from pathlib import Path

import pytest

import objectives
import projector
from cli_helpers import invoke, read_json
from landmark_loss import DEFAULT_GROUP_WEIGHTS, parse_group_weights

pytestmark = pytest.mark.usefixtures('one_thread')

README = Path(__file__).resolve().parent.parent / 'README.md'

# name -> (default in the original projector.py, a value a user of the original would pass)
ORIGINAL_PROJECTOR_OPTIONS = {
    '--network': (None, 'ffhq.pkl'),
    '--target_look': (None, 'look.png'),
    '--target_landmarks': (None, 'smile.png'),
    '--num-steps': (1000, '1000'),
    '--lpips_weight': (1.0, '1.0'),
    '--landmark_weight': (0.1, '0.05'),
    '--seed': (303, '303'),
    '--save-video': (True, 'True'),       # type=bool in the original; same parameter as --save_video
    '--outdir': (None, 'out'),
    '--save_video': (0, '1'),
    '--device': ('cuda', 'cuda'),
    '--d_loss': (False, 'True'),
    '--landmark_weights': ('0.05, 1.0, 1.0, 0.1, 1.0, 1.0, 1.0, 5.0, 5.0', '0.05, 1.0, 1.0, 0.1, 1.0, 1.0, 1.0, 5.0, 5.0'),
}
REQUIRED = ['--network', 'ffhq.pkl', '--target_look', 'look.png', '--target_landmarks', 'smile.png', '--outdir', 'out']


@pytest.mark.parametrize('name', sorted(ORIGINAL_PROJECTOR_OPTIONS))
def test_original_option_is_accepted(name):
    _, value = ORIGINAL_PROJECTOR_OPTIONS[name]
    args = [a for a in REQUIRED]
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    ctx = projector.main.make_context('projector.py', list(args))  # raises on an unknown option or a bad value
    assert ctx.params['outdir'] == 'out'


def test_original_option_values_mean_the_same():
    def parse(*extra):
        return projector.main.make_context('projector.py', REQUIRED + list(extra)).params

    assert parse('--save-video', 'True')['save_video'] == 1
    assert parse('--save-video', 'false')['save_video'] == 0
    assert parse('--save_video', '1')['save_video'] == 1
    assert parse('--d_loss', 'True')['d_loss'] is True
    assert parse()['d_loss'] is False
    spaced = ORIGINAL_PROJECTOR_OPTIONS['--landmark_weights'][1]
    assert parse_group_weights(parse('--landmark_weights', spaced)['landmark_weights']) == DEFAULT_GROUP_WEIGHTS
    assert parse()['num_steps'] == 1000 and parse()['seed'] == 303 and parse()['lpips_weight'] == 1.0
    assert parse()['landmark_weight'] == 0.1


def test_readme_table_lists_every_original_option():
    text = README.read_text(encoding='utf-8')
    section = text[text.index('## Project one face'):]
    section = section[:section.index('\n## ', 1)]
    for name in ORIGINAL_PROJECTOR_OPTIONS:
        assert f'| `{name}` |' in section, name


def test_realism_weight_from_flags():
    assert projector.realism_weight(False, None) == 0.0
    assert projector.realism_weight(True, None) == objectives.DEFAULT_D_WEIGHT
    assert projector.realism_weight(True, 0.3) == 0.3
    assert projector.realism_weight(False, 0.3) == 0.3      # a weight > 0 alone switches the term on
    from dnnlib.util import UserError
    with pytest.raises(UserError, match='--d_weight'):
        projector.realism_weight(True, -1.0)


def test_d_loss_end_to_end(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """--d_loss True loads D from the pickle and adds the realism term at its documented weight."""
    look, landmarks = face_images
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, [
        '--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
        '--target_look', look, '--target_landmarks', landmarks, '--outdir', out, '--num-steps', 1,
        '--d_loss', 'True'])
    assert code == 0, err
    report = read_json(out / 'report.json')
    assert report['settings']['d_loss'] is True
    assert report['settings']['d_weight'] == pytest.approx(objectives.DEFAULT_D_WEIGHT)
    assert report['final_losses']['realism'] > 0
