"""Low-level file input and output: atomic writes with the right file mode, and fast
reading of delimited text whatever its separator.

Nothing here knows about ratings or models; ``persistence``, ``datasets`` and ``_dask``
build on it. Optional dependencies (pandas) are imported inside the functions.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import errno
import io
import os
import re
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["atomic_write", "current_umask", "path_error", "as_regular_file", "Dialect", "Head",
           "check_sep", "sniff", "read_columns", "narrow_ints", "physical_line",
           "TextFormatError", "EmptyField", "too_wide"]


# ---------------------------------------------------------------------- errors

def path_error(code: int, path: str) -> OSError:
    """``OSError(code, strerror, path)``: the subclass the errno maps to (FileNotFoundError,
    IsADirectoryError, PermissionError...), with ``.filename`` the user's path and the
    standard ``.strerror``, as ``open()`` raises them."""
    return OSError(code, os.strerror(code), path)


def _on_user_path(exc: BaseException, path: str, tmp: str | None,
                  ours: bool = False) -> BaseException:
    """The same error, naming the user's path instead of our temporary file.

    Only built-in OSErrors with an errno are rewritten, and only those raised by our own
    steps (``ours``) or naming no file or the temporary one; anything else (a
    ChecksumError, an error about another file) is kept."""
    if (isinstance(exc, OSError) and type(exc).__module__ == "builtins" and exc.errno
            and (ours or exc.filename in (None, tmp))):
        new = type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), path)
        return new.with_traceback(exc.__traceback__)
    return exc


# ---------------------------------------------------------------------- atomic writes

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where possible.

    Linux (4.7+) reports it in ``/proc/self/status``. Elsewhere the only way is
    ``os.umask``, which sets it while reading it; the umask is process-wide, so another
    thread creating a file in that instant gets the temporary value. We set 0o077 (more
    restrictive, never less) and serialise our own calls with a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: Any, mode: str = "wb", *, encoding: str | None = None) -> Iterator[Any]:
    """Write ``path`` all at once: readers see the old file or the complete new one.

    Yields a file object on a temporary file in the target's directory. When the block
    ends normally the data are flushed and fsynced, the file gets its mode, and it is
    renamed over the target (``os.replace``; then the directory is fsynced). On any
    exception, KeyboardInterrupt included, the temporary file is removed and the old
    file, if any, is left untouched.

    Parameters
    ----------
    path : str, bytes or PathLike
        The target. A symbolic link is followed (its target is replaced, as ``open()``
        would write into it).
    mode : {"wb", "w", "wt"}, default "wb"
        Binary or text.
    encoding : str, optional
        For text mode.

    Yields
    ------
    file object
        Open on the temporary file; do not close it.

    Raises
    ------
    IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError, OSError
        With ``.filename`` the user's ``path`` (never the temporary file) and the
        standard ``.strerror``: e.g. the path is a directory, its parent does not exist
        or is not writable, the disk is full. A folder whose file system creates no
        files (``/proc``) gives ENOENT with a ``.strerror`` saying so.

    Notes
    -----
    File mode: a new file gets the mode ``open()`` would give it, ``0o666 & ~umask``
    (``tempfile.mkstemp`` alone would leave 0600, unreadable to other users); a
    replaced regular file keeps its permission bits (owner and group become the
    writer's). A target that exists but is no regular file (``/dev/stdout``, a FIFO) is
    opened and written directly, not replaced.
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"mode must be 'wb', 'w' or 'wt'; got {mode!r}.")
    user_path = os.fsdecode(os.fspath(path))  # bytes too, as open() takes them
    st = _existing(user_path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise path_error(errno.EISDIR, user_path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        # Opened through the user's path: /dev/stdout on a pipe is a link to
        # "/proc/PID/fd/pipe:[N]", which no resolved name reaches (review 19).
        try:
            f = open(user_path, mode, encoding=encoding)  # noqa: SIM115
        except OSError as e:
            raise _on_user_path(e, user_path, None, ours=True) from None
        with f:
            yield f if "b" not in mode else _Stream(f)
        return
    target = os.path.realpath(user_path)
    perm = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~current_umask()
    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except OSError as e:  # it names the temporary file: missing, unwritable folder...
        if e.errno == errno.ENOENT and os.path.isdir(directory):
            # the folder exists, but its file system creates no files (/proc): "no such
            # file or directory" alone would be wrong about the user's path
            raise OSError(e.errno, f"cannot create a file in {directory} "
                          f"({os.strerror(e.errno)}); the file is written as a new "
                          "file there, then renamed", user_path) from None
        raise _on_user_path(e, user_path, None, ours=True) from None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), perm)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        new = _on_user_path(e, user_path, tmp)
        if new is e:
            raise
        raise new from None
    _fsync_directory(directory)


