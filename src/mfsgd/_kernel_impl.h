/* Body of the SGD kernel, included by _kernel.c once per (type, instruction set).
 * Expects: MF_T (float/double), MF_SQRT and MF_EXP (its sqrt and exp), MF_LANES (values
 * per 64-byte line), MF_NAME(x) (symbol name), MF_TARGET (function attribute), and
 * _kernel.c's MF_PREFETCH, MF_PREFETCH_R/W, MF_ASSUME_ALIGNED and MF_ALWAYS_INLINE. */

/* Dot product of two rows, in fixed chunks of MF_LANES with independent partial sums
 * when k is a multiple of MF_LANES (the rows are padded so). */
MF_TARGET MF_ALWAYS_INLINE static inline MF_T
MF_NAME(rdot)(const MF_T *restrict p, const MF_T *restrict q, const int64_t k, const int wide)
{
    MF_T dot = 0;
    if (wide) {
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
    return dot;
}

/* The factor rows of one squared step, u and v both from their values before it. */
MF_TARGET MF_ALWAYS_INLINE static inline void
MF_NAME(sq_rows)(MF_T *restrict p, MF_T *restrict q, const MF_T e, const MF_T lr,
                 const MF_T reg_f, const int64_t k)
{
#pragma omp simd
    for (int64_t f = 0; f < k; ++f) {
        const MF_T pf = p[f], qf = q[f];
        p[f] = pf + lr * (e * qf - reg_f * pf);
        q[f] = qf + lr * (e * pf - reg_f * qf);
    }
}

/* The plain squared step (no AdaGrad, no bound, unweighted) of two consecutive ratings
 * that share no row, written as two independent chains: both dot products first, then
 * both errors, then both updates. Sequentially, the second dot product's loads wait
 * behind the first rating's reduction and stores in the reorder window; here the two
 * reductions overlap. Neither rating reads a value the other writes, so every
 * operation is the one the sequential loop performs, in the same order per rating, and
 * the SSE adds a's term before b's: the result is bit-identical. */
MF_TARGET MF_ALWAYS_INLINE static inline double
MF_NAME(sq_pair)(MF_T *restrict pa, MF_T *restrict qa, MF_T *restrict pb, MF_T *restrict qb,
                 MF_T *restrict bua, MF_T *restrict bia, MF_T *restrict bub,
                 MF_T *restrict bib, const MF_T ra, const MF_T rb, const MF_T mu,
                 const MF_T lr, const MF_T reg_f, const MF_T reg_b, const int use_bias,
                 const int64_t k, double sse)
{
    /* rdot's chunks for both pairs in one loop, so that their FMAs interleave */
    MF_T acc_a[MF_LANES], acc_b[MF_LANES];
#pragma omp simd
    for (int l = 0; l < MF_LANES; ++l) {
        acc_a[l] = pa[l] * qa[l];
        acc_b[l] = pb[l] * qb[l];
    }
    for (int64_t f = MF_LANES; f < k; f += MF_LANES) {
#pragma omp simd
        for (int l = 0; l < MF_LANES; ++l) {
            acc_a[l] += pa[f + l] * qa[f + l];
            acc_b[l] += pb[f + l] * qb[f + l];
        }
    }
    MF_T dot_a = 0, dot_b = 0;
#pragma omp simd reduction(+ : dot_a)
    for (int l = 0; l < MF_LANES; ++l) dot_a += acc_a[l];
#pragma omp simd reduction(+ : dot_b)
    for (int l = 0; l < MF_LANES; ++l) dot_b += acc_b[l];
    const MF_T ea = ra - (mu + *bua + *bia + dot_a);
    const MF_T eb = rb - (mu + *bub + *bib + dot_b);
    sse += (double)ea * (double)ea;
    sse += (double)eb * (double)eb;
    if (use_bias) {
        *bua += lr * (ea - reg_b * *bua);
        *bia += lr * (ea - reg_b * *bia);
        *bub += lr * (eb - reg_b * *bub);
        *bib += lr * (eb - reg_b * *bib);
    }
    MF_NAME(sq_rows)(pa, qa, ea, lr, reg_f, k);
    MF_NAME(sq_rows)(pb, qb, eb, lr, reg_f, k);
    return sse;
}

/* One pass over n ratings: u, it, r (and wt) point at the first of them, in visiting
 * order (a stored segment or a gathered copy). Kept free of calls, divisions and bounds
 * checks; the dot product is a SIMD reduction (omp simd with -fopenmp-simd: no
 * OpenMP runtime, and unlike -ffast-math it leaves isfinite and NaN semantics alone). */
MF_TARGET MF_ALWAYS_INLINE static inline double
MF_NAME(sgd_body)(const int32_t *restrict u, const int32_t *restrict it, const MF_T *restrict r,
                  int64_t n, MF_T *restrict P, MF_T *restrict Q,
                  MF_T *restrict bu, MF_T *restrict bi, MF_T *restrict Gu, MF_T *restrict Gi,
                  const int64_t k, const int aligned, const mf_hyper *h,
                  const MF_T *restrict wt, const int weighted)
{
    const MF_T mu = (MF_T)h->mu, lr = (MF_T)h->lr;
    const MF_T reg_f = (MF_T)h->reg_f, reg_b = (MF_T)h->reg_b;
    const int use_bias = h->use_bias, nonneg = h->nonneg;
    const int64_t row_bytes = k * (int64_t)sizeof(MF_T);
    const int wide = (k % MF_LANES) == 0;
    /* AdaGrad's mean is over the row's values, not the zero padding of its stored width. */
    const int64_t kv = h->n_factors > 0 ? h->n_factors : k;
    const MF_T inv_n = (MF_T)1 / (MF_T)(kv + (use_bias ? 1 : 0));
    double sse = 0.0;
    /* Two ratings per step when they share no row (see sq_pair); a rating whose
     * successor shares a row with it takes the one-rating path. */
    const int pairs = !Gu && !nonneg && !weighted && wide;
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
        if (pairs && t + 1 < n) {
            const int64_t ua = u[t], ia = it[t], ub = u[t + 1], ib = it[t + 1];
            if (ua != ub && ia != ib) {
                if (MF_PREFETCH > 0 && t + 1 + MF_PREFETCH < n) {
                    const char *pu = (const char *)(P + (int64_t)u[t + 1 + MF_PREFETCH] * k);
                    const char *qi = (const char *)(Q + (int64_t)it[t + 1 + MF_PREFETCH] * k);
                    for (int64_t off = 0; off < row_bytes; off += 64) {
                        MF_PREFETCH_W(pu + off);
                        MF_PREFETCH_W(qi + off);
                    }
                }
                MF_T *pa = P + ua * k, *qa = Q + ia * k, *pb = P + ub * k, *qb = Q + ib * k;
                if (aligned) {
                    pa = (MF_T *)MF_ASSUME_ALIGNED(pa);
                    qa = (MF_T *)MF_ASSUME_ALIGNED(qa);
                    pb = (MF_T *)MF_ASSUME_ALIGNED(pb);
                    qb = (MF_T *)MF_ASSUME_ALIGNED(qb);
                }
                sse = MF_NAME(sq_pair)(pa, qa, pb, qb, bu + ua, bi + ia, bu + ub, bi + ib,
                                       r[t], r[t + 1], mu, lr, reg_f, reg_b, use_bias, k, sse);
                ++t; /* and the loop's own: two ratings */
                continue;
            }
        }
        const int64_t ui = u[t], ii = it[t];
        MF_T *restrict p = P + ui * k;
        MF_T *restrict q = Q + ii * k;
        if (aligned) {
            p = (MF_T *)MF_ASSUME_ALIGNED(p);
            q = (MF_T *)MF_ASSUME_ALIGNED(q);
        }
        /* Rows are padded to whole cache lines (MF_LANES values), so the dot product
         * runs in fixed chunks with independent partial sums (rdot): several vector
         * accumulators instead of one dependency chain of FMAs. */
        const MF_T dot = MF_NAME(rdot)(p, q, k, wide);
        MF_T e = r[t] - (mu + bu[ui] + bi[ii] + dot);
        if (weighted) {
            /* sample_weight: the rating's term is w e^2, so w multiplies e in every
             * gradient (not the regularisation); the SSE is the weighted one. A separate
             * compiled instance: the unweighted loop is the same code as before. */
            sse += (double)wt[t] * (double)e * (double)e;
            e = wt[t] * e;
        } else {
            sse += (double)e * (double)e;
        }
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
            MF_NAME(sq_rows)(p, q, e, lr, reg_f, k);
        }
    }
    return sse;
}

