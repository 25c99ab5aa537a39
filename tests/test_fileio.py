"""Atomic writes (_fileio.atomic_write) and their three users: file modes, errors that
name the user's path, and the old file kept on failure."""

import errno
import os
import re
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

import mfsgd
from mfsgd import MatrixFactorization, _fileio
from mfsgd._fileio import atomic_write, current_umask

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture()
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    os.umask(before)

    def set_(mask):
        os.umask(mask)
        return mask

    yield set_
    os.umask(before)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(folder, keep):
    return sorted(set(os.listdir(folder)) - set(keep))


@pytest.fixture(scope="module")
def model():
    u, i, r = mfsgd.datasets.make_ratings(60, 40, 600, random_state=0, as_frame=False)
    return MatrixFactorization(n_factors=2, n_epochs=1, random_state=0).fit((u, i, r))


# ---------------------------------------------------------------------- the helper

@posix_only
@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664),
                                           (0o027, 0o640)], ids=oct)
def test_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_write(tmp_path / "f.bin") as f:
        f.write(b"data")
    with open(tmp_path / "by_open.bin", "wb") as f:
        f.write(b"data")
    assert mode(tmp_path / "f.bin") == expected == mode(tmp_path / "by_open.bin")
    assert (tmp_path / "f.bin").read_bytes() == b"data"


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
@pytest.mark.parametrize("old_mode", [0o644, 0o640, 0o600, 0o444], ids=oct)
def test_replaced_file_keeps_its_mode(tmp_path, umask, mask, old_mode):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    os.chmod(p, old_mode)
    umask(mask)
    with atomic_write(p, "w", encoding="utf-8") as f:
        f.write("new")
    assert mode(p) == old_mode and p.read_text() == "new"
    assert leftovers(tmp_path, ["f.bin"]) == []


@posix_only
def test_current_umask_with_and_without_proc(umask, monkeypatch):
    umask(0o027)
    assert current_umask() == 0o027

    def no_proc(*a, **k):
        raise OSError(errno.ENOENT, "No such file or directory", "/proc/self/status")

    monkeypatch.setattr(_fileio, "open", no_proc, raising=False)  # as on macOS
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # the fallback restored it


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, exc):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_write(p) as f:
            f.write(b"half of the new")
            raise exc
    assert p.read_bytes() == b"old"
    assert leftovers(tmp_path, ["f.bin"]) == []


def test_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError) as info:
        with atomic_write(p) as f:
            f.write(b"new")
    assert info.value.filename == str(p) and p.read_bytes() == b"old"
    assert leftovers(tmp_path, ["f.bin"]) == []


def check_error(info, cls, code, path):
    e = info.value
    assert type(e) is cls, type(e)
    assert e.errno == code and e.strerror == os.strerror(code)
    assert e.filename == str(path)
    assert ".tmp" not in str(e)


def test_errors_name_the_users_path(tmp_path):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_bytes(b"")
    cases = [(tmp_path / "a_folder", IsADirectoryError, errno.EISDIR),
             (tmp_path / "no" / "such" / "m.mfsgd", FileNotFoundError, errno.ENOENT),
             (tmp_path / "a_file" / "m.mfsgd", NotADirectoryError, errno.ENOTDIR)]
    for path, cls, code in cases:
        with pytest.raises(cls) as info:
            with atomic_write(path) as f:
                f.write(b"x")
        check_error(info, cls, code, path)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "a_folder"]
    assert os.listdir(tmp_path / "a_folder") == []


@pytest.mark.skipif(ROOT or os.name != "posix", reason="root may write anywhere")
def test_unwritable_folder_is_permission_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        with pytest.raises(PermissionError) as info:
            with atomic_write(ro / "m.mfsgd") as f:
                f.write(b"x")
        check_error(info, PermissionError, errno.EACCES, ro / "m.mfsgd")
    finally:
        os.chmod(ro, 0o755)