def _existing(user_path: str) -> os.stat_result | None:
    """``os.stat`` of the path (links followed as ``open`` follows them), None when
    nothing is there yet; other errors (a parent that is a file, or not searchable) as
    atomic_write raises them."""
    try:
        return os.stat(user_path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _on_user_path(e, user_path, None, ours=True) from None


class _Stream:
    """A binary file that is no regular file (a device, a pipe, a FIFO), shown to the
    writer as the stream it is: written in order, its position the bytes written, not
    seekable. ``zipfile`` then writes a stream archive; on ``/dev/null``, whose
    ``tell()`` stays 0 and whose ``seek`` succeeds, it took offsets of 0 and failed in
    ``struct.pack`` (review 19)."""

    def __init__(self, f: Any) -> None:
        self._f, self._pos = f, 0

    def write(self, b: Any) -> int:
        n = self._f.write(b)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return False

    def seek(self, *_: Any) -> int:
        raise io.UnsupportedOperation("seek")

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()


class _Probe(Exception):
    """Leaves ``atomic_write`` before anything is written (see check_writable)."""


def check_writable(path: Any) -> None:
    """Raise the OSError that ``atomic_write(path)`` would raise, without writing: its
    temporary file is made in the target's folder and removed again (a folder that is
    missing, read-only, or on a file system that makes no files, as ``/proc``, fails
    here). For a check before long work whose result the path is to receive. An existing
    target that is not a regular file (``/dev/stdout``, a FIFO) is written directly,
    not replaced: it is left alone here (opening a FIFO would block, or end its reader)."""
    try:
        st = os.stat(os.fsdecode(os.fspath(path)))
    except OSError:
        st = None  # a new file, or a path atomic_write explains
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return
    try:
        with atomic_write(path):
            raise _Probe
    except _Probe:
        pass


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); best effort, a failure here loses nothing."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- streams

_COPY_CHUNK = 1 << 20


@contextlib.contextmanager
def as_regular_file(path: str) -> Iterator[str]:
    """``path`` itself, or a temporary copy of it when it is a stream (a pipe, a character
    device such as ``/dev/stdin``, a socket), removed when the block ends.

    The readers here open a file several times: for Parquet's magic bytes, to sniff the
    first lines and estimate the number of lines, to parse it (twice when a column's
    type changes between chunks or a rating does not parse), and to find the line of a
    bad value. A regular file starts again at its beginning at every open; a stream
    does not: each open reads on from where the last one stopped, so the parser saw
    only the rest of ``cat r.csv | mfsgd train /dev/stdin`` or ``train <(...)``. A
    stream is therefore read exactly once, copied in 1 MiB chunks to a regular file in
    the temporary folder (``TMPDIR``; mode 0600), and every reader opens the copy: the
    same code, the same chunked parse and the same memory bound as for a file (reading
    the stream into memory would hold its whole text beside the parsed columns).

    A path that does not exist or is a directory is returned as it is, for the reader
    to raise the usual error naming it. Errors while copying are OSErrors with
    ``.filename`` = ``path``. A character device that is not a terminal (``/dev/zero``,
    which never ends) raises ValueError before anything is copied.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        st = None
    if st is None or stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        yield path
        return
    if stat.S_ISCHR(st.st_mode) and not _is_terminal(path):
        # /dev/zero or /dev/urandom never end: the copy would fill the temporary folder.
        # A terminal (/dev/stdin typed into) is a character device too, and is read.
        raise ValueError(f"{path} is a device, not a file, a pipe or a terminal: there is no "
                         "text of ratings to read from it.")
    fd, tmp = tempfile.mkstemp(prefix="mfsgd-stream-", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    dst.write(chunk)
        except OSError as e:
            if e.filename is not None:  # opening ``path``: its own error
                raise
            raise OSError(e.errno, f"{e.strerror or e} (while copying it to a temporary "
                          f"file in {os.path.dirname(tmp)}; TMPDIR chooses the folder)",
                          path) from None
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _is_terminal(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return True  # the reader's own open then raises the usual error naming it
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- delimited text

#: Separators recognised by :func:`sniff`, in order of preference on a tie.
SEPARATORS = ("::", ",", "\t", ";", "|")
WHITESPACE = "whitespace"
_US = 0x1F  # ASCII unit separator: what "::" and blank runs are rewritten to
_HEAD_BYTES = 1 << 16
_HEAD_LINES = 20


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How fields are separated: ``sep`` is one character, ``"::"``, or ``WHITESPACE``
    (runs of spaces and tabs, leading and trailing blanks ignored); ``quoted``: the
    first lines hold double quotes."""

    sep: str
    quoted: bool = False

    def split(self, line: str) -> list[str]:
        if self.sep == WHITESPACE:
            if self.quoted:
                return next(csv.reader([line.replace("\t", " ").strip()], delimiter=" ",
                                       skipinitialspace=True), [])
            return line.split()
        if self.sep == "::":
            return [f.strip() for f in line.split("::")]
        return next(csv.reader([line], delimiter=self.sep), [])

    def __str__(self) -> str:
        return "runs of blanks" if self.sep == WHITESPACE else repr(self.sep)


@dataclasses.dataclass(frozen=True)
class Head:
    """The first non-blank lines of a file split into fields, and where they start."""

    dialect: Dialect
    rows: list[list[str]]
    numbers: tuple[int, ...] = ()  # 1-based physical line of each row
    lines: tuple[str, ...] = ()  # the text of each row

    @property
    def first_line(self) -> int:
        """0-based physical line of rows[0] (0 for a file without one)."""
        return self.numbers[0] - 1 if self.numbers else 0


def check_sep(sep: Any) -> Dialect | None:
    """The Dialect a user's ``sep=`` asks for (None: detect it)."""
    if sep is None:
        return None
    if not isinstance(sep, str):
        raise TypeError(f"sep must be a string such as ',' or '\\t'; got {sep!r}.")
    if sep in (" ", r"\s+"):
        return Dialect(WHITESPACE)
    sep = "\t" if sep == r"\t" else sep  # as typed on a command line
    if sep == "::" or (len(sep) == 1 and sep not in "\r\n\"" and sep != chr(_US)):
        return Dialect(sep)
    raise ValueError(f"sep must be one character (',', '\\t', ';', '|'...), '::', or ' ' for "
                     f"runs of spaces and tabs; got {sep!r}. Omit sep to detect it.")


