# Compiled SGD kernel of mfsgd: typed entry points over memoryviews, GIL released.
#
# Code names -> README symbols: user_factors = u_i rows, item_factors = v_j rows,
# user_bias = b_i, item_bias = b'_j, mu = global mean, lr = alpha, reg_factors =
# lambda1, reg_bias = lambda2. The arithmetic lives in _kernel_impl.h (plain C, so
# that it can be compiled for several instruction sets and dispatched at import);
# this module only unpacks memoryviews and releases the GIL around each call.
#
# Contract for every function: the Python wrapper validated the inputs (index
# ranges, equal lengths, dtypes, contiguity); nothing here checks them again, and
# no Python object is touched while the GIL is released.
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t
from cython cimport floating

import numpy as np

cdef extern from "_kernel.h" nogil:
    ctypedef struct mf_hyper:
        double mu
        double lr
        double reg_f
        double reg_b
        int use_bias
        int nonneg
        int64_t n_factors
    enum:
        MF_ISA_AUTO
        MF_ISA_BASELINE
        MF_ISA_AVX2
        MF_ISA_AVX512
        MF_AVX512_MIN_ROW_BYTES
        MF_RANK_AVX2_MAX_ROW_BYTES_WARP
        MF_RANK_AVX2_MAX_ROW_BYTES_BPR
    int mf_isa_available()
    int mf_isa_select(int isa)
    int mf_isa_current()
    int mf_isa_for(int64_t row_bytes)
    int mf_rank_isa_f32(int64_t row_bytes, int loss)
    const char *mf_isa_name(int isa)
    void mf_sgd_segments_f32(const int32_t *u, const int32_t *it, const float *r,
                             const int64_t *seg_ptr, const int64_t *segments,
                             int64_t n_segments, const uint64_t *seeds, void *scratch,
                             float *P, float *Q, float *bu, float *bi, float *Gu, float *Gi,
                             int64_t k, const mf_hyper *h, double *sse_out)
    void mf_sgd_segments_f64(const int32_t *u, const int32_t *it, const double *r,
                             const int64_t *seg_ptr, const int64_t *segments,
                             int64_t n_segments, const uint64_t *seeds, void *scratch,
                             double *P, double *Q, double *bu, double *bi, double *Gu,
                             double *Gi, int64_t k, const mf_hyper *h, double *sse_out)
    void mf_sgd_segments_weighted_f32(const int32_t *u, const int32_t *it, const float *r,
                                      const float *wt, const int64_t *seg_ptr,
                                      const int64_t *segments, int64_t n_segments,
                                      const uint64_t *seeds, void *scratch, float *P,
                                      float *Q, float *bu, float *bi, float *Gu, float *Gi,
                                      int64_t k, const mf_hyper *h, double *sse_out)
    void mf_sgd_segments_weighted_f64(const int32_t *u, const int32_t *it, const double *r,
                                      const double *wt, const int64_t *seg_ptr,
                                      const int64_t *segments, int64_t n_segments,
                                      const uint64_t *seeds, void *scratch, double *P,
                                      double *Q, double *bu, double *bi, double *Gu,
                                      double *Gi, int64_t k, const mf_hyper *h,
                                      double *sse_out)
    int64_t MF_SCRATCH_W_BYTES(int64_t n, int64_t value_size)
    void mf_permutation(uint32_t *out, int64_t n, uint64_t seed)
    int64_t MF_SCRATCH_BYTES(int64_t n, int64_t value_size)
    void mf_predict_f32(const int32_t *u, const int32_t *it, int64_t n, const float *P,
                        const float *Q, const float *bu, const float *bi, int64_t k,
                        double mu, double *out)
    void mf_predict_f64(const int32_t *u, const int32_t *it, int64_t n, const double *P,
                        const double *Q, const double *bu, const double *bi, int64_t k,
                        double mu, double *out)
    enum:
        MF_LOSS_SQUARED
        MF_LOSS_BPR
        MF_LOSS_WARP
        MF_LOSS_SOFTMAX
        MF_MAX_NEG
        MF_MAX_REJECT
    ctypedef struct mf_rank_hyper:
        int loss
        int use_bias
        int n_neg
        int max_sampled
        int logq
        double lr
        double reg_f
        double reg_b
        double margin
        int64_t n_factors
        const int32_t *stop
    ctypedef struct mf_sampler:
        const int32_t *item_lo
        const int32_t *item_hi
        const double *cdf
        const int64_t *seen_ptr
        const int32_t *seen
        const uint64_t *seen_bits
        int64_t seen_words
    void mf_rank_segments_f32(const int32_t *u, const int32_t *it, const float *w,
                              const int64_t *seg_ptr, const int64_t *segments,
                              int64_t n_segments, const uint64_t *seeds,
                              const uint64_t *draw_seeds, const mf_sampler *smp, void *scratch,
                              float *work, float *P, float *Q, float *bi, float *Gu,
                              float *Gi, int64_t k, const mf_rank_hyper *h,
                              double *loss_out)
    void mf_rank_segments_f64(const int32_t *u, const int32_t *it, const double *w,
                              const int64_t *seg_ptr, const int64_t *segments,
                              int64_t n_segments, const uint64_t *seeds,
                              const uint64_t *draw_seeds, const mf_sampler *smp, void *scratch,
                              double *work, double *P, double *Q, double *bi, double *Gu,
                              double *Gi, int64_t k, const mf_rank_hyper *h,
                              double *loss_out)
    void mf_draw_candidates(int32_t *out, uint64_t seed, int64_t n_steps, int64_t n_draws,
                            int32_t lo, int32_t hi, const double *cdf)
    double mf_harmonic(int64_t m)

