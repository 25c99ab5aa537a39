# Type stub for the compiled kernel (_sgd.pyx). The ids below are defined once, in
# _kernel.h; the values are the module's, not repeated here. Arrays are typed loosely
# (NDArray[Any]): each function's dtype and contiguity contract is in its docstring.
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

LOSS_SQUARED: int
LOSS_BPR: int
LOSS_WARP: int
LOSS_SOFTMAX: int
LOSSES: dict[str, int]
MAX_NEG: int
MAX_REJECT: int

ISA_AUTO: int
ISA_BASELINE: int
ISA_AVX2: int
ISA_AVX512: int
AVX512_MIN_ROW_BYTES: int
RANK_AVX2_MAX_ROW_BYTES_WARP: int
RANK_AVX2_MAX_ROW_BYTES_BPR: int

def isa_available() -> int: ...
def isa_select(isa: int) -> int: ...
def isa_current() -> int: ...
def isa_for(row_bytes: int) -> int: ...
def rank_isa_f32(row_bytes: int, loss: int) -> int: ...
def isa_name(isa: int) -> str: ...
def sgd_segments(
    users: _Array,
    items: _Array,
    ratings: _Array,
    seg_ptr: _Array,
    segments: _Array,
    seeds: _Array | None,
    user_factors: _Array,
    item_factors: _Array,
    user_bias: _Array,
    item_bias: _Array,
    mu: float,
    lr: float,
    reg_factors: float,
    reg_bias: float,
    use_bias: bool,
    nonnegative: bool,
    sse_out: _Array,
    user_accum: _Array,
    item_accum: _Array,
    n_factors: int = 0,
) -> None: ...
def sgd_segments_weighted(
    users: _Array,
    items: _Array,
    ratings: _Array,
    weights: _Array,
    seg_ptr: _Array,
    segments: _Array,
    seeds: _Array | None,
    user_factors: _Array,
    item_factors: _Array,
    user_bias: _Array,
    item_bias: _Array,
    mu: float,
    lr: float,
    reg_factors: float,
    reg_bias: float,
    use_bias: bool,
    nonnegative: bool,
    sse_out: _Array,
    user_accum: _Array,
    item_accum: _Array,
    n_factors: int = 0,
) -> None: ...
def sgd_epoch(
    users: _Array,
    items: _Array,
    ratings: _Array,
    user_factors: _Array,
    item_factors: _Array,
    user_bias: _Array,
    item_bias: _Array,
    mu: float,
    lr: float,
    reg_factors: float,
    reg_bias: float,
    use_bias: bool = True,
    nonnegative: bool = False,
    user_accum: _Array | None = None,
    item_accum: _Array | None = None,
    n_factors: int = 0,
) -> float: ...
def permutation(n: int, seed: int) -> NDArray[np.uint32]: ...
def predict_pairs(
    users: _Array,
    items: _Array,
    user_factors: _Array,
    item_factors: _Array,
    user_bias: _Array,
    item_bias: _Array,
    mu: float,
    out: _Array,
) -> None: ...
def rank_segments(
    users: _Array,
    items: _Array,
    weights: _Array,
    seg_ptr: _Array,
    item_lo: _Array,
    item_hi: _Array,
    segments: _Array,
    seeds: _Array | None,
    draw_seeds: _Array,
    item_cdf: _Array | None,
    seen_indptr: _Array | None,
    seen_items: _Array | None,
    user_factors: _Array,
    item_factors: _Array,
    item_bias: _Array,
    loss: int,
    lr: float,
    reg_factors: float,
    reg_bias: float,
    use_bias: bool = True,
    n_neg: int = 1,
    max_sampled: int = 10,
    margin: float = 1.0,
    logq: bool = False,
    loss_out: _Array | None = None,
    seen_bits: _Array | None = None,
    user_accum: _Array | None = None,
    item_accum: _Array | None = None,
    stop: _Array | None = None,
    n_factors: int = 0,
) -> None: ...
def seen_bitmap(users: _Array, items: _Array, n_users: int, n_items: int) -> NDArray[np.uint64]: ...
def draw_candidates(
    seed: int, n_steps: int, n_draws: int, lo: int, hi: int, item_cdf: _Array | None = None
) -> NDArray[np.int32]: ...
def harmonic(m: int) -> float: ...
def count_keys(keys: _Array, counts: _Array) -> None: ...
def scatter_by_key(keys: _Array, src: _Array, cursor: _Array, out: _Array) -> None: ...
def top_n_rows(scores: _Array, out_idx: _Array, out_val: _Array) -> None: ...