def sniff(path: str, sep: Dialect | None, name: str | None = None) -> Head:
    """Read the first lines of ``path`` and find their separator (unless given).
    ``name``: the file messages name (the user's, when ``path`` is a stream's copy).

    Opening the file raises the usual FileNotFoundError / IsADirectoryError /
    PermissionError, with ``.filename`` = ``path``. Only the first 64 KiB are read. A
    carriage return inside one of the first lines raises TextFormatError naming the line;
    a file in UTF-16 or UTF-32 (a byte-order mark, or NUL bytes between the first
    characters) raises ValueError saying it is not UTF-8.

    The check: a separator fits when it splits each of the first 20 non-blank lines
    into at least 2 fields (quotes respected). Of those that fit, one that gives every
    line the same number of fields beats one that does not, then the one giving the
    most fields wins (ties: ``::``, comma, tab, semicolon, pipe); runs of blanks are the
    fallback. A tab-separated head whose fields are padded with more blanks is read as
    runs of blanks. When no separator fits every line but one splits at least half of
    them, the first line it does not split (a title or a ``#`` comment above the data,
    or a damaged line) raises TextFormatError naming it; so does such a line with a
    given ``sep``.
    """
    if os.path.isdir(path):  # Windows' open() says PermissionError for a folder
        raise path_error(errno.EISDIR, path)
    with open(path, "rb") as f:
        raw = f.read(_HEAD_BYTES + 1)
    _refuse_wide_unicode(raw, name or path)
    # split at "\n" only, as the parsers do (str.splitlines also splits at \x1c, \x85...)
    physical = [ln.rstrip("\r") for ln in
                raw[:_HEAD_BYTES].decode("utf-8-sig", errors="replace").split("\n")]
    if len(raw) > _HEAD_BYTES and physical:
        physical = physical[:-1]  # the last line may be cut
    numbers, lines = [], []
    for k, line in enumerate(physical):
        if line.strip():
            if "\r" in line:
                # A carriage return inside a line: old Mac line ends (\r alone) or binary
                # data such as a saved model. The csv module refuses it in an unquoted
                # field, and the parsers would end a line there while the line numbers
                # of messages count "\n".
                raise TextFormatError(
                    f"{name or path}: line {k + 1} holds a carriage return (\\r) that does not end "
                    "the line: lines must end with \\n or \\r\\n. Convert a file with old "
                    "Mac line ends (\\r alone), e.g. with tr '\\r' '\\n'; a binary file "
                    "(such as a saved model) cannot be read as ratings.")
            numbers.append(k + 1)
            lines.append(line)
            if len(lines) == _HEAD_LINES:
                break
    if not lines:
        return Head(sep or Dialect(","), [])
    quoted = any('"' in ln for ln in lines)
    dialect = Dialect(sep.sep, quoted) if sep is not None else _detect(lines, quoted)
    rows = [dialect.split(ln) for ln in lines]
    single = [k for k, row in enumerate(rows) if len(row) < 2]
    if single and len(single) * 2 <= len(rows):
        # Most lines split, these do not: a title or a comment line above the data, or a
        # damaged line. Reading on would take the wrong separator or give empty fields.
        k = single[0]
        how = "blanks" if dialect.sep == WHITESPACE else repr(dialect.sep)
        raise TextFormatError(
            f"{name or path}: line {numbers[k]} ({_abridged(lines[k])!r}) is not split into "
            f"fields by {how}, as {len(rows) - len(single)} of the first {len(rows)} lines "
            "are. If it is a title or a comment, remove it (lines starting with '#' are not "
            "skipped: they are data to this reader); if it is damaged, fix or remove it.")
    return Head(dialect, rows, tuple(numbers), tuple(lines))


def _abridged(text: str) -> str:
    """A line as messages show it: at most 60 characters."""
    return text if len(text) <= 60 else text[:57] + "..."


#: Byte-order marks of the encodings a "Unicode text" export may use instead of UTF-8;
#: UTF-32 LE's starts with UTF-16 LE's, so it is tried first.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _refuse_wide_unicode(raw: bytes, name: str) -> None:
    """ValueError when the first bytes of a file are UTF-16 or UTF-32 text: a byte-order
    mark, or the NUL bytes that ASCII characters have in those encodings (UTF-16LE: every
    odd byte; UTF-32LE: three of every four) over the first KiB. A NUL inside an id, or
    binary data, has no such pattern. Without this check such a file reached the parsers
    and was reported with garbled column names or as a non-numeric rating full of NULs."""
    for bom, enc in _WIDE_BOMS:
        if raw.startswith(bom):
            why = f"it starts with the {enc} byte-order mark"
            break
    else:
        enc = _nul_pattern(raw[:1024])
        if enc is None:
            return
        why = f"its first bytes have NULs between the characters, as {enc[:6]} text does"
    raise ValueError(
        f"{name} is not UTF-8 text: it looks like {enc} ({why}). Re-encode the file as "
        f"UTF-8, e.g. with iconv -f {enc} -t UTF-8 (a spreadsheet's \"Unicode text\" export "
        "and Windows PowerShell's > redirection write UTF-16; save as \"CSV UTF-8\" or use "
        "Out-File -Encoding utf8).")


