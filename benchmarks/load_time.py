"""What loading the course model costs: cold conversion, warm loads, and the converted copy's digest check.

Runs in a temporary COURSE_CACHE holding a hard link (or copy) of the fetched course GGUF, so the real cache is not
touched. Reports medians of warm ``load_model()`` as a fresh process's first load (the digest check runs in full)
and again in the same process, and the digest check alone (CRC-32 at every load; SHA-256 for `cache verify`).

    .venv/bin/python benchmarks/load_time.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
start = time.perf_counter()
from course_utils import load_model
from course_utils.load_weights import load_checkpoint
imported = time.perf_counter()
load_model(device="cpu")  # first load in the process: the digest check runs in full
first = time.perf_counter()
load_model(device="cpu")  # same process, files unchanged: the check is remembered
second = time.perf_counter()
load_checkpoint()
print(json.dumps({"import": imported - start, "load_model_first": first - imported,
                  "load_model_again": second - first, "load_checkpoint_again": time.perf_counter() - second}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from course_utils import weights_cache as C
    from course_utils.cache_layout import default_weights_path

    source = default_weights_path()
    if not source.exists():
        sys.exit(f"{source} not found; run `make setup` first")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COURSE_CACHE"] = tmp
        target = Path(tmp) / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        env = dict(os.environ, COURSE_CACHE=tmp, TQDM_DISABLE="1")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from course_utils.load_weights import load_checkpoint; "
                        "load_checkpoint()"], env=env, check=True)
        cold = time.perf_counter() - start
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True,
                                          text=True).stdout) for _ in range(args.rounds)]
        entry = C.entry_dir(target)
        crc, sha = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            C.file_digest(entry / "model.safetensors")
            t1 = time.perf_counter()
            C.file_digest(entry / "model.safetensors", strong=True)
            crc.append(t1 - t0)
            sha.append(time.perf_counter() - t1)
    result = {"cold_conversion_s (process incl. import)": round(cold, 2),
              **{f"warm_{k}_s": round(statistics.median(r[k] for r in runs), 3) for k in runs[0]},
              "crc32_513MiB_s": round(statistics.median(crc), 3),
              "crc32_plus_sha256_513MiB_s": round(statistics.median(sha), 3),
              "load_average": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
