/* Instantiates the SGD and ranking kernels for float32/float64 and, on x86-64 with GCC or
 * clang, for the baseline ISA, AVX2+FMA and AVX-512, selecting one per call at run time.
 * Per-function target attributes (not per-file flags) keep this a single source
 * file in a single extension, so setuptools needs no per-file flag machinery and
 * the wheel carries every variant. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "_kernel.h"

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#ifndef MF_PREFETCH
/* Distance in ratings. 8-16 measured best with the fixed-width unrolled body; 4 had been
 * best for the first, slower loop (a plain Cython loop, float32, k = 64, 20 M synthetic
 * ratings, one thread: prefetching 4 ratings ahead took it from 10 to 18 M updates/s). */
#define MF_PREFETCH 8
#endif
#if defined(__GNUC__) || defined(__clang__)
#define MF_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define MF_PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
#define MF_ASSUME_ALIGNED(p) __builtin_assume_aligned((p), 64)
#define MF_ALWAYS_INLINE __attribute__((always_inline))
#else
#define MF_PREFETCH_W(p) ((void)0)
#define MF_PREFETCH_R(p) ((void)0)
#define MF_ASSUME_ALIGNED(p) (p)
#define MF_ALWAYS_INLINE __forceinline
#endif

/* ---- random numbers for in-kernel shuffling: splitmix64 (seeding) + xoshiro256** ---- */
typedef struct { uint64_t s[4]; } mf_rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static void mf_rng_seed(mf_rng *g, uint64_t seed)
{
    for (int i = 0; i < 4; ++i) g->s[i] = splitmix64(&seed);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t mf_rng_next(mf_rng *g)
{
    uint64_t *s = g->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}
/* A uniform random permutation of 0..n-1 (n < 2^32), by the "inside-out" Fisher-Yates:
 * element i goes to a uniform position j of [0, i] and the element there moves to i.
 * Each 64-bit draw gives two 32-bit variates (Lemire's method on each half). */
static inline uint32_t mf_below32(mf_rng *g, uint32_t x, uint64_t n)
{
    uint64_t m = (uint64_t)x * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t thr = (uint32_t)(-(uint32_t)n) % (uint32_t)n;
        while (l < thr) { m = (mf_rng_next(g) >> 32) * n; l = (uint32_t)m; }
    }
    return (uint32_t)(m >> 32);
}

void mf_permutation(uint32_t *out, int64_t n, uint64_t seed)
{
    mf_rng g;
    mf_rng_seed(&g, seed);
    if (n <= 0) return;
    out[0] = 0;
    int64_t i = 1;
    for (; i + 1 < n; i += 2) {
        const uint64_t x = mf_rng_next(&g);
        uint32_t j = mf_below32(&g, (uint32_t)(x >> 32), (uint64_t)i + 1);
        out[i] = out[j];
        out[j] = (uint32_t)i;
        j = mf_below32(&g, (uint32_t)x, (uint64_t)i + 2);
        out[i + 1] = out[j];
        out[j] = (uint32_t)(i + 1);
    }
    if (i < n) {
        const uint32_t j = mf_below32(&g, (uint32_t)(mf_rng_next(&g) >> 32), (uint64_t)i + 1);
        out[i] = out[j];
        out[j] = (uint32_t)i;
    }
}

/* ---- helpers of the ranking kernel (type- and ISA-independent) ---- */
static inline double mf_softplus(double x) /* ln(1 + e^x), without overflow */
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/* j in the sorted s[0..n)? Branch-free halving (a conditional move: each probe's outcome
 * is a coin toss, so a branching search mispredicts about half its probes). Measured on
 * MovieLens 100K (lists of ~85 items): halving down to 64 entries and comparing those
 * with a vector loop was twice slower. */
static inline int mf_is_seen(const int32_t *s, int64_t n, int64_t j)
{
    if (n <= 0) return 0;
    while (n > 1) {
        const int64_t half = n >> 1;
        s = (s[half] <= j) ? s + half : s;
        n -= half;
    }
    return *s == j;
}