def test_permission_error_of_the_temp_file_names_the_users_path(tmp_path, monkeypatch):
    # The same path as above, simulated so that it runs as root too.
    import tempfile

    def denied(dir=None, prefix="", suffix=""):
        raise PermissionError(errno.EACCES, "Permission denied",
                              os.path.join(dir, prefix + "x1y2" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        with atomic_write(tmp_path / "m.mfsgd"):
            pass
    check_error(info, PermissionError, errno.EACCES, tmp_path / "m.mfsgd")


def test_disk_full_in_the_body_names_the_users_path(tmp_path):
    p = tmp_path / "m.mfsgd"
    with pytest.raises(OSError, match="No space left") as info:
        with atomic_write(p):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    check_error(info, OSError, errno.ENOSPC, p)
    assert leftovers(tmp_path, []) == []


def test_other_errors_of_the_body_pass_unchanged(tmp_path):
    class Mine(OSError):
        pass

    for exc in (Mine("checksum"), FileNotFoundError(errno.ENOENT, "x", "/elsewhere")):
        with pytest.raises(type(exc)) as info:
            with atomic_write(tmp_path / "f"):
                raise exc
        assert info.value is exc


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlink_is_followed_like_open(tmp_path):
    real = tmp_path / "real.mfsgd"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = tmp_path / "current.mfsgd"
    link.symlink_to(real)
    with atomic_write(link) as f:
        f.write(b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert mode(real) == 0o640


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_is_written_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with atomic_write(fifo) as f:
        f.write(b"streamed")
    reader.join(10)
    assert got == [b"streamed"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'wb', 'w' or 'wt'; got 'ab'"):
        with atomic_write(tmp_path / "f", "ab"):
            pass


# ---------------------------------------------------------------------- save_model

@posix_only
@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600)], ids=oct)
def test_saved_model_gets_the_umask_mode(model, tmp_path, umask, mask, expected):
    umask(mask)
    model.save(tmp_path / "m.mfsgd")
    assert mode(tmp_path / "m.mfsgd") == expected
    assert mfsgd.load(tmp_path / "m.mfsgd").n_epochs_ == model.n_epochs_


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
@pytest.mark.parametrize("old_mode", [0o644, 0o640], ids=oct)
def test_saving_over_a_model_keeps_its_mode(model, tmp_path, umask, mask, old_mode):
    p = tmp_path / "m.mfsgd"
    p.write_bytes(b"an older model")
    os.chmod(p, old_mode)
    umask(mask)
    model.save(p)
    assert mode(p) == old_mode and mfsgd.load(p).n_epochs_ == model.n_epochs_
    assert leftovers(tmp_path, ["m.mfsgd"]) == []


def test_failed_save_keeps_the_old_model(model, tmp_path, monkeypatch):
    p = tmp_path / "m.mfsgd"
    model.save(p)
    before = p.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", full)
    with pytest.raises(OSError, match="No space left") as info:
        model.save(p)
    assert info.value.filename == str(p)
    assert p.read_bytes() == before and leftovers(tmp_path, ["m.mfsgd"]) == []


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_save_to_a_device_writes_a_stream(model, tmp_path):
    """Review 19: on /dev/null, whose tell() stays 0 and whose seek succeeds, zipfile
    took offsets of 0 and died in struct.pack (mfsgd train -o /dev/null: a traceback
    after training). A target that is no regular file is written as a stream."""
    model.save("/dev/null")
    assert os.path.exists("/dev/null") and not stat.S_ISREG(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_model_saved_to_a_fifo_loads(model, tmp_path):
    fifo, copy = tmp_path / "pipe", tmp_path / "copy.mfsgd"
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: copy.write_bytes(fifo.read_bytes()))
    reader.start()
    model.save(fifo)
    reader.join(10)
    back = mfsgd.load(copy)
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)


