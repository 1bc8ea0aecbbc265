#!/usr/bin/env python3
"""Round trip of a fine-tuned CLIP through transformers: the directory `vlmdb train --finetune` exported loads in
`transformers.CLIPModel.from_pretrained`, and its image and text embeddings equal vlmdb's for the same inputs.

python3 tests/peers/check_finetune_export.py --vlmdb target/debug/vlmdb --db STORE --run RUN --images DIR
  DIR is the folder the store's image paths are relative to (the dataset's --images). vlmdb embeds 5 PNG images
  and 5 captions with `embed_image('ft:RUN', data)` / `embed_text('ft:RUN', text)`; transformers embeds the same
  files and texts with the exported directory (CLIPProcessor from its processor files). Prints the largest
  difference and exits 1 when it is above 1e-4. PNG only: vlmdb's JPEG decoder and Pillow's libjpeg-turbo differ
  by a few levels per pixel (issue 24), which is a decoding matter, not the model's.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor


def sql(args, query):
    out = subprocess.run([args.vlmdb, "--db", args.db, "sql", query, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlmdb", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--images", required=True)
    a = ap.parse_args()
    export = Path(a.db) / "finetuned" / f"ft-{a.run}"
    model = CLIPModel.from_pretrained(export).eval()
    processor = CLIPProcessor.from_pretrained(export)
    images = sql(a, f"SELECT path, embed_image('ft:{a.run}', data) AS v FROM images WHERE format = 'png' ORDER BY image_id LIMIT 5")
    texts = sql(a, f"SELECT text, embed_text('ft:{a.run}', text) AS v FROM captions ORDER BY caption_id LIMIT 5")
    worst = 0.0
    with torch.no_grad():
        for row in images:
            pixels = processor(images=Image.open(Path(a.images) / row["path"]).convert("RGB"),
                               return_tensors="pt")["pixel_values"]
            ours = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]
            ours = torch.nn.functional.normalize(ours, dim=0)
            worst = max(worst, (ours - torch.tensor(row["v"])).abs().max().item())
        for row in texts:
            ids = processor.tokenizer([row["text"]], return_tensors="pt")["input_ids"]
            ours = model.text_projection(model.text_model(input_ids=ids).pooler_output)[0]
            ours = torch.nn.functional.normalize(ours, dim=0)
            worst = max(worst, (ours - torch.tensor(row["v"])).abs().max().item())
    print(f"transformers loaded {export}; largest difference to vlmdb over {len(images)} images and "
          f"{len(texts)} captions: {worst:.2e}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