/* One pass over n ratings, as sgd_body. When the factor arrays start on a cache line
 * (the wrapper allocates them so) and the padded width is a common one, the body is
 * compiled with k and the alignment known: fully unrolled loops and aligned vector
 * loads and stores, no remainder or peeling code. Any other width or alignment runs
 * the general body. Both perform the same steps, but with FMA (-ffp-contract=fast) the
 * compiler fuses each instance's multiply-adds its own way, so their results can differ
 * in the last bits (they are bit-identical in the baseline variant, which has no FMA).
 * A fit is reproducible because its arrays are always aligned (the wrapper allocates
 * them so): the same model always runs the same instance. rank_run dispatches alike. */
MF_TARGET static double MF_NAME(sgd_run)(const int32_t *u, const int32_t *it, const MF_T *r,
                                         int64_t n, MF_T *P, MF_T *Q,
                                         MF_T *bu, MF_T *bi, MF_T *Gu, MF_T *Gi, int64_t k,
                                         const mf_hyper *h, const MF_T *wt)
{
    if (wt) {
#define MF_RUN_K(K) MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, K, 1, h, wt, 1)
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
        return MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, k, 0, h, wt, 1);
    }
#define MF_RUN_K(K) MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, K, 1, h, NULL, 0)
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
    return MF_NAME(sgd_body)(u, it, r, n, P, Q, bu, bi, Gu, Gi, k, 0, h, NULL, 0);
}

