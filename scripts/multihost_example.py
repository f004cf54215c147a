"""docs/scaling.md's multi-host recipe, runnable: each process sweeps its slice of the grid, process 0 merges.

On every host (a cluster launcher, or `gcloud compute tpus tpu-vm ssh ... --worker=all --command=...`; on a
TPU pod `jax.distributed.initialize()` finds the coordinator by itself):

    python scripts/multihost_example.py --out /shared/results

By hand, two processes on one machine (a coordinator on a loopback port, CPU backend):

    python scripts/multihost_example.py --coordinator 127.0.0.1:12355 --processes 2 --process-id 0 --out results/mh &
    python scripts/multihost_example.py --coordinator 127.0.0.1:12355 --processes 2 --process-id 1 --out results/mh

Process i sweeps every ``count``-th value of d starting at i, on its own devices, with a checkpoint directory of
its own (a rerun resumes), and saves ``OUT/part-i``; process 0 then waits for every part and writes
``OUT/phase_diagram.{npz,json,png}`` with ``jaxbo.merge``. ``OUT`` must be a directory every process can read
(a shared filesystem on a cluster). Run keys depend on grid values, not positions, so the merged result has the
numbers of one sweep over the whole grid.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core on a CPU host

import jax  # noqa: E402

PAPER = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
#: A grid small enough for a test or a first try on a laptop.
TINY = {"d": [40, 60, 80, 100], "signal_norm": [3.0, 30.0]}


def initialize(coordinator: str | None, processes: int | None, process_id: int | None) -> tuple[int, int]:
    """Join the distributed job; returns (this process's index, process count)."""
    if coordinator is None:
        jax.distributed.initialize()  # TPU pods and cluster launchers (SLURM, Open MPI) set everything
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=processes, process_id=process_id)
    return jax.process_index(), jax.process_count()


def part_path(out: str, index: int) -> str:
    return os.path.join(out, f"part-{index}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a directory every process can read and write")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 (omit where the environment says it)")
    parser.add_argument("--processes", type=int, help="number of processes (with --coordinator)")
    parser.add_argument("--process-id", type=int, help="this process's index (with --coordinator)")
    parser.add_argument("--grid", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call (default: planned)")
    parser.add_argument("--wait", type=float, default=3600.0, help="seconds process 0 waits for the other parts")
    args = parser.parse_args(argv)
    if args.coordinator is not None and (args.processes is None or args.process_id is None):
        parser.error("--coordinator needs --processes and --process-id")
    index, count = initialize(args.coordinator, args.processes, args.process_id)
    full = PAPER if args.grid == "paper" else TINY
    grid = {"d": full["d"][index::count], "signal_norm": full["signal_norm"]}
    os.makedirs(args.out, exist_ok=True)
    result = jaxbo.sweep(
        grid,
        seeds=args.seeds,
        devices=jax.local_devices(),  # this process's devices only: runs are independent, nothing is exchanged
        chunk_size=args.chunk_size,
        checkpoint=os.path.join(args.out, f"checkpoint-{index}"),
        progress=index == 0,
    )
    result.save(part_path(args.out, index))
    print(f"process {index} of {count}: {result.metadata['plan']['total_runs']} runs saved", file=sys.stderr)
    if index == 0:
        waited = time.monotonic()
        paths = [part_path(args.out, i) + ".json" for i in range(count)]
        while not all(os.path.exists(path) for path in paths):  # .json is written after .npz
            if time.monotonic() - waited > args.wait:
                missing = [path for path in paths if not os.path.exists(path)]
                raise TimeoutError(f"process 0 waited {args.wait:g} s for {missing}")
            time.sleep(0.2)
        merged = jaxbo.merge([jaxbo.load(part_path(args.out, i)) for i in range(count)])
        stem = os.path.join(args.out, "phase_diagram")
        print("\n".join(merged.save(stem)))
        jaxbo.plot.phase_diagram(merged).savefig(stem + ".png", dpi=100)
        print(stem + ".png")
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    from jaxbo.cli import exit_on_interrupt

    sys.exit(exit_on_interrupt(main))
