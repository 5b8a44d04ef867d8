#!/usr/bin/env python3
"""datatrove's MinHash deduplication (the FineWeb pipeline) on one JSON Lines
file, with FineWeb's parameters (word 5-grams, 14 buckets x 8 hashes, seed 1,
64-bit xxhash), one task per stage (one core; the buckets stage runs its 14
buckets one after another). Prints the seconds of each stage and writes the
0-based indices of the removed documents, one a line, to REMOVED, and
"DOC CLUSTER" for every document in a cluster to REMOVED.clusters.

    pip install datatrove spacy 'xxhash<4' tokenizers regex orjson
    python3 bench/dedup_datatrove.py INPUT.jsonl WORKDIR REMOVED
"""
import os
import resource
import shutil
import struct
import sys
import time

from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader


def main():
    inp, work, removed_path = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work + "/input")
    os.symlink(os.path.abspath(inp), work + "/input/00000.jsonl")
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
    stages = [
        ("signatures", [JsonlReader(work + "/input", glob_pattern="*.jsonl"),
                        MinhashDedupSignature(output_folder=work + "/sigs", config=cfg)], 1),
        ("buckets", [MinhashDedupBuckets(input_folder=work + "/sigs", output_folder=work + "/buckets", config=cfg)],
         cfg.num_buckets),
        ("clusters", [MinhashDedupCluster(input_folder=work + "/buckets", output_folder=work + "/remove", config=cfg,
                                              save_cluster_id=True)], 1),
    ]
    def cpu():
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    total = total_cpu = 0.0
    for name, pipeline, tasks in stages:
        t, c = time.time(), cpu()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=work + "/logs_" + name).run()
        dt, dc = time.time() - t, cpu() - c
        total += dt
        total_cpu += dc
        print("%s %.2f %.2f" % (name, dt, dc), flush=True)
    # The filter stage only drops the listed documents while copying them:
    # the .remove file is the decision.
    with open(work + "/remove/000000.remove", "rb") as f:
        data = f.read()
    ids = struct.unpack("<%dI" % (len(data) // 4), data)
    with open(removed_path, "w") as f:
        f.write("".join("%d\n" % i for i in ids))
    # Cluster ids of every document in a cluster: (doc, cluster) pairs.
    with open(work + "/remove/000000.clusters", "rb") as f:
        data = f.read()
    pairs = struct.unpack("<%dI" % (len(data) // 4), data)
    with open(removed_path + ".clusters", "w") as f:
        f.write("".join("%d %d\n" % (pairs[k], pairs[k + 1]) for k in range(0, len(pairs), 2)))
    print("total %.2f %.2f" % (total, total_cpu))
    print("removed %d" % len(ids))


if __name__ == "__main__":
    main()
