#!/usr/bin/env python3
"""Benchmark peer for `vlmdb bench finetune`: the same CLIP fine-tuning step in PyTorch + transformers.

python3 finetune_peer.py --model DIR --ids IDS.json --pixels P.f32 --batch B --steps S --threads T
                         [--loss infonce|sanw-debias|sanw-bandpass] [--lr 1e-5] [--weight-decay 0.01]
                         [--device cpu|cuda] [--no-amp]
  DIR is a Hugging Face CLIP directory; IDS.json the token ids of the B captions (padded to the longest);
  P.f32 the B x 3 x H x W preprocessed pixels (float32 little-endian). Every step: transformers.CLIPModel's
  towers (pooled outputs and projections), the loss (CLIPSE's formulas with its defaults, as vlmdb), backward,
  clip_grad_norm_(1.0), torch.optim.AdamW (weight decay on parameters of two or more dimensions). 2 warm-up
  steps are untimed, then S steps are timed on the same batch. Prints one JSON line: torch, steps_per_second,
  final_loss, peak_rss_mb (the process's peak resident memory), device ("cpu", or "cuda: " and
  torch.cuda.get_device_name()), amp, and on CUDA peak_cuda_mb (torch.cuda.max_memory_allocated).
  --device cpu (default) trains on the CPU in float32. --device cuda puts the model, the batch and the optimizer
  state on torch.device("cuda") (float32 weights), runs the forward passes (towers, projections and the loss) under
  torch.autocast("cuda", dtype=torch.bfloat16) (PyTorch AMP; bf16 needs no GradScaler) unless --no-amp is given,
  with backward and the optimizer step outside it, and calls torch.cuda.synchronize() before each read of the
  clock. With --device cuda and no usable CUDA device it exits with status 2 and a message on stderr.
"""
import argparse
import json

import numpy as np
import torch
from transformers import CLIPModel
from peer_device import make_autocast, make_clock, select_device


def sanw_weights(kind, pool_img, pool_txt):
    with torch.no_grad():
        def cos(x):
            x = torch.nn.functional.normalize(x, dim=1)
            return x @ x.T
        b = pool_img.shape[0]
        a = 0.5 * cos(pool_txt) + 0.5 * cos(pool_img)
        if kind == "sanw-debias":
            w = 1 - torch.sigmoid(4.0 * (a - 0.6))
        else:
            w = (torch.sigmoid((a - 0.3) / 0.05) * (1 - torch.sigmoid((a - 0.8) / 0.05))).clamp(0, 1)
        w = w * (1 - torch.eye(b, device=w.device))
        return w * ((b - 1) / w.sum(dim=1, keepdim=True).clamp_min(1e-6))


def direction(logits, w):
    if w is None:
        return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.diagonal() - (logp.exp() * w).sum(dim=1).clamp_min(1e-12).log()).mean()


def peak_rss_mb():
    """VmHWM of this process (ru_maxrss would carry over the RSS of the process that spawned it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--pixels", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loss", default="infonce")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where training runs (default: cpu)")
    ap.add_argument("--no-amp", action="store_true",
                    help="with --device cuda: run the forward passes in float32 instead of under bfloat16 autocast")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device, device_name = select_device(torch, a.device, "finetune_peer.py")
    clock = make_clock(torch, device)
    amp = device.type == "cuda" and not a.no_amp
    autocast = make_autocast(torch, amp)
    model = CLIPModel.from_pretrained(a.model).to(device)
    model.train()
    ids = torch.tensor(json.load(open(a.ids))).to(device)
    size = model.config.vision_config.image_size
    pixels = torch.from_numpy(np.fromfile(a.pixels, dtype="<f4").reshape(a.batch, 3, size, size).copy()).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=a.lr)
    last = float("nan")
    start = clock()
    for k in range(2 + a.steps):
        if k == 2:
            start = clock()
        with autocast():
            vision = model.vision_model(pixel_values=pixels)
            text = model.text_model(input_ids=ids)
            zi = torch.nn.functional.normalize(model.visual_projection(vision.pooler_output), dim=1)
            zt = torch.nn.functional.normalize(model.text_projection(text.pooler_output), dim=1)
            logits = model.logit_scale.exp() * zi @ zt.T
            w = None if a.loss == "infonce" else sanw_weights(a.loss, vision.pooler_output, text.pooler_output)
            loss = 0.5 * (direction(logits, w) + direction(logits.T, None if w is None else w.T))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last = loss.item()
    elapsed = clock() - start
    report = {
        "torch": torch.__version__,
        "steps_per_second": a.steps / elapsed,
        "final_loss": last,
        "peak_rss_mb": peak_rss_mb(),
        "device": device_name,
        "amp": amp,
    }
    if device.type == "cuda":
        report["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(report))


if __name__ == "__main__":
    main()