#: Which of every four bytes are NUL in ASCII text of each encoding.
_NUL_LANES = {"UTF-32LE": (False, True, True, True), "UTF-32BE": (True, True, True, False),
              "UTF-16LE": (False, True, False, True), "UTF-16BE": (True, False, True, False)}


def _nul_pattern(sample: bytes) -> str | None:
    """The encoding whose NUL pattern ``sample`` follows (each lane of every fourth byte
    NUL at least 3/4 of the time where the encoding puts NULs, at most 1/8 elsewhere)."""
    if len(sample) < 8:
        return None
    lanes = [sample[j::4] for j in range(4)]
    heavy = [lane.count(0) * 4 >= len(lane) * 3 for lane in lanes]
    light = [lane.count(0) * 8 <= len(lane) for lane in lanes]
    for enc, nul in _NUL_LANES.items():
        if all(heavy[j] if nul[j] else light[j] for j in range(4)):
            return enc
    return None


def _detect(lines: list[str], quoted: bool) -> Dialect:
    best, best_key = None, (False, 1)
    for sep in SEPARATORS:
        d = Dialect(sep, quoted)
        counts = [len(d.split(ln)) for ln in lines]
        if min(counts) < 2:
            continue
        # the same count on every line first (a short line may be a damaged one), then
        # the most fields
        key = (len(set(counts)) == 1, max(set(counts), key=counts.count))
        if key > best_key:
            best, best_key = d, key
    ws = Dialect(WHITESPACE, quoted)
    if best is not None and best.sep == "\t" and [len(ws.split(ln)) for ln in lines] == [
            len(best.split(ln)) for ln in lines] and any(
            f != f.strip() for ln in lines for f in ln.split("\t")):
        return ws  # tabs padded with spaces: the same columns, read as runs of blanks
    if best is not None or all(len(ws.split(ln)) >= 2 for ln in lines):
        return best if best is not None else ws
    # No separator splits every line: the one that splits the most (for sniff to name
    # the first line it does not split; ties in the order of SEPARATORS, blanks last)
    candidates = [Dialect(sep, quoted) for sep in SEPARATORS] + [ws]
    fits = [sum(len(d.split(ln)) >= 2 for ln in lines) for d in candidates]
    k = max(range(len(candidates)), key=lambda k: (fits[k], -k))
    return candidates[k] if fits[k] * 2 >= len(lines) else ws


def physical_line(path: str, row: int, skip: int, dialect: Dialect | None = None) -> int:
    """1-based line number of data row ``row`` (0-based) when the first ``skip`` lines
    are skipped and blank lines are not rows (as the readers here count them: empty, or
    only spaces and tabs that are not ``dialect``'s separator)."""
    blanks = _blanks_of(dialect)
    with open(path, "rb") as f:
        for k, line in enumerate(f):
            if k < skip or not line.rstrip(b"\r\n").strip(blanks):
                continue
            if row == 0:
                return k + 1
            row -= 1
    return -1


def _blanks_of(dialect: Dialect | None) -> bytes:
    """The bytes that make a line blank, as pandas' parser skips them: spaces and tabs,
    but not the separator itself (a line of tabs in a tab-separated file is a row of
    empty fields)."""
    sep = dialect.sep if dialect is not None else None
    return b" \t".replace(sep.encode(), b"") if sep in (" ", "\t") else b" \t"


def nth_line(path: str, number: int, limit: int = 1 << 20) -> tuple[str, bool]:
    """Line ``number`` (1-based) of ``path`` as text, at most ``limit`` bytes of it, and
    whether that is the whole line (``("", True)`` if the file is shorter): for messages
    about a line the parser refused. A longer line is never read whole."""
    k = 1
    with open(path, "rb") as f:
        while chunk := f.readline(limit):
            if k == number:
                whole = chunk.endswith(b"\n") or f.read(1) in (b"", b"\n")
                return chunk.rstrip(b"\r\n").decode("utf-8", errors="replace"), whole
            k += chunk.endswith(b"\n")
    return "", True


class TextFormatError(ValueError):
    """The lines of a delimited file cannot be split into fields (e.g. an open quote)."""