/* mf_sgd_segments and mf_sgd_segments_weighted (wt NULL: unweighted) for this instance. */
MF_TARGET static void
MF_NAME(sgd_segments)(const int32_t *u, const int32_t *it, const MF_T *r, const int64_t *seg_ptr,
                      const int64_t *segments, int64_t n_segments, const uint64_t *seeds,
                      void *scratch, MF_T *P, MF_T *Q, MF_T *bu, MF_T *bi, MF_T *Gu, MF_T *Gi,
                      int64_t k, const mf_hyper *h, double *sse_out, const MF_T *wt)
{
    for (int64_t j = 0; j < n_segments; ++j) {
        const int64_t seg = segments[j], start = seg_ptr[seg], n = seg_ptr[seg + 1] - start;
        if (!(seeds && seeds[j])) {
            sse_out[j] = MF_NAME(sgd_run)(u + start, it + start, r + start, n, P, Q, bu, bi,
                                          Gu, Gi, k, h, wt ? wt + start : NULL);
            continue;
        }
        /* Shuffled visit: draw a permutation of the segment's positions, gather the
         * triples in that order into scratch, run over the copy. Measured on 20 M
         * ratings in cells of ~2k: 0.037 s per pass against 0.083 s for Fisher-Yates
         * swaps of the three arrays in place, and 0.50 vs 0.49 s for an epoch that reads
         * the triples through the permutation instead of copying them. The stored
         * triples are only ever read. */
        /* Weighted: the gathered weights come first, the rest as unweighted. */
        MF_T *sw = wt ? (MF_T *)scratch : NULL;
        MF_T *sr = wt ? sw + n : (MF_T *)scratch;
        int32_t *su = (int32_t *)(sr + n), *si = su + n;
        uint32_t *ord = (uint32_t *)(si + n);
        const int32_t *seg_u = u + start, *seg_i = it + start;
        const MF_T *seg_r = r + start;
        /* The segment's triples are usually not in cache (segments are visited in random
         * order) and the gather reads them in random order: request their lines first,
         * so that the loads overlap the drawing of the permutation. */
        for (int64_t t = 0; t < n; t += 64 / sizeof(MF_T)) MF_PREFETCH_R(seg_r + t);
        for (int64_t t = 0; t < n; t += 16) {
            MF_PREFETCH_R(seg_u + t);
            MF_PREFETCH_R(seg_i + t);
        }
        mf_permutation(ord, n, seeds[j]);
        for (int64_t t = 0; t < n; ++t) {
            const uint32_t x = ord[t];
            su[t] = seg_u[x];
            si[t] = seg_i[x];
            sr[t] = seg_r[x];
        }
        if (wt)
            for (int64_t t = 0; t < n; ++t) sw[t] = wt[start + ord[t]];
        sse_out[j] = MF_NAME(sgd_run)(su, si, sr, n, P, Q, bu, bi, Gu, Gi, k, h, sw);
    }
}

/* ==== ranking losses (BPR, WARP, sampled softmax) =====================================
 * Convention, as for the squared loss: each step moves every parameter it touches by
 * -alpha * (1/2) * gradient of that interaction's term
 *     L = 2 w l(s) + lambda1 (sum of |row|^2 over the rows it touches)
 *                  + lambda2 (sum of b'^2 over the item biases it touches),
 * i.e. by -alpha * d/dtheta [w l(s)] - alpha * lambda * theta, with l the loss below.
 * All rows move from their values before the step (the old user row is kept). */

/* One pairwise step with data-term slope g (BPR and WARP): the loss decreases in
 * s_ui - s_uj at rate g, so u moves along g (v_i - v_j), v_i along g u, v_j along -g u. */
MF_TARGET MF_ALWAYS_INLINE static inline void
MF_NAME(pair_step)(MF_T *restrict p, MF_T *restrict qi, MF_T *restrict qj, const MF_T g,
                   const MF_T lr, const MF_T reg_f, const int64_t k)
{
#pragma omp simd
    for (int64_t f = 0; f < k; ++f) {
        const MF_T pf = p[f], qif = qi[f], qjf = qj[f];
        p[f] = pf + lr * (g * (qif - qjf) - reg_f * pf);
        qi[f] = qif + lr * (g * pf - reg_f * qif);
        qj[f] = qjf + lr * (-g * pf - reg_f * qjf);
    }
}

