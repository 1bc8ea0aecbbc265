#!/usr/bin/env python3
"""Write a CLIP with the ViT-B/32 architecture and random weights, for `vlmdb bench embed --image-model DIR`.

The Hugging Face Hub is not reachable from our machines, so the real openai/clip-vit-base-patch32 weights cannot be
fetched; a forward pass costs the same whatever the weight values are, so speed comparisons use this model.
transformers' CLIPConfig() defaults are the ViT-B/32 sizes (vision 768 wide, 12 layers, patch 32, image 224;
text 512 wide, 12 layers; projection 512). The tokenizer files are the tiny fixture CLIP's (the image tower is what
is timed); the image processor is CLIP's at 224 (shortest edge, centre crop).

    python3 tests/peers/write_clip_b32.py /tmp/clip-b32-random      (needs torch and transformers)
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/clip-b32-random")
tiny = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-clip"
torch.manual_seed(0)
# The tokenizer is the tiny fixture's, so the text tower pools at its end-of-text id (913), as vlmdb does.
tokens = json.loads((tiny / "config.json").read_text())["text_config"]
ids = {k: tokens[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
CLIPModel(CLIPConfig(text_config=ids)).save_pretrained(out, safe_serialization=True)
for name in ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]:
    shutil.copy(tiny / name, out / name)
processor = json.loads((tiny / "preprocessor_config.json").read_text())
processor["size"] = {"shortest_edge": 224}
processor["crop_size"] = {"height": 224, "width": 224}
(out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
print(out)