class _Rewriter:
    """A binary file whose "::" separators or runs of blanks are rewritten, in chunks of
    whole lines, to the single byte 0x1F, so that a one-character parser (pandas' C
    engine) reads it at CSV speed.

    Nothing is deleted, so the rewrite is a few vectorised passes without compaction
    (compacting with a boolean mask cost more than parsing): ``a::b`` becomes
    ``a<US> b`` and ``a  \\tb`` becomes ``a<US> \\tb``. The leftover blanks sit at the
    start of the next field, where the number parsers skip them (string columns are
    stripped afterwards); blanks at the start or the end of a line are left alone, so
    they never make an empty first or last field. ``read(n)`` may return a little more
    than n bytes (the rest of a line); pandas takes what it gets.
    """

    def __init__(self, path: str, sep: str) -> None:
        self._f = open(path, "rb")  # noqa: SIM115  (closed by close())
        self._rest = b""
        self._fix = self._blanks if sep == WHITESPACE else self._colons

    def read(self, n: int = -1) -> bytes:
        while True:
            raw = self._f.read(n if n and n > 0 else -1)
            if not raw:
                out, self._rest = self._rest, b""
                return self._fix(out) if out else b""
            buf = self._rest + raw if self._rest else raw
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # no line end yet
                self._rest = buf
                continue
            self._rest = buf[cut:]
            return self._fix(buf[:cut])

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def _blanks(chunk: bytes) -> bytes:
        a = np.frombuffer(chunk, dtype=np.uint8)
        run_start = a == 32
        run_start |= a == 9
        tail = a[1:] == 10
        if b"\r" in chunk:
            tail |= a[1:] == 13
        tail &= run_start[:-1]  # a blank just before a line end
        run_start[1:] &= a[:-1] > 32  # the first blank after a field character
        run_start[0] = False  # a chunk starts a line
        if tail.any() or (a.size and a[-1] in (9, 32)):
            # Blanks that end a line separate nothing: walk back over them (pandas would
            # see one more, empty, field and refuse the line as too wide).
            pos = np.flatnonzero(tail)
            if a[-1] in (9, 32):  # the end of a file without a final line end
                pos = np.append(pos, a.size - 1)
            while pos.size:
                run_start[pos] = False
                pos = pos[pos > 0] - 1
                c = a[pos]
                pos = pos[(c == 32) | (c == 9)]
        d = a - np.uint8(_US)
        d *= run_start  # arithmetic select: a masked assignment is ~3x slower
        return (a - d).tobytes()

    @staticmethod
    def _colons(chunk: bytes) -> bytes:
        a = np.frombuffer(chunk, dtype=np.uint8)
        first = a == 58
        first[:-1] &= first[1:]
        first[-1] = False
        d = first.view(np.uint8) * np.uint8(ord(":") - _US)
        d[1:] += first[:-1].view(np.uint8) * np.uint8(ord(":") - ord(" "))
        return (a - d).tobytes()


def read_columns(path: str, dialect: Dialect, *, skip: int, usecols: list[int],
                 dtypes: dict[int, str], narrow: Any = (),
                 name: str | None = None, width: int | None = None,
                 nonempty: Any = ()) -> dict[int, np.ndarray]:
    """Read the columns ``usecols`` (0-based positions) of a delimited file.

    Parameters
    ----------
    skip : int
        Physical lines to skip first (blank lines before a header, the header).
    dtypes : dict
        ``"float32"`` or ``"str"`` for some positions; the others get their natural
        type (int64, float64, or strings as an object array).
    narrow : collection of int
        Positions whose integers come back as int32 when every value fits (ids: half
        the memory, and what the id mapping wants).
    name : str, optional
        The file as messages name it (default ``path``; e.g. the user's pipe when
        ``path`` is its copy).
    width : int, optional
        The number of fields of the file's lines (default: the last of ``usecols``): a
        line with more raises TextFormatError naming it, a shorter one gets "" in the
        missing fields. The first data line must not be wider (the caller checks the
        first lines: pandas sizes its rows from that line).
    nonempty : collection of int
        Positions whose fields must not be empty or blank (ids): the first such field
        raises EmptyField.

    Returns
    -------
    dict
        Position -> array, one entry per row (blank lines are no rows; a short line
        gives "" in its missing fields). A column asked as float32 that does not parse
        entirely comes back as an object array of its strings, for the caller to find
        the bad value.

    Raises
    ------
    TextFormatError
        The lines cannot be split into fields, or one has more than ``width`` fields.
    EmptyField
        A ``nonempty`` field is empty or blank (``.position``, ``.row``: 0-based data
        row, for :func:`physical_line`).
    ValueError
        The text is not UTF-8 (the message names the first line that is not).

    Notes
    -----
    With pandas, its C parser reads every dialect at the speed of a comma-separated
    file: one-character separators directly, "::" and runs of blanks through
    :class:`_Rewriter`. It reads chunks of ``_CHUNK_ROWS`` lines into columns allocated
    once from an estimate of the number of lines (grown if short, shrunk in place at the
    end): the parsed file never exists twice, and ids never as int64 when they fit in
    int32. (pyarrow's multi-threaded CSV parser, asked for the same int32/int32/float32
    columns, needed 1.3-1.4x the CPU time and 1.75x the peak memory of this reader on
    20 M comma-, tab- and space-separated ratings on 2 cores, ``bench/load_formats.py
    --pyarrow``; it would pay only with several idle cores. Its numbers also do not
    accept the leading blanks the rewrite leaves.) Without pandas, :func:`numpy.loadtxt`
    reads numeric files and a csv/str.split loop the others.

    Wide lines: pandas is given the ``width`` columns by name rather than ``usecols``,
    so that its parser refuses a longer line; with ``usecols`` it accepted one and padded
    every later line of the chunk to its length (one line of 10**5 commas among 3,000
    ratings took 2.6 GB, one of 10**6 was killed for lack of memory). The columns not
    read are kept as one byte per line ("S1"), which costs no more than skipping them.
    """
    name = path if name is None else name
    width = max(usecols) + 1 if width is None else max(width, max(usecols) + 1)
    try:
        return _read_columns(path, dialect, skip, usecols, dtypes, frozenset(narrow), name,
                             width, frozenset(nonempty))
    except UnicodeDecodeError as e:
        raise ValueError(_not_utf8(path, name, e)) from None


