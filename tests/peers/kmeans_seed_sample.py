#!/usr/bin/env python3
"""Does k-means++ seeding from a sample cost inertia? The measurement behind kmeans.rs's SEED_POINTS_PER_CLUSTER.

python3 tests/peers/kmeans_seed_sample.py [--n 100000 --dim 512 --k 100 --iterations 20 --seeds 3]
  Planted clusters drawn as `vlmdb bench kmeans` draws them (centre + noise of the same size, normalised).
  For each sample size (points per cluster, and every point) and RNG seed: scikit-learn's greedy k-means++
  (`kmeans_plusplus`) on a uniform sample, then `KMeans(init=those centres, n_init=1, max_iter, tol=0)` on every
  point. Prints seeding time and final inertia per row (`pip install numpy scikit-learn`).
"""
import argparse
import time

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((a.k, a.dim)).astype(np.float32)
    x = centres[np.arange(a.n) % a.k] + rng.standard_normal((a.n, a.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    print("per_cluster  seed  seeding_s  inertia  iterations")
    for per_cluster in [64, 128, 256, None]:
        size = a.n if per_cluster is None else min(a.n, per_cluster * a.k)
        for seed in range(a.seeds):
            rows = np.random.default_rng(seed).choice(a.n, size, replace=False) if size < a.n else np.arange(a.n)
            start = time.perf_counter()
            init, _ = kmeans_plusplus(x[rows], a.k, random_state=seed)
            seeding = time.perf_counter() - start
            km = KMeans(a.k, init=init, n_init=1, max_iter=a.iterations, tol=0).fit(x)
            label = "all" if per_cluster is None else str(per_cluster)
            print(f"{label:>11}  {seed:4d}  {seeding:9.2f}  {km.inertia_:7.0f}  {km.n_iter_:10d}", flush=True)


if __name__ == "__main__":
    main()
