"""Generic helpers: an attribute-access dict, user-facing errors and cached file/URL opening."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
from typing import IO, Any, Optional, Union

PathOrUrl = Union[str, os.PathLike]


class EasyDict(dict):
    """A dict whose items can also be read, written and deleted as attributes.

    Reading a missing attribute raises AttributeError (not KeyError), so
    ``getattr(d, name, default)`` and ``hasattr`` behave as expected.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class UserError(Exception):
    """An error caused by the user's input or environment.

    Command lines print its message on one line and exit with status 2.
    Other modules subclass it for their own user-facing failures.
    """


class DownloadError(UserError):
    """A remote file could not be fetched after all attempts."""


class _RetryableError(Exception):
    """Internal: a transient download failure worth another attempt."""


def make_cache_dir_path(*paths: str) -> str:
    """Return ``$DNNLIB_CACHE_DIR`` (or ``~/.cache/dnnlib`` when unset) joined with ``paths``."""
    root = os.environ.get("DNNLIB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "dnnlib")
    return os.path.join(root, *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    """True if ``obj`` is a string holding an http(s) URL (or a file:// URL when allowed)."""
    if not isinstance(obj, str) or "://" not in obj:
        return False
    try:
        parts = urllib.parse.urlparse(obj)
    except ValueError:
        return False
    if parts.scheme == "file":
        return allow_file_urls
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _file_url_to_path(url: str) -> str:
    """Convert ``file:///abs/path`` (or ``file://host/path``) to a local path, unquoting %-escapes."""
    parts = urllib.parse.urlparse(url)
    path = parts.path
    if parts.netloc and parts.netloc != "localhost":
        path = "//" + parts.netloc + path  # UNC-style location
    return urllib.request.url2pathname(path)


def _cache_file_name(url: str) -> str:
    """Deterministic cache name: hash of the whole URL plus a sanitised basename of its path."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:100] or "download"
    return f"{digest}_{base}"


def cached_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Where ``open_url`` keeps its copy of the http(s) ``url``: ``<cache_dir>/<hash>_<basename>``
    (default cache dir: ``make_cache_dir_path('downloads')``)."""
    return os.path.join(cache_dir or make_cache_dir_path("downloads"), _cache_file_name(url))


_PARTIAL_PREFIX = ".tmp-"
_ABANDONED_AFTER_S = 3600  # a download in progress writes to its file far more often than this


def _remove_abandoned_downloads(cache_dir: str) -> None:
    """Remove partial downloads that a killed process left (a Colab runtime reset mid-download
    leaves hundreds of megabytes): those not written to for an hour, so that another process's
    download in progress is never touched."""
    now = time.time()
    try:
        names = [n for n in os.listdir(cache_dir) if n.startswith(_PARTIAL_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(cache_dir, name)
        try:
            if now - os.stat(path).st_mtime > _ABANDONED_AFTER_S:
                os.remove(path)
        except OSError:
            pass  # gone already, or not ours to remove


def _download(url: str, dest: str, cache_dir: str, timeout: float, verbose: bool) -> None:
    """Fetch ``url`` into ``dest`` atomically; raise _RetryableError or DownloadError on failure."""
    import requests
    from tqdm import tqdm

    _remove_abandoned_downloads(cache_dir)
    tmp = tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, prefix=_PARTIAL_PREFIX)
    try:
        try:
            with tmp, requests.get(url, stream=True, timeout=timeout) as resp:
                if resp.status_code >= 500:
                    raise _RetryableError(f"HTTP {resp.status_code} {resp.reason}")
                if resp.status_code >= 400:
                    raise DownloadError(_failure_message(url, f"HTTP {resp.status_code} {resp.reason}"))
                if resp.headers.get("Content-Type", "").lower().startswith("text/html"):
                    # a login, proxy or captive-portal page (or a file host's warning page): never cache it
                    raise DownloadError(_failure_message(url, "the server sent a web page, not the file"))
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=os.path.basename(dest), disable=not verbose, leave=False) as bar:
                    for chunk in resp.iter_content(chunk_size=1 << 16):
                        tmp.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if total is not None and received != total:
                    raise _RetryableError(f"incomplete transfer ({received} of {total} bytes)")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
        except requests.RequestException as exc:
            raise DownloadError(_failure_message(url, f"{type(exc).__name__}: {exc}")) from exc
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp.name, 0o666 & ~umask)  # readable as any other file (a shared cache), not 0600
        os.replace(tmp.name, dest)
    finally:
        if os.path.exists(tmp.name):
            os.remove(tmp.name)


def _failure_message(url: str, reason: str) -> str:
    """One-line DownloadError text naming the URL, the reason and the offline workaround."""
    reason = " ".join(str(reason).split())
    return (f"could not download {url}: {reason}. If this machine is offline, "
            f"download the file elsewhere and pass its local path instead.")


def open_url(
    url: PathOrUrl,
    cache_dir: Optional[str] = None,
    num_attempts: int = 2,
    verbose: bool = True,
    return_filename: bool = False,
    cache: bool = True,
    timeout: float = 30,
) -> Union[IO[bytes], str]:
    """Open a local path, ``file://`` URL or http(s) URL for binary reading.

    Returns an open binary file, or its local path when ``return_filename`` is set.

    * Local paths (``str`` or ``os.PathLike``) and ``file://`` URLs are opened
      directly; a missing file raises ``UserError("file not found: ...")``.
    * http(s) URLs are stored under ``cache_dir`` (default
      ``make_cache_dir_path('downloads')``) as ``<url hash>_<basename>``. A cached
      copy is returned without any network access. Otherwise the file is streamed
      to a temporary file in the cache dir, checked against Content-Length and
      renamed into place only when complete; no partial file is ever left behind.
      Connection errors, timeouts, 5xx replies and short transfers are retried up to
      ``num_attempts`` in total; 4xx replies are not. Final failure raises
      ``DownloadError`` with a one-line message.
    * With ``cache=False`` the download still goes through the cache directory
      but an existing cached copy is ignored and refreshed.
    """
    if isinstance(url, os.PathLike) or not is_url(url, allow_file_urls=True):
        path = os.fspath(url)
        return _open_local(path, return_filename)
    if urllib.parse.urlparse(url).scheme == "file":
        return _open_local(_file_url_to_path(url), return_filename)

    cache_dir = cache_dir or make_cache_dir_path("downloads")
    dest = cached_path(url, cache_dir)
    if not (cache and os.path.isfile(dest)):
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as exc:
            raise DownloadError(_failure_message(url, f"cannot create cache dir {cache_dir}: {exc}")) from exc
        reason = "no attempts made"
        for _ in range(max(1, num_attempts)):
            try:
                _download(url, dest, cache_dir, timeout, verbose)
                break
            except _RetryableError as exc:
                reason = str(exc)
            except OSError as exc:  # local disk problems are not transient
                raise DownloadError(_failure_message(url, f"{type(exc).__name__}: {exc}")) from exc
        else:
            raise DownloadError(_failure_message(url, reason))
    return dest if return_filename else open(dest, "rb")


def not_a_file(path: Union[str, "os.PathLike"], kind: str = "a file") -> str:
    """Why ``path`` cannot be read as ``kind``: ``PATH is a folder, not a file`` or ``file not found: PATH``."""
    return f"{path} is a folder, not {kind}" if os.path.isdir(path) else f"file not found: {path}"


def _open_local(path: str, return_filename: bool) -> Union[IO[bytes], str]:
    """Open (or just validate) a local file, raising UserError when it does not exist."""
    if not os.path.isfile(path):
        raise UserError(not_a_file(path))
    return path if return_filename else open(path, "rb")
