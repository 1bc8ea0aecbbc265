#!/usr/bin/env python3
"""Benchmark peer: how fast the Python reference stack embeds texts or images on CPU.

Text mode (sentence-transformers):
    python3 tests/peers/embed_peer.py --model DIR --texts FILE [--batch 64] [--threads N]
  reads one text per line (blank lines kept as empty texts), encodes them all with
  SentenceTransformer(DIR).encode(..., normalize_embeddings=True) and prints one JSON line
    {"texts": n, "seconds": s, "texts_per_s": r}

Image mode (transformers CLIP):
    python3 tests/peers/embed_peer.py --clip-dir DIR --images-dir DIR [--batch 64] [--threads N]
  preprocesses every image in DIR (sorted by name; .jpg/.jpeg/.png/.webp/.bmp/.gif, loaded with PIL
  .convert("RGB")) with the CLIP image processor saved in --clip-dir (PIL backend), runs
  CLIPModel.get_image_features batch by batch, and prints
    {"images": n, "seconds": s, "images_per_s": r}
  The timed span covers preprocessing and the model, as an ingest pipeline would; image decoding is done before
  the clock starts. Add --model-only to time only get_image_features.

Only the encode work is timed, after one small warm-up batch. Everything runs on CPU with
torch.set_num_threads(N) (default: all cores). No network access is needed (HF_HUB_OFFLINE is set).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

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


def run_texts(args, torch):
    from sentence_transformers import SentenceTransformer

    texts = Path(args.texts).read_text(encoding="utf-8").split("\n")
    if texts and texts[-1] == "":
        texts.pop()  # trailing newline
    if not texts:
        sys.exit("no texts in " + args.texts)
    model = SentenceTransformer(args.model, device="cpu")
    with torch.inference_mode():
        model.encode(texts[: args.warmup], batch_size=args.batch, normalize_embeddings=True,
                     show_progress_bar=False)
        t0 = time.perf_counter()
        vecs = model.encode(texts, batch_size=args.batch, normalize_embeddings=True, show_progress_bar=False,
                            convert_to_numpy=True)
        seconds = time.perf_counter() - t0
    assert len(vecs) == len(texts)
    return {"texts": len(texts), "seconds": round(seconds, 6), "texts_per_s": round(len(texts) / seconds, 3)}


def run_images(args, torch):
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
    model = CLIPModel.from_pretrained(args.clip_dir).eval()

    def embed(batch):
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
        return model.get_image_features(pixel_values=pixels).pooler_output

    def embed_pixels(pixels):
        return model.get_image_features(pixel_values=pixels).pooler_output

    with torch.inference_mode():
        embed(images[: args.warmup])
        if args.model_only:
            pixel_batches = [processor(images=images[i:i + args.batch], return_tensors="pt")["pixel_values"]
                             for i in range(0, len(images), args.batch)]
            t0 = time.perf_counter()
            n = sum(len(embed_pixels(p)) for p in pixel_batches)
        else:
            t0 = time.perf_counter()
            n = sum(len(embed(images[i:i + args.batch])) for i in range(0, len(images), args.batch))
        seconds = time.perf_counter() - t0
    assert n == len(images)
    return {"images": n, "seconds": round(seconds, 6), "images_per_s": round(n / seconds, 3)}


def main():
    args, text_mode = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    result = run_texts(args, torch) if text_mode else run_images(args, torch)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
