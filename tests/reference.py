"""Slow, obviously-correct NumPy oracle: one SGD epoch written line by line from the
update rules in the README. The compiled kernel must match it."""

from __future__ import annotations

import numpy as np


def sgd_epoch_reference(users, items, ratings, P, Q, bu, bi, mu, lr, reg_f, reg_b, *,
                        use_bias=True, nonneg=False, dtype=np.float64, weights=None):
    """Return updated copies (P, Q, bu, bi) and the SSE, visiting ratings in the given order.

    Arithmetic is done in ``dtype`` (float32 to mirror the float32 kernel). ``weights``
    (sample_weight): the term is w e^2, so e is replaced by w e in each update (the
    regularisation is not weighted) and the SSE is sum w e^2."""
    t = np.dtype(dtype).type
    P, Q = P.astype(dtype), Q.astype(dtype)
    bu, bi = bu.astype(dtype), bi.astype(dtype)
    mu, lr, reg_f, reg_b = t(mu), t(lr), t(reg_f), t(reg_b)
    sse = 0.0
    for n, (u, i, r) in enumerate(zip(users, items, ratings, strict=True)):
        pred = mu + bu[u] + bi[i] + np.dot(P[u], Q[i])
        e = t(r) - pred
        if weights is None:
            sse += float(e) * float(e)
        else:
            sse += float(weights[n]) * float(e) * float(e)
            e = t(weights[n]) * e
        if use_bias:
            bu[u] = bu[u] + lr * (e - reg_b * bu[u])
            bi[i] = bi[i] + lr * (e - reg_b * bi[i])
        pu, qi = P[u].copy(), Q[i].copy()  # both rows move from their values before the step
        P[u] = pu + lr * (e * qi - reg_f * pu)
        Q[i] = qi + lr * (e * pu - reg_f * qi)
        if nonneg:
            np.maximum(P[u], 0, out=P[u])
            np.maximum(Q[i], 0, out=Q[i])
    return P, Q, bu, bi, sse


def rating_loss(r, mu, pu, qi, bu, bi, reg_f, reg_b):
    """The loss term of one rating: (r - r^)^2 + l1 (|u|^2 + |v|^2) + l2 (b^2 + b'^2)."""
    e = r - (mu + bu + bi + np.dot(pu, qi))
    return e * e + reg_f * (np.dot(pu, pu) + np.dot(qi, qi)) + reg_b * (bu * bu + bi * bi)


def adagrad_epoch_reference(users, items, ratings, P, Q, bu, bi, Gu, Gi, mu, lr, reg_f, reg_b,
                            *, use_bias=True, weights=None):
    """AdaGrad with one accumulator per row (LibMF's variant), line by line: each row
    moves by lr / sqrt(G) times its descent direction, G taken before this step; then G
    grows by the mean squared gradient over the row's values (factors, plus the bias)."""
    P, Q, bu, bi, Gu, Gi = (a.astype(np.float64) for a in (P, Q, bu, bi, Gu, Gi))
    k = P.shape[1]
    n_vals = k + (1 if use_bias else 0)
    for n, (u, i, r) in enumerate(zip(users, items, ratings, strict=True)):
        e = r - (mu + bu[u] + bi[i] + P[u] @ Q[i])
        if weights is not None:
            e = weights[n] * e
        ru, ri = lr / np.sqrt(Gu[u]), lr / np.sqrt(Gi[i])
        gp, gq = e * Q[i] - reg_f * P[u], e * P[u] - reg_f * Q[i]
        su, si = gp @ gp, gq @ gq
        if use_bias:
            gbu, gbi = e - reg_b * bu[u], e - reg_b * bi[i]
            bu[u] += ru * gbu
            bi[i] += ri * gbi
            su, si = su + gbu * gbu, si + gbi * gbi
        P[u] = P[u] + ru * gp
        Q[i] = Q[i] + ri * gq
        Gu[u] += su / n_vals
        Gi[i] += si / n_vals
    return P, Q, bu, bi, Gu, Gi


# ---- ranking losses (BPR, WARP, sampled softmax) --------------------------------------
# The kernel's counter-based generator, re-derived in Python integers: candidate d of
# visiting step t of a segment with draw seed s is draw_item(draw_bits(draw_base(s, t), d)).

