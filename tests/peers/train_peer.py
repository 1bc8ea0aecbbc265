#!/usr/bin/env python3
"""Benchmark peer for `vlmdb bench train`: the same two-head contrastive training step in PyTorch.

python3 train_peer.py --data-img X.f32 --data-txt Y.f32 --n N --dim-in DIN --dim-out DOUT --batch B --steps S
                      --threads T [--lr 1e-3] [--weight-decay 0.01] [--device cpu|cuda]
  X.f32 and Y.f32 are N x DIN float32 little-endian, row-major, rows already L2-normalised (image and text
  embeddings of the same N pairs). Two heads torch.nn.Linear(DIN, DOUT) (with bias) and a logit-scale
  parameter t = ln(1/0.07), with T CPU threads (torch.set_num_threads). Step k takes the contiguous window of
  B rows starting at (k*B) % N (wrapping around), zi = normalize(head_img(x)), zt = normalize(head_txt(y)),
  logits = exp(t).clamp(max=100) * zi @ zt.T, loss = (CE(logits, arange) + CE(logits.T, arange)) / 2
  (symmetric InfoNCE, as CLIP), backward, clip_grad_norm_(all parameters, 1.0), AdamW(lr, weight_decay)
  with weight decay on the two weight matrices only (biases and t: 0). 3 warm-up steps are untimed, then S
  steps are timed. Prints one JSON line: seconds, steps, steps_per_second, final_loss, torch, threads, device
  ("cpu", or "cuda: " and torch.cuda.get_device_name()) and amp (always false).
  --device cpu (default) trains on the CPU; --device cuda puts the data, heads and optimizer state on
  torch.device("cuda") (the heads are initialised on the CPU with the same seed, then moved), still in float32
  (no autocast), and calls torch.cuda.synchronize() before each read of the clock. With --device cuda and no usable
  CUDA device it exits with status 2 and a message on stderr.
"""
import argparse
import json
import math

import numpy as np
import torch
from peer_device import make_clock, select_device


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-img", required=True)
    ap.add_argument("--data-txt", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dim-in", type=int, required=True)
    ap.add_argument("--dim-out", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where training runs (default: cpu)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device, device_name = select_device(torch, a.device, "train_peer.py")
    clock = make_clock(torch, device)
    torch.manual_seed(0)

    def load(path):
        x = np.fromfile(path, dtype="<f4", count=a.n * a.dim_in).reshape(a.n, a.dim_in)
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    x_img, x_txt = load(a.data_img), load(a.data_txt)
    head_img = torch.nn.Linear(a.dim_in, a.dim_out).to(device)
    head_txt = torch.nn.Linear(a.dim_in, a.dim_out).to(device)
    t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))
    params = list(head_img.parameters()) + list(head_txt.parameters()) + [t]
    opt = torch.optim.AdamW(
        [
            {"params": [head_img.weight, head_txt.weight], "weight_decay": a.weight_decay},
            {"params": [head_img.bias, head_txt.bias, t], "weight_decay": 0.0},
        ],
        lr=a.lr,
    )
    labels = torch.arange(a.batch, device=device)
    offsets = torch.arange(a.batch, device=device)
    normalize = torch.nn.functional.normalize
    ce = torch.nn.functional.cross_entropy

    def step(k):
        rows = (k * a.batch + offsets) % a.n  # contiguous window, wrapping around
        zi = normalize(head_img(x_img[rows]), dim=1)
        zt = normalize(head_txt(x_txt[rows]), dim=1)
        logits = t.exp().clamp(max=100) * zi @ zt.T
        loss = (ce(logits, labels) + ce(logits.T, labels)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        return loss.item()

    for k in range(3):  # warm-up, untimed
        step(k)
    start = clock()
    loss = float("nan")
    for k in range(3, 3 + a.steps):
        loss = step(k)
    seconds = clock() - start
    print(json.dumps({
        "seconds": seconds,
        "steps": a.steps,
        "steps_per_second": a.steps / seconds,
        "final_loss": loss,
        "torch": torch.__version__,
        "threads": a.threads,
        "device": device_name,
        "amp": False,
    }))


if __name__ == "__main__":
    main()
