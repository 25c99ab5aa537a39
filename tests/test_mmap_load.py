"""load(path, mmap=True): arrays mapped from the file, shared between processes, and the
file layout that makes it possible (members on 64-byte boundaries, fixed dates: the same
model always saves to the same bytes)."""

import io
import mmap
import pickle
import struct
import time
import zipfile
import zlib

import numpy as np
import pytest
from helpers import rewrite

import mfsgd
from mfsgd import MatrixFactorization, ModelFileError


def _fit(small_data, k, dtype=np.float32, **kw):
    return MatrixFactorization(n_factors=k, n_epochs=3, random_state=0, dtype=dtype,
                               **kw).fit(small_data)


_MMAP = mmap.mmap  # kept: a test replaces mmap.mmap


def _mapped(a: np.ndarray) -> bool:
    """Whether ``a``'s memory belongs to a memory map."""
    while a is not None:
        if isinstance(a, _MMAP):
            return True
        a = a.base if isinstance(a, np.ndarray) else getattr(a, "obj", None)
    return False


def _arrays(m):
    st = m._state
    return {"user_factors": st.user_factors, "item_factors": st.item_factors,
            "user_bias": st.user_bias, "item_bias": st.item_bias,
            "seen_indptr": st.seen_indptr, "seen_items": st.seen_items,
            "user_ids": st.user_map.ids, "item_ids": st.item_map.ids}


