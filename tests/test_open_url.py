"""Offline tests for dnnlib.util.open_url and EasyDict (a local HTTP server only)."""

import http.server
import os
import pathlib
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

from dnnlib import EasyDict
from dnnlib.util import DownloadError, UserError, open_url

PAYLOAD = b"stylegan-weights-" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    counts: dict = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        type(self).counts[self.path] = type(self).counts.get(self.path, 0) + 1
        if self.path.startswith("/ok/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/portal/"):  # a login or captive-portal page instead of the file
            page = b"<html><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        elif self.path.startswith("/short/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) * 2))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def server():
    """Run a local HTTP server in a thread; yields (base_url, request_counts, stop)."""
    _Handler.counts = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stopped = []

    def stop():
        if not stopped:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
            stopped.append(True)

    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.counts, stop
    finally:
        stop()


def _fetch(url, cache_dir, **kw):
    with open_url(url, cache_dir=str(cache_dir), verbose=False, timeout=2, **kw) as f:
        return f.read()


def test_download_caches_then_serves_offline(server, tmp_path):
    base, counts, stop = server
    url = base + "/ok/model.pkl"
    assert _fetch(url, tmp_path) == PAYLOAD
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith("_model.pkl") and not files[0].startswith(".tmp")
    assert counts["/ok/model.pkl"] == 1
    stop()
    assert _fetch(url, tmp_path) == PAYLOAD
    assert os.listdir(tmp_path) == files


def test_a_web_page_is_refused_and_never_cached(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DownloadError, match="sent a web page, not the file"):
        _fetch(base + "/portal/ffhq.pkl", tmp_path)
    assert os.listdir(tmp_path) == []


def test_cached_download_is_readable_by_others_and_where_cached_path_says(server, tmp_path):
    from dnnlib.util import cached_path
    base, _, _ = server
    url = base + "/ok/shared.pkl"
    path = open_url(url, cache_dir=str(tmp_path), verbose=False, timeout=2, return_filename=True)
    assert path == cached_path(url, str(tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_cache_dir_from_environment(server, tmp_path, monkeypatch):
    base, _, _ = server
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    path = open_url(base + "/ok/a.pkl", verbose=False, timeout=2, return_filename=True)
    assert os.path.dirname(path) == str(tmp_path / "downloads")
    assert pathlib.Path(path).read_bytes() == PAYLOAD


def test_return_filename_gives_cached_path(server, tmp_path):
    base, _, _ = server
    path = open_url(base + "/ok/b.pkl", cache_dir=str(tmp_path), verbose=False, timeout=2,
                    return_filename=True)
    assert isinstance(path, str)
    assert os.path.dirname(path) == str(tmp_path)
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    assert pathlib.Path(path).read_bytes() == PAYLOAD


def test_a_killed_download_is_cleaned_up_by_the_next_one_but_one_in_progress_is_not(server, tmp_path):
    base, _, _ = server
    abandoned, in_progress = tmp_path / ".tmp-killed", tmp_path / ".tmp-running"
    abandoned.write_bytes(b"x" * 100)
    in_progress.write_bytes(b"y" * 100)
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    assert _fetch(base + "/ok/c.pkl", tmp_path) == PAYLOAD
    assert not abandoned.exists() and in_progress.exists()


def test_interrupted_transfer_retries_and_leaves_nothing(server, tmp_path):
    base, counts, _ = server
    url = base + "/short/model.pkl"
    with pytest.raises(DownloadError) as info:
        _fetch(url, tmp_path)
    assert url in str(info.value)
    assert counts["/short/model.pkl"] == 2
    assert os.listdir(tmp_path) == []


def test_unreachable_url_message(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/model.pkl"
    with pytest.raises(DownloadError) as info:
        _fetch(url, tmp_path)
    msg = str(info.value)
    assert url in msg and "local" in msg and "\n" not in msg
    assert isinstance(info.value, UserError)
    assert os.listdir(tmp_path) == []


def test_404_not_retried(server, tmp_path):
    base, counts, _ = server
    with pytest.raises(DownloadError) as info:
        _fetch(base + "/missing.pkl", tmp_path)
    assert "404" in str(info.value)
    assert counts["/missing.pkl"] == 1
    assert os.listdir(tmp_path) == []


def test_local_path_forms(tmp_path):
    target = tmp_path / "dir with space" / "net.pkl"
    target.parent.mkdir()
    target.write_bytes(b"local-bytes")
    for spec in (str(target), target, target.as_uri()):
        with open_url(spec) as f:
            assert f.read() == b"local-bytes"
    assert open_url(target.as_uri(), return_filename=True) == str(target)
    with pytest.raises(UserError, match="file not found"):
        open_url(str(tmp_path / "nope.pkl"))
    with pytest.raises(UserError):
        open_url((tmp_path / "nope.pkl").as_uri())


def test_easydict_attribute_access():
    d = EasyDict(a=1)
    assert d.a == 1
    d.b = 2
    assert d["b"] == 2
    del d.a
    assert "a" not in d
    with pytest.raises(AttributeError):
        _ = d.a
    with pytest.raises(AttributeError):
        del d.missing
    assert getattr(d, "missing", None) is None
