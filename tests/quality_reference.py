#!/usr/bin/python3
"""quality_reference.py -- the reference figures that tests/test_quality.c embeds.

Makes the same pseudo-random feature sets as the test's make_set() (splitmix64, bit for bit:
the features are rounded to float32 as the test rounds them) and computes, with numpy in
float64 and without the test's code:
  - the Fréchet distance ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), S = numpy.cov
    (unbiased), Tr((S_a S_b)^(1/2)) = sum of sqrt of the eigenvalues (numpy.linalg.eigvalsh,
    negatives as 0) of S_a^(1/2) S_b S_a^(1/2), S_a^(1/2) from numpy.linalg.eigh (scipy's sqrtm
    is not needed);
  - the Inception-style score exp(mean over samples of KL(p(y|x) || mean p)), per sample: a
    second pass, unlike the test's one-pass formula from sums.
Run it (python3 tests/quality_reference.py) and paste its lines into REFERENCE in
tests/test_quality.c when make_set or the cases change.
"""
import numpy as np

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):  # [0, 1), 53 bits
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


def make_set(seed, dim, n, classes, offset):
    """The test's make_set: mu_i = offset + u, A_ij = u - 0.5, rows x = mu + A z with
    z_j = 2u - 1, logits 3 (2u - 1); drawn in that order."""
    g = SplitMix64(seed)
    mu = [offset + g.uniform() for _ in range(dim)]
    a = [[g.uniform() - 0.5 for _ in range(dim)] for _ in range(dim)]
    feats = np.zeros((n, dim), dtype=np.float32)
    logits = np.zeros((n, classes), dtype=np.float32)
    for r in range(n):
        z = [2.0 * g.uniform() - 1.0 for _ in range(dim)]
        for i in range(dim):
            x = mu[i]
            for j in range(dim):
                x += a[i][j] * z[j]
            feats[r, i] = np.float32(x)
        for y in range(classes):
            logits[r, y] = np.float32(3.0 * (2.0 * g.uniform() - 1.0))
    return feats.astype(np.float64), logits.astype(np.float64)


def psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet(fa, fb):
    mu_a, mu_b = fa.mean(axis=0), fb.mean(axis=0)
    s_a, s_b = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    r = psd_sqrt(s_a)
    m = r @ s_b @ r
    w = np.linalg.eigvalsh((m + m.T) / 2)
    root_trace = np.sqrt(np.clip(w, 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * root_trace)


def score(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    pm = p.mean(axis=0)
    kl = (p * (np.log(p) - np.log(pm))).sum(axis=1)
    return float(np.exp(kl.mean()))


# (seed a, seed b, dim, n a, n b, classes, offset of b): the test's CASES, in order
CASES = [
    (1, 2, 5, 40, 60, 7, 0.5),
    (3, 4, 64, 300, 500, 10, 0.25),
    (5, 6, 32, 20, 25, 3, 1.0),  # n < dim: rank-deficient covariances
    (7, 8, 128, 400, 600, 10, 0.1),  # fashion-cnn's feature width
]

for sa, sb, dim, na, nb, classes, off in CASES:
    fa, la = make_set(sa, dim, na, classes, 0.0)
    fb, lb = make_set(sb, dim, nb, classes, off)
    print("    { %d, %d, %d, %d, %d, %d, %.17g, %.17g, %.17g }," %
          (sa, sb, dim, na, nb, classes, off, frechet(fa, fb), score(la)))
