/* Body of the SGD kernel, included by _kernel.c once per (type, instruction set).
 * Expects: MF_T (float/double), MF_NAME(x) (symbol name), MF_TARGET (function attribute). */

/* One pass over positions [start, stop). Kept free of calls, divisions and bounds
 * checks; the dot product is a SIMD reduction (omp simd with -fopenmp-simd: no
 * OpenMP runtime, and unlike -ffast-math it leaves isfinite and NaN semantics alone). */
MF_TARGET MF_ALWAYS_INLINE static inline double
MF_NAME(sgd_body)(const int32_t *restrict u, const int32_t *restrict it, const MF_T *restrict r,
                  int64_t n, MF_T *restrict P, MF_T *restrict Q,
                  MF_T *restrict bu, MF_T *restrict bi, MF_T *restrict Gu, MF_T *restrict Gi,
                  const int64_t k, const int aligned, const mf_hyper *h)
{
    const MF_T mu = (MF_T)h->mu, lr = (MF_T)h->lr;
    const MF_T reg_f = (MF_T)h->reg_f, reg_b = (MF_T)h->reg_b;
    const int use_bias = h->use_bias, nonneg = h->nonneg;
    const int64_t row_bytes = k * (int64_t)sizeof(MF_T);
    const int wide = (k % MF_LANES) == 0;
    const MF_T inv_n = (MF_T)1 / (MF_T)(k + (use_bias ? 1 : 0));
    double sse = 0.0;
    for (int64_t t = 0; t < n; ++t) {
        /* Prefetch the rows of the rating MF_PREFETCH steps ahead: on models larger
         * than the cache the row loads, not the arithmetic, bound the speed. */
        if (MF_PREFETCH > 0 && t + MF_PREFETCH < n) {
            const char *pu = (const char *)(P + (int64_t)u[t + MF_PREFETCH] * k);
            const char *qi = (const char *)(Q + (int64_t)it[t + MF_PREFETCH] * k);
            for (int64_t off = 0; off < row_bytes; off += 64) {
                MF_PREFETCH_W(pu + off);
                MF_PREFETCH_W(qi + off);
            }
        }
        const int64_t ui = u[t], ii = it[t];
        MF_T *restrict p = P + ui * k;
        MF_T *restrict q = Q + ii * k;
        if (aligned) {
            p = (MF_T *)MF_ASSUME_ALIGNED(p);
            q = (MF_T *)MF_ASSUME_ALIGNED(q);
        }
        MF_T dot = 0;
        if (wide) {
            /* Rows are padded to whole cache lines (MF_LANES values), so the dot product
             * runs in fixed chunks with independent partial sums: several vector
             * accumulators instead of one dependency chain of FMAs. */
            MF_T acc[MF_LANES];
#pragma omp simd
            for (int l = 0; l < MF_LANES; ++l) acc[l] = p[l] * q[l];
            for (int64_t f = MF_LANES; f < k; f += MF_LANES) {
#pragma omp simd
                for (int l = 0; l < MF_LANES; ++l) acc[l] += p[f + l] * q[f + l];
            }
#pragma omp simd reduction(+ : dot)
            for (int l = 0; l < MF_LANES; ++l) dot += acc[l];
        } else {
#pragma omp simd reduction(+ : dot)
            for (int64_t f = 0; f < k; ++f) dot += p[f] * q[f];
        }
        const MF_T e = r[t] - (mu + bu[ui] + bi[ii] + dot);
        sse += (double)e * (double)e;
        if (Gu) {
            /* AdaGrad with one accumulator per row (LibMF's variant): row u moves by
             * lr / sqrt(G_u) times its (descent) gradient, then G_u grows by the mean
             * squared gradient over the row's stored values (factors, plus the bias in
             * the biased model). The rate uses G before this step's update. */
            const MF_T ru = lr / MF_SQRT(Gu[ui]), ri = lr / MF_SQRT(Gi[ii]);
            MF_T su = 0, si = 0;
            if (use_bias) {
                const MF_T gbu = e - reg_b * bu[ui], gbi = e - reg_b * bi[ii];
                bu[ui] += ru * gbu;
                bi[ii] += ri * gbi;
                su = gbu * gbu;
                si = gbi * gbi;
            }
#pragma omp simd reduction(+ : su, si)
            for (int64_t f = 0; f < k; ++f) {
                const MF_T pf = p[f], qf = q[f];
                const MF_T gp = e * qf - reg_f * pf, gq = e * pf - reg_f * qf;
                const MF_T np_ = pf + ru * gp, nq_ = qf + ri * gq;
                p[f] = (nonneg && np_ < 0) ? 0 : np_;
                q[f] = (nonneg && nq_ < 0) ? 0 : nq_;
                su += gp * gp;
                si += gq * gq;
            }
            Gu[ui] += su * inv_n;
            Gi[ii] += si * inv_n;
            continue;
        }
        if (use_bias) {
            bu[ui] += lr * (e - reg_b * bu[ui]);
            bi[ii] += lr * (e - reg_b * bi[ii]);
        }
        /* Both rows are updated from their values before this step: pf and qf are
         * read once, then both written. */
        if (nonneg) {
#pragma omp simd
            for (int64_t f = 0; f < k; ++f) {
                const MF_T pf = p[f], qf = q[f];
                const MF_T np_ = pf + lr * (e * qf - reg_f * pf);
                const MF_T nq_ = qf + lr * (e * pf - reg_f * qf);
                p[f] = np_ > 0 ? np_ : 0;
                q[f] = nq_ > 0 ? nq_ : 0;
            }
        } else {
#pragma omp simd
            for (int64_t f = 0; f < k; ++f) {
                const MF_T pf = p[f], qf = q[f];
                p[f] = pf + lr * (e * qf - reg_f * pf);
                q[f] = qf + lr * (e * pf - reg_f * qf);
            }
        }
    }
    return sse;
}

