/* mfsgd compiled kernel: plain C so that one source can be compiled for several
 * instruction sets (baseline, AVX2+FMA, AVX-512) and the best chosen at import.
 *
 * Symbols of the README's model:  r^_ij = mu + b_i + b'_j + u_i . v_j
 *   P  = user factors u_i (n_users x k, row-major)   Q  = item factors v_j (n_items x k)
 *   bu = user biases b_i                              bi = item biases b'_j
 *   lr = alpha, reg_f = lambda1, reg_b = lambda2
 *
 * Contract of every function here: inputs were validated by the Python wrapper
 * (indices in range, lengths equal, arrays C-contiguous, k > 0); nothing here
 * allocates, takes the GIL, or reports errors.
 */
#ifndef MFSGD_KERNEL_H
#define MFSGD_KERNEL_H
#include <stdint.h>

typedef struct {
    double mu;        /* global mean (0 for the unbiased model) */
    double lr;        /* learning rate alpha */
    double reg_f;     /* lambda1, factors */
    double reg_b;     /* lambda2, biases */
    int use_bias;     /* 0: plain PMF, biases are neither used nor updated */
    int nonneg;       /* 1: project factors onto >= 0 after each update */
    int64_t n_factors; /* the factors a row holds (its stored width k may add zero padding);
                        * AdaGrad's mean squared gradient is over these; <= 0: k */
} mf_hyper;

/* Instruction-set variants, best last. */
enum { MF_ISA_AUTO = -1, MF_ISA_BASELINE = 0, MF_ISA_AVX2 = 1, MF_ISA_AVX512 = 2 };
/* Under MF_ISA_AUTO (the default), rows of at least this many bytes run the AVX-512
 * variant and narrower rows AVX2 (see mf_isa_for). */
#define MF_AVX512_MIN_ROW_BYTES 256

/* The float32 ranking kernel under MF_ISA_AUTO runs AVX2 for rows up to this many bytes
 * with WARP, up to the second with bpr, and the rule above otherwise (softmax; wider
 * rows; see mf_rank_isa_f32). */
#define MF_RANK_AVX2_MAX_ROW_BYTES_WARP 512
#define MF_RANK_AVX2_MAX_ROW_BYTES_BPR 256

/* Which variants this build contains and this CPU can run (bit mask of 1 << isa). */
int mf_isa_available(void);
/* Select the variant used from now on; returns the one selected (clamped to what is available). */
int mf_isa_select(int isa);
/* The selection: MF_ISA_AUTO, or the variant forced by mf_isa_select. */
int mf_isa_current(void);
/* The variant that runs rows of row_bytes bytes under the current selection. */
int mf_isa_for(int64_t row_bytes);
/* The variant that runs the float32 ranking kernel (loss MF_LOSS_*) on such rows. */
int mf_rank_isa_f32(int64_t row_bytes, int loss);
const char *mf_isa_name(int isa);

/* The ratings are stored as triples (u, it, r) cut into segments: segment s is positions
 * [seg_ptr[s], seg_ptr[s + 1]), a piece of one cell of one grid block (the Python layout
 * decides; the kernel sees only segments). */

/* Run SGD over the ratings of the listed segments, one after another: listed segment j is
 * segment segments[j]. If seeds is not NULL and seeds[j] != 0, segment j is visited in the
 * order of mf_permutation(n, seeds[j]) (position seg_ptr[segments[j]] + perm[t] at step t),
 * through a copy gathered in scratch: 8-byte aligned, MF_SCRATCH_BYTES(longest shuffled
 * segment, sizeof(T)) bytes, every shuffled segment shorter than 2^32. Otherwise the stored
 * order (scratch may then be NULL). The triples are only read. sse_out[j] receives listed
 * segment j's sum of squared errors as seen during the pass (errors before each update).
 * Gu and Gi (NULL: constant rate) are per-row AdaGrad accumulators, used and updated in
 * place. Calls that run concurrently must not share a factor row. */
void mf_sgd_segments_f32(const int32_t *u, const int32_t *it, const float *r,
                         const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                         const uint64_t *seeds, void *scratch, float *P, float *Q, float *bu,
                         float *bi, float *Gu, float *Gi, int64_t k, const mf_hyper *h,
                         double *sse_out);
void mf_sgd_segments_f64(const int32_t *u, const int32_t *it, const double *r,
                         const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                         const uint64_t *seeds, void *scratch, double *P, double *Q,
                         double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                         const mf_hyper *h, double *sse_out);

/* Scratch bytes for a shuffled segment of n entries: per entry one value of value_size
 * bytes (the rating, or for the ranking kernel the weight), the user and item (int32) and
 * the visiting order (uint32). */
#define MF_SCRATCH_BYTES(n, value_size) ((n) * ((value_size) + 12))

