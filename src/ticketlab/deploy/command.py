"""``ticketlab export RUN`` (compact, sparse, int8 and ONNX files of a run's pruned model) and ``ticketlab
bench RUN`` (their latency, size and accuracy side by side)."""

from __future__ import annotations

from ..commands import Command, add_data_flags, ints, names
from ..errors import UserError
from .bench import bench_run, format_bench
from .export import export_run, format_export


def configure_export(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument(
        "--format",
        default="compact,sparse,int8",
        type=names,
        metavar="F[,F]",
        help="compact, sparse, int8 and/or onnx (dense, compact and int8 for ONNX Runtime; pip install "
        "'ticketlab[onnx]'); default: compact,sparse,int8",
    )
    p.add_argument("--round", type=int, default=None, metavar="K", help="IMP runs: the round (default: the last)")
    p.add_argument("--force", action="store_true", help="rewrite existing export files")
    add_data_flags(p)


def export(ns) -> int:
    print(
        format_export(
            export_run(ns.run_dir, ns.format, round=ns.round, data_dir=ns.data_dir, force=ns.force, quiet=ns.quiet)
        )
    )
    return 0


def configure_bench(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--round", type=int, default=None, metavar="K", help="IMP runs: the round (default: the last)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--batch-sizes", type=ints, default=[1, 256], metavar="B[,B]", help="default 1,256")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (median; default 7)")
    add_data_flags(p)


def bench(ns) -> int:
    if ns.threads is not None and ns.threads < 1:
        raise UserError(f"--threads must be >= 1, got {ns.threads}")
    if ns.repeats < 1 or not ns.batch_sizes or min(ns.batch_sizes) < 1:
        raise UserError("--repeats and --batch-sizes must be >= 1")
    print(
        format_bench(
            bench_run(
                ns.run_dir,
                round=ns.round,
                threads=ns.threads,
                batch_sizes=tuple(ns.batch_sizes),
                repeats=ns.repeats,
                data_dir=ns.data_dir,
                quiet=ns.quiet,
            )
        )
    )
    return 0


EXPORT = Command(
    "export",
    configure_export,
    export,
    group="tools",
    description="compact: channels removed (Torch-Pruning); sparse: CSR kernels chosen by measurement; "
    "int8: PyTorch static quantisation. safetensors + JSON, no pickle.",
)
BENCH = Command(
    "bench",
    configure_bench,
    bench,
    group="tools",
    description="Exports the run if needed, then times every form side by side (interleaved, median) at "
    "each batch size.",
)
