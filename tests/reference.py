"""Slow, obviously-correct NumPy oracle: one SGD epoch written line by line from the
update rules in the README. The compiled kernel must match it."""

from __future__ import annotations

import numpy as np


def sgd_epoch_reference(users, items, ratings, P, Q, bu, bi, mu, lr, reg_f, reg_b, *,
                        use_bias=True, nonneg=False, dtype=np.float64):
    """Return updated copies (P, Q, bu, bi) and the SSE, visiting ratings in the given order.

    Arithmetic is done in ``dtype`` (float32 to mirror the float32 kernel)."""
    t = np.dtype(dtype).type
    P, Q = P.astype(dtype), Q.astype(dtype)
    bu, bi = bu.astype(dtype), bi.astype(dtype)
    mu, lr, reg_f, reg_b = t(mu), t(lr), t(reg_f), t(reg_b)
    sse = 0.0
    for u, i, r in zip(users, items, ratings):
        pred = mu + bu[u] + bi[i] + np.dot(P[u], Q[i])
        e = t(r) - pred
        sse += float(e) * float(e)
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
                            *, use_bias=True):
    """AdaGrad with one accumulator per row (LibMF's variant), line by line: each row
    moves by lr / sqrt(G) times its descent direction, G taken before this step; then G
    grows by the mean squared gradient over the row's values (factors, plus the bias)."""
    P, Q, bu, bi, Gu, Gi = (a.astype(np.float64) for a in (P, Q, bu, bi, Gu, Gi))
    k = P.shape[1]
    n_vals = k + (1 if use_bias else 0)
    for u, i, r in zip(users, items, ratings):
        e = r - (mu + bu[u] + bi[i] + P[u] @ Q[i])
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
