"""N3F's object-retrieval protocol: teacher features vs the distilled field's, with the same queries.

A query is a ground-truth instance region (≥ ``--min-area`` pixels) in one test view, described by its mean feature
(N3F eq. 4); it ranks every pixel of the *other* test views by cosine similarity; the pixels of that instance are
the relevant ones (void pixels ignored); AP per query, mAP over queries (``jacobinerf_ns.features.retrieval``).
Sources: ``teacher`` (the 2D teacher's features of the test images, in the training split's PCA basis) and
``field`` (the rendered, distilled features of the same views). N3F's claim: field mAP > teacher mAP.

Prints one JSON line per source (``source``, ``map``, ``n_queries``, ``teacher``) and a markdown table.

Usage: ``python benchmarks/retrieval.py [--scene DIR] [--teacher appearance|synthetic] [--features CFG]
[--out DIR] [--queries 60] [--min-area 100]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_utils import ensure_scene, load_run, train_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--out", type=Path, default=Path("bench_out/retrieval"))
    parser.add_argument("--teacher", choices=["appearance", "synthetic"], default="appearance")
    parser.add_argument("--features", type=Path, default=None, help="config.yml of a feature-field run to reuse")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--min-area", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from jacobinerf_ns.features.retrieval import relevance_from_labels, retrieval_map
    from jacobinerf_ns.query import render

    start = time.perf_counter()
    scene = ensure_scene(args.scene)
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.features or train_method("jacobinerf-features-tiny", scene, args.out, "features", teacher=args.teacher)
    pipeline = load_run(run)
    dm = pipeline.datamanager
    teacher_name = dm.train_dataset.metadata["teacher_name"]
    inst = dm.eval_scene.instance.long()
    n, h, w = inst.shape
    teacher = dm.eval_teacher_features()
    sources = {
        "teacher": torch.stack([teacher.dense(i) for i in range(n)]).float(),
        "field": torch.stack(
            [render(pipeline.model, dm.eval_dataset.cameras[i : i + 1])["features"].cpu() for i in range(n)]
        ),
    }
    gen = torch.Generator().manual_seed(args.seed)
    candidates = []
    for v in range(n):
        ids, areas = inst[v].unique(return_counts=True)
        candidates += [
            (v, int(i)) for i, a in zip(ids.tolist(), areas.tolist(), strict=True) if i > 0 and a >= args.min_area
        ]
    order = torch.randperm(len(candidates), generator=gen)[: args.queries].tolist()
    queries = [candidates[k] for k in order]
    q_views = torch.tensor([v for v, _ in queries])
    q_labels = torch.tensor([i for _, i in queries])
    t_labels = torch.where(inst > 0, inst, torch.full_like(inst, -1)).reshape(-1)
    t_views = torch.arange(n)[:, None].expand(n, h * w).reshape(-1)
    relevance, ignore = relevance_from_labels(q_labels, q_views, t_labels, t_views)
    lines = []
    for name, feats in sources.items():
        descriptors = torch.stack(
            [torch.nn.functional.normalize(feats[v][inst[v] == i].mean(dim=0), dim=0) for v, i in queries]
        )
        value = float(retrieval_map(descriptors, feats.reshape(-1, feats.shape[-1]), relevance, ignore))
        lines.append({"source": name, "map": value, "n_queries": len(queries), "teacher": teacher_name})
        print(json.dumps(lines[-1]), flush=True)
    table = ["| source | mAP | queries |", "|---|---|---|"]
    table += [f"| {r['source']} | {100 * r['map']:.1f} | {r['n_queries']} |" for r in lines]
    print("\n".join(table))
    total = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps({"lines": lines, "run": str(run), "seconds": total}))
    print(json.dumps({"benchmark": "retrieval", "seconds": round(total, 1), "teacher": teacher_name}))


if __name__ == "__main__":
    main()
