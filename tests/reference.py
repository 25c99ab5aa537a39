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