static inline int mf_acceptable(const mf_sampler *smp, int64_t ui, int64_t pos, int64_t j)
{
    if (j == pos) return 0;
    if (smp->seen_bits)
        return !((smp->seen_bits[ui * smp->seen_words + (j >> 6)] >> (j & 63)) & 1);
    if (smp->seen_ptr) {
        const int64_t s0 = smp->seen_ptr[ui];
        if (mf_is_seen(smp->seen + s0, smp->seen_ptr[ui + 1] - s0, j)) return 0;
    }
    return 1;
}

/* pre_j >= 0: draw 0 of this step was computed ahead (candidate pre_j, verdict pre_ok). */
static inline int64_t mf_next_negative(uint64_t base, int64_t *d, int32_t lo, int32_t hi,
                                       const mf_sampler *smp, int64_t ui, int64_t pos,
                                       int64_t pre_j, int pre_ok)
{
    int a = 0;
    if (*d == 0 && pre_j >= 0) {
        *d = 1;
        a = 1;
        if (pre_ok) return pre_j;
    }
    for (; a < MF_MAX_REJECT; ++a) {
        const int64_t j = mf_draw_item(mf_draw_bits(base, (*d)++), lo, hi, smp->cdf);
        if (mf_acceptable(smp, ui, pos, j)) return j;
    }
    return -1;
}

double mf_harmonic(int64_t m)
{
    if (m <= 64) {
        double s = 0.0;
        for (int64_t i = m; i >= 1; --i) s += 1.0 / (double)i;
        return s;
    }
    /* ln m + gamma + 1/(2m) - 1/(12m^2) + 1/(120m^4) - 1/(252m^6): error < 1/(240 m^8) */
    const double x = (double)m, x2 = 1.0 / (x * x);
    return log(x) + 0.57721566490153286061 + 0.5 / x -
           x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252)));
}

void mf_draw_candidates(int32_t *out, uint64_t seed, int64_t n_steps, int64_t n_draws,
                        int32_t lo, int32_t hi, const double *cdf)
{
    for (int64_t t = 0; t < n_steps; ++t) {
        const uint64_t base = mf_draw_base(seed, t);
        for (int64_t d = 0; d < n_draws; ++d)
            out[t * n_draws + d] = (int32_t)mf_draw_item(mf_draw_bits(base, d), lo, hi, cdf);
    }
}

#define MF_DEFINE_PREDICT(T, SFX)                                                       \
    void mf_predict_##SFX(const int32_t *u, const int32_t *it, int64_t n, const T *P,   \
                          const T *Q, const T *bu, const T *bi, int64_t k, double mu,  \
                          double *out)                                                  \
    {                                                                                   \
        for (int64_t t = 0; t < n; ++t) {                                               \
            const int64_t ui = u[t], ii = it[t];                                        \
            T s = (T)mu;                                                                \
            if (ui >= 0) s += bu[ui];                                                   \
            if (ii >= 0) s += bi[ii];                                                   \
            if (ui >= 0 && ii >= 0) {                                                   \
                const T *p = P + ui * k, *q = Q + ii * k;                               \
                T dot = 0;                                                              \
                _Pragma("omp simd reduction(+ : dot)")                                  \
                for (int64_t f = 0; f < k; ++f) dot += p[f] * q[f];                     \
                s += dot;                                                               \
            }                                                                           \
            out[t] = (double)s;                                                         \
        }                                                                               \
    }
MF_DEFINE_PREDICT(float, f32)
MF_DEFINE_PREDICT(double, f64)

/* ---- instantiate the kernel body per (type, ISA) ---- */
#define MF_CAT_(a, b, c, d) a##b##c##d
#define MF_CAT(a, b, c, d) MF_CAT_(a, b, c, d)

#define MF_T float
#define MF_SQRT sqrtf
#define MF_EXP expf
#define MF_LANES 16 /* values per 64-byte line */
#define MF_NAME(x) MF_CAT(mf_, x, _f32_, MF_ISA_SFX)
#define MF_ISA_SFX base
#define MF_TARGET
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MF_HAVE_X86_VARIANTS 1
#define MF_ISA_SFX avx2
#define MF_TARGET __attribute__((target("avx2,fma")))
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET
#define MF_ISA_SFX avx512
#define MF_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET
#endif
#undef MF_T
#undef MF_SQRT
#undef MF_EXP
#undef MF_LANES
#undef MF_NAME