/* mf_sgd_segments with a weight per rating (sample_weight): the rating's loss term becomes
 * w (r - r^)^2, i.e. w multiplies e in every gradient (regularisation unweighted), and
 * sse_out receives sum w e^2. wt is indexed like r. A shuffled segment also gathers its
 * weights: scratch must hold MF_SCRATCH_W_BYTES(longest shuffled segment, sizeof(T)).
 * The weighted loop is a separate compiled instance, so the unweighted one carries no
 * weight code. */
void mf_sgd_segments_weighted_f32(const int32_t *u, const int32_t *it, const float *r,
                                  const float *wt, const int64_t *seg_ptr,
                                  const int64_t *segments, int64_t n_segments,
                                  const uint64_t *seeds, void *scratch, float *P, float *Q,
                                  float *bu, float *bi, float *Gu, float *Gi, int64_t k,
                                  const mf_hyper *h, double *sse_out);
void mf_sgd_segments_weighted_f64(const int32_t *u, const int32_t *it, const double *r,
                                  const double *wt, const int64_t *seg_ptr,
                                  const int64_t *segments, int64_t n_segments,
                                  const uint64_t *seeds, void *scratch, double *P, double *Q,
                                  double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                                  const mf_hyper *h, double *sse_out);
/* As MF_SCRATCH_BYTES with the gathered weight as a second value per entry. */
#define MF_SCRATCH_W_BYTES(n, value_size) ((n) * (2 * (value_size) + 12))

/* A uniform random permutation of 0..n-1 (n < 2^32) into out, deterministic from seed. */
void mf_permutation(uint32_t *out, int64_t n, uint64_t seed);

/* Predictions for index pairs; an index < 0 means unknown: its bias and the factor
 * term are left out. */
void mf_predict_f32(const int32_t *u, const int32_t *it, int64_t n, const float *P,
                    const float *Q, const float *bu, const float *bi, int64_t k,
                    double mu, double *out);
void mf_predict_f64(const int32_t *u, const int32_t *it, int64_t n, const double *P,
                    const double *Q, const double *bu, const double *bi, int64_t k,
                    double mu, double *out);
/* ---- ranking losses for implicit feedback (issue 14) -------------------------------
 * Every interaction (u, i) is a positive; negatives j are drawn in the kernel from the
 * item range [lo, hi) that the segment's block owns (blocks of a stratum own disjoint
 * item ranges, so threads never share a row and the model does not depend on the thread
 * count). Scores leave out mu and the user bias, which cancel in every ranking loss:
 * s_uj = b'_j + u . v_j.  Loss ids are defined here once; _sgd.pyx cimports them. */
enum { MF_LOSS_SQUARED = 0, MF_LOSS_BPR = 1, MF_LOSS_WARP = 2, MF_LOSS_SOFTMAX = 3 };
/* Draws per negative at most while rejecting the positive (or a seen item); a negative
 * still rejected after that many is dropped (only possible when nearly every item of
 * the range is the user's). */
#define MF_MAX_REJECT 32
/* Sampled softmax: negatives per positive at most (logits live on the stack). */
#define MF_MAX_NEG 256
/* Ranking steps: later draws whose rows are prefetched with the first (see rank_body). */
#ifndef MF_MAX_AHEAD
#define MF_MAX_AHEAD 4
#endif
#ifndef MF_AHEAD_BYTES /* ...when the rows negatives come from exceed this */
#define MF_AHEAD_BYTES (1 << 20)
#endif

typedef struct {
    int loss;          /* MF_LOSS_BPR, MF_LOSS_WARP or MF_LOSS_SOFTMAX */
    int use_bias;      /* 0: item biases are neither used nor updated (may be NULL) */
    int n_neg;         /* BPR: pairwise steps per positive; softmax: sampled negatives */
    int max_sampled;   /* WARP: negatives drawn per positive at most */
    int logq;          /* softmax: subtract ln(sampling probability) from each logit */
    double lr;         /* alpha */
    double reg_f;      /* lambda1 on every factor row a step touches */
    double reg_b;      /* lambda2 on every item bias a step touches */
    double margin;     /* WARP: a negative violates when s_uj > s_ui - margin */
    int64_t n_factors; /* as in mf_hyper: AdaGrad's mean is over these, not the padding */
    /* NULL, or a flag polled every MF_POLL_ROWS positives and MF_POLL_DRAWS WARP draws:
     * non-zero ends the call early, the parameters part-way through (Ctrl-C: the caller
     * discards the epoch). A call's work is not bounded by its rows (WARP draws up to
     * max_sampled negatives per positive, softmax up to MF_MAX_NEG), so the caller
     * cannot bound its latency by sizing calls. */
    const volatile int32_t *stop;
} mf_rank_hyper;
#define MF_POLL_ROWS 256
#define MF_POLL_DRAWS 4096

