#!/usr/bin/env python3
"""Longer integrity harnesses than CI runs (issue 21), against a built vlmdb binary.

  python3 tests/stress/harness.py kill    [--points 200] [--vlmdb target/debug/vlmdb]
  python3 tests/stress/harness.py writers [--writers 8 --writes 50]

`kill`: kill -9 at random points of ingest, embed, train and loop (spread evenly over the four), then run the
same command to completion, and check the store: it opens, every key is stored once, the counts are complete,
and the killed run reads as `interrupted`. Prints kill points tried / held / rows lost.

`writers`: W processes each make N single-row INSERTs into `metrics` at once; then the same W × N one after
another. Prints rows present, failures, both times and their ratio (the goal is 400/400, 0 failures, <= 3x).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KARPATHY = os.path.join(ROOT, "fixtures/datasets/karpathy")
TINY_CLIP = os.path.join(ROOT, "fixtures/models/tiny-clip")
TINY_BLIP = os.path.join(ROOT, "fixtures/models/tiny-blip")
TINY_SD = os.path.join(ROOT, "fixtures/models/tiny-sd")


def vlmdb(binary, db, *args, check=True):
    out = subprocess.run([binary, "--db", db, *args], capture_output=True, text=True)
    if check and out.returncode not in (0, 1):
        raise RuntimeError(f"vlmdb {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return out


def csv_number(binary, db, sql):
    out = vlmdb(binary, db, "sql", sql, "--format", "csv")
    return int(out.stdout.strip().splitlines()[1])


INGEST = ["ingest", "karpathy", os.path.join(KARPATHY, "dataset_shapes.json"), "--images",
          os.path.join(KARPATHY, "images"), "--dataset", "s", "--chunk", "4"]
EMBED = ["embed", "--model", TINY_CLIP, "--images"]
TRAIN = ["train", "--image-model", TINY_CLIP, "--text-model", TINY_CLIP, "--dataset", "s", "--loss", "infonce", "--epochs", "30",
         "--quiet"]
LOOP = ["loop", "--captioner", TINY_BLIP, "--generator", TINY_SD, "--dataset", "s", "--images", "4",
        "--iterations", "3", "--image-space", TINY_CLIP, "--text-space", TINY_CLIP, "--steps", "2", "--quiet"]


def prepared(binary, base, upto):
    """A store with the steps before `upto` done, copied from a cached one."""
    db = os.path.join(base, f"ready-{upto}")
    if not os.path.exists(db):
        vlmdb(binary, db, "init")
        steps = {"ingest": [], "embed": [INGEST], "train": [INGEST, EMBED, EMBED[:-1] + ["--captions"]],
                 "loop": [INGEST]}[upto]
        for step in steps:
            vlmdb(binary, db, *step)
    return db


def checks(binary, db):
    """Rows lost or doubled: keys stored more than once plus expected rows missing."""
    lost = 0
    for table, key in [("images", "image_id"), ("captions", "caption_id")]:
        n = csv_number(binary, db, f"SELECT count(*) - count(DISTINCT {key}) AS d FROM {table}")
        lost += n
    lost += max(0, 30 - csv_number(binary, db, "SELECT count(*) AS n FROM images WHERE dataset = 's'"))
    lost += max(0, 150 - csv_number(binary, db, "SELECT count(*) AS n FROM captions WHERE dataset = 's'"))
    return lost


def kill(args):
    base = tempfile.mkdtemp(prefix="vlmdb-kill-")
    kinds = [("ingest", INGEST, 1.0), ("embed", EMBED, 2.0), ("train", TRAIN, 6.0), ("loop", LOOP, 20.0)]
    tried = held = lost_total = 0
    rng = random.Random(args.seed)
    try:
        for point in range(args.points):
            kind, command, span = kinds[point % len(kinds)]
            db = os.path.join(base, f"p{point}")
            shutil.copytree(prepared(args.vlmdb, base, kind), db)
            child = subprocess.Popen([args.vlmdb, "--db", db, *command], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, span))
            child.kill()
            child.wait()
            tried += 1
            ok = True
            try:
                again = vlmdb(args.vlmdb, db, *(command + (["--resume"] if kind == "train" else [])),
                              check=False)
                if kind == "train" and again.returncode != 0:
                    again = vlmdb(args.vlmdb, db, *command, check=False)
                ok = again.returncode in (0, 1)
                lost = checks(args.vlmdb, db)
                running = csv_number(args.vlmdb, db, "SELECT count(*) AS n FROM runs WHERE status = 'running'")
                if not ok or lost or running:
                    print(f"\npoint {point} ({kind}): re-run exit {again.returncode}, rows lost {lost}, "
                          f"runs still running {running}: {again.stderr.strip()[-300:]}", file=sys.stderr)
                ok = ok and lost == 0 and running == 0
                lost_total += lost
            except Exception as e:  # the store did not open, or a query failed
                print(f"point {point} ({kind}): {e}", file=sys.stderr)
                ok = False
            held += ok
            shutil.rmtree(db, ignore_errors=True)
            print(f"\rkill points tried {tried} / held {held} / rows lost {lost_total}", end="", flush=True)
        print()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if held == tried else 1


def writers(args):
    base = tempfile.mkdtemp(prefix="vlmdb-writers-")
    try:
        def insert(db, w, i):
            return subprocess.Popen([args.vlmdb, "--db", db, "sql",
                                     f"INSERT INTO metrics (run_id, name, value, step) VALUES ('w{w}', 'x', {i}, {i})"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def run(db, concurrent):
            vlmdb(args.vlmdb, db, "init")
            failures = 0
            start = time.time()
            if concurrent:
                # W workers, each making its N writes one after another.
                pending = {w: 0 for w in range(args.writers)}
                live = {w: insert(db, w, 0) for w in range(args.writers)}
                while live:
                    for w, child in list(live.items()):
                        if child.poll() is None:
                            continue
                        if child.returncode != 0:
                            failures += 1
                            print(f"writer {w}, write {pending[w]}: {child.stderr.read().strip()}", file=sys.stderr)
                        pending[w] += 1
                        if pending[w] < args.writes:
                            live[w] = insert(db, w, pending[w])
                        else:
                            del live[w]
                    time.sleep(0.005)
            else:
                for w in range(args.writers):
                    for i in range(args.writes):
                        child = insert(db, w, i)
                        child.wait()
                        failures += child.returncode != 0
            seconds = time.time() - start
            present = csv_number(args.vlmdb, db, "SELECT count(*) AS n FROM metrics")
            return present, failures, seconds

        present, failures, together = run(os.path.join(base, "concurrent"), True)
        _, serial_failures, serial = run(os.path.join(base, "serial"), False)
        total = args.writers * args.writes
        print(f"{args.writers} writers x {args.writes} writes: {present}/{total} present, {failures} failures; "
              f"concurrent {together:.1f} s, one after another {serial:.1f} s ({serial_failures} failures): "
              f"{together / serial:.2f}x")
        return 0 if present == total and failures == 0 else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["kill", "writers"])
    parser.add_argument("--vlmdb", default=os.path.join(ROOT, "target/debug/vlmdb"))
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    sys.exit(kill(args) if args.what == "kill" else writers(args))


if __name__ == "__main__":
    main()