#define MF_T double
#define MF_SQRT sqrt
#define MF_EXP exp
#define MF_LANES 8
#define MF_NAME(x) MF_CAT(mf_, x, _f64_, MF_ISA_SFX)
#define MF_ISA_SFX base
#define MF_TARGET
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET
#ifdef MF_HAVE_X86_VARIANTS
#define MF_ISA_SFX avx2
#define MF_TARGET __attribute__((target("avx2,fma")))
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET
#define MF_ISA_SFX avx512
#define MF_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#include "_kernel_impl.h"
#undef MF_ISA_SFX
#undef MF_TARGET
#endif
#undef MF_T
#undef MF_SQRT
#undef MF_EXP
#undef MF_LANES
#undef MF_NAME

/* ---- run-time dispatch ---- */
/* The instances of _kernel_impl.h, indexed by variant id; the internal signature has the
 * weights last (NULL: the unweighted loop). */
typedef void (*mf_sgd_segments_f32_fn)(const int32_t *, const int32_t *, const float *,
                                       const int64_t *, const int64_t *, int64_t,
                                       const uint64_t *, void *, float *, float *, float *,
                                       float *, float *, float *, int64_t, const mf_hyper *,
                                       double *, const float *);
typedef void (*mf_sgd_segments_f64_fn)(const int32_t *, const int32_t *, const double *,
                                       const int64_t *, const int64_t *, int64_t,
                                       const uint64_t *, void *, double *, double *, double *,
                                       double *, double *, double *, int64_t, const mf_hyper *,
                                       double *, const double *);
static const mf_sgd_segments_f32_fn sgd_segments_f32[] = {
    [MF_ISA_BASELINE] = mf_sgd_segments_f32_base,
#ifdef MF_HAVE_X86_VARIANTS
    [MF_ISA_AVX2] = mf_sgd_segments_f32_avx2,
    [MF_ISA_AVX512] = mf_sgd_segments_f32_avx512,
#endif
};
static const mf_sgd_segments_f64_fn sgd_segments_f64[] = {
    [MF_ISA_BASELINE] = mf_sgd_segments_f64_base,
#ifdef MF_HAVE_X86_VARIANTS
    [MF_ISA_AVX2] = mf_sgd_segments_f64_avx2,
    [MF_ISA_AVX512] = mf_sgd_segments_f64_avx512,
#endif
};

typedef void (*mf_rank_segments_f32_fn)(const int32_t *, const int32_t *, const float *,
                                        const int64_t *, const int64_t *, int64_t,
                                        const uint64_t *, const uint64_t *, const mf_sampler *,
                                        void *, float *, float *, float *, float *, float *,
                                        float *, int64_t, const mf_rank_hyper *, double *);
typedef void (*mf_rank_segments_f64_fn)(const int32_t *, const int32_t *, const double *,
                                        const int64_t *, const int64_t *, int64_t,
                                        const uint64_t *, const uint64_t *, const mf_sampler *,
                                        void *, double *, double *, double *, double *,
                                        double *, double *, int64_t, const mf_rank_hyper *,
                                        double *);
static const mf_rank_segments_f32_fn rank_segments_f32[] = {
    [MF_ISA_BASELINE] = mf_rank_segments_f32_base,
#ifdef MF_HAVE_X86_VARIANTS
    [MF_ISA_AVX2] = mf_rank_segments_f32_avx2,
    [MF_ISA_AVX512] = mf_rank_segments_f32_avx512,
#endif
};
static const mf_rank_segments_f64_fn rank_segments_f64[] = {
    [MF_ISA_BASELINE] = mf_rank_segments_f64_base,
#ifdef MF_HAVE_X86_VARIANTS
    [MF_ISA_AVX2] = mf_rank_segments_f64_avx2,
    [MF_ISA_AVX512] = mf_rank_segments_f64_avx512,
#endif
};