# Loss ids and sampler limits, defined once in _kernel.h.
LOSS_SQUARED = MF_LOSS_SQUARED
LOSS_BPR = MF_LOSS_BPR
LOSS_WARP = MF_LOSS_WARP
LOSS_SOFTMAX = MF_LOSS_SOFTMAX
LOSSES = {"squared": LOSS_SQUARED, "bpr": LOSS_BPR, "warp": LOSS_WARP, "softmax": LOSS_SOFTMAX}
MAX_NEG = MF_MAX_NEG
MAX_REJECT = MF_MAX_REJECT

# Instruction-set variant ids, defined once in _kernel.h.
ISA_AUTO = MF_ISA_AUTO
ISA_BASELINE = MF_ISA_BASELINE
ISA_AVX2 = MF_ISA_AVX2
ISA_AVX512 = MF_ISA_AVX512


def isa_available():
    """Bit mask of the instruction-set variants this build has and this CPU runs."""
    return mf_isa_available()


def isa_select(int isa):
    """Use variant `isa` (clamped to the best available at or below it), or the
    automatic choice for ISA_AUTO; return the selection."""
    return mf_isa_select(isa)


def isa_current():
    """The selection: ISA_AUTO (the default: chosen per row width, see isa_for) or the
    variant forced by isa_select."""
    return mf_isa_current()


def isa_for(int64_t row_bytes):
    """The variant that runs factor rows of ``row_bytes`` bytes (padded width x item
    size) under the current selection."""
    return mf_isa_for(row_bytes)


AVX512_MIN_ROW_BYTES = MF_AVX512_MIN_ROW_BYTES


def rank_isa_f32(int64_t row_bytes, int loss):
    """The variant that runs the float32 ranking kernel of ``loss`` (a LOSSES value) on
    rows of ``row_bytes`` bytes under the current selection."""
    return mf_rank_isa_f32(row_bytes, loss)


RANK_AVX2_MAX_ROW_BYTES_WARP = MF_RANK_AVX2_MAX_ROW_BYTES_WARP
RANK_AVX2_MAX_ROW_BYTES_BPR = MF_RANK_AVX2_MAX_ROW_BYTES_BPR


