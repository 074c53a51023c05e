"""`python -m datagen.bench [data=protocol] [bench_samples=N]`: samples/s per core per behaviour.

Not a test. One process (= one core, BLAS threads 1) solves `bench_samples` samples of each
behaviour drawn from the config (default: protocol resolution) after the JIT cache and the
models are warm, timed by wall clock and by the process's CPU time (the per-core rate), and projects the wall time of the protocol's samples on 16 cores assuming
perfect scaling over independent shards (behaviours in equal thirds, rejects not re-drawn).
Prints a Markdown table to paste into datagen/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_k] = "1"

import datagen.spec  # noqa: E402  (registers schemas)
from common.config import load_validated  # noqa: E402
from common.provenance import device_label, now_iso  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    n = 30
    rest = []
    for a in args:
        if a.startswith("bench_samples="):
            n = int(a.split("=", 1)[1])
        else:
            rest.append(a)
    if not any(a.startswith("data=") for a in rest):
        rest.insert(0, "data=protocol")
    cfg = load_validated("datagen", rest, datagen.spec.validate_datagen)
    data = cfg.data
    from datagen.sampling import draw_sample
    from datagen.solid import SampleRejected
    from datagen.worker import SampleRunner

    t0 = time.perf_counter()
    runner = SampleRunner(data, eager=True)
    warm_s = time.perf_counter() - t0
    rows = []
    total_requested = sum(int(v) for v in data.splits.values())
    per_sample_s = {}
    for b in data.behaviours:
        ids, sid = [], 0
        while len(ids) < n:
            if draw_sample(data, sid).behaviour == b:
                ids.append(sid)
            sid += 1
        reasons: dict[str, int] = {}
        t, c = time.perf_counter(), time.process_time()
        for i in ids:
            try:
                runner.run(draw_sample(data, i))
            except SampleRejected as e:
                reasons[e.reason] = reasons.get(e.reason, 0) + 1
        el, cpu = time.perf_counter() - t, time.process_time() - c
        # Hazard: on a shared box wall time includes waiting for a core; CPU time of this
        # single-threaded process is the per-core cost.
        per_sample_s[b] = cpu / n
        rows.append((b, n, reasons, el, cpu))
    mean_s = sum(per_sample_s.values()) / len(per_sample_s)
    projected_h = total_requested * mean_s / 16 / 3600
    print(f"date: {now_iso()}  device: {device_label()}  command: python -m datagen.bench {' '.join(args)}")
    print(
        f"mesh: {data.mesh.cells_per_axis}^3 Q{data.mesh.displacement_degree} hexahedra, "
        f"dx degree {data.mesh.quadrature_degree}, ds degree {data.mesh.surface_quadrature_degree}; "
        f"model build (JIT cache warm) {warm_s:.1f} s"
    )
    print("\n| behaviour | samples | rejected (reason) | wall s | CPU s | samples/s per core (CPU) |")
    print("|---|---|---|---|---|---|")
    for b, k, r, el, cpu in rows:
        rej = ", ".join(f"{v} {key}" for key, v in sorted(r.items())) or "0"
        print(f"| {b} | {k} | {rej} | {el:.2f} | {cpu:.2f} | {k / cpu:.2f} |")
    print(
        f"\nProjection (not measured): {total_requested} samples (behaviours in equal thirds) on 16 cores "
        f"= {projected_h:.2f} h, assuming perfect scaling from this single-core CPU rate."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