def _read_columns(path: str, dialect: Dialect, skip: int, usecols: list[int],
                  dtypes: dict[int, str], narrow: frozenset, name: str, width: int,
                  nonempty: frozenset = frozenset()) -> dict[int, np.ndarray]:
    try:
        import pandas as pd
    except ImportError:
        out = _read_numpy(path, dialect, skip, usecols, dtypes, width, name)
        for p in sorted(nonempty):
            row = first_blank(out[p])
            if row >= 0:
                raise EmptyField(p, row) from None
        return {p: (narrow_ints(a) if p in narrow else a) for p, a in out.items()}
    kw = {"narrow": narrow, "name": name, "width": width, "nonempty": nonempty}
    used = dtypes  # the dtypes of the read that succeeded
    try:
        try:
            out = _read_pandas(pd, path, dialect, skip, usecols, dtypes, **kw)
        except _MixedChunks:
            # a column's type changed from one chunk to the next (a float or a string
            # after integers): let pandas read the whole file and reconcile the types
            out = _read_pandas(pd, path, dialect, skip, usecols, dtypes, chunked=False, **kw)
    except (TextFormatError, EmptyField, UnicodeDecodeError):  # ValueErrors too
        raise
    except ValueError:
        # A float32 column with a bad value (pandas names neither row nor line): read
        # it again as text so that the caller can point at the line.
        retry = {p: ("str" if t == "float32" else t) for p, t in dtypes.items()}
        if retry == dtypes:
            raise
        out = _read_pandas(pd, path, dialect, skip, usecols, retry, chunked=False, **kw)
        used = retry
    inexact = _inexact_ids(out, narrow)
    if inexact:
        again = _read_pandas(pd, path, dialect, skip, usecols,
                             {**used, **dict.fromkeys(inexact, "str")}, chunked=False, **kw)
        out.update({p: _exact_ints(pd, again[p]) for p in inexact})
    return out


def _exact_ints(pd: Any, text: np.ndarray) -> np.ndarray:
    """Id strings as int64 (or uint64 beyond int64) when every one is an integer written
    without leading zeros, parsed exactly; else the strings (labels) themselves."""
    s = pd.Series(text, dtype=object, copy=False).str.strip()
    if s.str.fullmatch(r"[+-]?(?:0|[1-9][0-9]*)").all():
        ints = _as_ints(s.to_numpy(dtype=str))
        if ints is not None:
            return narrow_ints(ints)
    return s.to_numpy(dtype=object)  # labels (negative and beyond int64 at once, too)


def _as_ints(values: Any) -> np.ndarray | None:
    """Integers (Python ints or their text) as int64, or uint64 when some exceed int64's
    range; None when they fit neither (negative ones beside ones beyond int64)."""
    for dt in (np.int64, np.uint64):
        try:
            return np.array(values, dtype=dt)
        except OverflowError:
            continue
    return None


def _exact_floats(a: np.ndarray) -> bool:
    """Whether every value of the float array ``a`` is below 2**53 in magnitude, where a
    float64 still holds every integer (beyond, integers round into one another)."""
    return bool((np.abs(a) < 2.0**53).all())


def _inexact_ids(cols: dict[int, np.ndarray], ids: frozenset) -> list[int]:
    """The id columns (positions ``ids``) parsed as floats beyond 2**53: a value such as
    "5.0" makes the parser read a column of integers as float64, which rounds large
    integers into one another (two 19-digit ids would become one user). Those columns
    are read again as text, exactly: then they are labels."""
    return [p for p in sorted(ids) if p in cols and cols[p].dtype.kind == "f"
            and not _exact_floats(cols[p])]


def too_wide(name: str, dialect: Dialect, width: int, line: int, text: str,
             fields: int | None = None) -> TextFormatError:
    """The error for line ``line`` (its ``text``, or the start of it) having more than
    ``width`` fields; ``fields``: how many, when ``text`` is not the whole line."""
    n = len(dialect.split(text)) if fields is None else fields
    return TextFormatError(
        f"{name}: line {line} has {n} fields, more than the {width} of the file's lines "
        f"({_abridged(text)!r}). A separator inside a field that is not quoted, or lines run "
        "together? Fix or remove that line.")


def _too_wide_line(path: str, name: str, dialect: Dialect, width: int, line: int,
                   fields: int | None) -> TextFormatError:
    """too_wide for a line the parser refused, read again from the file (at most 1 MiB
    of it: the parser's count of fields stands for a longer one)."""
    text, whole = nth_line(path, line)
    return too_wide(name, dialect, width, line, text, None if whole else fields)


_TOO_WIDE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _not_utf8(path: str, name: str, exc: UnicodeDecodeError) -> str:
    """The message for a file that is not UTF-8, naming its first bad line: the file is
    decoded again from the start (the parsers' error gives an offset in some buffer)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, bad = 1, exc.object[exc.start:exc.start + 1]
    with open(path, "rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                # e.object: the undecoded end of the previous chunk (no newline), then
                # this chunk
                line += e.object.count(b"\n", 0, e.start)
                bad = e.object[e.start:e.start + 1]
                break
            line += chunk.count(b"\n")
        else:
            line = 0  # not found again (the file changed): name no line
    where = f"line {line}" if line else "it"
    return (f"{name}: {where} is not UTF-8 text (byte 0x{bytes(bad).hex()}); re-encode "
            "the file as UTF-8, e.g. with iconv -f latin1 -t utf-8 if it is Latin-1.")


_CHUNK_ROWS = 1 << 20  # lines per chunk of pandas' reader: ~12-40 MB of parser buffers


def narrow_ints(a: np.ndarray) -> np.ndarray:
    """int64 ``a`` as int32 when every value fits, else ``a``."""
    if a.dtype == np.int64 and (a.size == 0 or (int(a.min()) >= -(2**31)
                                                 and int(a.max()) < 2**31)):
        return a.astype(np.int32)
    return a


class _MixedChunks(Exception):
    """A column's kind changed between chunks; read the file whole instead."""


