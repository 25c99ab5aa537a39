"""load_movielens against a local HTTP server on 127.0.0.1 serving small zips with the
official layouts (GroupLens itself is never contacted)."""

import errno
import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from mfsgd import MatrixFactorization
from mfsgd import datasets as D
from mfsgd.datasets import ChecksumError, DownloadError, get_data_home, load_movielens

OFFICIAL_SHA256 = dict(D._MOVIELENS_SHA256)  # before any test swaps in the test zips' sums

ROWS = [(1, 10, 4.0, 881250949), (2, 10, 3.5, 891717742), (1, 20, 1.0, 878887116),
        (3, 30, 5.0, 5), (196, 242, 3.0, 1260759144)]


def ratings_text(variant):
    if variant == "100k":
        return "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in ROWS)
    if variant in ("1m", "10m"):
        return "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in ROWS)
    return "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{t}\n"
                                                        for u, i, r, t in ROWS)


def build_zip(path, variant, member=None):
    member = member or D._MOVIELENS[variant][1]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member.split("/")[0] + "/README.txt", "a test archive\n")
        zf.writestr(member, ratings_text(variant))
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Server:
    """Serves <root>/ok/<zip>; /truncated/... announces more bytes than it sends."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                log.append(self.path)
                if self.path.startswith("/truncated/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"PK\x03\x04 only the start")
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "ok").mkdir()
    sums = {v: build_zip(root / "ok" / D._MOVIELENS[v][0], v) for v in D._MOVIELENS}
    srv = Server(root)
    srv.sums = sums
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def local_only(server, monkeypatch, tmp_path):
    """Every test downloads from the local server into its own cache, with the checksums
    of the test zips."""
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", server.url + "/ok/")
    monkeypatch.setenv("MFSGD_DATA", str(tmp_path / "cache"))
    for v, s in server.sums.items():
        monkeypatch.setitem(D._MOVIELENS_SHA256, v, s)
    server.requests.clear()
    return tmp_path / "cache"


def leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith(".part") or n.startswith(".")]


@pytest.mark.parametrize("variant", ["100k", "1m", "10m", "20m", "32m", "latest-small"])
def test_downloads_parses_and_caches_each_format(server, local_only, variant):
    pd = pytest.importorskip("pandas")
    df = load_movielens(variant)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert [str(t) for t in df.dtypes] == ["int64", "int64", "float32", "int64"]
    assert df.to_numpy().tolist() == [list(map(float, row)) for row in ROWS]
    zname = D._MOVIELENS[variant][0]
    assert server.requests == [f"/ok/{zname}"]
    assert (local_only / zname).is_file() and leftovers(local_only) == []
    # cached: never downloaded twice, same result in tuple form
    u, i, r, t = load_movielens("ml-" + variant.upper(), as_frame=False)
    assert server.requests == [f"/ok/{zname}"]
    assert (u.dtype, i.dtype, r.dtype, t.dtype) == (np.int64, np.int64, np.float32, np.int64)
    np.testing.assert_array_equal(u, df["user"].to_numpy())
    np.testing.assert_array_equal(r, df["rating"].to_numpy())
    np.testing.assert_array_equal(t, df["timestamp"].to_numpy())


def test_numpy_parser_without_pandas(monkeypatch):
    expected = {v: load_movielens(v, as_frame=False) for v in ("100k", "1m", "latest-small")}
    monkeypatch.setitem(sys.modules, "pandas", None)  # "import pandas" now fails
    for v, want in expected.items():
        got = load_movielens(v)  # as_frame="auto" -> tuple without pandas
        assert isinstance(got, tuple) and len(got) == 4
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ImportError, match=r"needs pandas: pip install 'mfsgd\[pandas\]'"):
        load_movielens("100k", as_frame=True)


def test_loaded_data_fits():
    u, i, r, t = load_movielens("100k", as_frame=False)
    model = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0).fit((u, i, r))
    assert model.user_ids_.tolist() == [1, 2, 3, 196]


def test_cache_folder_resolution(monkeypatch, tmp_path, server):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MFSGD_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert get_data_home() == str(tmp_path / "home" / ".cache" / "mfsgd")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_data_home() == str(tmp_path / "xdg" / "mfsgd")
    monkeypatch.setenv("MFSGD_DATA", str(tmp_path / "env"))
    assert get_data_home() == str(tmp_path / "env")
    assert get_data_home(tmp_path / "arg") == str(tmp_path / "arg")
    load_movielens("100k", data_home=tmp_path / "arg")
    assert (tmp_path / "arg" / "ml-100k.zip").is_file()
    assert not (tmp_path / "env" / "ml-100k.zip").exists()


def test_wrong_checksum_on_download_keeps_nothing(monkeypatch, local_only, server):
    monkeypatch.setitem(D._MOVIELENS_SHA256, "100k", "0" * 64)
    with pytest.raises(ChecksumError, match=r"has SHA-256 [0-9a-f]{64}, expected 0{64}; it was "
                                            r"discarded"):
        load_movielens("100k")
    assert os.listdir(local_only) == []
    assert isinstance(ChecksumError("x"), OSError)


def test_damaged_cache_is_reported_not_downloaded_again(local_only, server):
    load_movielens("1m")
    path = local_only / "ml-1m.zip"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"ml-1m.zip has SHA-256 .* official archive's "
                                            r"checksum .* Delete it"):
        load_movielens("1m")
    assert server.requests == ["/ok/ml-1m.zip"]


def test_trust_on_first_use_sidecar(monkeypatch, local_only, server):
    monkeypatch.setitem(D._MOVIELENS_SHA256, "10m", None)
    load_movielens("10m")
    sidecar = local_only / "ml-10m.zip.sha256"
    assert sidecar.read_text().split() == [server.sums["10m"], "ml-10m.zip"]
    load_movielens("10m")  # verified against the sidecar
    build_zip(local_only / "ml-10m.zip", "10m", member="ml-10M100K/other/ratings.dat")
    with pytest.raises(ChecksumError, match=r"recorded at its first download"):
        load_movielens("10m")
    assert server.requests == ["/ok/ml-10m.zip"]


def test_manual_placement_and_download_false(local_only, server):
    with pytest.raises(FileNotFoundError, match=r"ml-100k.zip does not exist and download=False"
                                                r".*place it at"):
        load_movielens("100k", download=False)
    local_only.mkdir(parents=True, exist_ok=True)
    shutil.copy(server.root / "ok" / "ml-100k.zip", local_only / "ml-100k.zip")
    u, *_ = load_movielens("100k", download=False, as_frame=False)
    assert u.tolist() == [row[0] for row in ROWS] and server.requests == []


@pytest.mark.parametrize("kind", ["named pipe", "symlink to /dev/zero"])
def test_cache_that_is_not_a_regular_file_is_refused_not_read(local_only, server, kind):
    """A named pipe would block the read forever, /dev/zero would be hashed forever: both
    are refused by name before any byte is read. Run in a child process with a timeout,
    so that a hang fails the test instead of blocking the suite."""
    local_only.mkdir(parents=True, exist_ok=True)
    path = local_only / "ml-100k.zip"
    if kind == "named pipe":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes")
        os.mkfifo(path)
    else:
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        os.symlink("/dev/zero", path)
    code = ("from mfsgd.datasets import load_movielens\n"
            f"try: load_movielens('100k', data_home={str(local_only)!r}, download=False)\n"
            "except OSError as e: print(type(e).__name__, e)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"OSError {path} is not a regular file (a device, pipe or socket), "
                           "so it cannot be the cached archive; delete it and call "
                           "load_movielens again to download it anew.\n")
    assert server.requests == []


def test_cache_that_is_a_directory_is_named(local_only, server):
    (local_only / "ml-100k.zip").mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as info:
        load_movielens("100k")
    assert info.value.filename == str(local_only / "ml-100k.zip") and server.requests == []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_error_names_url_and_manual_fix(monkeypatch, local_only):
    base = f"http://127.0.0.1:{free_port()}/mirror"
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", base)
    with pytest.raises(DownloadError) as info:
        load_movielens("25m")
    msg = str(info.value)
    assert f"Could not download {base}/ml-25m.zip" in msg
    assert f"place it at {local_only / 'ml-25m.zip'}" in msg and "MFSGD_DATA" in msg
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, OSError)
    assert os.listdir(local_only) == []


def test_http_error_and_truncated_download_leave_nothing(monkeypatch, local_only, server):
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", server.url + "/missing")
    with pytest.raises(DownloadError, match=r"HTTP Error 404"):
        load_movielens("100k")
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", server.url + "/truncated/")
    with pytest.raises(DownloadError, match=r"cut short|failed after"):
        load_movielens("100k")
    assert os.listdir(local_only) == []


def test_archive_without_ratings_file(monkeypatch, local_only, server, tmp_path):
    local_only.mkdir(parents=True, exist_ok=True)
    digest = build_zip(local_only / "ml-100k.zip", "100k", member="ml-100k/u.item")
    monkeypatch.setitem(D._MOVIELENS_SHA256, "100k", digest)
    with pytest.raises(OSError, match=r"holds no ml-100k/u.data"):
        load_movielens("100k")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"variant must be one of \['100k', '1m', '10m', '20m', "
                                         r"'25m', '32m', 'latest-small'\]; got '5m'"):
        load_movielens("5m")
    with pytest.raises(TypeError, match=r"variant must be a string"):
        load_movielens(100)
    with pytest.raises(TypeError, match=r"download must be True or False"):
        load_movielens("100k", download="no")


def test_official_urls_and_checksums_table(monkeypatch):
    monkeypatch.delenv("MFSGD_MOVIELENS_URL")
    assert D._movielens_url("100k") == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert D._movielens_url("latest-small").endswith("/movielens/ml-latest-small.zip")
    monkeypatch.setattr(D, "MOVIELENS_BASE_URL", "http://mirror.example/ml")
    assert D._movielens_url("32m") == "http://mirror.example/ml/ml-32m.zip"
    assert set(OFFICIAL_SHA256) == set(D._MOVIELENS)
    for digest in OFFICIAL_SHA256.values():
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert len(set(OFFICIAL_SHA256.values())) == len(OFFICIAL_SHA256)


def test_data_home_that_is_a_file(monkeypatch, tmp_path):
    f = tmp_path / "a_file"
    f.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=f"data_home {re.escape(str(f))} cannot be the "
                                                 "folder of downloaded data sets: it or a folder "
                                                 "above it is a file"):
        load_movielens("100k", data_home=f)
    with pytest.raises(NotADirectoryError, match=f"data_home {re.escape(str(f / 'sub'))} "):
        get_data_home(f / "sub")
    monkeypatch.setenv("MFSGD_DATA", str(f))
    with pytest.raises(NotADirectoryError, match=f"MFSGD_DATA {re.escape(str(f))} cannot"):
        get_data_home()


def test_data_home_is_checked_and_made_only_to_download(monkeypatch, tmp_path):
    """data_home=5 failed with os.fspath's "expected str, bytes or os.PathLike object"
    naming no argument; "" silently meant the working directory; and download=False
    created a mistyped folder before saying the file was missing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=r"^data_home must be a folder path \(str or "
                                        r"PathLike\) or None; got 5 \(int\)"):
        load_movielens("100k", data_home=5)
    with pytest.raises(TypeError, match="^data_home must be a folder path"):
        get_data_home(["cache"])
    for call in (lambda: load_movielens("100k", data_home=""), lambda: get_data_home("")):
        with pytest.raises(ValueError, match="^data_home is an empty path"):
            call()
    typo = tmp_path / "typo" / "deep"
    with pytest.raises(FileNotFoundError, match="does not exist and download=False"):
        load_movielens("100k", data_home=typo, download=False)
    assert os.listdir(tmp_path) == []


def test_malformed_url_is_a_download_error(monkeypatch, local_only, server):
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", "notaurl")  # no network: urllib refuses it
    with pytest.raises(DownloadError, match=r"Could not download notaurl/ml-100k\.zip: unknown "
                                            r"url type"):
        load_movielens("100k")
    assert os.listdir(local_only) == [] and server.requests == []


def test_as_frame_must_be_a_boolean_or_auto():
    with pytest.raises(TypeError, match="as_frame must be True, False or 'auto'; got 'no'"):
        load_movielens("100k", as_frame="no")


def test_a_stderr_that_cannot_be_written_stops_no_download(server, local_only, monkeypatch):
    """The "downloading" notice on a closed or full stderr aborted the download."""
    class Broken:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Broken())
    u, i, r, t = load_movielens("100k", as_frame=False)
    assert r.tolist() == [float(row[2]) for row in ROWS]
    assert server.requests == [f"/ok/{D._MOVIELENS['100k'][0]}"]