_M64 = (1 << 64) - 1


def mix64(z):
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _M64
    return z ^ (z >> 31)


def draw_base(seed, t):
    return mix64(int(seed) ^ (int(t) * 0x9E3779B97F4A7C15 & _M64))


def draw_bits(base, d):
    return mix64((base + (int(d) + 1) * 0xD1B54A32D192ED03) & _M64)


def draw_item(bits, lo, hi, cdf=None):
    """Uniform: lo + floor(high32 * n / 2^32). Weighted: the first j of [lo, hi) whose
    cumulative weight since lo exceeds u * (total weight of the range), u = bits>>11 / 2^53."""
    if cdf is None:
        return lo + (((bits >> 32) * (hi - lo)) >> 32)
    a = cdf[lo]
    y = (float(bits >> 11) * (1.0 / 2.0**53)) * (cdf[hi] - a)
    return lo + min(int(np.searchsorted(cdf[lo + 1:hi + 1] - a, y, side="right")), hi - lo - 1)


MAX_REJECT = 32


def next_negative(base, d, lo, hi, cdf, seen_u, pos):
    """(item or -1, next draw index): redraw the positive and the user's seen items, at
    most MAX_REJECT draws."""
    for _ in range(MAX_REJECT):
        j = draw_item(draw_bits(base, d), lo, hi, cdf)
        d += 1
        if j == pos or j in seen_u:
            continue
        return j, d
    return -1, d


def harmonic(m):
    return float(np.sum(1.0 / np.arange(1, m + 1))) if m > 0 else 0.0


def _softplus(x):
    return x + np.log1p(np.exp(-x)) if x > 0 else np.log1p(np.exp(x))


