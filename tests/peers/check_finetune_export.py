#!/usr/bin/env python3
"""Round trip of a fine-tuned CLIP through its reference library: the directory `vlmdb train --finetune` exported
loads in `transformers.CLIPModel.from_pretrained` (transformers' layout) or in
`open_clip.create_model_and_transforms("local-dir:…")` (an OpenCLIP checkpoint, exported as one), and its image and
text embeddings equal vlmdb's for the same inputs.

python3 tests/peers/check_finetune_export.py --vlmdb target/debug/vlmdb --db STORE --run RUN --images DIR
  DIR is the folder the store's image paths are relative to (the dataset's --images). vlmdb embeds 5 PNG images
  and 5 captions with `embed_image('ft:RUN', data)` / `embed_text('ft:RUN', text)`; transformers embeds the same
  files and texts with the exported directory (CLIPProcessor from its processor files; open_clip's own transform
  and tokenizer for an OpenCLIP export). Prints the largest
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
    if (export / "open_clip_config.json").is_file():
        import open_clip
        model, _, transform = open_clip.create_model_and_transforms(f"local-dir:{export}")
        model.eval()
        tokenizer = open_clip.get_tokenizer(f"local-dir:{export}")
        embed_image = lambda image: model.encode_image(transform(image)[None])[0]
        embed_text = lambda text: model.encode_text(tokenizer([text]))[0]
        library = "open_clip"
    else:
        from transformers import CLIPModel, CLIPProcessor
        model = CLIPModel.from_pretrained(export).eval()
        processor = CLIPProcessor.from_pretrained(export)

        def embed_image(image):
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]

        def embed_text(text):
            ids = processor.tokenizer([text], return_tensors="pt")["input_ids"]
            return model.text_projection(model.text_model(input_ids=ids).pooler_output)[0]
        library = "transformers"
    images = sql(a, f"SELECT path, embed_image('ft:{a.run}', data) AS v FROM images WHERE format = 'png' ORDER BY image_id LIMIT 5")
    texts = sql(a, f"SELECT text, embed_text('ft:{a.run}', text) AS v FROM captions ORDER BY caption_id LIMIT 5")
    worst = 0.0
    with torch.no_grad():
        for row in images:
            ours = embed_image(Image.open(Path(a.images) / row["path"]).convert("RGB"))
            ours = torch.nn.functional.normalize(ours, dim=0)
            worst = max(worst, (ours - torch.tensor(row["v"])).abs().max().item())
        for row in texts:
            ours = torch.nn.functional.normalize(embed_text(row["text"]), dim=0)
            worst = max(worst, (ours - torch.tensor(row["v"])).abs().max().item())
    print(f"{library} loaded {export}; largest difference to vlmdb over {len(images)} images and "
          f"{len(texts)} captions: {worst:.2e}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