def isa_name(int isa):
    """Human-readable name of variant `isa`."""
    return mf_isa_name(isa).decode("ascii")


def sgd_segments(const int32_t[::1] users, const int32_t[::1] items,
                 const floating[::1] ratings, const int64_t[::1] seg_ptr,
                 const int64_t[::1] segments, const uint64_t[::1] seeds,
                 floating[:, ::1] user_factors, floating[:, ::1] item_factors,
                 floating[::1] user_bias, floating[::1] item_bias,
                 double mu, double lr, double reg_factors, double reg_bias,
                 bint use_bias, bint nonnegative, double[::1] sse_out,
                 floating[::1] user_accum, floating[::1] item_accum, int64_t n_factors=0):
    """SGD over the ratings of the listed segments, in list order.

    Contract: segment ``s`` spans positions ``seg_ptr[s]:seg_ptr[s+1]`` of the rating
    triples, and ``segments`` lists segment ids; ``seeds`` (one per listed segment, or
    None) gives each a seed: the segment is then visited in the order
    ``permutation(len, seed)`` (0: the stored order). Mutates the factor and bias arrays,
    never the triples; writes each listed segment's sum of squared errors (errors before
    each update) to ``sse_out``. Calls that run concurrently must not share a factor row
    (give them segments of different blocks of one stratum). ``user_accum`` and
    ``item_accum`` (one value per row, or empty for a constant rate) are AdaGrad
    accumulators, used and updated in place; each grows by the mean squared gradient over
    the row's ``n_factors`` factors (plus its bias), so that the zero columns padding the
    factor arrays to an aligned width leave it unchanged (0: every column is a factor).
    Runs without the GIL.
    """
    cdef mf_hyper h
    h.mu = mu
    h.lr = lr
    h.reg_f = reg_factors
    h.reg_b = reg_bias
    h.use_bias = use_bias
    h.nonneg = nonnegative
    h.n_factors = n_factors
    cdef int64_t ns = segments.shape[0]
    cdef int64_t k = user_factors.shape[1]
    cdef int64_t j
    cdef const uint64_t *sp = NULL
    cdef floating *gu = NULL
    cdef floating *gi = NULL
    if seeds is not None and seeds.shape[0] > 0:
        sp = &seeds[0]
    if user_accum.shape[0] > 0:
        gu = &user_accum[0]
        gi = &item_accum[0]
    if ns == 0 or ratings.shape[0] == 0:
        for j in range(ns):
            sse_out[j] = 0.0
        return
    # Scratch for the visiting order and the shuffled copy of the longest shuffled
    # segment, as uint64 so that it is 8-byte aligned.
    cdef int64_t longest = 0
    cdef uint64_t[::1] scratch
    cdef void *scr = NULL
    if sp != NULL:
        for j in range(ns):
            if sp[j] != 0:
                longest = max(longest, seg_ptr[segments[j] + 1] - seg_ptr[segments[j]])
        if longest >= (<int64_t>1) << 32:
            raise ValueError(f"a shuffled segment holds {longest} ratings; at most 2**32 - 1 "
                             "are supported")
        if longest > 0:
            scratch = np.empty((MF_SCRATCH_BYTES(longest, sizeof(floating)) + 7) // 8,
                               dtype=np.uint64)
            scr = &scratch[0]
    with nogil:
        if floating is float:
            mf_sgd_segments_f32(&users[0], &items[0], &ratings[0], &seg_ptr[0], &segments[0],
                                ns, sp, scr, &user_factors[0, 0], &item_factors[0, 0],
                                &user_bias[0], &item_bias[0], gu, gi, k, &h, &sse_out[0])
        else:
            mf_sgd_segments_f64(&users[0], &items[0], &ratings[0], &seg_ptr[0], &segments[0],
                                ns, sp, scr, &user_factors[0, 0], &item_factors[0, 0],
                                &user_bias[0], &item_bias[0], gu, gi, k, &h, &sse_out[0])