@posix_only
def test_save_to_dev_stdout_on_a_pipe(model, tmp_path):
    """Review 19: /dev/stdout on a pipe resolves to "/proc/PID/fd/pipe:[N]", which no
    name reaches; it was taken for a new file there (FileNotFoundError about /proc). The
    user's path is opened as it is, and the bytes on the pipe are the model."""
    if not os.path.exists("/dev/stdout"):
        pytest.skip("no /dev/stdout")
    saved = tmp_path / "m.mfsgd"
    model.save(saved)
    code = (f"import mfsgd; mfsgd.load({str(saved)!r}).save('/dev/stdout')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "piped.mfsgd").write_bytes(proc.stdout)
    back = mfsgd.load(tmp_path / "piped.mfsgd")
    np.testing.assert_array_equal(back.item_factors_, model.item_factors_)


def test_save_errors_name_the_users_path(model, tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        model.save(tmp_path)
    check_error(info, IsADirectoryError, errno.EISDIR, tmp_path)
    missing = tmp_path / "no" / "m.mfsgd"
    with pytest.raises(FileNotFoundError) as info:
        model.save(missing)
    check_error(info, FileNotFoundError, errno.ENOENT, missing)
    assert os.listdir(tmp_path) == []


def test_load_model_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        mfsgd.load(tmp_path / "nope.mfsgd")
    check_error(info, FileNotFoundError, errno.ENOENT, tmp_path / "nope.mfsgd")
    with pytest.raises(IsADirectoryError) as info:
        mfsgd.load(tmp_path)
    check_error(info, IsADirectoryError, errno.EISDIR, tmp_path)


# ---------------------------------------------------------------------- download, checkpoint

@posix_only
def test_download_gets_the_umask_mode_and_failures_leave_nothing(tmp_path, umask, capsys):
    from mfsgd import datasets as D

    src = tmp_path / "src.zip"
    src.write_bytes(b"zip bytes" * 1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    umask(0o022)
    digest = D._download(src.as_uri(), str(cache / "ml-100k.zip"), None)
    assert mode(cache / "ml-100k.zip") == 0o644 and len(digest) == 64
    with pytest.raises(D.ChecksumError):
        D._download(src.as_uri(), str(cache / "other.zip"), "0" * 64)
    assert os.listdir(cache) == ["ml-100k.zip"]
    capsys.readouterr()


@posix_only
def test_dask_checkpoint_gets_the_umask_mode_and_keeps_a_replaced_mode(tmp_path, umask,
                                                                       monkeypatch):
    """The local checkpoint written without fsspec (the write that used mkstemp)."""
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    frame = mfsgd.datasets.make_ratings(200, 100, 3000, random_state=0, as_frame=True)
    ddf = dd.from_pandas(frame, npartitions=2)
    ck = tmp_path / "ck"
    kw = dict(n_factors=2, n_epochs=1, n_blocks=2, random_state=0)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec -> ImportError
        umask(0o022)
        MatrixFactorization(**kw).fit(ddf, client=client, checkpoint=str(ck))
        assert mode(ck) == 0o644
        os.chmod(ck, 0o640)
        umask(0o077)
        MatrixFactorization(**kw).fit(ddf, client=client, checkpoint=str(ck))
        assert mode(ck) == 0o640
    assert leftovers(tmp_path, ["ck"]) == []


def test_a_folder_that_creates_no_files_says_so(tmp_path, monkeypatch):
    """/proc refuses new files with ENOENT: "no such file or directory" alone would be
    wrong about an existing file (simulated; /proc is not everywhere)."""
    import tempfile

    def enoent(dir=None, prefix="", suffix=""):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                os.path.join(dir, prefix + "x1y2" + suffix))

    (tmp_path / "version").write_bytes(b"old")
    monkeypatch.setattr(tempfile, "mkstemp", enoent)
    with pytest.raises(FileNotFoundError) as info:
        with atomic_write(tmp_path / "version") as f:
            f.write(b"x")
    e = info.value
    assert e.errno == errno.ENOENT and e.filename == str(tmp_path / "version")
    assert e.strerror == (f"cannot create a file in {tmp_path} (No such file or directory); "
                          "the file is written as a new file there, then renamed")
    assert (tmp_path / "version").read_bytes() == b"old"


@pytest.mark.skipif(not os.path.isfile("/proc/version") or os.name != "posix",
                    reason="Linux's /proc")
def test_proc_is_not_called_missing():
    with pytest.raises(OSError) as info:
        with atomic_write("/proc/version") as f:
            f.write(b"x")
    assert info.value.filename == "/proc/version"
    assert info.value.strerror != os.strerror(errno.ENOENT)


# ---------------------------------------------------------------------- streams


def test_a_regular_file_a_folder_and_a_missing_path_are_not_copied(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    for p in (str(tmp_path / "f"), str(tmp_path), str(tmp_path / "missing")):
        with _fileio.as_regular_file(p) as got:
            assert got == p


def _fed_fifo(tmp_path, monkeypatch, data):
    """A named pipe that a thread fills with ``data`` (started), and an empty temporary
    folder ``tmp_path / "tmp"`` for the copies: (fifo, writer thread)."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    writer.start()
    return fifo, writer


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_fifo_is_read_once_into_a_temporary_file(tmp_path, monkeypatch):
    data = bytes(range(256)) * 10_000  # 2.5 MB: several copy chunks
    fifo, writer = _fed_fifo(tmp_path, monkeypatch, data)
    with _fileio.as_regular_file(str(fifo)) as copy:
        writer.join(10)
        assert copy != str(fifo) and os.path.dirname(copy) == str(tmp_path / "tmp")
        assert stat.S_ISREG(os.stat(copy).st_mode) and mode(copy) == 0o600
        for _ in range(2):  # opened as often as the readers need
            with open(copy, "rb") as f:
                assert f.read() == data
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_failed_copy_names_the_stream_and_leaves_nothing(tmp_path, monkeypatch):
    fifo, writer = _fed_fifo(tmp_path, monkeypatch, b"1,2,3\n")

    class Full:  # the temporary file, on a full disk
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    with pytest.raises(OSError) as info:
        with _fileio.as_regular_file(str(fifo)):
            pytest.fail("no copy")
    writer.join(10)
    e = info.value
    assert e.errno == errno.ENOSPC and e.filename == str(fifo)
    assert e.strerror.startswith(f"{os.strerror(errno.ENOSPC)} (while copying it to a "
                                 f"temporary file in {tmp_path / 'tmp'}")
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_bad_line_in_a_stream_names_the_stream_not_its_copy(tmp_path, monkeypatch):
    from mfsgd.datasets import load_csv

    fifo, writer = _fed_fifo(tmp_path, monkeypatch, b"1,2,3\r4,5,6\r")
    with pytest.raises(_fileio.TextFormatError,
                       match=re.escape(f"{fifo}: line 1 holds a carriage return")):
        load_csv(str(fifo))
    writer.join(10)
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_that_never_ends_is_refused_not_copied(tmp_path):
    """/dev/zero was copied to the temporary folder until the disk was full."""
    import subprocess

    code = ("import mfsgd.datasets as d\n"
            "try:\n    d.load_csv('/dev/zero')\n"
            "except ValueError as e:\n    print('ValueError:', e)\n")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, env=env)
    assert out.stdout.strip() == ("ValueError: /dev/zero is a device, not a file, a pipe or "
                                  "a terminal: there is no text of ratings to read from it.")
    assert os.listdir(tmp_path) == []
