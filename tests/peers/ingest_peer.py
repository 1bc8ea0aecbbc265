#!/usr/bin/env python3
"""The Python peer of `vlmdb bench ingest`: what a researcher's script does today. Reads a HF ImageFolder
metadata.jsonl, decodes every image with PIL, hashes it, and writes images + captions with pylance's
write_dataset. Prints one JSON line: {"images": N, "seconds": S}.

Usage: ingest_peer.py METADATA_JSONL OUT_DIR
"""

import hashlib
import io
import json
import sys
import time
from pathlib import Path

import lance
import pyarrow as pa
from PIL import Image


def main():
    metadata, out = Path(sys.argv[1]), Path(sys.argv[2])
    start = time.perf_counter()
    rows = {"image_id": [], "path": [], "data": [], "width": [], "height": [], "format": [], "sha256": []}
    captions = {"caption_id": [], "image_id": [], "text": []}
    for n, line in enumerate(metadata.read_text().splitlines()):
        item = json.loads(line)
        data = (metadata.parent / item["file_name"]).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            width, height, fmt = img.width, img.height, img.format.lower()
        image_id = "bench/" + item["file_name"].rsplit(".", 1)[0]
        rows["image_id"].append(image_id)
        rows["path"].append(item["file_name"])
        rows["data"].append(data)
        rows["width"].append(width)
        rows["height"].append(height)
        rows["format"].append(fmt)
        rows["sha256"].append(hashlib.sha256(data).hexdigest())
        captions["caption_id"].append(f"{image_id}#0")
        captions["image_id"].append(image_id)
        captions["text"].append(item["text"])
    schema = pa.schema([("image_id", pa.string()), ("path", pa.string()), ("data", pa.large_binary()),
                        ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
                        ("sha256", pa.string())])
    lance.write_dataset(pa.table(rows, schema=schema), out / "images.lance")
    lance.write_dataset(pa.table(captions), out / "captions.lance")
    print(json.dumps({"images": len(rows["image_id"]), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