/* pair_step under AdaGrad (Gu, Gi of mf_rank_segments): each of the three rows moves at
 * lr / sqrt(G) of its own accumulator, read before the step, then G grows by the mean
 * squared gradient over the row's stored values (k factors; an item row's bias too in the
 * biased model). gu, gi, gj: the three rows' accumulators. */
MF_TARGET MF_ALWAYS_INLINE static inline void
MF_NAME(pair_step_ada)(MF_T *restrict p, MF_T *restrict qi, MF_T *restrict qj,
                       MF_T *restrict bi, const int64_t ii, const int64_t j,
                       MF_T *restrict gu, MF_T *restrict gi, MF_T *restrict gj, const MF_T g,
                       const MF_T lr, const MF_T reg_f, const MF_T reg_b, const int use_bias,
                       const int64_t k, const int64_t kv)
{
    const MF_T ru = lr / MF_SQRT(*gu), ri = lr / MF_SQRT(*gi), rj = lr / MF_SQRT(*gj);
    MF_T su = 0, si = 0, sj = 0;
    if (use_bias) {
        const MF_T gbi = g - reg_b * bi[ii], gbj = -g - reg_b * bi[j];
        bi[ii] += ri * gbi;
        bi[j] += rj * gbj;
        si = gbi * gbi;
        sj = gbj * gbj;
    }
#pragma omp simd reduction(+ : su, si, sj)
    for (int64_t f = 0; f < k; ++f) {
        const MF_T pf = p[f], qif = qi[f], qjf = qj[f];
        const MF_T gp = g * (qif - qjf) - reg_f * pf;
        const MF_T gqi = g * pf - reg_f * qif, gqj = -g * pf - reg_f * qjf;
        p[f] = pf + ru * gp;
        qi[f] = qif + ri * gqi;
        qj[f] = qjf + rj * gqj;
        su += gp * gp;
        si += gqi * gqi;
        sj += gqj * gqj;
    }
    const MF_T ni = (MF_T)(kv + (use_bias ? 1 : 0));
    *gu += su / (MF_T)kv;
    *gi += si / ni;
    *gj += sj / ni;
}

/* The move of one pairwise step of slope g (BPR's and WARP's): positive item ii, negative
 * j, user ui; at the constant rate, or under AdaGrad when Gu is not NULL. */
MF_TARGET MF_ALWAYS_INLINE static inline void
MF_NAME(pair_move)(MF_T *restrict p, MF_T *restrict qi, MF_T *restrict qj, MF_T *restrict bi,
                   MF_T *restrict Gu, MF_T *restrict Gi, const int64_t ui, const int64_t ii,
                   const int64_t j, const MF_T g, const MF_T lr, const MF_T reg_f,
                   const MF_T reg_b, const int use_bias, const int64_t k, const int64_t kv)
{
    if (Gu) {
        MF_NAME(pair_step_ada)(p, qi, qj, bi, ii, j, Gu + ui, Gi + ii, Gi + j, g, lr, reg_f,
                               reg_b, use_bias, k, kv);
        return;
    }
    if (use_bias) {
        bi[ii] += lr * (g - reg_b * bi[ii]);
        bi[j] += lr * (-g - reg_b * bi[j]);
    }
    MF_NAME(pair_step)(p, qi, qj, g, lr, reg_f, k);
}

/* gp -= g q over k values: softmax's sum over the negatives. A function of its own, with
 * restrict rows: written inline in the loop over negatives, gcc unrolled that loop and
 * jammed the two row loops into one scalar loop, a third of softmax's time (perf). */
MF_TARGET MF_ALWAYS_INLINE static inline void
MF_NAME(sub_scaled)(MF_T *restrict gp, const MF_T g, const MF_T *restrict q, const int64_t k)
{
#pragma omp simd
    for (int64_t f = 0; f < k; ++f) gp[f] -= g * q[f];
}

