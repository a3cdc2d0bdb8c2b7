"""Forward+backward time of our hash-grid encoding vs nerfstudio's torch ``HashEncoding`` on the CPU.

One process, the same inputs and output gradient for both, at the same configuration; the two are timed in
interleaved rounds (so machine noise hits both alike) and the median of the rounds after a warm-up is reported. Prints
one JSON line, e.g.::

    .venv/bin/python benchmarks/hash_grid.py            # 65536 points, both field-sized configurations
    .venv/bin/python benchmarks/hash_grid.py --points 200000 --threads 1

Ratios are what matter; absolute times on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from nerfstudio.field_components.encodings import HashEncoding  # noqa: E402

from jacobinerf_ns.fields.hash_grid import HashGridEncoding  # noqa: E402

# name -> (num_levels, features_per_level, log2_hashmap_size, base_resolution, max_resolution)
CONFIGS = {
    "L12_F2_T2^15_16-512": (12, 2, 15, 16, 512),
    "L16_F2_T2^19_16-2048": (16, 2, 19, 16, 2048),
}


def _step(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    module(x).backward(grad)


def _time_interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def run(points: int, repeats: int, warmup: int, seed: int) -> dict[str, object]:
    result: dict[str, object] = {"points": points, "threads": torch.get_num_threads(), "repeats": repeats}
    for name, (levels, features, log2_size, base, max_res) in CONFIGS.items():
        torch.manual_seed(seed)
        ours = HashGridEncoding(levels, features, log2_size, base, max_res, implementation="torch")
        theirs = HashEncoding(
            num_levels=levels,
            min_res=base,
            max_res=max_res,
            log2_hashmap_size=log2_size,
            features_per_level=features,
            hash_init_scale=1e-4,
            implementation="torch",
        )
        x = torch.rand(points, 3)
        grad = torch.randn(points, levels * features)
        fns = {
            "ours": lambda m=ours, x=x, g=grad: _step(m, x, g),
            "nerfstudio": lambda m=theirs, x=x, g=grad: _step(m, x, g),
        }
        times = _time_interleaved(fns, repeats, warmup)
        ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["nerfstudio"])
        result[name] = {
            "ours_s": round(ours_s, 4),
            "nerfstudio_s": round(theirs_s, 4),
            "speedup": round(theirs_s / ours_s, 2),
            "ours_min_s": round(min(times["ours"]), 4),
            "nerfstudio_min_s": round(min(times["nerfstudio"]), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(json.dumps(run(args.points, args.repeats, args.warmup, args.seed)))


if __name__ == "__main__":
    main()