typedef struct {
    const int32_t *item_lo, *item_hi; /* per segment id: the item range negatives come from */
    const double *cdf;      /* NULL: uniform; else cumulative item weights, n_items + 1
                             * values, cdf[0] = 0 (one array serves every range) */
    const int64_t *seen_ptr; /* NULL: only the positive itself is rejected; else CSR of */
    const int32_t *seen;     /* each user's items, sorted: those are rejected too */
    /* Or (used instead of the CSR when not NULL) a bit per (user, item): bit j % 64 of
     * word seen_bits[u * seen_words + j / 64]. One load per check instead of a binary
     * search's chain of dependent loads; n_users * n_items / 8 bytes, so for small and
     * medium catalogues (the wrapper's choice). */
    const uint64_t *seen_bits;
    int64_t seen_words;
} mf_sampler;

/* Counter-based draws: the d-th candidate of visiting step t of a segment with seed s is
 * mf_draw_item(mf_draw_bits(mf_draw_base(s, t), d), lo, hi, cdf). No state is carried
 * from step to step, so a NumPy reference (tests/reference.py) reproduces every draw, and
 * the draws of a step ahead can be computed for prefetching. splitmix64's finaliser. */
static inline uint64_t mf_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t mf_draw_base(uint64_t seed, int64_t t)
{
    return mf_mix64(seed ^ ((uint64_t)t * 0x9e3779b97f4a7c15ULL));
}
static inline uint64_t mf_draw_bits(uint64_t base, int64_t d)
{
    return mf_mix64(base + ((uint64_t)d + 1) * 0xd1b54a32d192ed03ULL);
}
/* Uniform: lo + floor(x * n / 2^32) with x the high 32 bits (bias < n / 2^32).
 * Weighted: y = (bits >> 11) / 2^53 * W with W = cdf[hi] - cdf[lo]; the item is the first
 * j in [lo, hi) with cdf[j + 1] - cdf[lo] > y (binary search). Written without an a + b*c
 * so that FMA contraction cannot make it differ from NumPy's searchsorted. */
static inline int64_t mf_draw_item(uint64_t bits, int32_t lo, int32_t hi, const double *cdf)
{
    if (!cdf) return lo + (int64_t)(((bits >> 32) * (uint64_t)(hi - lo)) >> 32);
    const double a = cdf[lo];
    const double y = ((double)(bits >> 11) * (1.0 / 9007199254740992.0)) * (cdf[hi] - a);
    int64_t l = lo, r = hi - 1;
    while (l < r) {
        const int64_t m = l + ((r - l) >> 1);
        if (cdf[m + 1] - a > y) r = m; else l = m + 1;
    }
    return l;
}

/* Ranking SGD over the listed segments (as mf_sgd_segments: listed segment j is segment
 * s = segments[j], positions [seg_ptr[s], seg_ptr[s + 1]); seeds[j] != 0 shuffles it through
 * scratch, which must then hold MF_SCRATCH_BYTES(longest shuffled segment, sizeof(T))).
 * Its negatives come from items [smp->item_lo[s], smp->item_hi[s]). w: per-interaction
 * weights (NULL: 1). draw_seeds[j] seeds the negatives of listed segment j (step t =
 * position in visiting order). work: 2k values of T (softmax only; else may be NULL).
 * loss_out[j] (if loss_out is not NULL) receives listed segment j's summed loss, each term
 * taken before its update. P, Q, bi are updated in place; there is no user bias.
 * Gu and Gi (NULL: constant rate) are per-row AdaGrad accumulators as in
 * mf_sgd_segments: a row moves at lr / sqrt(G) (G before the step), then G grows by the
 * mean squared (descent) gradient over the row's stored values (its factors, plus the
 * item bias for an item row of the biased model). */
void mf_rank_segments_f32(const int32_t *u, const int32_t *it, const float *w,
                          const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                          const uint64_t *seeds, const uint64_t *draw_seeds,
                          const mf_sampler *smp, void *scratch, float *work, float *P,
                          float *Q, float *bi, float *Gu, float *Gi, int64_t k,
                          const mf_rank_hyper *h, double *loss_out);
void mf_rank_segments_f64(const int32_t *u, const int32_t *it, const double *w,
                          const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                          const uint64_t *seeds, const uint64_t *draw_seeds,
                          const mf_sampler *smp, void *scratch, double *work, double *P,
                          double *Q, double *bi, double *Gu, double *Gi, int64_t k,
                          const mf_rank_hyper *h, double *loss_out);
/* The raw candidates (before rejection) of steps 0..n_steps-1, n_draws each, row-major. */
void mf_draw_candidates(int32_t *out, uint64_t seed, int64_t n_steps, int64_t n_draws,
                        int32_t lo, int32_t hi, const double *cdf);
/* H_m = sum_{i=1}^{m} 1/i (exact sum up to 64 terms, else the asymptotic series). */
double mf_harmonic(int64_t m);
#endif
