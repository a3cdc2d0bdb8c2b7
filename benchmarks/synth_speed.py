"""Time to generate the default ``jn-synth`` scene (150 views, 160x120, 2x2 supersampling) in this process.

Prints ONE JSON line: ``seconds`` (wall clock of :func:`generate_scene`, i.e. scene layout, camera path, ray casting,
shading and writing, without Python/package start-up), ``views_per_s``, ``cpu_seconds`` (process CPU time of the same
call: on a shared machine wall time also counts other processes' load), ``import_seconds`` (importing the package,
which also imports torch), and the settings. The best of ``--repeats`` runs is reported.

Usage: ``python benchmarks/synth_speed.py [--num-views 150] [--width 160] [--height 120] [--seed 0] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-views", type=int, default=150)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    import_s = time.perf_counter() - t0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(max(1, args.repeats)):
            cfg = SynthConfig(
                output_dir=Path(tmp) / f"scene{k}",
                seed=args.seed,
                num_views=args.num_views,
                width=args.width,
                height=args.height,
                quiet=True,
            )
            w0, c0 = time.perf_counter(), time.process_time()
            generate_scene(cfg)
            runs.append((time.perf_counter() - w0, time.process_time() - c0))
    wall, cpu = min(runs)
    print(
        json.dumps(
            {
                "benchmark": "synth_speed",
                "seconds": round(wall, 3),
                "views_per_s": round(args.num_views / wall, 2),
                "cpu_seconds": round(cpu, 3),
                "import_seconds": round(import_s, 3),
                "num_views": args.num_views,
                "width": args.width,
                "height": args.height,
                "supersample": cfg.supersample,
                "seed": args.seed,
                "repeats": len(runs),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