/* One pass over positions [start, stop). When the factor arrays start on a cache line
 * (the wrapper allocates them so) and the padded width is a common one, the body is
 * compiled with k and the alignment known: fully unrolled loops and aligned vector
 * loads and stores, no remainder or peeling code. Any other width or alignment runs
 * the general body; both give the same result. */
MF_TARGET static double MF_NAME(sgd_run)(const int32_t *u, const int32_t *it, const MF_T *r,
                                         int64_t n, MF_T *P, MF_T *Q,
                                         MF_T *bu, MF_T *bi, MF_T *Gu, MF_T *Gi, int64_t k,
                                         const mf_hyper *h)
{
#define MF_RUN_K(K) MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, K, 1, h)
    if ((((uintptr_t)P | (uintptr_t)Q) & 63) == 0) {
        switch (k) {
        case 16: return MF_RUN_K(16);
        case 32: return MF_RUN_K(32);
        case 48: return MF_RUN_K(48);
        case 64: return MF_RUN_K(64);
        case 80: return MF_RUN_K(80);
        case 96: return MF_RUN_K(96);
        case 112: return MF_RUN_K(112);
        case 128: return MF_RUN_K(128);
        default: break;
        }
    }
#undef MF_RUN_K
    return MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, k, 0, h);
}

MF_TARGET static void MF_NAME(sgd_blocks)(const int32_t *u, const int32_t *it, const MF_T *r,
                                          const int64_t *indptr, const int64_t *blocks,
                                          int64_t n_blocks, const uint64_t *seeds,
                                          void *scratch, MF_T *P, MF_T *Q, MF_T *bu,
                                          MF_T *bi, MF_T *Gu, MF_T *Gi, int64_t k,
                                          const mf_hyper *h, double *sse_out)
{
    for (int64_t j = 0; j < n_blocks; ++j) {
        const int64_t b = blocks[j], start = indptr[b], n = indptr[b + 1] - start;
        if (!(seeds && seeds[j])) {
            sse_out[j] = MF_NAME(sgd_run)(u + start, it + start, r + start, n, P, Q, bu, bi,
                                          Gu, Gi, k, h);
            continue;
        }
        /* Shuffled visit: draw a permutation of the block's positions, gather the
         * triples in that order into scratch, run over the copy. Measured on 20 M
         * ratings in cells of ~2k: 0.037 s per pass against 0.083 s for Fisher-Yates
         * swaps of the three arrays in place, and 0.50 vs 0.49 s for an epoch that reads
         * the triples through the permutation instead of copying them. The stored
         * triples are only ever read. */
        MF_T *sr = (MF_T *)scratch;
        int32_t *su = (int32_t *)(sr + n), *si = su + n;
        uint32_t *ord = (uint32_t *)(si + n);
        const int32_t *bu_ = u + start, *bi_ = it + start;
        const MF_T *br_ = r + start;
        /* The block's triples are usually not in cache (blocks are visited in random
         * order) and the gather reads them in random order: request their lines first,
         * so that the loads overlap the drawing of the permutation. */
        for (int64_t t = 0; t < n; t += 64 / sizeof(MF_T)) MF_PREFETCH_R(br_ + t);
        for (int64_t t = 0; t < n; t += 16) {
            MF_PREFETCH_R(bu_ + t);
            MF_PREFETCH_R(bi_ + t);
        }
        mf_permutation(ord, n, seeds[j]);
        for (int64_t t = 0; t < n; ++t) {
            const uint32_t x = ord[t];
            su[t] = bu_[x];
            si[t] = bi_[x];
            sr[t] = br_[x];
        }
        sse_out[j] = MF_NAME(sgd_run)(su, si, sr, n, P, Q, bu, bi, Gu, Gi, k, h);
    }
}
