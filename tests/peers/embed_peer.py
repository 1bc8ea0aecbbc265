#!/usr/bin/env python3
"""Benchmark peer: how fast the Python reference stack embeds texts or images, on CPU or a CUDA GPU.

Text mode (sentence-transformers):
    python3 tests/peers/embed_peer.py --model DIR --texts FILE [--batch 64] [--threads N] [--device cpu|cuda]
                                      [--no-amp]
  reads one text per line (blank lines kept as empty texts), encodes them all with
  SentenceTransformer(DIR, device=D).encode(..., normalize_embeddings=True) and prints one JSON line
    {"texts": n, "seconds": s, "texts_per_s": r, "device": "cpu", "amp": false}

Image mode (transformers CLIP):
    python3 tests/peers/embed_peer.py --clip-dir DIR --images-dir DIR [--batch 64] [--threads N]
                                      [--device cpu|cuda] [--no-amp]
  preprocesses every image in DIR (sorted by name; .jpg/.jpeg/.png/.webp/.bmp/.gif, loaded with PIL
  .convert("RGB")) with the CLIP image processor saved in --clip-dir (PIL backend, on CPU), runs
  CLIPModel.get_image_features batch by batch on the device, and prints
    {"images": n, "seconds": s, "images_per_s": r, "device": "cpu", "amp": false}
  The timed span covers preprocessing, the copy of the pixels to the device and the model, as an ingest pipeline
  would; image decoding is done before the clock starts. Add --model-only to time only get_image_features (the
  pixels are then preprocessed and copied to the device before the clock starts).

Only the encode work is timed, after one small untimed warm-up batch on the same device. torch.set_num_threads(N)
(default: all cores) in both cases. No network access is needed (HF_HUB_OFFLINE is set).

--device cpu (default) runs everything on CPU in float32. --device cuda puts the model and its inputs on the GPU
(torch.device("cuda")), calls torch.cuda.synchronize() before each read of the clock, and runs the forward passes
under torch.autocast("cuda", dtype=torch.bfloat16) (PyTorch AMP) unless --no-amp is given. "device" in the report
names the device ("cpu", or "cuda: " and torch.cuda.get_device_name()); "amp" says whether autocast was on. With
--device cuda and no usable CUDA device the script exits with status 2 and a message on stderr.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from peer_device import make_autocast, make_clock, select_device

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="sentence-transformers model directory (text mode)")
    ap.add_argument("--texts", help="file with one text per line (text mode)")
    ap.add_argument("--clip-dir", help="CLIP model directory saved by transformers (image mode)")
    ap.add_argument("--images-dir", help="directory of images (image mode)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model-only", action="store_true", help="image mode: time only the model, not preprocessing")
    ap.add_argument("--warmup", type=int, default=8, help="items in the untimed warm-up batch")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (default: cpu)")
    ap.add_argument("--no-amp", action="store_true",
                    help="with --device cuda: run in float32 instead of under bfloat16 autocast")
    args = ap.parse_args()
    text_mode = bool(args.model or args.texts)
    image_mode = bool(args.clip_dir or args.images_dir)
    if text_mode == image_mode:
        ap.error("give either --model and --texts, or --clip-dir and --images-dir")
    if text_mode and not (args.model and args.texts):
        ap.error("text mode needs both --model and --texts")
    if image_mode and not (args.clip_dir and args.images_dir):
        ap.error("image mode needs both --clip-dir and --images-dir")
    if args.batch < 1 or args.threads < 1:
        ap.error("--batch and --threads must be positive")
    return args, text_mode


def run_texts(args, torch, device, clock, autocast):
    from sentence_transformers import SentenceTransformer

    texts = Path(args.texts).read_text(encoding="utf-8").split("\n")
    if texts and texts[-1] == "":
        texts.pop()  # trailing newline
    if not texts:
        sys.exit("no texts in " + args.texts)
    model = SentenceTransformer(args.model, device=str(device))
    with torch.inference_mode(), autocast():
        model.encode(texts[: args.warmup], batch_size=args.batch, normalize_embeddings=True,
                     show_progress_bar=False)
        t0 = clock()
        vecs = model.encode(texts, batch_size=args.batch, normalize_embeddings=True, show_progress_bar=False,
                            convert_to_numpy=True)
        seconds = clock() - t0
    assert len(vecs) == len(texts)
    return {"texts": len(texts), "seconds": round(seconds, 6), "texts_per_s": round(len(texts) / seconds, 3)}


def run_images(args, torch, device, clock, autocast):
    from PIL import Image
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    files = sorted(p for p in Path(args.images_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        sys.exit("no images in " + args.images_dir)
    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(im.convert("RGB"))
    processor = CLIPImageProcessorPil.from_pretrained(args.clip_dir)
    model = CLIPModel.from_pretrained(args.clip_dir).eval().to(device)

    def embed(batch):
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        return embed_pixels(pixels)

    def embed_pixels(pixels):
        with autocast():
            return model.get_image_features(pixel_values=pixels).pooler_output

    with torch.inference_mode():
        embed(images[: args.warmup])
        if args.model_only:
            pixel_batches = [processor(images=images[i:i + args.batch], return_tensors="pt")["pixel_values"]
                             .to(device) for i in range(0, len(images), args.batch)]
            t0 = clock()
            n = sum(len(embed_pixels(p)) for p in pixel_batches)
        else:
            t0 = clock()
            n = sum(len(embed(images[i:i + args.batch])) for i in range(0, len(images), args.batch))
        seconds = clock() - t0
    assert n == len(images)
    return {"images": n, "seconds": round(seconds, 6), "images_per_s": round(n / seconds, 3)}


def main():
    args, text_mode = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    device, device_name = select_device(torch, args.device, "embed_peer.py")
    amp = device.type == "cuda" and not args.no_amp
    clock, autocast = make_clock(torch, device), make_autocast(torch, amp)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    run = run_texts if text_mode else run_images
    result = run(args, torch, device, clock, autocast)
    result.update({"device": device_name, "amp": amp})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
