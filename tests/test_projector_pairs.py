"""``projector.py --pairs``: rows in their own folders equal to single runs, batching, bad rows,
resume, pairs_report.json, and the user errors (issue 9 §2)."""

from __future__ import annotations

import numpy as np
import pytest

import projector
from cli_helpers import assert_one_error_line, invoke, read_json, read_npz

pytestmark = pytest.mark.usefixtures('one_thread')

STEPS = 3


def _common(tiny_pkl, fan_weights, vgg_weights):
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--num-steps', STEPS, '--precision', 'fp32', '--seed', 5]


@pytest.fixture(scope='module')
def pairs_dir(face_images, tmp_path_factory):
    look, landmarks = face_images
    base = tmp_path_factory.mktemp('pairs')
    (base / 'broken.png').write_bytes(b'not an image')
    (base / 'blocked').write_text('a file where a folder should be')
    (base / 'pairs.csv').write_text(
        'look,landmarks,outdir,seed\n'
        f'{look},{landmarks},out/a,\n'
        f'{landmarks},{look},out/b,9\n'
        f'broken.png,{look},out/bad,\n'
        f'{look},{look},blocked/c,\n')
    return base


@pytest.fixture(scope='module')
def batched(tiny_pkl, fan_weights, vgg_weights, pairs_dir):
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights)
                          + ['--pairs', pairs_dir / 'pairs.csv', '--batch-size', 2])
    return code, err


def test_bad_rows_fail_alone_and_are_reported(batched, pairs_dir):
    code, err = batched
    assert code == 1, err
    report = read_json(pairs_dir / 'pairs_report.json')
    assert [r['status'] for r in report['rows']] == ['ok', 'ok', 'failed', 'failed']
    assert report['counts'] == dict(ok=2, skipped=0, failed=2)
    assert 'broken.png' in report['rows'][2]['error']
    assert 'cannot write' in report['rows'][3]['error']
    for r in report['rows'][:2]:
        assert {'final_losses', 'lpips_to_look', 'landmark_error', 'seconds'} <= set(r)
    assert not (pairs_dir / 'out' / 'bad').exists()
    assert 'Traceback' not in err


def test_batched_rows_equal_single_runs(batched, pairs_dir, tiny_pkl, fan_weights, vgg_weights, face_images,
                                        tmp_path):
    look, landmarks = face_images
    for name, (lk, lm, seed) in {'a': (look, landmarks, 5), 'b': (landmarks, look, 9)}.items():
        single = tmp_path / name
        args = _common(tiny_pkl, fan_weights, vgg_weights) + ['--target_look', lk, '--target_landmarks', lm,
                                                              '--outdir', single, '--seed', seed]
        code, _, err = invoke(projector.main, args)
        assert code == 0, err
        row = pairs_dir / 'out' / name
        assert sorted(p.name for p in row.iterdir()) == sorted(p.name for p in single.iterdir())
        got, want = read_npz(row / 'projected_w.npz'), read_npz(single / 'projected_w.npz')
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4)
        r_got, r_want = read_json(row / 'report.json'), read_json(single / 'report.json')
        assert r_got['optimizer'] == r_want['optimizer']
        assert r_got['landmark_error'] == pytest.approx(r_want['landmark_error'], rel=1e-3, abs=1e-5)
        assert r_got['lpips_to_look'] == pytest.approx(r_want['lpips_to_look'], rel=1e-3, abs=1e-5)


def test_rerun_skips_complete_rows_and_no_resume_redoes(batched, pairs_dir, tiny_pkl, fan_weights, vgg_weights):
    csv = pairs_dir / 'only_good.csv'
    csv.write_text('look,landmarks,outdir,seed\n' + '\n'.join((pairs_dir / 'pairs.csv').read_text().splitlines()[1:3])
                   + '\n')
    before = (pairs_dir / 'out' / 'a' / 'report.json').stat().st_mtime_ns
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv])
    assert code == 0, err
    report = read_json(pairs_dir / 'pairs_report.json')
    assert [r['status'] for r in report['rows']] == ['skipped', 'skipped']
    assert (pairs_dir / 'out' / 'a' / 'report.json').stat().st_mtime_ns == before
    # A kept row's numbers come from its report.json.
    kept = read_json(pairs_dir / 'out' / 'a' / 'report.json')
    assert report['rows'][0]['landmark_error'] == kept['landmark_error']
    assert report['rows'][0]['final_losses'] == kept['final_losses']
    csv.write_text('look,landmarks,outdir,seed\n' + (pairs_dir / 'pairs.csv').read_text().splitlines()[1] + '\n')
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv,
                                                                                        '--no-resume'])
    assert code == 0, err
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['ok']
    assert (pairs_dir / 'out' / 'a' / 'report.json').stat().st_mtime_ns != before


