"""First-order ``2d`` vs the official ``2d-perturb`` propagation as the perturbation size t changes.

On a trained ``jacobinerf`` run, one click per label in training view 0 (the protocol of ``benchmarks/propagation.py``),
both methods label the first ``--views`` test views at each t; we report the fraction of pixels given the same label
(after the official post-processing, as ``jn-propagate`` does), each method's mIoU on those views, and the per-view
speed-up of ``2d``. Prints ONE JSON line. The labels are those of the run's scene; on ``jn-synth`` runs the teacher
was the synthetic one.

Usage: ``python benchmarks/propagation_agreement.py --load-config RUN/config.yml [--ts 0.001 0.01 0.1 1] [--views 4]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_utils import load_run, protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of a jacobinerf run")
    parser.add_argument("--ts", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--target", choices=["semantic", "instance"], default="semantic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from jacobinerf_ns.metrics import confusion_matrix, segmentation_scores
    from jacobinerf_ns.propagator import JacobiLabeller

    pipeline = load_run(args.load_config)
    dm = pipeline.datamanager
    ann, targets = protocol(pipeline, args.target, "sparse", args.seed)
    views = min(args.views, len(targets))
    rows, seconds = [], {"2d": 0.0, "2d-perturb": 0.0}
    for t in args.ts:
        labellers = {
            m: JacobiLabeller(pipeline.model, ann, dm.train_dataset.cameras, m, targets, perturb_t=t)
            for m in ("2d", "2d-perturb")
        }
        same = 0.0
        conf = {m: torch.zeros(ann.num_labels, ann.num_labels, dtype=torch.long) for m in labellers}
        for v in range(views):
            preds = {}
            for m, lab in labellers.items():
                start = time.perf_counter()
                preds[m] = lab.predict(v)
                seconds[m] += time.perf_counter() - start
                conf[m] += confusion_matrix(preds[m], ann.to_index(targets.gt[v]), ann.num_labels)
            same += float((preds["2d"] == preds["2d-perturb"]).float().mean())
        miou = {f"miou_{m}": round(segmentation_scores(c)["miou"], 4) for m, c in conf.items()}
        rows.append({"t": t, "same_labels": round(same / views, 4), **miou})
    print(
        json.dumps(
            {
                "benchmark": "propagation_agreement",
                "config": str(args.load_config),
                "target": args.target,
                "num_labels": ann.num_labels,
                "views": views,
                "agreement": rows,
                "speedup_2d_vs_perturb": round(seconds["2d-perturb"] / seconds["2d"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