def _data_offsets(path):
    """Each member's name and the file offset where its data starts (local header)."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    out = {}
    for info in infos:
        at = info.header_offset
        assert raw[at:at + 4] == b"PK\x03\x04"
        n, e = struct.unpack("<HH", raw[at + 26:at + 30])
        out[info.filename] = at + 30 + n + e
    return out


def test_saving_the_same_model_twice_gives_the_same_bytes(small_data, tmp_path, monkeypatch):
    m = _fit(small_data, 8)
    m.save(tmp_path / "a.mfsgd")
    later = time.time() + 86400 * 3  # a save three days later, as zipfile would date it
    monkeypatch.setattr(zipfile.time, "time", lambda: later)
    m.save(tmp_path / "b.mfsgd")
    assert (tmp_path / "a.mfsgd").read_bytes() == (tmp_path / "b.mfsgd").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.mfsgd") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize("kw", [{}, {"loss": "bpr", "adagrad": True},
                                {"loss": "warp", "min_rating": 3.0}])
def test_every_member_and_array_starts_on_a_cache_line(small_data, tmp_path, kw):
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 5, **kw).save(path)
    offsets = _data_offsets(path)
    assert len(offsets) >= 9
    assert all(at % 64 == 0 for at in offsets.values()), offsets
    raw = path.read_bytes()
    for name, at in offsets.items():
        if name.endswith(".npy"):  # NumPy pads its header to a multiple of 64 bytes
            hlen = struct.unpack("<H", raw[at + 8:at + 10])[0]
            assert (10 + hlen) % 64 == 0


@pytest.mark.parametrize("k, dtype, factors_mapped", [(16, np.float32, True),
                                                      (8, np.float64, True),
                                                      (5, np.float32, False),
                                                      (12, np.float64, False)])
def test_mapped_arrays_are_the_files_own_and_read_only(small_data, tmp_path, k, dtype,
                                                       factors_mapped):
    m = _fit(small_data, k, dtype)
    path = tmp_path / "m.mfsgd"
    m.save(path)
    read, mapped = mfsgd.load(path), mfsgd.load(path, mmap=True)
    for name, a in _arrays(mapped).items():
        b = _arrays(read)[name]
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == b.shape
        if name.endswith("factors"):
            assert _mapped(a) is factors_mapped
            assert a.ctypes.data % 64 == 0  # the kernel's aligned rows either way
        else:
            assert _mapped(a), name
        if _mapped(a):
            assert not a.flags.writeable
        assert not _mapped(b)
    for attr in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(mapped, attr), getattr(m, attr))


@pytest.mark.parametrize("kw", [{}, {"loss": "bpr", "adagrad": True},
                                {"loss": "warp", "min_rating": 3.0}, {"loss": "softmax"}])
def test_a_mapped_model_serves_trains_and_folds_in_as_a_read_one(small_data, tmp_path, kw):
    """Everything that makes new arrays does so from mapped ones as from read ones, and
    the file is never written."""
    u, i, r = small_data
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 16, **kw).save(path)
    before = path.read_bytes()
    new_user = ([10**6, 10**6, 10**6], i[:3], [5.0, 4.0, 2.0])
    new_item = (u[:3], [10**6] * 3, [5.0, 4.0, 2.0])
    known_user = ([u[0]], [i[7]], [5.0])
    steps = [
        lambda m: m.predict((u[:50], i[:50])),
        lambda m: m.recommend(u[0], n=5),
        lambda m: m.recommend_all(n=3),
        lambda m: m.similar_items(i[0], n=4),
        lambda m: m.similar_users(u[0], n=4),
        lambda m: m.fold_in(new_user).recommend(10**6, n=5),
        lambda m: m.fold_in(known_user).user_factors_,
        lambda m: m.fold_in(new_item, side="item").item_factors_,
        lambda m: m.partial_fit((u, i, r)).user_factors_,
        lambda m: pickle.loads(pickle.dumps(m)).partial_fit((u, i, r)).item_factors_,
    ]
    read, mapped = mfsgd.load(path), mfsgd.load(path, mmap=True)
    for step in steps:
        a, b = step(read), step(mapped)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                        strict=True):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(read.user_factors_, mapped.user_factors_)
    np.testing.assert_array_equal(read.item_factors_, mapped.item_factors_)
    assert path.read_bytes() == before


def test_a_mapped_model_outlives_the_file_replaced_by_save(small_data, tmp_path):
    path = tmp_path / "m.mfsgd"
    first = _fit(small_data, 16)
    first.save(path)
    mapped = mfsgd.load(path, mmap=True)
    assert _mapped(mapped._state.user_factors)
    want = first.recommend(small_data[0][0], n=5)
    MatrixFactorization(n_factors=16, n_epochs=1, random_state=1).fit(small_data).save(path)
    for a, b in zip(mapped.recommend(small_data[0][0], n=5), want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mapped.user_factors_, first.user_factors_)


def test_files_of_other_writers_and_byte_orders_load_mapped_by_copying(small_data, tmp_path):
    """A file rewritten by plain zipfile (members not aligned), and one whose factors are
    stored big-endian: what cannot be mapped as it is gets copied, same model."""
    m = _fit(small_data, 16)
    path = tmp_path / "m.mfsgd"
    m.save(path)
    plain = tmp_path / "plain.mfsgd"
    plain.write_bytes(rewrite(path.read_bytes()))
    assert any(at % 64 for at in _data_offsets(plain).values())

    params = ("user_factors", "item_factors", "user_bias", "item_bias")
    with zipfile.ZipFile(path) as zf:
        stored = {n: np.load(io.BytesIO(zf.read(f"{n}.npy"))) for n in params}
    swapped_arrays = {n: a.astype(a.dtype.newbyteorder(">")) for n, a in stored.items()}

    def npy(a):
        out = io.BytesIO()
        np.save(out, a)
        return out.getvalue()

    def header(h):
        for n, a in swapped_arrays.items():
            h["arrays"][n].update(dtype=a.dtype.str, crc32=zlib.crc32(a.tobytes()))
        return h

    swapped = tmp_path / "swapped.mfsgd"
    swapped.write_bytes(rewrite(path.read_bytes(), header=header, members={
        f"{n}.npy": (lambda _, a=a: npy(a)) for n, a in swapped_arrays.items()}))
    for p in (plain, swapped):
        got = mfsgd.load(p, mmap=True)
        assert all(a.flags.aligned for a in _arrays(got).values())  # else copied
        assert got.item_factors_.dtype == np.float32 and got.item_factors_.dtype.isnative
        assert got._state.item_factors.ctypes.data % 64 == 0
        np.testing.assert_array_equal(got.item_factors_, m.item_factors_)
        np.testing.assert_array_equal(got.recommend_all(n=5), m.recommend_all(n=5))
    assert not _mapped(mfsgd.load(swapped, mmap=True)._state.item_factors)


def test_a_file_that_cannot_be_mapped_is_read(small_data, tmp_path, monkeypatch):
    path = tmp_path / "m.mfsgd"
    m = _fit(small_data, 16)
    m.save(path)

    def refuse(*a, **k):
        raise OSError(19, "No such device")  # as on a filesystem without mmap

    monkeypatch.setattr(mfsgd.persistence.mmap, "mmap", refuse)
    got = mfsgd.load(path, mmap=True)
    assert not any(_mapped(a) for a in _arrays(got).values())
    np.testing.assert_array_equal(got.user_factors_, m.user_factors_)


def test_damaged_files_are_refused_when_mapped(small_data, tmp_path):
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 16).save(path)
    raw = bytearray(path.read_bytes())
    at = _data_offsets(path)["user_factors.npy"] + 128 + 3  # inside the data
    raw[at] ^= 0xFF
    bad = tmp_path / "bad.mfsgd"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="Bad CRC-32 for file 'user_factors.npy'"):
        mfsgd.load(bad, mmap=True)
    bad.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ModelFileError):
        mfsgd.load(bad, mmap=True)


def _outcome(path, **kw):
    """"loaded" and the user factors, or the refusal's message without the path."""
    try:
        m = mfsgd.load(path, **kw)
    except ModelFileError as e:
        return "refused", str(e)[len(str(path)):]
    return "loaded", m.user_factors_.tobytes()