def sgd_segments_weighted(const int32_t[::1] users, const int32_t[::1] items,
                          const floating[::1] ratings, const floating[::1] weights,
                          const int64_t[::1] seg_ptr, const int64_t[::1] segments,
                          const uint64_t[::1] seeds, floating[:, ::1] user_factors,
                          floating[:, ::1] item_factors, floating[::1] user_bias,
                          floating[::1] item_bias, double mu, double lr, double reg_factors,
                          double reg_bias, bint use_bias, bint nonnegative,
                          double[::1] sse_out, floating[::1] user_accum,
                          floating[::1] item_accum, int64_t n_factors=0):
    """:func:`sgd_segments` with a weight per rating (``sample_weight``, same positions as
    ``ratings``): w multiplies the error in every gradient (the regularisation is not
    weighted) and ``sse_out`` receives sum w e^2. A separate compiled loop, so the
    unweighted one carries no weight code. Runs without the GIL.
    """
    cdef mf_hyper h
    h.mu = mu
    h.lr = lr
    h.reg_f = reg_factors
    h.reg_b = reg_bias
    h.use_bias = use_bias
    h.nonneg = nonnegative
    h.n_factors = n_factors
    cdef int64_t ns = segments.shape[0]
    cdef int64_t k = user_factors.shape[1]
    cdef int64_t j
    cdef const uint64_t *sp = NULL
    cdef floating *gu = NULL
    cdef floating *gi = NULL
    if seeds is not None and seeds.shape[0] > 0:
        sp = &seeds[0]
    if user_accum.shape[0] > 0:
        gu = &user_accum[0]
        gi = &item_accum[0]
    if ns == 0 or ratings.shape[0] == 0:
        for j in range(ns):
            sse_out[j] = 0.0
        return
    cdef int64_t longest = 0
    cdef uint64_t[::1] scratch
    cdef void *scr = NULL
    if sp != NULL:
        for j in range(ns):
            if sp[j] != 0:
                longest = max(longest, seg_ptr[segments[j] + 1] - seg_ptr[segments[j]])
        if longest >= (<int64_t>1) << 32:
            raise ValueError(f"a shuffled segment holds {longest} ratings; at most 2**32 - 1 "
                             "are supported")
        if longest > 0:
            scratch = np.empty((MF_SCRATCH_W_BYTES(longest, sizeof(floating)) + 7) // 8,
                               dtype=np.uint64)
            scr = &scratch[0]
    with nogil:
        if floating is float:
            mf_sgd_segments_weighted_f32(&users[0], &items[0], &ratings[0], &weights[0],
                                         &seg_ptr[0], &segments[0], ns, sp, scr,
                                         &user_factors[0, 0], &item_factors[0, 0],
                                         &user_bias[0], &item_bias[0], gu, gi, k, &h,
                                         &sse_out[0])
        else:
            mf_sgd_segments_weighted_f64(&users[0], &items[0], &ratings[0], &weights[0],
                                         &seg_ptr[0], &segments[0], ns, sp, scr,
                                         &user_factors[0, 0], &item_factors[0, 0],
                                         &user_bias[0], &item_bias[0], gu, gi, k, &h,
                                         &sse_out[0])


def sgd_epoch(users, items, ratings, user_factors, item_factors, user_bias, item_bias,
              double mu, double lr, double reg_factors, double reg_bias,
              bint use_bias=True, bint nonnegative=False, user_accum=None, item_accum=None,
              int64_t n_factors=0):
    """One SGD pass over all triples in their stored order; returns the SSE.

    Contract: as :func:`sgd_segments` with a single segment and no shuffle; the triples
    are only read (read-only arrays are fine). ``user_accum``/``item_accum``: AdaGrad
    accumulators (None: constant rate); ``n_factors`` as for :func:`sgd_segments`. Runs
    without the GIL.
    """
    if user_accum is None:
        user_accum = item_accum = np.empty(0, dtype=np.asarray(user_bias).dtype)
    return _sgd_epoch(users, items, ratings, user_factors, item_factors, user_bias,
                      item_bias, mu, lr, reg_factors, reg_bias, use_bias, nonnegative,
                      user_accum, item_accum, n_factors)


