#!/usr/bin/env python3
"""Benchmark peer for `vlmdb bench kmeans`: the same vectors clustered by scikit-learn and faiss.

python3 kmeans_peer.py --data X.f32 --dim D --k K --iterations N [--threads T] [--seed S]
  scikit-learn KMeans(n_clusters=K, n_init=1, max_iter=N, tol=0, random_state=S) (Lloyd, k-means++) and
  faiss.Kmeans(D, K, niter=N, seed=S + 1, max_points_per_centroid=number of points, so every point is used; faiss's
  default subsamples 256 per centroid), both on T threads. Inertia = sum of squared distances to the nearest
  centroid. Prints one JSON line.
"""
import argparse
import json
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--iterations", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-sklearn", action="store_true")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    x = np.fromfile(a.data, dtype=np.float32).reshape(-1, a.dim)
    report = {}
    import faiss

    faiss.omp_set_num_threads(a.threads)
    km = faiss.Kmeans(a.dim, a.k, niter=a.iterations, seed=a.seed + 1, max_points_per_centroid=len(x))
    start = time.perf_counter()
    km.train(x)
    report["faiss_seconds"] = time.perf_counter() - start
    d, _ = km.index.search(x, 1)
    report["faiss_inertia"] = float(d.sum())
    if not a.skip_sklearn:
        from sklearn.cluster import KMeans

        start = time.perf_counter()
        sk = KMeans(n_clusters=a.k, n_init=1, max_iter=a.iterations, tol=0, random_state=a.seed).fit(x)
        report["sklearn_seconds"] = time.perf_counter() - start
        report["sklearn_inertia"] = float(sk.inertia_)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