/* One pass over n interactions of one segment whose negatives come from [lo, hi). */
MF_TARGET MF_ALWAYS_INLINE static inline double
MF_NAME(rank_body)(const int32_t *restrict u, const int32_t *restrict it, const MF_T *restrict w,
                   int64_t n, const int32_t lo, const int32_t hi, const uint64_t seed,
                   const mf_sampler *smp, MF_T *restrict work, MF_T *restrict P,
                   MF_T *restrict Q, MF_T *restrict bi, MF_T *restrict Gu, MF_T *restrict Gi,
                   const int64_t k, const int aligned, const mf_rank_hyper *h,
                   const int want_loss, const int loss_id, const int poll_draws)
{
    const MF_T lr = (MF_T)h->lr, reg_f = (MF_T)h->reg_f, reg_b = (MF_T)h->reg_b;
    const int use_bias = h->use_bias;
    const int64_t kv = h->n_factors > 0 ? h->n_factors : k; /* AdaGrad: as in sgd_body */
    const int wide = (k % MF_LANES) == 0;
    const int64_t row_bytes = k * (int64_t)sizeof(MF_T);
    const double *cdf = smp->cdf;
    /* WARP: the rank of a positive is estimated as floor((N - 1) / trials) with N the
     * items of the range; its weight Phi(r) = H_r (Weston et al. 2011, the harmonic
     * weighting that makes the loss approximate precision at the top). The weights of
     * the first 64 trial counts are tabulated per segment, later ones computed. */
    double rank_w[64];
    const int max_sampled = h->max_sampled;
    const int max_draws = max_sampled < hi - lo - 1 ? max_sampled : hi - lo - 1;
    if (loss_id == MF_LOSS_WARP)
        for (int s = 1; s <= max_sampled && s <= 64; ++s)
            rank_w[s - 1] = mf_harmonic(((int64_t)(hi - lo) - 1) / s);
    double total = 0.0;
    /* Draw 0 of each step, with its verdict, is computed MF_PREFETCH steps ahead (the
     * draws are counter-based, so known in advance): its row is then prefetched, and the
     * seen-list search, a chain of dependent loads that perf put at a quarter of the BPR
     * loop, runs off the critical path. Its list was prefetched another MF_PREFETCH
     * steps before. Up to 16 evenly spaced lines: the top of the search tree. */
#if MF_PREFETCH > 0
    /* The rows of a step's later draws (draws 1..ahead) are prefetched with draw 0's:
     * bpr's and softmax's further negatives (WARP's second draw was slower: most steps
     * stop at the first). Only when the range's rows are beyond L2 (on MovieLens 100K,
     * 430 KB of rows, it cost 4-9%), and for uniform draws (a CDF draw is a search of
     * its own). A rejected draw only wastes its prefetch. */
    int ahead = 0;
    if (!cdf && (int64_t)(hi - lo) * row_bytes > MF_AHEAD_BYTES) {
        ahead = loss_id == MF_LOSS_WARP ? 0 : h->n_neg - 1;
        if (ahead > MF_MAX_AHEAD) ahead = MF_MAX_AHEAD;
    }
    int64_t pre_j[MF_PREFETCH];
    int pre_ok[MF_PREFETCH];
    for (int64_t t = 0; t < MF_PREFETCH && t < n; ++t) {
        pre_j[t] = mf_draw_item(mf_draw_bits(mf_draw_base(seed, t), 0), lo, hi, cdf);
        pre_ok[t] = mf_acceptable(smp, u[t], it[t], pre_j[t]);
    }
#endif
    for (int64_t t = 0; t < n; ++t) {
        if ((t & (MF_POLL_ROWS - 1)) == 0 && h->stop && *h->stop) break;
#if MF_PREFETCH > 0
        const int64_t my_j = pre_j[t % MF_PREFETCH];
        const int my_ok = pre_ok[t % MF_PREFETCH];
        if (smp->seen_bits && !cdf && t + 2 * MF_PREFETCH < n) {
            /* The bitmap word of that draw, another MF_PREFETCH steps earlier: loaded at
             * the look-ahead step it still missed the cache on a fifth of the BPR loop's
             * samples (perf). Uniform draws only: a CDF draw is a search of its own. */
            const int64_t tb = t + 2 * MF_PREFETCH;
            const int64_t jb = mf_draw_item(mf_draw_bits(mf_draw_base(seed, tb), 0), lo, hi, NULL);
            MF_PREFETCH_R(smp->seen_bits + (int64_t)u[tb] * smp->seen_words + (jb >> 6));
        }
        if (smp->seen_ptr && !smp->seen_bits && t + 2 * MF_PREFETCH < n) {
            const int64_t ua = u[t + 2 * MF_PREFETCH];
            const int64_t s0 = smp->seen_ptr[ua], len = smp->seen_ptr[ua + 1] - s0;
            const char *sl = (const char *)(smp->seen + s0);
            const int64_t bytes = len * 4, step = ((bytes >> 10) + 1) << 6;
            for (int64_t off = 0; off < bytes; off += step) MF_PREFETCH_R(sl + off);
        }
        if (t + MF_PREFETCH < n) {
            const int64_t ta = t + MF_PREFETCH;
            const uint64_t ba = mf_draw_base(seed, ta);
            const int64_t ja = mf_draw_item(mf_draw_bits(ba, 0), lo, hi, cdf);
            pre_j[t % MF_PREFETCH] = ja;
            pre_ok[t % MF_PREFETCH] = mf_acceptable(smp, u[ta], it[ta], ja);
            const char *pu = (const char *)(P + (int64_t)u[ta] * k);
            const char *qi = (const char *)(Q + (int64_t)it[ta] * k);
            const char *qj = (const char *)(Q + ja * k);
            for (int64_t off = 0; off < row_bytes; off += 64) {
                MF_PREFETCH_W(pu + off);
                MF_PREFETCH_W(qi + off);
                MF_PREFETCH_W(qj + off);
            }
            for (int a = 1; a <= ahead; ++a) {
                const char *qx = (const char *)(Q + mf_draw_item(mf_draw_bits(ba, a), lo, hi,
                                                                 NULL) * k);
                for (int64_t off = 0; off < row_bytes; off += 64) MF_PREFETCH_W(qx + off);
            }
        }
#else
        const int64_t my_j = -1;
        const int my_ok = 0;
#endif
        const int64_t ui = u[t], ii = it[t];
        const MF_T wt = w ? w[t] : (MF_T)1;
        const uint64_t base = mf_draw_base(seed, t);
        int64_t d = 0; /* draws used so far in this step */
        MF_T *restrict p = P + ui * k;
        MF_T *restrict qi = Q + ii * k;
        if (aligned) {
            p = (MF_T *)MF_ASSUME_ALIGNED(p);
            qi = (MF_T *)MF_ASSUME_ALIGNED(qi);
        }
        if (loss_id == MF_LOSS_BPR) {
            /* BPR (Rendle et al. 2009), l = -ln sigma(x), x = s_ui - s_uj, with one fresh
             * negative per pairwise step; n_neg steps per positive, one after another. */
            for (int m = 0; m < h->n_neg; ++m) {
                const int64_t j = mf_next_negative(base, &d, lo, hi, smp, ui, ii, my_j, my_ok);
                if (j < 0) break;
                MF_T *restrict qj = Q + j * k;
                if (aligned) qj = (MF_T *)MF_ASSUME_ALIGNED(qj);
                MF_T x = MF_NAME(rdot)(p, qi, k, wide) - MF_NAME(rdot)(p, qj, k, wide);
                if (use_bias) x += bi[ii] - bi[j];
                /* -dl/dx = sigma(-x) = 1 / (1 + e^x), in the model's type (expf for
                 * float32: exp in double was a sixth of the loop); e^x = inf gives 0. */
                const MF_T sx = (MF_T)1 / ((MF_T)1 + MF_EXP(x));
                if (want_loss) total += (double)wt * mf_softplus(-(double)x);
                MF_NAME(pair_move)(p, qi, qj, bi, Gu, Gi, ui, ii, j, wt * sx, lr, reg_f, reg_b,
                                   use_bias, k, kv);
            }
        } else if (loss_id == MF_LOSS_WARP) {
            /* WARP as in LightFM: draw negatives until one violates the margin,
             * s_uj > s_ui - margin, at most max_sampled; then one hinge step
             * l = Phi(rank) (margin - s_ui + s_uj), the rank estimated from the number of
             * draws it took. No violation: no step (not even regularisation). At most
             * N - 1 draws: a violation found later would weigh Phi(0) = 0 (review 19: with
             * max_sampled = 2**31 - 1 and margin 0, 40 minutes per epoch for nothing). */
            MF_T si = MF_NAME(rdot)(p, qi, k, wide);
            if (use_bias) si += bi[ii];
            for (int s = 1; s <= max_draws; ++s) {
                /* the stop flag, every MF_POLL_DRAWS draws: a positive may draw up to
                 * 2**31 - 1 negatives. Only in the instance for max_sampled above
                 * MF_POLL_DRAWS (poll_draws, a compile-time constant): this test cost
                 * the WARP kernel 1.8% more instructions (callgrind, ML-100K). */
                if (poll_draws && (s & (MF_POLL_DRAWS - 1)) == 0 && *h->stop) break;
                const int64_t j = mf_next_negative(base, &d, lo, hi, smp, ui, ii, my_j, my_ok);
                if (j < 0) break;
                MF_T *restrict qj = Q + j * k;
                if (aligned) qj = (MF_T *)MF_ASSUME_ALIGNED(qj);
                MF_T sj = MF_NAME(rdot)(p, qj, k, wide);
                if (use_bias) sj += bi[j];
                if (sj > si - (MF_T)h->margin) {
                    const double phi = s <= 64 ? rank_w[s - 1]
                                               : mf_harmonic(((int64_t)(hi - lo) - 1) / s);
                    const MF_T g = wt * (MF_T)phi;
                    if (want_loss)
                        total += (double)g * ((double)h->margin - (double)si + (double)sj);
                    MF_NAME(pair_move)(p, qi, qj, bi, Gu, Gi, ui, ii, j, g, lr, reg_f, reg_b,
                                       use_bias, k, kv);
                    break;
                }
            }
        } else {
            /* Sampled softmax over the positive and n_neg drawn negatives,
             * l = -ln(e^{o_0} / sum_m e^{o_m}), o = s (minus ln q_j, the item's sampling
             * probability, with logq: the correction of Bengio & Senecal / TF's
             * sampled_softmax_loss, applied to every logit). Logits and sums in double. */
            int64_t js[MF_MAX_NEG + 1];
            double o[MF_MAX_NEG + 1];
            const int nn = h->n_neg < MF_MAX_NEG ? h->n_neg : MF_MAX_NEG;
            int cnt = 1;
            js[0] = ii;
            for (int m = 0; m < nn; ++m) {
                const int64_t j = mf_next_negative(base, &d, lo, hi, smp, ui, ii, my_j, my_ok);
                if (j < 0) break;
                js[cnt++] = j;
            }
            double omax = -HUGE_VAL;
            for (int m = 0; m < cnt; ++m) {
                const MF_T *q = Q + js[m] * k;
                if (aligned) q = (const MF_T *)MF_ASSUME_ALIGNED(q);
                MF_T s = MF_NAME(rdot)(p, q, k, wide);
                if (use_bias) s += bi[js[m]];
                o[m] = (double)s;
                if (h->logq && cdf)
                    o[m] -= log((cdf[js[m] + 1] - cdf[js[m]]) / (cdf[hi] - cdf[lo]));
                if (o[m] > omax) omax = o[m];
            }
            /* e^(o - max) in the model's type (expf for float32: exp in double was a
             * tenth of the loop), summed in double; the loss in log space, one log. */
            const double o0 = o[0];
            double z = 0.0;
            for (int m = 0; m < cnt; ++m) {
                o[m] = (double)MF_EXP((MF_T)(o[m] - omax));
                z += o[m];
            }
            if (want_loss) total += (double)wt * (omax + log(z) - o0);
            /* slopes: g_0 = w (1 - pi_0) for the positive, g_m = -w pi_m for the others */
            MF_T *restrict pold = work, *restrict gp = work + k;
            const MF_T g0 = wt * (MF_T)(1.0 - o[0] / z);
#pragma omp simd
            for (int64_t f = 0; f < k; ++f) {
                pold[f] = p[f];
                gp[f] = g0 * qi[f];
            }
            for (int m = 1; m < cnt; ++m)
                MF_NAME(sub_scaled)(gp, wt * (MF_T)(o[m] / z), Q + js[m] * k, k);
            if (Gu) {
                /* AdaGrad: the positive's row, each negative's row (a negative drawn twice
                 * moves twice, the second time at its grown G), then the user's. */
                const MF_T ni = (MF_T)(kv + (use_bias ? 1 : 0));
                for (int m = 0; m < cnt; ++m) {
                    const MF_T gm = m == 0 ? g0 : -(wt * (MF_T)(o[m] / z));
                    MF_T *q = Q + js[m] * k;
                    const MF_T rq = lr / MF_SQRT(Gi[js[m]]);
                    MF_T sq = 0;
                    if (use_bias) {
                        const MF_T gb = gm - reg_b * bi[js[m]];
                        bi[js[m]] += rq * gb;
                        sq = gb * gb;
                    }
#pragma omp simd reduction(+ : sq)
                    for (int64_t f = 0; f < k; ++f) {
                        const MF_T gq = gm * pold[f] - reg_f * q[f];
                        q[f] += rq * gq;
                        sq += gq * gq;
                    }
                    Gi[js[m]] += sq / ni;
                }
                const MF_T ru = lr / MF_SQRT(Gu[ui]);
                MF_T su = 0;
#pragma omp simd reduction(+ : su)
                for (int64_t f = 0; f < k; ++f) {
                    const MF_T g_ = gp[f] - reg_f * pold[f];
                    p[f] = pold[f] + ru * g_;
                    su += g_ * g_;
                }
                Gu[ui] += su / (MF_T)kv;
                continue;
            }
            if (use_bias) bi[ii] += lr * (g0 - reg_b * bi[ii]);
#pragma omp simd
            for (int64_t f = 0; f < k; ++f) qi[f] += lr * (g0 * pold[f] - reg_f * qi[f]);
            for (int m = 1; m < cnt; ++m) {
                const MF_T gm = wt * (MF_T)(o[m] / z);
                MF_T *q = Q + js[m] * k;
                if (use_bias) bi[js[m]] += lr * (-gm - reg_b * bi[js[m]]);
#pragma omp simd
                for (int64_t f = 0; f < k; ++f) q[f] += lr * (-gm * pold[f] - reg_f * q[f]);
            }
#pragma omp simd
            for (int64_t f = 0; f < k; ++f) p[f] = pold[f] + lr * (gp[f] - reg_f * pold[f]);
        }
    }
    return total;
}

