"""The --pairs CSV reader: the formats spreadsheets write, paths, overrides, sharding."""

import pytest

import pairs
from conftest import one_line_message
from dnnlib.util import UserError


def write(path, text, newline='\n', encoding='utf-8'):
    path.write_bytes(text.replace('\n', newline).encode(encoding))
    return path


def test_crlf_quoted_fields_spaces_and_bom(tmp_path):
    csv_path = write(tmp_path / 'p.csv', '\ufefflook,landmarks,outdir\n"my look.png","smile, wide.png","out/a b"\n',
                     newline='\r\n')
    (row,) = pairs.read_pairs(str(csv_path))
    assert row.look == tmp_path / 'my look.png'
    assert row.landmarks == tmp_path / 'smile, wide.png'
    assert row.outdir == tmp_path / 'out' / 'a b'
    assert row.line == 2 and row.index == 0


def test_paths_are_relative_to_the_csv_folder(tmp_path, monkeypatch):
    sub = tmp_path / 'sub'
    sub.mkdir()
    write(sub / 'p.csv', 'look,landmarks,outdir\na.png,b.png,o\n/abs/c.png,b.png,o2\n')
    monkeypatch.chdir(tmp_path)
    rows = pairs.read_pairs('sub/p.csv')
    assert rows[0].look == sub.resolve() / 'a.png'
    assert str(rows[1].look) == '/abs/c.png'


def test_overrides_are_parsed_and_empty_cells_keep_the_default(tmp_path):
    write(tmp_path / 'p.csv', 'look,landmarks,outdir,landmark_weight\na,b,o1,0.05\na,b,o2,\n\n')
    rows = pairs.read_pairs(str(tmp_path / 'p.csv'), {'landmark_weight': float})
    assert rows[0].overrides == {'landmark_weight': 0.05}
    assert rows[1].overrides == {}
    assert len(rows) == 2  # the blank line is not a row


def test_a_spreadsheets_trailing_empty_columns_are_ignored(tmp_path):
    write(tmp_path / 'p.csv', 'look,landmarks,outdir,,\na,b,o1,,\na,b,o2\n')
    rows = pairs.read_pairs(str(tmp_path / 'p.csv'))
    assert [r.outdir.name for r in rows] == ['o1', 'o2']


@pytest.mark.parametrize('text, needles', [
    ('look,outdir\na,o\n', ['landmarks']),
    ('look,landmarks,outdir,colour\na,b,o,red\n', ['colour']),
    ('look,landmarks,outdir\n', ['no rows']),
    ('', ['empty']),
    ('look,landmarks,outdir\na,,o\n', ['line 2', 'landmarks']),
    ('look,landmarks,outdir,landmark_weight\na,b,o,lots\n', ['line 2', 'landmark_weight']),
    ('look,landmarks,outdir\na,b,o\nc,d,o\n', ['same outdir']),
    ('look,landmarks,outdir\na,b,o,extra\n', ['line 2', 'fields']),
    ('look,,landmarks,outdir\na,,b,o\n', ['without a name']),
])
def test_bad_files_give_one_line(tmp_path, text, needles):
    write(tmp_path / 'p.csv', text)
    with pytest.raises(UserError) as excinfo:
        pairs.read_pairs(str(tmp_path / 'p.csv'), {'landmark_weight': float})
    msg = one_line_message(excinfo)
    for needle in needles:
        assert needle in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match='not found'):
        pairs.read_pairs(str(tmp_path / 'nope.csv'))


def test_shards_cover_every_row_once():
    rows = list(range(7))
    shards = [pairs.shard(rows, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == rows
    assert pairs.shard(rows, 0, 1) == rows
    with pytest.raises(ValueError):
        pairs.shard(rows, 3, 3)


def test_batches_and_completion(tmp_path):
    assert pairs.batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert not pairs.is_complete(tmp_path)
    for name in pairs.COMPLETE_OUTPUTS:
        (tmp_path / name).write_bytes(b'x')
    assert pairs.is_complete(tmp_path)


def test_redo_reason_reads_contents_only_from_reports_that_have_them(tmp_path):
    import json
    for name in pairs.COMPLETE_OUTPUTS:
        (tmp_path / name).write_bytes(b'x')
    expected = dict(seed=1, target_look_content='sha256:new')
    (tmp_path / 'report.json').write_text(json.dumps(dict(settings=dict(seed=1))))  # an older report
    assert pairs.redo_reason(tmp_path, expected) is None
    (tmp_path / 'report.json').write_text(json.dumps(dict(settings=dict(seed=1),
                                                          input_contents=dict(target_look='sha256:old'))))
    assert pairs.redo_reason(tmp_path, expected) == 'were made with another target_look_content'
    (tmp_path / 'report.json').write_text(json.dumps(dict(settings=dict(seed=1), precision='bf16',
                                                          input_contents=dict(target_look='sha256:new'))))
    assert pairs.redo_reason(tmp_path, dict(expected, precision_used='fp32')) == 'were made with another precision_used'