def _sgd_epoch(const int32_t[::1] users, const int32_t[::1] items, const floating[::1] ratings,
               floating[:, ::1] user_factors, floating[:, ::1] item_factors,
               floating[::1] user_bias, floating[::1] item_bias,
               double mu, double lr, double reg_factors, double reg_bias,
               bint use_bias, bint nonnegative, floating[::1] user_accum,
               floating[::1] item_accum, int64_t n_factors):
    cdef mf_hyper h
    h.mu = mu
    h.lr = lr
    h.reg_f = reg_factors
    h.reg_b = reg_bias
    h.use_bias = use_bias
    h.nonneg = nonnegative
    h.n_factors = n_factors
    cdef int64_t n = ratings.shape[0]
    cdef int64_t k = user_factors.shape[1]
    cdef int64_t seg_ptr[2]
    cdef int64_t segment = 0
    cdef double sse = 0.0
    cdef floating *gu = NULL
    cdef floating *gi = NULL
    if n == 0:
        return 0.0
    if user_accum.shape[0] > 0:
        gu = &user_accum[0]
        gi = &item_accum[0]
    seg_ptr[0] = 0
    seg_ptr[1] = n
    with nogil:
        if floating is float:
            mf_sgd_segments_f32(&users[0], &items[0], &ratings[0], seg_ptr, &segment, 1, NULL,
                                NULL, &user_factors[0, 0], &item_factors[0, 0],
                                &user_bias[0], &item_bias[0], gu, gi, k, &h, &sse)
        else:
            mf_sgd_segments_f64(&users[0], &items[0], &ratings[0], seg_ptr, &segment, 1, NULL,
                                NULL, &user_factors[0, 0], &item_factors[0, 0],
                                &user_bias[0], &item_bias[0], gu, gi, k, &h, &sse)
    return sse


def permutation(int64_t n, uint64_t seed):
    """The visiting order ``sgd_segments`` uses for a segment of ``n`` ratings and this seed:
    a uniform random permutation of ``0..n-1`` (uint32) from the kernel's own generator
    (xoshiro256**, inside-out Fisher-Yates)."""
    if n < 0 or n >= (<int64_t>1) << 32:
        raise ValueError(f"n must be in [0, 2**32); got {n}")
    out = np.empty(n, dtype=np.uint32)
    cdef uint32_t[::1] o = out
    if n > 0:
        with nogil:
            mf_permutation(&o[0], n, seed)
    return out


def predict_pairs(const int32_t[::1] users, const int32_t[::1] items,
                  const floating[:, ::1] user_factors, const floating[:, ::1] item_factors,
                  const floating[::1] user_bias, const floating[::1] item_bias,
                  double mu, double[::1] out):
    """Write mu + b_i + b'_j + u_i . v_j for each pair to ``out``.

    Contract: an index of -1 marks an unknown user or item, whose bias and the
    factor term are left out; other indices are in range. Runs without the GIL.
    """
    cdef int64_t n = users.shape[0]
    cdef int64_t k = user_factors.shape[1]
    if n == 0:
        return
    with nogil:
        if floating is float:
            mf_predict_f32(&users[0], &items[0], n, &user_factors[0, 0], &item_factors[0, 0],
                           &user_bias[0], &item_bias[0], k, mu, &out[0])
        else:
            mf_predict_f64(&users[0], &items[0], n, &user_factors[0, 0], &item_factors[0, 0],
                           &user_bias[0], &item_bias[0], k, mu, &out[0])


# ---- ranking losses for implicit feedback ----------------------------------------------

