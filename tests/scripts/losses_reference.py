"""Expected values for the unit tests in src/train/losses.rs, computed with numpy.

Run: /work/peer-venv/bin/python tests/scripts/losses_reference.py
The inputs are fixed small matrices; the printed numbers are pasted into the tests.
"""
import numpy as np

P = np.array([[1.0, 0.5, -0.2], [0.3, 1.0, 0.1], [0.9, -0.4, 0.6]])
N = np.array([[-1.0, 0.2, 0.3], [0.1, -0.8, 0.5], [0.4, 0.4, -1.0], [0.0, 1.0, 1.0]])
S = np.array([[-0.9, 0.1, 0.2]])  # sibling-relation positives (parent level)
O = np.array([[1.0, 0.6, 0.0], [0.2, -0.3, -0.6]])  # other-parent positives
TAU = 0.5
MARGIN = 0.3


def cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def nce(p, n, tau, loob):
    spp = np.exp(cos(p, p) / tau)
    deno_n = np.exp(cos(p, n) / tau).sum(1)
    total = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            d = deno_n[i] + 1e-5 + (0.0 if loob else spp[i, j])
            total += -np.log(spp[i, j] / d)
    return total


def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def triplet(p, n, margin):
    dpp = dist(p, p)
    dpn = dist(p, n)
    total = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i == j:
                continue
            for k in range(len(n)):
                total += max(0.0, dpp[i, j] - dpn[i, k] - margin)
    return total


def parent_triplet(p, s, o, margin):
    dps = dist(p, s)
    dpo = dist(p, o)
    total = 0.0
    for i in range(len(p)):
        for j in range(len(s)):
            for k in range(len(o)):
                total += max(0.0, dps[i, j] - dpo[i, k] - margin)
    return total


print(f"nce   {nce(P, N, TAU, False):.7f}")
print(f"iloob {nce(P, N, TAU, True):.7f}")
print(f"triplet {triplet(P, N, MARGIN):.7f}")
print(f"triplet_margin0 {triplet(P, N, 0.0):.7f}")
print(f"parent {parent_triplet(P, S, O, MARGIN):.7f}")
