"""Write the fuzz corpus that tests/fuzz.rs runs (issue 24): every case must end with exit code 0, 1 or 2 and a
message, never a panic (101), an abort (134) or a signal.

  tests/fuzz/sql.txt        one SQL case per line, run with `vlmdb sql` against a store holding the shapes and cirr
                            fixtures and the space `ref`: expressions deep and wide, huge and hostile arguments to
                            every table function and model function, malformed statements.
  tests/fuzz/ingest/FORMAT/ damaged and hostile inputs of every ingest format (one case per entry; `cases.txt`
                            lists FORMAT, the path and any extra arguments).

Damaged stores are made by the test itself from a healthy store (the kinds of damage are listed there).
Run: python3 tests/fuzz/make_corpus.py (deterministic: a fixed seed).
"""

import io
import json
import os
import random
import shutil
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
random.seed(24)

HUGE = ["9223372036854775807", "-9223372036854775808", "2147483647", "-1", "0", "1e308", "-1e308", "'NaN'",
        "CAST('NaN' AS DOUBLE)", "CAST('inf' AS DOUBLE)", "NULL", "''", "'x'", "1.5"]


def sql_cases():
    cases = []
    # Deep and wide expressions.
    cases.append("SELECT " + " + ".join(["1"] * 2000) + " AS n")
    cases.append("SELECT " + "(" * 500 + "1" + ")" * 500 + " AS n")
    cases.append("SELECT count(*) FROM captions WHERE " + " OR ".join(f"text = 't{i}'" for i in range(3000)))
    cases.append("SELECT " + ", ".join(f"{i} AS c{i}" for i in range(3000)))
    cases.append("SELECT " + "".join("abs(" for _ in range(400)) + "1" + ")" * 400)
    cases.append("SELECT CASE " + " ".join(f"WHEN x = {i} THEN {i}" for i in range(1000)) + " END FROM (VALUES (1)) t(x)")
    cases.append("SELECT * FROM (" * 200 + "SELECT 1 AS x" + ") t" * 200)
    cases.append("SELECT 1 " + " ".join(f"UNION ALL SELECT {i}" for i in range(1500)))
    cases.append("WITH " + ", ".join(f"c{i} AS (SELECT {i} AS x)" for i in range(500)) + " SELECT * FROM c499")
    cases.append("SELECT '" + "a" * 200_000 + "' AS long")
    cases.append("SELECT length(repeat('a', 2147483647))")
    cases.append("SELECT repeat('ab', 1000000000)")
    cases.append("SELECT * FROM generate_series(1, 9223372036854775807) LIMIT 3")
    cases.append("SELECT 9223372036854775807 + 1")
    cases.append("SELECT -9223372036854775808 / -1")
    cases.append("SELECT 1 / 0")
    cases.append("SELECT CAST('1e400' AS DOUBLE)")
    cases.append("SELECT CAST(1e308 * 10 AS BIGINT)")
    cases.append("SELECT array_repeat(1, 2147483647)")
    cases.append("SELECT lpad('a', 2147483647)")
    cases.append("SELECT rpad('a', 9223372036854775807, 'xy')")
    cases.append("SELECT range(1, 9223372036854775807)")
    cases.append("SELECT generate_series(-9223372036854775808, 9223372036854775807)")
    cases.append("SELECT array_resize(make_array(1), 2147483647)")
    cases.append("SELECT repeat(text, 100000000) FROM captions")
    cases.append("SELECT make_array(" + ",".join(["1"] * 5000) + ")")
    # Table functions: every argument huge, negative, NULL, wrong type.
    functions = {
        "knn": ["'ref:caption'", "'ref:image'", "5", "'shapes'", "'test'", "'exact'"],
        "vector_search": ["'ref'", "(SELECT vector FROM emb_ref LIMIT 1)", "5", "'shapes'", "NULL", "'image'"],
        "retrieval_ranks": ["'ref'", "'shapes'", "'test'", "8", "'mean'"],
        "vectors": ["'ref'", "'shapes'", "'test'", "'image'"],
        "kmeans": ["'ref'", "3", "10", "0", "'shapes'", "NULL", "'image'", "'cosine'"],
        "pca": ["'ref'", "2", "'shapes'", "NULL", "'image'"],
        "pca_variance": ["'ref'", "2", "'shapes'"],
        "tsne": ["'ref'", "5", "50", "0", "'shapes'", "NULL", "'image'"],
        "cluster_matching": ["'a'", "'b'"],
        "cluster_agreement": ["'a'", "'b'"],
        "run_configs": ["'a,b'"],
    }
    for name, args in functions.items():
        cases.append(f"SELECT * FROM {name}({', '.join(args)}) LIMIT 3")
        cases.append(f"SELECT * FROM {name}()")
        cases.append(f"SELECT * FROM {name}({', '.join(args + ['1'] * 8)})")
        for position in range(len(args)):
            for value in HUGE:
                changed = list(args)
                changed[position] = value
                cases.append(f"SELECT * FROM {name}({', '.join(changed)}) LIMIT 3")
    # Scalar and aggregate functions of vlmdb.
    scalars = {
        "cosine_similarity": ["make_array(1.0, 2.0)", "make_array(1.0, 2.0)"],
        "l2_distance": ["make_array(1.0, 2.0)", "make_array(3.0, 4.0)"],
        "l2_normalize": ["make_array(3.0, 4.0)"],
        "truncate_dim": ["make_array(1.0, 2.0, 3.0)", "2"],
        "image_size": ["(SELECT data FROM images LIMIT 1)"],
        "byte_length": ["(SELECT data FROM images LIMIT 1)"],
        "thumbnail": ["(SELECT data FROM images LIMIT 1)", "16"],
        "embed_text": ["'fixtures/models/tiny-clip'", "'a red square'"],
        "embed_image": ["'fixtures/models/tiny-clip'", "(SELECT data FROM images LIMIT 1)"],
    }
    for name, args in scalars.items():
        cases.append(f"SELECT {name}({', '.join(args)})")
        cases.append(f"SELECT {name}()")
        for position in range(len(args)):
            for value in HUGE + ["make_array()", "X'00ff'", "make_array(CAST('NaN' AS DOUBLE))"]:
                changed = list(args)
                changed[position] = value
                cases.append(f"SELECT {name}({', '.join(changed)})")
    cases.append("SELECT vector_mean(vector) FROM emb_ref")
    cases.append("SELECT vector_mean(make_array(1.0, 2.0)) FROM (VALUES (1)) t(x)")
    cases.append("SELECT vector_mean(x) FROM (VALUES (make_array(1.0)), (make_array(1.0, 2.0))) t(x)")
    cases.append("SELECT vector_mean(NULL)")
    # Model functions with a missing or hostile model.
    for model in ["'no/such/model'", "'hf:nobody/nothing'", "'../../etc/passwd'", "''", "NULL", "'head:nope'",
                  "'ft:nope'", "'fixtures/models/tiny-blip'"]:
        cases.append(f"SELECT embed_text({model}, 'x')")
        cases.append(f"SELECT caption({model}, (SELECT data FROM images LIMIT 1))")
        cases.append(f"SELECT generate_image({model}, 'x', 0, 1)")
    cases.append("SELECT generate_image('fixtures/models/tiny-sd', 'x', 0, 2147483647)")
    cases.append("SELECT generate_image('fixtures/models/tiny-sd', 'x', 0, -5)")
    cases.append("SELECT caption('fixtures/models/tiny-blip', (SELECT data FROM images LIMIT 1), 'a', 2147483647)")
    # Time travel and store tables.
    for version in ["0", "-1", "99999999999999999999", "abc", "1.5", ""]:
        cases.append(f'SELECT count(*) FROM "images@{version}"')
    cases.append('DROP TABLE "images@1"')
    cases.append("DROP TABLE images")
    cases.append("DELETE FROM runs")
    cases.append("UPDATE images SET data = NULL")
    cases.append("INSERT INTO captions SELECT * FROM captions")
    cases.append("INSERT INTO images (image_id) VALUES ('x')")
    cases.append("COPY (SELECT 1) TO '/tmp/vlmdb-fuzz-out.csv'")
    cases.append("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'")
    cases.append("SELECT * FROM '/etc/passwd'")
    # Malformed statements.
    rng = random.Random(7)
    alphabet = "SELECT FROM WHERE ( ) , ' \" ; * + - / 1 2 x images captions AND OR NOT NULL @ $ \\ ` [ ] { }".split(" ")
    for _ in range(60):
        cases.append(" ".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))))
    cases.append("\u0000")
    cases.append("SELECT '\udcff'".encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    cases.append("SELECT $undefined")
    cases.append("SELECT $1")
    cases.append(";;;;")
    for case in cases:
        assert "\n" not in case
    return cases


def png(width, height, body=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = body if body is not None else zlib.compress(b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def hostile_images():
    """name -> bytes: every way an image file can be wrong."""
    good = png(4, 3)
    with open(os.path.join(os.path.dirname(HERE), "..", "fixtures", "jpeg", "quality_75.jpg"), "rb") as f:
        jpeg = f.read()
    return {
        "good.png": good,
        "empty.png": b"",
        "text.jpg": b"not an image at all",
        "truncated.png": good[: len(good) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "jpeg_header_only.jpg": jpeg[:200],
        "bad_crc.png": good[:-5] + b"\x00\x00\x00\x00\x00",
        "bomb.png": png(60000, 60000, zlib.compress(b"\x00" * 1000)),
        "zero_size.png": png(0, 0),
        "random.png": bytes(random.getrandbits(8) for _ in range(2048)),
        "png_magic_garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(random.getrandbits(8) for _ in range(512)),
        "jpeg_magic_garbage.jpg": b"\xff\xd8\xff\xe0" + bytes(random.getrandbits(8) for _ in range(512)) + b"\xff\xd9",
        "flipped_bits.jpg": bytes(b ^ 0x55 if 300 < i < 400 else b for i, b in enumerate(jpeg)),
        "gif_garbage.gif": b"GIF89a" + bytes(random.getrandbits(8) for _ in range(256)),
        "webp_garbage.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(random.getrandbits(8) for _ in range(256)),
    }


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def ingest_cases():
    root = os.path.join(HERE, "ingest")
    shutil.rmtree(root, ignore_errors=True)
    images = hostile_images()
    cases = []
    # A folder of hostile images, captions beside them (folder format) and an annotation file for each format.
    folder = os.path.join(root, "folder")
    for name, data in images.items():
        write(os.path.join(folder, name), data)
        write(os.path.join(folder, os.path.splitext(name)[0] + ".txt"), f"a caption of {name}")
    write(os.path.join(folder, "binary_caption.png"), images["good.png"])
    write(os.path.join(folder, "binary_caption.txt"), b"\xff\xfe\x00bad utf-8")
    cases.append(("folder", "folder", []))
    names = sorted(images)
    jsonl = [json.dumps({"file_name": f"../folder/{n}", "text": f"caption {n}"}) for n in names]
    jsonl += ["{not json", "[]", "null", json.dumps({"file_name": 5}), json.dumps({"file_name": "/etc/passwd"}),
              json.dumps({"file_name": "../../../../etc/passwd", "text": "escape"}),
              json.dumps({"file_name": "../folder/good.png", "text": "x" * 200_000}),
              json.dumps({"file_name": "../folder/good.png", "text": "nested", "split": {"a": [1] * 1000}}),
              "[" * 50000 + "]" * 50000, "\x00\x01\x02", ""]
    write(os.path.join(root, "jsonl", "metadata.jsonl"), "\n".join(jsonl) + "\n")
    cases.append(("jsonl", "jsonl/metadata.jsonl", ["--images", "folder"]))
    write(os.path.join(root, "jsonl", "deep.jsonl"), "[" * 50000 + "]" * 50000 + "\n")
    cases.append(("jsonl", "jsonl/deep.jsonl", []))
    coco = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)] + [{"id": "x"}, {}, None, 7],
            "annotations": [{"image_id": i, "caption": f"c{i}", "id": i} for i in range(len(names))]
            + [{"image_id": 99999, "caption": "orphan", "id": 5}, {"caption": None}, {"image_id": [1]}]}
    write(os.path.join(root, "coco", "captions.json"), json.dumps(coco))
    cases.append(("coco", "coco/captions.json", ["--images", "folder"]))
    write(os.path.join(root, "coco", "not_an_object.json"), "[1, 2, 3]")
    cases.append(("coco", "coco/not_an_object.json", ["--images", "folder"]))
    write(os.path.join(root, "coco", "truncated.json"), json.dumps(coco)[:300])
    cases.append(("coco", "coco/truncated.json", ["--images", "folder"]))
    karpathy = {"images": [{"filename": n, "split": "train", "sentences": [{"raw": f"r {n}"}]} for n in names]
                + [{"filename": "good.png", "split": 5, "sentences": "no"}, {"sentences": [{}]}, "x"]}
    write(os.path.join(root, "karpathy", "dataset.json"), json.dumps(karpathy))
    cases.append(("karpathy", "karpathy/dataset.json", ["--images", "folder"]))
    write(os.path.join(root, "karpathy", "empty.json"), "")
    cases.append(("karpathy", "karpathy/empty.json", ["--images", "folder"]))
    # WebDataset shards: hostile members, a path escaping the shard, a truncated tar, a tar of garbage.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i, name in enumerate(names):
            for member, data in [(f"s{i:03d}.{name.rsplit('.', 1)[1]}", images[name]), (f"s{i:03d}.txt", f"t {name}".encode())]:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for member in ["../escape.png", "/abs.png", "dir/"]:
            info = tarfile.TarInfo(member)
            data = images["good.png"]
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    shard = buffer.getvalue()
    write(os.path.join(root, "webdataset", "hostile-000.tar"), shard)
    write(os.path.join(root, "webdataset", "hostile-001.tar"), shard[: len(shard) // 3])
    write(os.path.join(root, "webdataset", "hostile-002.tar"), bytes(random.getrandbits(8) for _ in range(4096)))
    cases.append(("webdataset", "webdataset/hostile-{000..002}.tar", ["--split", "train"]))
    cases.append(("webdataset", "webdataset/missing-{0..3}.tar", ["--split", "train"]))
    cases.append(("webdataset", "webdataset/x{0..999}{0..999}{0..999}.tar", ["--split", "train"]))
    cases.append(("webdataset", "webdataset/{9..0}.tar", ["--split", "train"]))
    # Parquet: garbage bytes and a truncated file.
    write(os.path.join(root, "parquet", "garbage", "train.parquet"), b"PAR1" + bytes(random.getrandbits(8) for _ in range(1024)) + b"PAR1")
    cases.append(("hf-parquet", "parquet/garbage", []))
    # cirr / fashioniq: damaged annotation trees.
    write(os.path.join(root, "cirr", "captions", "cap.rc2.train.json"), '[{"reference": 1, "target_hard": null}]')
    write(os.path.join(root, "cirr", "image_splits", "split.rc2.train.json"), '{"a": "../../../etc/passwd"}')
    cases.append(("cirr", "cirr", []))
    write(os.path.join(root, "fashioniq", "captions", "cap.dress.train.json"), '[{"candidate": "x", "target": "y", "captions": "notalist"}]')
    write(os.path.join(root, "fashioniq", "image_splits", "split.dress.train.json"), '"not a list"')
    cases.append(("fashioniq", "fashioniq", []))
    # Arguments: a missing path, a directory where a file is expected, a device.
    cases.append(("coco", "no/such/file.json", []))
    cases.append(("coco", "folder", []))
    cases.append(("jsonl", "/dev/null", []))
    lines = [" ".join([fmt, path] + extra) for fmt, path, extra in cases]
    write(os.path.join(root, "cases.txt"), "\n".join(lines) + "\n")


def main():
    cases = sql_cases()
    with open(os.path.join(HERE, "sql.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")
    ingest_cases()
    print(f"{len(cases)} SQL cases; ingest cases in {os.path.join(HERE, 'ingest', 'cases.txt')}")


if __name__ == "__main__":
    main()