def _estimate_rows(path: str, skip: int) -> int:
    """About the number of lines of ``path`` (from the mean length of its first lines),
    a little over so that the columns rarely need to grow."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    lines = head.count(b"\n")
    if lines <= skip + 1 or len(head) >= size:
        return lines + 2
    per_line = len(head) / lines
    return int(size / per_line * 1.05) + 1024


class EmptyField(ValueError):
    """An empty or blank field where read_columns was asked for a value (an id)."""

    def __init__(self, position: int, row: int) -> None:
        super().__init__(f"an empty field at position {position} of data row {row}")
        self.position, self.row = position, row


def first_blank(values: Any) -> int:
    """The index of the first empty or blank string of ``values`` (an object array, or a
    pandas Series of strings: its comparison runs in Arrow when pandas stores the strings
    there, 3x faster than NumPy's loop over objects), or -1. Numbers are never blank."""
    if getattr(values, "dtype", None) is None or values.dtype.kind in "iufb":
        return -1
    try:  # "" and the strings that start with a blank sort before "!": a C loop finds them
        maybe: Any = np.flatnonzero(np.asarray(values < "!", dtype=bool))
    except TypeError:  # not only strings (Python ints beyond 64 bits)
        maybe = range(len(values))
    at = values.iloc.__getitem__ if hasattr(values, "iloc") else values.__getitem__
    for k in maybe:
        v = at(int(k))
        if isinstance(v, str) and not v.strip():
            return int(k)
    return -1


class _Columns:
    """Columns filled chunk by chunk: numbers into arrays allocated once (grown by
    half when the estimate was short, shrunk in place at the end), strings as a list of
    chunks. Integers in ``narrow`` positions are int32 until a value does not fit; an
    empty or blank string in a ``nonempty`` position raises EmptyField."""

    def __init__(self, usecols: list[int], capacity: int, narrow: frozenset,
                 nonempty: frozenset = frozenset()) -> None:
        self.usecols, self.capacity, self.narrow = usecols, max(capacity, 1), narrow
        self.nonempty = nonempty
        self.n = 0
        self.arrays: dict[int, np.ndarray] = {}
        self.parts: dict[int, list[np.ndarray]] = {}

    def add(self, df: Any) -> None:
        k = len(df)
        if not k:  # no rows (a header only): nothing to say about the columns' types
            return
        if self.n + k > self.capacity:
            self.capacity = max(self.n + k, int(self.capacity * 1.5))
            for a in self.arrays.values():
                a.resize(self.capacity, refcheck=False)
        for p in self.usecols:
            col = df[p]
            kind = col.dtype.kind
            if kind not in "iuf":
                if p in self.arrays or (self.n and p not in self.parts):
                    raise _MixedChunks
                if p in self.nonempty:
                    row = first_blank(col)
                    if row >= 0:
                        raise EmptyField(p, self.n + row)
                self.parts.setdefault(p, []).append(col.to_numpy(dtype=object))
                continue
            if p in self.parts:
                raise _MixedChunks
            a = col.to_numpy()
            out = self.arrays.get(p)
            if out is None:
                if self.n:
                    raise _MixedChunks
                dt = np.dtype(np.int32) if (p in self.narrow and a.dtype == np.int64 and
                                            narrow_ints(a).dtype == np.int32) else a.dtype
                out = self.arrays[p] = np.empty(self.capacity, dtype=dt)
            elif out.dtype.kind != a.dtype.kind:
                raise _MixedChunks
            elif out.dtype != a.dtype and narrow_ints(a).dtype != out.dtype:
                # an id beyond int32: the column becomes int64 (one copy, once)
                out = self.arrays[p] = out.astype(a.dtype)
            out[self.n:self.n + k] = a
        self.n += k

    def finish(self) -> dict[int, np.ndarray]:
        out = {}
        for p in self.usecols:
            if p in self.parts:
                parts = self.parts.pop(p)
                out[p] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            elif p in self.arrays:
                a = self.arrays.pop(p)
                a.resize(self.n, refcheck=False)  # realloc: shrinks in place
                out[p] = a
        return out


def _read_pandas(pd: Any, path: str, dialect: Dialect, skip: int, usecols: list[int],
                 dtypes: dict[int, str], narrow: frozenset = frozenset(),
                 chunked: bool = True, name: str | None = None,
                 width: int | None = None,
                 nonempty: frozenset = frozenset()) -> dict[int, np.ndarray]:
    name = name or path
    width = max(usecols) + 1 if width is None else width
    rewrite = dialect.sep == "::" or (dialect.sep == WHITESPACE and not dialect.quoted)
    if rewrite:
        source: Any = _Rewriter(path, dialect.sep)
        sep = chr(_US)
    else:
        source = path
        sep = r"\s+" if dialect.sep == WHITESPACE else dialect.sep  # quoted: pandas' own
    dt: dict[int, Any] = {p: "S1" for p in range(width)}  # parsed, one byte kept
    dt.update({p: (np.float32 if t == "float32" else str) for p, t in dtypes.items()})
    for p in usecols:
        if p not in dtypes:
            del dt[p]  # its natural type
    cols = _Columns(usecols, _estimate_rows(path, skip) if chunked else 0, narrow, nonempty)
    try:
        # na_filter=False: ids such as "NA" or "null" stay strings, an empty or "nan"
        # rating fails the float parse (and is then reported), and it is faster.
        # names (not usecols): the parser then refuses a line with more fields.
        # low_memory=False: each chunk (or the whole file, in the fallback when a
        # column's type changed between chunks) is typed as one; otherwise pandas parses
        # in pieces of its own and reconciles them badly: ints and strings into a mixed
        # object column (a string id after 262,144 integer ones), int64 and uint64 into
        # float64 (rounding ids above 2**53 together).
        reader = pd.read_csv(source, sep=sep, engine="c", header=None, names=list(range(width)),
                             index_col=False, skiprows=skip, dtype=dt, na_filter=False,
                             encoding="utf-8", chunksize=_CHUNK_ROWS if chunked else None,
                             low_memory=False)
        if chunked:
            with reader:
                for df in reader:
                    cols.add(df)
                    del df
        else:
            cols.add(reader)
            del reader
    except pd.errors.ParserError as e:
        wide = _TOO_WIDE.search(str(e))
        if wide:
            raise _too_wide_line(path, name, dialect, width, int(wide[2]),
                                 int(wide[3])) from None
        raise TextFormatError(f"{name} cannot be split into fields at {dialect}: "
                              f"{str(e).strip()}") from None
    except pd.errors.EmptyDataError:
        cols = _Columns(usecols, 0, narrow)  # no rows
    finally:
        if rewrite:
            source.close()
    out = cols.finish()
    for p in usecols:
        if p not in out:
            out[p] = np.empty(0, dtype=np.float32 if dtypes.get(p) == "float32" else
                              object if dtypes.get(p) == "str" else np.int64)
    for p, a in out.items():
        if a.dtype == object and (rewrite or dialect.sep == WHITESPACE):
            out[p] = pd.Series(a, copy=False).str.strip().to_numpy(dtype=object)
    return {p: out[p] for p in usecols}


def _read_numpy(path: str, dialect: Dialect, skip: int, usecols: list[int],
                dtypes: dict[int, str], width: int | None = None,
                name: str | None = None) -> dict[int, np.ndarray]:
    """Correct for every dialect; fast (numpy.loadtxt) only for all-numeric files."""
    width = max(usecols) + 1 if width is None else width
    check = (dialect, width, name or path)
    if not any(t == "str" for t in dtypes.values()):
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                lines = _data_lines(f, skip, *check)
                if dialect.sep == "::":
                    lines = (ln.replace("::", chr(_US)) for ln in lines)
                delim = None if dialect.sep == WHITESPACE else (
                    chr(_US) if dialect.sep == "::" else dialect.sep)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "loadtxt: input contained no data")
                    a = np.loadtxt(lines, delimiter=delim, usecols=usecols, dtype=np.float64,
                                   ndmin=2, comments=None, quotechar='"')
            cols = {p: a[:, j] for j, p in enumerate(usecols)}
            if all(_integral(cols[p]) for p in usecols if p not in dtypes):
                return {p: (c.astype(np.float32) if dtypes.get(p) == "float32" else
                            c.astype(np.int64) if p not in dtypes else c)
                        for p, c in cols.items()}
        except TextFormatError:
            raise
        except ValueError:
            pass  # strings, a bad value, or ids beyond 2**53: the exact path below
    fields: list[list[str]] = [[] for _ in usecols]
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = _data_lines(f, skip, *check)
        if dialect.sep in ("::", WHITESPACE):
            rows: Any = (dialect.split(ln) for ln in lines)
        else:
            rows = csv.reader(lines, delimiter=dialect.sep)
        for row in rows:
            for j, p in enumerate(usecols):
                fields[j].append(row[p] if p < len(row) else "")
    return {p: _convert(vals, dtypes.get(p)) for p, vals in zip(usecols, fields, strict=True)}


