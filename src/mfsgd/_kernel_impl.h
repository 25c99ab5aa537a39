/* Body of the SGD kernel, included by _kernel.c once per (type, instruction set).
 * Expects: MF_T (float/double), MF_NAME(x) (symbol name), MF_TARGET (function attribute). */

/* One pass over positions [start, stop). Kept free of calls, divisions and bounds
 * checks; the dot product is a SIMD reduction (omp simd with -fopenmp-simd: no
 * OpenMP runtime, and unlike -ffast-math it leaves isfinite and NaN semantics alone). */
MF_TARGET static double MF_NAME(sgd_run)(const int32_t *restrict u, const int32_t *restrict it,
                                         const MF_T *restrict r, int64_t start, int64_t stop,
                                         MF_T *restrict P, MF_T *restrict Q,
                                         MF_T *restrict bu, MF_T *restrict bi,
                                         MF_T *restrict Gu, MF_T *restrict Gi,
                                         int64_t k, const mf_hyper *h)
{
    const MF_T mu = (MF_T)h->mu, lr = (MF_T)h->lr;
    const MF_T reg_f = (MF_T)h->reg_f, reg_b = (MF_T)h->reg_b;
    const int use_bias = h->use_bias, nonneg = h->nonneg;
    const int64_t row_bytes = k * (int64_t)sizeof(MF_T);
    const int wide = (k % MF_LANES) == 0;
    const MF_T inv_n = (MF_T)1 / (MF_T)(k + (use_bias ? 1 : 0));
    double sse = 0.0;
    for (int64_t t = start; t < stop; ++t) {
        /* Prefetch the rows of the rating MF_PREFETCH steps ahead: on models larger
         * than the cache the row loads, not the arithmetic, bound the speed. */
        if (MF_PREFETCH > 0 && t + MF_PREFETCH < stop) {
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

MF_TARGET static void MF_NAME(sgd_blocks)(int32_t *u, int32_t *it, MF_T *r,
                                          const int64_t *indptr, const int64_t *blocks,
                                          int64_t n_blocks, const uint64_t *seeds,
                                          MF_T *P, MF_T *Q, MF_T *bu, MF_T *bi,
                                          MF_T *Gu, MF_T *Gi, int64_t k,
                                          const mf_hyper *h, double *sse_out)
{
    for (int64_t j = 0; j < n_blocks; ++j) {
        const int64_t b = blocks[j], start = indptr[b], stop = indptr[b + 1];
        /* A separate shuffle pass: fusing the Fisher-Yates swaps into the SGD loop was
         * measured slower (27.9 vs 30.1 M updates/s at k=64), the swaps stalling the
         * loads of the ratings ahead. */
        if (seeds && seeds[j])
            MF_SHUFFLE(u + start, it + start, r + start, stop - start, seeds[j]);
        sse_out[j] = MF_NAME(sgd_run)(u, it, r, start, stop, P, Q, bu, bi, Gu, Gi, k, h);
    }
}