MF_TARGET static double MF_NAME(rank_run)(const int32_t *u, const int32_t *it, const MF_T *w,
                                          int64_t n, int32_t lo, int32_t hi, uint64_t seed,
                                          const mf_sampler *smp, MF_T *work, MF_T *P, MF_T *Q,
                                          MF_T *bi, MF_T *Gu, MF_T *Gi, int64_t k,
                                          const mf_rank_hyper *h, int want_loss)
{
    /* The loss is a compile-time constant of each instance: one loss's loop alone keeps
     * its values in registers (with all three inlined, the BPR loop spilled to the
     * stack). */
#define MF_RUN_K(K)                                                                         \
    (h->loss == MF_LOSS_BPR                                                                 \
         ? MF_NAME(rank_body)(u, it, w, n, lo, hi, seed, smp, work, P, Q, bi, Gu, Gi, K, 1, h, \
                              want_loss, MF_LOSS_BPR, 0)                                    \
     : h->loss == MF_LOSS_WARP                                                              \
         ? MF_NAME(rank_body)(u, it, w, n, lo, hi, seed, smp, work, P, Q, bi, Gu, Gi, K, 1, h, \
                              want_loss, MF_LOSS_WARP, 0)                                   \
         : MF_NAME(rank_body)(u, it, w, n, lo, hi, seed, smp, work, P, Q, bi, Gu, Gi, K, 1, h, \
                              want_loss, MF_LOSS_SOFTMAX, 0))
    if (h->stop && h->loss == MF_LOSS_WARP && h->max_sampled > MF_POLL_DRAWS)
        /* A search of up to 2**31 - 1 draws per positive, the flag polled in it: the
         * generic instance (the fixed widths would double), its cost beside such
         * searches nil. */
        return MF_NAME(rank_body)(u, it, w, n, lo, hi, seed, smp, work, P, Q, bi, Gu, Gi, k, 0,
                                  h, want_loss, MF_LOSS_WARP, 1);
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
    return MF_NAME(rank_body)(u, it, w, n, lo, hi, seed, smp, work, P, Q, bi, Gu, Gi, k, 0, h,
                              want_loss, h->loss, 0);
}