def rank_segments(const int32_t[::1] users, const int32_t[::1] items,
                  const floating[::1] weights, const int64_t[::1] seg_ptr,
                  const int32_t[::1] item_lo, const int32_t[::1] item_hi,
                  const int64_t[::1] segments, seeds, const uint64_t[::1] draw_seeds,
                  item_cdf, seen_indptr, seen_items, floating[:, ::1] user_factors,
                  floating[:, ::1] item_factors, floating[::1] item_bias, int loss, double lr,
                  double reg_factors, double reg_bias, bint use_bias=True, int n_neg=1,
                  int max_sampled=10, double margin=1.0, bint logq=False, loss_out=None,
                  seen_bits=None, user_accum=None, item_accum=None, stop=None,
                  int64_t n_factors=0):
    """Ranking SGD (BPR, WARP or sampled softmax) over the listed segments, in order.

    Contract: as :func:`sgd_segments` for ``seg_ptr``, ``segments`` and ``seeds`` (None
    or one per listed segment, 0: stored order). Every (user, item) pair is a positive
    with weight ``weights[t]`` (an empty array: 1). The negatives of segment ``s`` (listed
    at position ``j``) are drawn from items ``item_lo[s]:item_hi[s]`` (the item range of
    the segment's block, which must hold its positives) by the counter-based generator
    seeded with ``draw_seeds[j]`` (see :func:`draw_candidates`): uniformly, or item ``x``
    in proportion to ``item_cdf[x + 1] - item_cdf[x]`` (cumulative float64 weights, length
    n_items + 1, or None); a draw equal to the positive, or in the user's row of the CSR
    record ``seen_indptr``/``seen_items`` (sorted per user, or None), is redrawn (at most
    MAX_REJECT times). ``seen_bits`` (uint64, n_users x ceil(n_items / 64), bit j % 64 of
    word j // 64 set for a seen item; see :func:`seen_bitmap`) replaces the CSR record
    when given: one load per check instead of a binary search. Mutates the factors and
    ``item_bias`` (no user bias: it cancels); writes each listed segment's summed loss to
    ``loss_out`` if given. ``user_accum``/``item_accum`` (one value per user / item row,
    both or neither): AdaGrad accumulators, used and updated in place (None or empty
    arrays, as for :func:`sgd_segments`: constant rate; ``n_factors`` as there). ``stop``
    (an int32 array, or None): polled while the call runs (every 256 positives; with
    WARP's max_sampled above 4096, every 4096 draws too); once another thread sets
    ``stop[0]`` non-zero the call returns early, its parameters and losses part-way
    through (for Ctrl-C: the caller discards the epoch). Runs without the GIL.
    """
    cdef mf_rank_hyper h
    cdef int32_t[::1] stop_v
    h.stop = NULL
    if stop is not None:
        stop_v = stop
        if stop_v.shape[0] < 1:
            raise ValueError("stop must hold at least one int32 value")
        h.stop = &stop_v[0]
    h.loss = loss
    h.use_bias = use_bias
    h.n_neg = n_neg
    h.max_sampled = max_sampled
    h.logq = logq
    h.lr = lr
    h.reg_f = reg_factors
    h.reg_b = reg_bias
    h.margin = margin
    h.n_factors = n_factors
    if loss not in (MF_LOSS_BPR, MF_LOSS_WARP, MF_LOSS_SOFTMAX):
        raise ValueError(f"loss must be LOSS_BPR, LOSS_WARP or LOSS_SOFTMAX; got {loss}")
    if loss == MF_LOSS_SOFTMAX and not 1 <= n_neg <= MF_MAX_NEG:
        raise ValueError(f"n_neg must be in [1, {MF_MAX_NEG}] for softmax; got {n_neg}")
    cdef int64_t ns = segments.shape[0]
    cdef int64_t k = user_factors.shape[1]
    cdef int64_t j
    cdef mf_sampler smp
    cdef const double[::1] cdf_v
    cdef const int64_t[::1] sp_v
    cdef const int32_t[::1] si_v
    cdef double[::1] lo_v
    cdef double *lp = NULL
    smp.item_lo = &item_lo[0]
    smp.item_hi = &item_hi[0]
    smp.cdf = NULL
    smp.seen_ptr = NULL
    smp.seen = NULL
    smp.seen_bits = NULL
    smp.seen_words = 0
    cdef const uint64_t[:, ::1] bits_v
    if seen_bits is not None:
        bits_v = seen_bits
        smp.seen_bits = &bits_v[0, 0]
        smp.seen_words = bits_v.shape[1]
    if item_cdf is not None:
        cdf_v = item_cdf
        smp.cdf = &cdf_v[0]
    if seen_indptr is not None:
        sp_v = seen_indptr
        si_v = seen_items
        smp.seen_ptr = &sp_v[0]
        smp.seen = &si_v[0] if si_v.shape[0] > 0 else NULL
        if smp.seen == NULL:
            smp.seen_ptr = NULL
    if loss_out is not None:
        lo_v = loss_out
        lp = &lo_v[0] if lo_v.shape[0] > 0 else NULL
    cdef const uint64_t *shp = NULL
    cdef const uint64_t[::1] seeds_v
    if seeds is not None:
        seeds_v = seeds
        if seeds_v.shape[0] > 0:
            shp = &seeds_v[0]
    cdef const floating *wp = NULL
    if weights.shape[0] > 0:
        wp = &weights[0]
    if ns == 0 or users.shape[0] == 0:
        if lp != NULL:
            for j in range(ns):
                lp[j] = 0.0
        return
    cdef int64_t longest = 0
    cdef uint64_t[::1] scratch
    cdef void *scr = NULL
    if shp != NULL:
        for j in range(ns):
            if shp[j] != 0:
                longest = max(longest, seg_ptr[segments[j] + 1] - seg_ptr[segments[j]])
        if longest >= (<int64_t>1) << 32:
            raise ValueError(f"a shuffled segment holds {longest} interactions; at most "
                             "2**32 - 1 are supported")
        if longest > 0:
            scratch = np.empty((MF_SCRATCH_BYTES(longest, sizeof(floating)) + 7) // 8,
                               dtype=np.uint64)
            scr = &scratch[0]
    work = np.empty(2 * k, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work_v = work
    cdef floating *bp = &item_bias[0] if item_bias.shape[0] > 0 else NULL
    cdef floating[::1] gu_v, gi_v
    cdef floating *gup = NULL
    cdef floating *gip = NULL
    if (user_accum is None) != (item_accum is None):
        raise ValueError("user_accum and item_accum must be given together")
    if user_accum is not None:
        gu_v = user_accum
        gi_v = item_accum
        if gu_v.shape[0] > 0 or gi_v.shape[0] > 0:
            if gu_v.shape[0] != user_factors.shape[0] or gi_v.shape[0] != item_factors.shape[0]:
                raise ValueError("user_accum and item_accum need one value per user and item "
                                 "row")
            gup = &gu_v[0]
            gip = &gi_v[0]
    with nogil:
        if floating is float:
            mf_rank_segments_f32(&users[0], &items[0], wp, &seg_ptr[0], &segments[0], ns, shp,
                                 &draw_seeds[0], &smp, scr, &work_v[0], &user_factors[0, 0],
                                 &item_factors[0, 0], bp, gup, gip, k, &h, lp)
        else:
            mf_rank_segments_f64(&users[0], &items[0], wp, &seg_ptr[0], &segments[0], ns, shp,
                                 &draw_seeds[0], &smp, scr, &work_v[0], &user_factors[0, 0],
                                 &item_factors[0, 0], bp, gup, gip, k, &h, lp)


def seen_bitmap(const int32_t[::1] users, const int32_t[::1] items, int64_t n_users,
                int64_t n_items):
    """The ``seen_bits`` record of the pairs: uint64 (n_users, ceil(n_items / 64))."""
    out = np.zeros((n_users, (n_items + 63) // 64), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    cdef Py_ssize_t t, n = users.shape[0]
    with nogil:
        for t in range(n):
            o[users[t], items[t] >> 6] |= (<uint64_t>1) << (items[t] & 63)
    return out


def draw_candidates(uint64_t seed, int64_t n_steps, int64_t n_draws, int32_t lo, int32_t hi,
                    item_cdf=None):
    """The raw negative candidates ``rank_segments`` draws for a segment with this draw seed
    and item range: int32 array (n_steps, n_draws), entry [t, d] = candidate d of the
    step at visiting position t, before any rejection."""
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi; got lo={lo}, hi={hi}")
    out = np.empty((n_steps, n_draws), dtype=np.int32)
    cdef int32_t[:, ::1] o = out
    cdef const double[::1] cdf_v
    cdef const double *cp = NULL
    if item_cdf is not None:
        cdf_v = item_cdf
        cp = &cdf_v[0]
    if n_steps > 0 and n_draws > 0:
        with nogil:
            mf_draw_candidates(&o[0, 0], seed, n_steps, n_draws, lo, hi, cp)
    return out


def harmonic(int64_t m):
    """H_m = 1 + 1/2 + ... + 1/m, as the WARP rank weight uses it (0 for m <= 0)."""
    return mf_harmonic(m)


# ---- counting sort helpers for the layout and the seen-items record -------------------
# O(n), stable, and without the int64 permutation array of np.argsort (8 bytes per
# rating): the layout of 100 M ratings must fit in a few GiB next to the input arrays.

ctypedef fused key_t:
    uint16_t
    uint32_t
    int32_t

ctypedef fused value_t:
    int32_t
    float
    double


def count_keys(const key_t[::1] keys, int64_t[::1] counts):
    """counts[k] += number of positions with keys == k (keys assumed < len(counts))."""
    cdef Py_ssize_t t, n = keys.shape[0]
    with nogil:
        for t in range(n):
            counts[keys[t]] += 1


def scatter_by_key(const key_t[::1] keys, const value_t[::1] src, int64_t[::1] cursor,
                   value_t[::1] out):
    """Stable counting-sort pass: out[cursor[keys[t]]++] = src[t] for t in order.

    Contract: cursor holds each key's first output position (it is advanced in place);
    out has room for every position; keys index cursor. Runs without the GIL."""
    cdef Py_ssize_t t, n = keys.shape[0]
    with nogil:
        for t in range(n):
            out[cursor[keys[t]]] = src[t]
            cursor[keys[t]] += 1


cdef inline void _insert(floating *val, int64_t *idx, Py_ssize_t p, floating x,
                         Py_ssize_t j) noexcept nogil:
    """Put (x, j) into the descending buffer val/idx at slot p or above: entries that
    x beats (strictly, so earlier columns win ties) shift down one slot."""
    while p > 0 and val[p - 1] < x:
        val[p] = val[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    val[p] = x
    idx[p] = j


def top_n_rows(const floating[:, ::1] scores, int64_t[:, ::1] out_idx,
               floating[:, ::1] out_val):
    """Per row, the n = out_idx.shape[1] largest scores, best first (ties: lower column
    first), by one scan with a sorted insertion buffer: ~1 ns per score for small n,
    where np.argpartition took ~16 ns.

    Contract: 1 <= n <= scores.shape[1]; NaN scores never enter unless in the first n
    columns. Runs without the GIL.
    """
    cdef Py_ssize_t rows = scores.shape[0], m = scores.shape[1], n = out_idx.shape[1]
    cdef Py_ssize_t row, j
    with nogil:
        for row in range(rows):
            # seed with the first n columns, insertion-sorted (descending, stable), then
            # let a later column in only if it beats the current n-th
            for j in range(n):
                _insert(&out_val[row, 0], &out_idx[row, 0], j, scores[row, j], j)
            for j in range(n, m):
                if scores[row, j] > out_val[row, n - 1]:
                    _insert(&out_val[row, 0], &out_idx[row, 0], n - 1, scores[row, j], j)