def _data_lines(f: Any, skip: int, dialect: Dialect, width: int, name: str) -> Iterator[str]:
    """The lines after the first ``skip`` that are not blank (as pandas skips them); one
    with more than ``width`` fields raises TextFormatError naming it."""
    blanks = _blanks_of(dialect).decode()
    sep = dialect.sep
    for k, line in enumerate(f):
        if k < skip:
            continue
        body = line.rstrip("\r\n")
        if not body.strip(blanks):
            continue
        # a cheap upper bound of the fields first (quotes may hold separators)
        n = len(body.split()) if sep == WHITESPACE else body.count(sep) + 1
        if n > width and len(dialect.split(body)) > width:
            raise too_wide(name, dialect, width, k + 1, body)
        yield line


def _integral(a: np.ndarray) -> bool:
    return _exact_floats(a) and np.array_equal(a, np.round(a))


_INT = re.compile(r"\s*[+-]?[0-9]+\s*$")


def _convert(vals: list[str], kind: str | None) -> np.ndarray:
    if kind == "str":
        return np.array(vals, dtype=object)
    if kind is None and all(_INT.match(v) for v in vals):
        ints = _as_ints([int(v) for v in vals])  # uint64 beyond int64, as with pandas
        if ints is not None:
            return ints
    try:
        a = np.array([float(v) for v in vals], dtype=np.float64)
    except ValueError:
        return np.array([v.strip() for v in vals], dtype=object)
    if kind is None and not _exact_floats(a):
        # beyond 2**53 a float rounds integers into one another: keep the text exactly
        # (as the pandas path does, _inexact_ids)
        return np.array([v.strip() for v in vals], dtype=object)
    return a.astype(np.float32) if kind == "float32" else a
