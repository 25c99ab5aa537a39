/* Instantiates the SGD kernel for float32/float64 and, on x86-64 with GCC or clang,
 * for the baseline ISA, AVX2+FMA and AVX-512, selecting the best at run time.
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
#define MF_PREFETCH 4 /* distance in ratings; 4 measured best (shared/PERF-NOTES.md) */
#endif
#if defined(__GNUC__) || defined(__clang__)
#define MF_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define MF_PREFETCH_W(p) ((void)0)
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
/* Uniform integer in [0, n), n < 2^32: Lemire's multiply-shift with rejection (unbiased). */
static inline uint64_t mf_rng_below(mf_rng *g, uint64_t n)
{
    uint64_t m = (mf_rng_next(g) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t thr = (uint32_t)(-(uint32_t)n) % (uint32_t)n;
        while (l < thr) { m = (mf_rng_next(g) >> 32) * n; l = (uint32_t)m; }
    }
    return m >> 32;
}
/* Indices above 2^32 (blocks that large do not occur in practice) use plain modulo. */
static inline uint64_t mf_rng_below64(mf_rng *g, uint64_t n)
{
    return n <= 0xffffffffULL ? mf_rng_below(g, n) : mf_rng_next(g) % n;
}

#define MF_SWAP3(u, it, r, a, b)                                                        \
    do {                                                                                \
        const int64_t a_ = (a), b_ = (b);                                               \
        const int32_t tu_ = u[a_]; u[a_] = u[b_]; u[b_] = tu_;                          \
        const int32_t ti_ = it[a_]; it[a_] = it[b_]; it[b_] = ti_;                      \
        const MF_SWAP_T tr_ = r[a_]; r[a_] = r[b_]; r[b_] = tr_;                        \
    } while (0)

/* Forward Fisher-Yates: position i takes a uniform pick of [i, n). */
#define MF_DEFINE_SHUFFLE(T, SFX)                                                       \
    void mf_shuffle_##SFX(int32_t *u, int32_t *it, T *r, int64_t n, uint64_t seed)      \
    {                                                                                   \
        mf_rng g;                                                                       \
        mf_rng_seed(&g, seed);                                                          \
        for (int64_t i = 0; i < n - 1; ++i) {                                           \
            const int64_t j = i + (int64_t)mf_rng_below64(&g, (uint64_t)(n - i));       \
            MF_SWAP3(u, it, r, i, j);                                                   \
        }                                                                               \
    }
#define MF_SWAP_T float
MF_DEFINE_SHUFFLE(float, f32)
#undef MF_SWAP_T
#define MF_SWAP_T double
MF_DEFINE_SHUFFLE(double, f64)
#undef MF_SWAP_T

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
#define MF_SWAP_T float
#define MF_LANES 16 /* values per 64-byte line */
#define MF_SHUFFLE mf_shuffle_f32
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
#undef MF_SWAP_T
#undef MF_LANES
#undef MF_SHUFFLE
#undef MF_NAME

#define MF_T double
#define MF_SQRT sqrt
#define MF_SWAP_T double
#define MF_LANES 8
#define MF_SHUFFLE mf_shuffle_f64
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
#undef MF_SWAP_T
#undef MF_LANES
#undef MF_SHUFFLE
#undef MF_NAME

/* ---- run-time dispatch ---- */
typedef void (*mf_blocks_f32_fn)(int32_t *, int32_t *, float *, const int64_t *,
                                 const int64_t *, int64_t, const uint64_t *, float *,
                                 float *, float *, float *, float *, float *, int64_t,
                                 const mf_hyper *, double *);
typedef void (*mf_blocks_f64_fn)(int32_t *, int32_t *, double *, const int64_t *,
                                 const int64_t *, int64_t, const uint64_t *, double *,
                                 double *, double *, double *, double *, double *, int64_t,
                                 const mf_hyper *, double *);

static const mf_blocks_f32_fn blocks_f32[] = {
    mf_sgd_blocks_f32_base,
#ifdef MF_HAVE_X86_VARIANTS
    mf_sgd_blocks_f32_avx2, mf_sgd_blocks_f32_avx512,
#endif
};
static const mf_blocks_f64_fn blocks_f64[] = {
    mf_sgd_blocks_f64_base,
#ifdef MF_HAVE_X86_VARIANTS
    mf_sgd_blocks_f64_avx2, mf_sgd_blocks_f64_avx512,
#endif
};

static int current_isa = -1;

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
    int mask = mf_isa_available();
    if (isa > MF_ISA_AVX512) isa = MF_ISA_AVX512;
    while (isa > 0 && !(mask & (1 << isa))) --isa;
    if (isa < 0) isa = 0;
    current_isa = isa;
    return isa;
}

int mf_isa_current(void)
{
    /* Default: AVX2+FMA, not AVX-512: on the AMD EPYC (AVX-512 capable) we measured
     * the AVX-512 variant slower (25.5 vs 36.1 M updates/s at k=64, bench notes), as
     * 512-bit vectors gain nothing on rows of 64-128 floats. MFSGD_KERNEL=avx512 opts in. */
    if (current_isa < 0) mf_isa_select(MF_ISA_AVX2);
    return current_isa;
}

const char *mf_isa_name(int isa)
{
    switch (isa) {
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

void mf_sgd_blocks_f32(int32_t *u, int32_t *it, float *r, const int64_t *indptr,
                       const int64_t *blocks, int64_t n_blocks, const uint64_t *seeds,
                       float *P, float *Q, float *bu, float *bi, float *Gu, float *Gi, int64_t k,
                       const mf_hyper *h, double *sse_out)
{
    blocks_f32[mf_isa_current()](u, it, r, indptr, blocks, n_blocks, seeds, P, Q, bu, bi,
                                 Gu, Gi, k, h, sse_out);
}

void mf_sgd_blocks_f64(int32_t *u, int32_t *it, double *r, const int64_t *indptr,
                       const int64_t *blocks, int64_t n_blocks, const uint64_t *seeds,
                       double *P, double *Q, double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                       const mf_hyper *h, double *sse_out)
{
    blocks_f64[mf_isa_current()](u, it, r, indptr, blocks, n_blocks, seeds, P, Q, bu, bi,
                                 Gu, Gi, k, h, sse_out);
}
