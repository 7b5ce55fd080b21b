#!/usr/bin/env python3
"""FAISS's HNSW on the vectors `interop-hub bench --export-vectors DIR` wrote: the same faces,
probes and graph settings as the hub's bare usearch index (M 16, efConstruction 128, inner
product of unit vectors), built by one thread and searched by `--threads` threads, at the
same expansions as the bench's trade-off curve; with full-precision vectors (`flat`,
IndexHNSWFlat) and 8-bit scalar-quantised ones (`sq8`, IndexHNSWSQ, trained on the faces),
the counterpart of the hub's i8; and (`binary`) FAISS's counterpart of the hub's sketch
search: an exhaustive `IndexBinaryFlat` over each vector's sign bits, whose shortlist is
re-ranked by the inner product of the full vectors. Needs `pip install faiss-cpu numpy`."""

import argparse
import json
import pathlib
import time

import faiss
import numpy as np


def signs(vectors):
    return np.ascontiguousarray(np.packbits(vectors > 0, axis=1))


def measure_binary(args, faces, face_persons, probes, probe_persons) -> dict:
    """Sign sketches scanned by FAISS's exhaustive Hamming search, the shortlist re-ranked by
    the inner product of the full vectors (as the hub's sketch search does)."""
    index = faiss.IndexBinaryFlat(faces.shape[1])
    started = time.perf_counter()
    index.add(signs(faces))
    adds_per_s = len(faces) / (time.perf_counter() - started)
    faiss.omp_set_num_threads(args.threads)
    curve = []
    for shortlist in [int(s) for s in args.shortlists.split(",")]:
        started = time.perf_counter()
        _, found = index.search(signs(probes), shortlist)
        similarity = np.einsum("qkd,qd->qk", faces[found], probes)
        first = found[np.arange(len(probes)), similarity.argmax(axis=1)]
        seconds = time.perf_counter() - started
        recall = float(np.mean(face_persons[first] == probe_persons))
        curve.append({"shortlist": shortlist, "qps": len(probes) / seconds, "recall": recall})
    return {"kind": "binary", "index": "IndexBinaryFlat + inner-product re-ranking",
            "adds_per_s": adds_per_s, "shortlist_curve": curve}


def measure(kind, args, faces, face_persons, probes, probe_persons) -> dict:
    if kind == "binary":
        return measure_binary(args, faces, face_persons, probes, probe_persons)
    dimension = faces.shape[1]
    if kind == "flat":
        index = faiss.IndexHNSWFlat(dimension, args.connectivity, faiss.METRIC_INNER_PRODUCT)
        name = "IndexHNSWFlat"
    elif kind == "sq8":
        index = faiss.IndexHNSWSQ(
            dimension, faiss.ScalarQuantizer.QT_8bit, args.connectivity, faiss.METRIC_INNER_PRODUCT
        )
        name = "IndexHNSWSQ QT_8bit"
    else:
        raise SystemExit(f"unknown index kind {kind!r}: flat, sq8 or binary")
    index.hnsw.efConstruction = args.expansion_add
    faiss.omp_set_num_threads(1)
    if not index.is_trained:
        index.train(np.ascontiguousarray(faces))
    started = time.perf_counter()
    index.add(np.ascontiguousarray(faces))
    adds_per_s = len(faces) / (time.perf_counter() - started)

    faiss.omp_set_num_threads(args.threads)
    curve = []
    for expansion in [int(e) for e in args.expansions.split(",")]:
        index.hnsw.efSearch = expansion
        started = time.perf_counter()
        _, found = index.search(probes, 1)
        seconds = time.perf_counter() - started
        recall = float(np.mean(face_persons[found[:, 0]] == probe_persons))
        curve.append({"expansion_search": expansion, "qps": len(probes) / seconds, "recall": recall})
    return {"kind": kind, "index": name, "adds_per_s": adds_per_s, "expansion_curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", type=pathlib.Path, help="the --export-vectors directory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connectivity", type=int, default=16)
    parser.add_argument("--expansion-add", type=int, default=128)
    parser.add_argument("--expansions", default="32,64,128,256,512")
    parser.add_argument("--shortlists", default="1,4,16,64")
    parser.add_argument("--kinds", default="flat,sq8,binary", help="any of flat, sq8, binary")
    parser.add_argument("--json", type=pathlib.Path, help="also write the report here")
    args = parser.parse_args()

    shape = json.loads((args.dir / "shape.json").read_text())
    dimension = shape["dimension"]
    faces = np.fromfile(args.dir / "faces.f32", dtype="<f4").reshape(-1, dimension)
    face_persons = np.fromfile(args.dir / "face_persons.u64", dtype="<u8")
    probes = np.fromfile(args.dir / "probes.f32", dtype="<f4").reshape(-1, dimension)
    probe_persons = np.fromfile(args.dir / "probe_persons.u64", dtype="<u8")
    probes = np.ascontiguousarray(probes)
    faiss.normalize_L2(probes)

    indexes = []
    for kind in args.kinds.split(","):
        indexes.append(measure(kind, args, faces, face_persons, probes, probe_persons))

    report = {
        "library": f"faiss {faiss.__version__}",
        "templates": len(faces),
        "threads": args.threads,
        "indexes": indexes,
    }
    for measured in indexes:
        print(
            f"{report['library']} {measured['index']}, {len(faces)} templates, "
            f"one inserting thread: {measured['adds_per_s']:.0f} adds/s"
        )
        print()
        knob = "shortlist" if measured["kind"] == "binary" else "expansion_search"
        print(f"| faiss {measured['kind']} {knob} | qps ({args.threads} threads) | recall |")
        print("|---:|---:|---:|")
        for point in measured.get("shortlist_curve") or measured["expansion_curve"]:
            print(f"| {point[knob]} | {point['qps']:.0f} | {point['recall']:.4f} |")
        print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