def test_resume_redoes_a_row_made_from_other_inputs(batched, pairs_dir, tiny_pkl, fan_weights, vgg_weights,
                                                   face_images):
    """Complete outputs of another look, target or seed (the row was edited) are not this row's: redone."""
    look, landmarks = face_images
    csv = pairs_dir / 'edited.csv'
    csv.write_text(f'look,landmarks,outdir,seed\n{look},{landmarks},out/e,\n')
    common = _common(tiny_pkl, fan_weights, vgg_weights)
    code, _, err = invoke(projector.main, common + ['--pairs', csv])
    assert code == 0, err
    csv.write_text(f'look,landmarks,outdir,seed\n{look},{look},out/e,7\n')
    code, _, err = invoke(projector.main, common + ['--pairs', csv])
    assert code == 0, err
    assert 'were made with another target_landmarks, seed, target_landmarks_content: redoing it' in err
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['ok']
    settings = read_json(pairs_dir / 'out' / 'e' / 'report.json')['settings']
    assert (settings['target_landmarks'], settings['seed']) == (str(look), 7)
    code, _, err = invoke(projector.main, common + ['--pairs', csv])  # now the same: kept
    assert code == 0, err
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['skipped']
    # A landmark target edited in place (same name, new content): redone.
    import shutil
    edited = pairs_dir / 'edited_target.png'
    shutil.copyfile(look, edited)
    csv.write_text(f'look,landmarks,outdir,seed\n{look},{edited},out/e,7\n')
    code, _, err = invoke(projector.main, common + ['--pairs', csv])
    assert code == 0, err
    shutil.copyfile(landmarks, edited)
    code, _, err = invoke(projector.main, common + ['--pairs', csv])
    assert code == 0, err
    assert 'were made with another target_landmarks_content: redoing it' in err
    code, _, err = invoke(projector.main, common + ['--pairs', csv])  # unchanged since: kept
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['skipped']
    # Another precision than the one the outputs were made with: redone.
    code, _, err = invoke(projector.main, common + ['--pairs', csv, '--precision', 'bf16'])
    assert code == 0, err
    assert 'were made with another precision_used: redoing it' in err
    assert read_json(pairs_dir / 'out' / 'e' / 'report.json')['precision'] == 'bf16'
    # landmarks.json missing (an earlier run with --no-save_landmarks): the row is unfinished for this run.
    (pairs_dir / 'out' / 'e' / 'landmarks.json').unlink()
    code, _, err = invoke(projector.main, common + ['--pairs', csv, '--precision', 'bf16'])
    assert code == 0, err
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['ok']
    assert (pairs_dir / 'out' / 'e' / 'landmarks.json').is_file()
    code, _, err = invoke(projector.main, common + ['--pairs', csv, '--precision', 'bf16', '--no-save_landmarks'])
    assert code == 0, err
    assert [r['status'] for r in read_json(pairs_dir / 'pairs_report.json')['rows']] == ['skipped']


@pytest.mark.parametrize('content, needles', [(None, ['not found']), ('look,outdir\na,b\n', ['landmarks']),
                                             ('look,landmarks,outdir,seed\na,b,c,-1\n', ['seed', '-1', '0 to'])])
def test_bad_csv_is_one_error_line(tmp_path, tiny_pkl, fan_weights, vgg_weights, content, needles):
    csv = tmp_path / 'p.csv'
    if content is not None:
        csv.write_text(content)
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv])
    assert code == 2
    assert_one_error_line(err, *needles)


def test_a_report_that_cannot_be_written_stops_before_any_row(tmp_path, tiny_pkl, fan_weights, vgg_weights,
                                                               face_images):
    look, landmarks = face_images
    csv = tmp_path / 'p.csv'
    csv.write_text(f'look,landmarks,outdir\n{look},{landmarks},out/a\n')
    (tmp_path / 'pairs_report.json').mkdir()
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv])
    assert code == 2
    assert_one_error_line(err, 'pairs_report.json', 'not a file')
    assert not (tmp_path / 'out').exists()


def test_the_last_report_stays_when_the_run_stops_before_any_row(tmp_path, tiny_pkl, fan_weights, vgg_weights,
                                                                   face_images):
    """A typo in --network costs nothing: the last run's pairs_report.json goes only once work starts."""
    look, landmarks = face_images
    csv = tmp_path / 'p.csv'
    csv.write_text(f'look,landmarks,outdir\n{look},{landmarks},out/a\n')
    (tmp_path / 'pairs_report.json').write_text('{"rows": []}')
    args = _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv]
    args[args.index('--network') + 1] = tmp_path / 'typo.pkl'
    code, _, err = invoke(projector.main, args)
    assert code == 2, err
    assert (tmp_path / 'pairs_report.json').read_text() == '{"rows": []}'


def test_an_interrupt_leaves_a_report_of_the_rows_finished(tmp_path, tiny_pkl, fan_weights, vgg_weights, face_images,
                                                            monkeypatch):
    look, landmarks = face_images
    csv = tmp_path / 'p.csv'
    csv.write_text(f'look,landmarks,outdir\n{look},{landmarks},out/a\n{landmarks},{look},out/b\n{look},{look},out/c\n')
    real_run, calls = projector.LandmarkProjector.run, []

    def run(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second row
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(projector.LandmarkProjector, 'run', run)
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--pairs', csv])
    assert code == 130, err
    report = read_json(tmp_path / 'pairs_report.json')
    assert [r['status'] for r in report['rows']] == ['ok', 'interrupted', 'interrupted']
    assert report['counts'] == dict(ok=1, skipped=0, failed=0, interrupted=2)
    assert (tmp_path / 'out' / 'a' / 'report.json').is_file() and not (tmp_path / 'out' / 'b' / 'report.json').exists()
    assert 'lists the rows finished before the interrupt' in err


def test_pairs_and_single_options_do_not_mix(tmp_path, tiny_pkl, fan_weights, vgg_weights):
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights)
                          + ['--pairs', tmp_path / 'p.csv', '--outdir', tmp_path / 'o'])
    assert code == 2
    assert_one_error_line(err, '--outdir')
    code, _, err = invoke(projector.main, _common(tiny_pkl, fan_weights, vgg_weights) + ['--batch-size', 2])
    assert code == 2
    assert 'error:' in err