def test_a_mapped_load_refuses_what_a_read_refuses_with_the_same_message(small_data, tmp_path):
    """Members larger than zipfile's read-ahead (4 KiB) too: the ZIP CRC-32 alone
    damaged, and bit flips through the whole file (deterministic positions)."""
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 16).save(path)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("user_factors.npy")
    assert info.file_size > 4096
    cases = []
    # the member's CRC-32 in its local header and in the central directory, data intact
    crc = struct.pack("<I", info.CRC)
    wrong = struct.pack("<I", info.CRC ^ 0x1)
    cases.append(raw.replace(crc, wrong))
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(raw), 150):
        b = bytearray(raw)
        b[pos] ^= 1 << int(rng.integers(8))
        cases.append(bytes(b))
    refused = 0
    for n, data in enumerate(cases):
        case = tmp_path / f"case{n}.mfsgd"
        case.write_bytes(data)
        read, mapped = _outcome(case), _outcome(case, mmap=True)
        assert read == mapped, (n, read[1][:200], mapped[1][:200])
        refused += read[0] == "refused"
    assert _outcome(tmp_path / "case0.mfsgd")[1].endswith(
        "its archive is damaged (BadZipFile: Bad CRC-32 for file 'user_factors.npy').")
    assert refused > 100


@pytest.mark.parametrize("value", [1, "yes", None])
def test_mmap_must_be_a_bool(tmp_path, small_data, value):
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 4).save(path)
    with pytest.raises(TypeError, match="mmap must be True or False"):
        mfsgd.load(path, mmap=value)


def test_mmap_takes_numpy_bools(tmp_path, small_data):
    path = tmp_path / "m.mfsgd"
    _fit(small_data, 16).save(path)
    assert _mapped(mfsgd.load(path, mmap=np.True_)._state.user_factors)
    assert not _mapped(mfsgd.load(path, mmap=np.False_)._state.user_factors)