def rank_epoch_reference(users, items, weights, P, Q, bi, *, loss, seed, lo, hi, lr, reg_f,
                         reg_b, use_bias=True, n_neg=1, max_sampled=10, margin=1.0,
                         logq=False, cdf=None, seen=None, dtype=np.float64, Gu=None,
                         Gi=None):
    """One ranking pass over the interactions in the given order, line by line from the
    update rules (see _kernel_impl.h): returns updated copies (P, Q, bi) and the summed
    loss. ``loss`` is "bpr", "warp" or "softmax"; ``seen``: dict user -> set of items to
    reject as negatives (None: only the positive). Arithmetic in ``dtype`` for the rows
    and scores, BPR's sigmoid and the softmax's exponentials, in float64 for the softmax's
    logits and sums and the rank weight, as the kernel does. ``Gu``/``Gi``: AdaGrad
    accumulators (one per user / item row, updated in place): each row moves at
    lr / sqrt(G) with G read before its step, then G grows by the mean squared gradient
    over the row's values (k factors, plus the item bias)."""
    t = np.dtype(dtype).type
    P, Q, bi = P.astype(dtype), Q.astype(dtype), bi.astype(dtype)
    lr, reg_f, reg_b = t(lr), t(reg_f), t(reg_b)
    k = P.shape[1]
    n_item_vals = t(k + (1 if use_bias else 0))
    total = 0.0

    def pair(u, i, j, g):
        """BPR's and WARP's step of slope g on the pair (i, j)."""
        p, qi, qj = P[u].copy(), Q[i].copy(), Q[j].copy()
        gp = g * (qi - qj) - reg_f * p
        gqi, gqj = g * p - reg_f * qi, -g * p - reg_f * qj
        if Gu is None:
            if use_bias:
                bi[i] = bi[i] + lr * (g - reg_b * bi[i])
                bi[j] = bi[j] + lr * (-g - reg_b * bi[j])
            P[u], Q[i], Q[j] = p + lr * gp, qi + lr * gqi, qj + lr * gqj
            return
        ru, ri, rj = (lr / np.sqrt(G[x]) for G, x in ((Gu, u), (Gi, i), (Gi, j)))
        si = sj = t(0)
        if use_bias:
            gbi, gbj = g - reg_b * bi[i], -g - reg_b * bi[j]
            bi[i], bi[j] = bi[i] + ri * gbi, bi[j] + rj * gbj
            si, sj = gbi * gbi, gbj * gbj
        P[u], Q[i], Q[j] = p + ru * gp, qi + ri * gqi, qj + rj * gqj
        Gu[u] += t(np.sum(gp * gp)) / t(k)
        Gi[i] += (si + t(np.sum(gqi * gqi))) / n_item_vals
        Gi[j] += (sj + t(np.sum(gqj * gqj))) / n_item_vals

    for step, (u, i) in enumerate(zip(users, items, strict=True)):
        u, i = int(u), int(i)
        w = t(1) if weights is None else t(weights[step])
        base = draw_base(seed, step)
        d = 0
        seen_u = seen.get(u, ()) if seen is not None else ()
        if loss == "bpr":
            for _ in range(n_neg):
                j, d = next_negative(base, d, lo, hi, cdf, seen_u, i)
                if j < 0:
                    break
                x = t(np.dot(P[u], Q[i])) - t(np.dot(P[u], Q[j]))
                if use_bias:
                    x = x + (bi[i] - bi[j])
                sx = t(1) / (t(1) + np.exp(t(x)))  # in the model's type, as the kernel
                total += float(w) * _softplus(-float(x))
                pair(u, i, j, w * sx)
        elif loss == "warp":
            si = t(np.dot(P[u], Q[i]))
            if use_bias:
                si = si + bi[i]
            for s in range(1, min(max_sampled, hi - lo - 1) + 1):  # later: weight 0
                j, d = next_negative(base, d, lo, hi, cdf, seen_u, i)
                if j < 0:
                    break
                sj = t(np.dot(P[u], Q[j]))
                if use_bias:
                    sj = sj + bi[j]
                if sj > si - t(margin):
                    g = w * t(harmonic((hi - lo - 1) // s))
                    total += float(g) * (margin - float(si) + float(sj))
                    pair(u, i, j, g)
                    break
        elif loss == "softmax":
            js = [i]
            for _ in range(n_neg):
                j, d = next_negative(base, d, lo, hi, cdf, seen_u, i)
                if j < 0:
                    break
                js.append(j)
            o = []
            for j in js:
                s = t(np.dot(P[u], Q[j]))
                if use_bias:
                    s = s + bi[j]
                s = float(s)
                if logq and cdf is not None:
                    s -= np.log((cdf[j + 1] - cdf[j]) / (cdf[hi] - cdf[lo]))
                o.append(s)
            o = np.array(o)
            e = np.exp((o - o.max()).astype(dtype)).astype(np.float64)
            z = e.sum()
            total += float(w) * (o.max() + np.log(z) - o[0])
            pold = P[u].copy()
            g0 = w * t(1.0 - e[0] / z)
            gp = g0 * Q[i]
            for m in range(1, len(js)):
                gp = gp - (w * t(e[m] / z)) * Q[js[m]]
            if Gu is not None:
                # the positive's row, each negative's (in draw order), then the user's
                for m, j in enumerate(js):
                    gm = g0 if m == 0 else -(w * t(e[m] / z))
                    rq = lr / np.sqrt(Gi[j])
                    sq = t(0)
                    if use_bias:
                        gb = gm - reg_b * bi[j]
                        bi[j] = bi[j] + rq * gb
                        sq = gb * gb
                    gq = gm * pold - reg_f * Q[j]
                    Q[j] = Q[j] + rq * gq
                    Gi[j] += (sq + t(np.sum(gq * gq))) / n_item_vals
                gu = gp - reg_f * pold
                P[u] = pold + (lr / np.sqrt(Gu[u])) * gu
                Gu[u] += t(np.sum(gu * gu)) / t(k)
                continue
            if use_bias:
                bi[i] = bi[i] + lr * (g0 - reg_b * bi[i])
            Q[i] = Q[i] + lr * (g0 * pold - reg_f * Q[i])
            for m in range(1, len(js)):
                gm = w * t(e[m] / z)
                if use_bias:
                    bi[js[m]] = bi[js[m]] + lr * (-gm - reg_b * bi[js[m]])
                Q[js[m]] = Q[js[m]] + lr * (-gm * pold - reg_f * Q[js[m]])
            P[u] = pold + lr * (gp - reg_f * pold)
        else:
            raise ValueError(loss)
    return P, Q, bi, total