static int current_isa = MF_ISA_AUTO;
static int auto_mask = -1; /* cached mf_isa_available() for the auto rule */

int mf_isa_available(void)
{
    int mask = 1 << MF_ISA_BASELINE;
#ifdef MF_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    /* libgcc / compiler-rt also check that the OS saves the wider registers (XCR0). */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        mask |= 1 << MF_ISA_AVX2;
    if ((mask & (1 << MF_ISA_AVX2)) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw"))
        mask |= 1 << MF_ISA_AVX512;
#endif
    return mask;
}

int mf_isa_select(int isa)
{
    if (isa < 0) {
        current_isa = MF_ISA_AUTO;
        return current_isa;
    }
    int mask = mf_isa_available();
    if (isa > MF_ISA_AVX512) isa = MF_ISA_AVX512;
    while (isa > 0 && !(mask & (1 << isa))) --isa;
    current_isa = isa;
    return isa;
}

int mf_isa_current(void) { return current_isa; }

int mf_isa_for(int64_t row_bytes)
{
    /* The automatic rule, from measurements on an AMD EPYC (Zen 4) with both (bench/
     * RESULTS.md, section 8, 20 M ratings, one thread): with the fixed-width unrolled body,
     * AVX-512 runs rows of 64 float32 values at 44.4 against 38.9 M updates/s for AVX2
     * (two rows take 16 AVX2 registers, the whole register file, and spill), while rows
     * of 32 values run faster with AVX2 (67.4 against 58.6), and 128 values tie (24.3
     * against 23.9: bound by the memory system). */
    if (current_isa >= 0) return current_isa;
    if (auto_mask < 0) auto_mask = mf_isa_available();
    if ((auto_mask & (1 << MF_ISA_AVX512)) && row_bytes >= MF_AVX512_MIN_ROW_BYTES)
        return MF_ISA_AVX512;
    if (auto_mask & (1 << MF_ISA_AVX2)) return MF_ISA_AVX2;
    return MF_ISA_BASELINE;
}

int mf_rank_isa_f32(int64_t row_bytes, int loss)
{
    /* Measured on an AMD EPYC (Zen 5) with both, each loss at its defaults, the variants
     * alternated in one process (bench/RESULTS.md, section 13): a ranking step is a chain
     * of single dot products (WARP: one per draw, until a negative violates the margin),
     * bound by latency, where AVX-512's longer horizontal reduction costs more than its
     * width saves. AVX-512 took 1.32-1.41x AVX2's CPU time for WARP at k = 32-128 on
     * MovieLens 100K (1.03-1.18x on 2 M interactions x 20,000 items), 1.13-1.18x for
     * bpr at k <= 64 (0.99-1.03x on the larger set); at k = 128 bpr tied (0.95-1.00x).
     * Softmax, whose step sums several negatives' dot products, gained little from AVX2 at
     * k <= 64 (1.03-1.06x) and was faster with AVX-512 at k = 128 (0.87-0.89x): it keeps
     * the width rule, as do float64 rows (0.81-1.04x). */
    const int64_t lim = loss == MF_LOSS_WARP ? MF_RANK_AVX2_MAX_ROW_BYTES_WARP
                      : loss == MF_LOSS_BPR ? MF_RANK_AVX2_MAX_ROW_BYTES_BPR : 0;
    if (current_isa < 0 && row_bytes <= lim) {
        if (auto_mask < 0) auto_mask = mf_isa_available();
        if (auto_mask & (1 << MF_ISA_AVX2)) return MF_ISA_AVX2;
    }
    return mf_isa_for(row_bytes);
}

const char *mf_isa_name(int isa)
{
    switch (isa) {
    case MF_ISA_AUTO: return "auto";
    case MF_ISA_AVX2: return "avx2+fma";
    case MF_ISA_AVX512: return "avx512";
#if defined(MFSGD_NATIVE)
    default: return "baseline (-march=native)";
#elif defined(__aarch64__) || defined(_M_ARM64)
    default: return "baseline (neon)";
#elif defined(__x86_64__) || defined(_M_X64)
    default: return "baseline (sse2)";
#else
    default: return "baseline";
#endif
    }
}

/* ---- public entry points: dispatch on the row width (see mf_isa_for) ---- */
void mf_sgd_segments_f32(const int32_t *u, const int32_t *it, const float *r,
                         const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                         const uint64_t *seeds, void *scratch, float *P, float *Q, float *bu,
                         float *bi, float *Gu, float *Gi, int64_t k, const mf_hyper *h,
                         double *sse_out)
{
    const int isa = mf_isa_for(k * (int64_t)sizeof(float));
    sgd_segments_f32[isa](u, it, r, seg_ptr, segments, n_segments, seeds, scratch, P, Q, bu, bi,
                          Gu, Gi, k, h, sse_out, NULL);
}

void mf_sgd_segments_f64(const int32_t *u, const int32_t *it, const double *r,
                         const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                         const uint64_t *seeds, void *scratch, double *P, double *Q,
                         double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                         const mf_hyper *h, double *sse_out)
{
    const int isa = mf_isa_for(k * (int64_t)sizeof(double));
    sgd_segments_f64[isa](u, it, r, seg_ptr, segments, n_segments, seeds, scratch, P, Q, bu, bi,
                          Gu, Gi, k, h, sse_out, NULL);
}

void mf_sgd_segments_weighted_f32(const int32_t *u, const int32_t *it, const float *r,
                                  const float *wt, const int64_t *seg_ptr,
                                  const int64_t *segments, int64_t n_segments,
                                  const uint64_t *seeds, void *scratch, float *P, float *Q,
                                  float *bu, float *bi, float *Gu, float *Gi, int64_t k,
                                  const mf_hyper *h, double *sse_out)
{
    const int isa = mf_isa_for(k * (int64_t)sizeof(float));
    sgd_segments_f32[isa](u, it, r, seg_ptr, segments, n_segments, seeds, scratch, P, Q, bu, bi,
                          Gu, Gi, k, h, sse_out, wt);
}

void mf_sgd_segments_weighted_f64(const int32_t *u, const int32_t *it, const double *r,
                                  const double *wt, const int64_t *seg_ptr,
                                  const int64_t *segments, int64_t n_segments,
                                  const uint64_t *seeds, void *scratch, double *P, double *Q,
                                  double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                                  const mf_hyper *h, double *sse_out)
{
    const int isa = mf_isa_for(k * (int64_t)sizeof(double));
    sgd_segments_f64[isa](u, it, r, seg_ptr, segments, n_segments, seeds, scratch, P, Q, bu, bi,
                          Gu, Gi, k, h, sse_out, wt);
}

void mf_rank_segments_f32(const int32_t *u, const int32_t *it, const float *w,
                          const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                          const uint64_t *seeds, const uint64_t *draw_seeds,
                          const mf_sampler *smp, void *scratch, float *work, float *P,
                          float *Q, float *bi, float *Gu, float *Gi, int64_t k,
                          const mf_rank_hyper *h, double *loss_out)
{
    const int isa = mf_rank_isa_f32(k * (int64_t)sizeof(float), h->loss);
    rank_segments_f32[isa](u, it, w, seg_ptr, segments, n_segments, seeds, draw_seeds, smp,
                           scratch, work, P, Q, bi, Gu, Gi, k, h, loss_out);
}

void mf_rank_segments_f64(const int32_t *u, const int32_t *it, const double *w,
                          const int64_t *seg_ptr, const int64_t *segments, int64_t n_segments,
                          const uint64_t *seeds, const uint64_t *draw_seeds,
                          const mf_sampler *smp, void *scratch, double *work, double *P,
                          double *Q, double *bi, double *Gu, double *Gi, int64_t k,
                          const mf_rank_hyper *h, double *loss_out)
{
    const int isa = mf_isa_for(k * (int64_t)sizeof(double));
    rank_segments_f64[isa](u, it, w, seg_ptr, segments, n_segments, seeds, draw_seeds, smp,
                           scratch, work, P, Q, bi, Gu, Gi, k, h, loss_out);
}