/* mf_rank_segments for this instance. */
MF_TARGET static void
MF_NAME(rank_segments)(const int32_t *u, const int32_t *it, const MF_T *w, const int64_t *seg_ptr,
                       const int64_t *segments, int64_t n_segments, const uint64_t *seeds,
                       const uint64_t *draw_seeds, const mf_sampler *smp, void *scratch,
                       MF_T *work, MF_T *P, MF_T *Q, MF_T *bi, MF_T *Gu, MF_T *Gi, int64_t k,
                       const mf_rank_hyper *h, double *loss_out)
{
    for (int64_t j = 0; j < n_segments; ++j) {
        if (h->stop && *h->stop) return; /* the caller discards this call's results */
        const int64_t seg = segments[j], start = seg_ptr[seg], n = seg_ptr[seg + 1] - start;
        const int32_t lo = smp->item_lo[seg], hi = smp->item_hi[seg];
        double loss;
        if (!(seeds && seeds[j])) {
            loss = MF_NAME(rank_run)(u + start, it + start, w ? w + start : NULL, n, lo, hi,
                                     draw_seeds[j], smp, work, P, Q, bi, Gu, Gi, k, h,
                                     loss_out != NULL);
        } else {
            /* Shuffled visit through a gathered copy, as sgd_segments does. */
            MF_T *sw = (MF_T *)scratch;
            int32_t *su = (int32_t *)(sw + n), *si = su + n;
            uint32_t *ord = (uint32_t *)(si + n);
            const int32_t *seg_u = u + start, *seg_i = it + start;
            for (int64_t t = 0; t < n; t += 16) {
                MF_PREFETCH_R(seg_u + t);
                MF_PREFETCH_R(seg_i + t);
            }
            mf_permutation(ord, n, seeds[j]);
            for (int64_t t = 0; t < n; ++t) {
                const uint32_t x = ord[t];
                su[t] = seg_u[x];
                si[t] = seg_i[x];
            }
            if (w)
                for (int64_t t = 0; t < n; ++t) sw[t] = w[start + ord[t]];
            loss = MF_NAME(rank_run)(su, si, w ? sw : NULL, n, lo, hi, draw_seeds[j], smp, work,
                                     P, Q, bi, Gu, Gi, k, h, loss_out != NULL);
        }
        if (loss_out) loss_out[j] = loss;
    }
}
