#!/usr/bin/env python3
"""atheris (libFuzzer) target for ``mfsgd.load``.

Each input is written to a file and loaded, and so is a copy with every checksum made
right (fix_checksums): otherwise nearly every mutation of the JSON header or of an array
is refused at a CRC, and the parsing behind it is never reached. The contract: the load
raises ``mfsgd.ModelFileError`` (a ValueError), or returns a model that predicts finite
values for its own ids. Anything else -- another exception (a bare ValueError included: the
documented contract is ModelFileError), a crash, a hang (-timeout) or memory growth
(-rss_limit_mb) -- is reported by libFuzzer as a finding, with the input saved.

Not collected by pytest (the name has no test_ prefix, and tests/fuzz/conftest.py says so).

    pip install atheris
    python tests/fuzz/fuzz_load.py --make-corpus /tmp/mfsgd-corpus     # seed: valid models
    python tests/fuzz/fuzz_load.py -max_total_time=600 -timeout=10 -rss_limit_mb=2048 \\
        -max_len=8192 /tmp/mfsgd-corpus
    python tests/fuzz/fuzz_load.py crash-<sha1>                        # replay one finding
"""

import io
import json
import os
import sys
import tempfile
import zipfile
import zlib

import atheris

with atheris.instrument_imports(include=["mfsgd"]):
    import numpy as np

    import mfsgd

# zipfile, json and numpy's npy reader were imported before (by atheris itself, or by
# numpy): instrument what is loaded, so that coverage inside them guides the fuzzer too.
atheris.instrument_all()


def make_corpus(directory):
    """Valid model files of every shape the format has: str/int/uint64 ids, float32/64,
    unbiased and non-negative, grown by partial_fit (unsorted ids), early stopping, a
    single rating."""
    from mfsgd import MatrixFactorization as MF

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    n = 60
    u, i, r = rng.integers(0, 6, n), rng.integers(0, 5, n), rng.uniform(1, 5, n)
    su = np.array([f"user-{x}" for x in u])
    models = {
        "int_f32": MF(n_factors=3, n_epochs=2, random_state=0).fit((u, i, r)),
        "str_f64": MF(n_factors=2, n_epochs=2, random_state=0, dtype=np.float64)
        .fit((su, i, r)),
        "uint64_ids": MF(n_factors=2, n_epochs=1, random_state=0)
        .fit((u.astype(np.uint64) + np.uint64(2**63), i, r)),
        "unbiased_nonneg": MF(n_factors=2, n_epochs=2, random_state=0, biased=False,
                              nonnegative=True).fit((u, i, r)),
        "early_stopping": MF(n_factors=2, n_epochs=5, random_state=0, early_stopping=True,
                             validation_fraction=0.3, n_iter_no_change=9).fit((su, i, r)),
        "one_rating": MF(n_factors=1, n_epochs=1, random_state=0).fit(([7], ["x"], [3.0])),
    }
    grown = MF(n_factors=2, n_epochs=1, random_state=0).fit((su, i, r))
    grown.partial_fit((np.array(["zz", "a"]), np.array([-5, 99]), np.array([1.0, 2.0])))
    models["grown"] = grown
    for name, m in models.items():
        m.save(os.path.join(directory, f"{name}.mfsgd"))
    print(f"wrote {len(models)} seed models to {directory}")


# One scratch file per process, removed after every input (libFuzzer ends the process
# with exit(), so atexit cleanup would not run).
_PATH = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                     f"mfsgd-fuzz-{os.getpid()}.mfsgd")


def fix_checksums(data: bytes) -> bytes | None:
    """The input with every checksum made right, or None if it is not a ZIP of stored
    members: the ZIP CRC-32s, and the arrays' crc32 in header.json. A mutated header or
    array is otherwise refused at its checksum, and the parsing behind it is never
    reached; the hypothesis tests cover the checksum checks themselves."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = []
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
                    return None
                with zf.open(info) as f:
                    f._expected_crc = None  # read past a wrong CRC (harness only)
                    members.append((info.filename, f.read()))
    except Exception:
        return None
    names = dict(members)
    try:
        header = json.loads(names["header.json"])
        for name, spec in header["arrays"].items():
            try:
                buf = io.BytesIO(names[f"{name}.npy"])
                version = np.lib.format.read_magic(buf)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}[version]
                reader(buf)
                spec["crc32"] = zlib.crc32(buf.read())
            except Exception:
                continue
        names["header.json"] = json.dumps(header, allow_nan=True).encode()
    except Exception:
        pass
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, _ in members:
            zf.writestr(name, names[name])
    return out.getvalue()


def check_load(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        m = mfsgd.load(_PATH)
    except mfsgd.ModelFileError:
        return
    finally:
        os.unlink(_PATH)
    # A model came out: it must be sound.
    users, items = m.user_ids_[:8], m.item_ids_[:8]
    k = min(len(users), len(items))
    pred = m.predict((users[:k], items[:k]))
    if not np.isfinite(pred).all():
        raise AssertionError(f"loaded model predicts non-finite values: {pred}")
    for a in (m.user_factors_, m.item_factors_, m.user_bias_, m.item_bias_):
        if not np.isfinite(a).all():
            raise AssertionError("loaded model holds non-finite parameters")


def TestOneInput(data: bytes) -> None:
    check_load(data)
    fixed = fix_checksums(data)
    if fixed is not None and fixed != data:
        check_load(fixed)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(sys.argv[2])
        return
    np.seterr(all="raise")  # a NumPy floating-point warning during load is a finding too
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
