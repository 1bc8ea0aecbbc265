#!/usr/bin/env python3
"""Benchmark peer for `vlmdb bench eval` and `vlmdb bench knn`: the same vectors, timed in the Python stack.

eval mode:  python3 retrieval_peer.py eval --texts T.f32 --images I.f32 --dim D --per-image P [--threads N]
            [--device cpu|cuda]
  Texts t belong to image t // P. Computes text->image and image->text R@1/5/10 with the CLIP_benchmark formula
  (scores = texts @ images.T, a boolean positive-pair matrix, and per batch of 64 queries a top-k whose indices
  are one-hot encoded and multiplied with the positives; a query hits when any positive is in its top k), in
  PyTorch float32 on the CPU (default) or, with --device cuda, on the GPU (tensors on torch.device("cuda"), no
  autocast, torch.cuda.synchronize() before each read of the clock, and one untimed warm-up of the product and of
  the ranking on a batch of queries first, so CUDA/cuBLAS start-up is not timed). Also times the bare scores matrix
  product. Prints one JSON line: seconds, matmul_seconds, metrics, device ("cpu", or "cuda: " and
  torch.cuda.get_device_name()), amp (always false). With --device cuda and no usable CUDA device it exits with
  status 2 and a message on stderr.

knn mode:   python3 retrieval_peer.py knn --queries Q.f32 --corpus C.f32 --dim D --k K [--threads N]
            [--hnsw-queries HQ.f32 --hnsw-corpus HC.f32 --exact-ids E.i64 --target-recall R]
  faiss IndexFlatIP exact top-k of every query (same thread count). With --hnsw-*: faiss IndexHNSWFlat(d, 32,
  inner product), efConstruction 200, then efSearch 16..512 until recall@k (against the exact ids given) reaches
  the target; reports that efSearch's queries/s. Prints one JSON line. faiss runs on the CPU whatever --device
  says; the report's "device" is "cpu", or "cpu (faiss)" when --device cuda was given.
"""
import argparse
import json
import time

import numpy as np
from peer_device import make_clock, select_device


def load(path, dim):
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)


def eval_mode(a):
    import torch

    torch.set_num_threads(a.threads)
    device, device_name = select_device(torch, a.device, "retrieval_peer.py")
    clock = make_clock(torch, device)
    texts = torch.from_numpy(load(a.texts, a.dim)).to(device)
    images = torch.from_numpy(load(a.images, a.dim)).to(device)
    image_of = torch.arange(len(texts), device=device) // a.per_image

    def hits_at_k(scores, positives, k, batch=64):
        out = []
        for s in range(0, len(scores), batch):
            sc, pos = scores[s:s + batch], positives[s:s + batch]
            top = torch.topk(sc, k, dim=1)[1]
            onehot = torch.nn.functional.one_hot(top, num_classes=sc.shape[1])
            true_pos = (onehot * pos.view(len(sc), 1, sc.shape[1])).sum(dim=(1, 2))
            out.append(true_pos / pos.sum(dim=1))
        return (torch.cat(out) > 0).float().mean().item()

    if device.type == "cuda":  # untimed warm-up: CUDA context, cuBLAS handle, the kernels the timed work uses
        warm = texts @ images.t()
        warm_pos = torch.zeros_like(warm[:64], dtype=torch.bool)
        warm_pos[torch.arange(len(warm_pos), device=device), image_of[:64]] = True
        hits_at_k(warm[:64], warm_pos, min(10, warm.shape[1]))
        del warm, warm_pos

    start = clock()
    _ = texts @ images.t()
    matmul = clock() - start

    start = clock()
    scores = texts @ images.t()
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(scores), device=device), image_of] = True
    metrics = {}
    for k in (1, 5, 10):
        metrics[f"t2i_r_at_{k}"] = hits_at_k(scores, positives, k)
        metrics[f"i2t_r_at_{k}"] = hits_at_k(scores.t(), positives.t(), k)
    seconds = clock() - start
    print(json.dumps({"seconds": seconds, "matmul_seconds": matmul, "metrics": metrics, "device": device_name,
                      "amp": False}))


def knn_mode(a):
    import faiss

    faiss.omp_set_num_threads(a.threads)
    queries, corpus = load(a.queries, a.dim), load(a.corpus, a.dim)
    index = faiss.IndexFlatIP(a.dim)
    index.add(corpus)
    start = time.perf_counter()
    index.search(queries, a.k)
    report = {"flat_seconds": time.perf_counter() - start}
    if a.hnsw_corpus:
        hq, hc = load(a.hnsw_queries, a.dim), load(a.hnsw_corpus, a.dim)
        exact = np.fromfile(a.exact_ids, dtype=np.int64).reshape(len(hq), a.k)
        index = faiss.IndexHNSWFlat(a.dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        start = time.perf_counter()
        index.add(hc)
        report["hnsw_build_seconds"] = time.perf_counter() - start
        for ef in (16, 32, 64, 128, 256, 512):
            index.hnsw.efSearch = ef
            start = time.perf_counter()
            _, ids = index.search(hq, a.k)
            seconds = time.perf_counter() - start
            recall = np.mean([len(set(ids[i]) & set(exact[i])) / a.k for i in range(len(hq))])
            report.update({"hnsw_ef_search": ef, "hnsw_recall": float(recall), "hnsw_qps": len(hq) / seconds})
            if recall >= a.target_recall:
                break
    report["device"] = "cpu (faiss)" if a.device == "cuda" else "cpu"
    print(json.dumps(report))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["eval", "knn"])
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--texts")
    ap.add_argument("--images")
    ap.add_argument("--per-image", type=int, default=5)
    ap.add_argument("--queries")
    ap.add_argument("--corpus")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--hnsw-queries")
    ap.add_argument("--hnsw-corpus")
    ap.add_argument("--exact-ids")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="eval mode: where PyTorch runs (default: cpu); knn mode: faiss stays on the CPU")
    a = ap.parse_args()
    eval_mode(a) if a.mode == "eval" else knn_mode(a)


if __name__ == "__main__":
    main()
