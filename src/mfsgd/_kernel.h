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
} mf_hyper;

/* Instruction-set variants, best last. */
enum { MF_ISA_AUTO = -1, MF_ISA_BASELINE = 0, MF_ISA_AVX2 = 1, MF_ISA_AVX512 = 2 };
/* Under MF_ISA_AUTO (the default), rows of at least this many bytes run the AVX-512
 * variant and narrower rows AVX2 (see mf_isa_for). */
#define MF_AVX512_MIN_ROW_BYTES 256

/* Which variants this build contains and this CPU can run (bit mask of 1 << isa). */
int mf_isa_available(void);
/* Select the variant used from now on; returns the one selected (clamped to what is available). */
int mf_isa_select(int isa);
/* The selection: MF_ISA_AUTO, or the variant forced by mf_isa_select. */
int mf_isa_current(void);
/* The variant that runs rows of row_bytes bytes under the current selection. */
int mf_isa_for(int64_t row_bytes);
const char *mf_isa_name(int isa);

/* Run SGD over the ratings of the listed blocks, one after another. Block j covers
 * positions [indptr[blocks[j]], indptr[blocks[j] + 1]). If seeds is not NULL and
 * seeds[j] != 0, that block is visited in the order of mf_permutation(.., seeds[j])
 * (position start + perm[t] at step t), through a copy made in scratch: 8-byte
 * aligned, MF_SCRATCH_BYTES(longest shuffled block, sizeof(T)) bytes, blocks < 2^32.
 * Otherwise the stored order (scratch may then be NULL). The triples are only read. sse_out[j] receives the block's sum of squared errors as seen
 * during the pass (errors before each update). Gu and Gi (NULL: constant rate) are
 * per-row AdaGrad accumulators, used and updated in place. */
void mf_sgd_blocks_f32(const int32_t *u, const int32_t *it, const float *r,
                       const int64_t *indptr, const int64_t *blocks, int64_t n_blocks,
                       const uint64_t *seeds, void *scratch, float *P, float *Q, float *bu,
                       float *bi, float *Gu, float *Gi, int64_t k, const mf_hyper *h,
                       double *sse_out);
void mf_sgd_blocks_f64(const int32_t *u, const int32_t *it, const double *r,
                       const int64_t *indptr, const int64_t *blocks, int64_t n_blocks,
                       const uint64_t *seeds, void *scratch, double *P, double *Q,
                       double *bu, double *bi, double *Gu, double *Gi, int64_t k,
                       const mf_hyper *h, double *sse_out);

#define MF_SCRATCH_BYTES(n, value_size) ((n) * ((value_size) + 12))

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
#endif
