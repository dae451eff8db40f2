"""``ticketlab pack RUN --round K`` (a ticket as seed + entropy-coded mask) and ``ticketlab unpack FILE``."""

from __future__ import annotations

from pathlib import Path

from ..commands import Command
from ..errors import UserError
from ..io import save_tensors
from .pack import pack_run, unpack_ticket


def configure_pack(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--round", type=int, required=True, metavar="K", help="the IMP round to pack")
    p.add_argument(
        "--weights",
        choices=None,
        default=None,
        metavar="fp32|fp16",
        help="also store the trained values of the kept weights, for deployment",
    )
    p.add_argument("--out", default=None, help="file to write (default: RUN/ticket_round_KK[_fp16].safetensors)")


def pack_command(ns) -> int:
    suffix = f"_{ns.weights}" if ns.weights else ""
    out = Path(ns.out) if ns.out else Path(ns.run_dir) / f"ticket_round_{ns.round:02d}{suffix}.safetensors"
    if out.exists():
        raise UserError(f"{out} exists; choose another --out (nothing was overwritten)")
    d = pack_run(ns.run_dir, ns.round, out, weights=ns.weights)
    print(
        f"{out}: {d['file_bytes']} bytes; density {100 * d['density']:.2f}%; mask "
        f"{d['bits_per_weight']:.4f} bits per prunable weight vs entropy {d['entropy_bits_per_weight']:.4f} "
        f"({d['ratio_to_entropy']:.3f}x); fp32 weights would be 32 bits each"
    )
    return 0


def configure_unpack(p) -> None:
    p.add_argument("ticket", metavar="FILE")
    p.add_argument("--out", required=True, help="new directory for init/mask/weights .safetensors")


def unpack_command(ns) -> int:
    out = Path(ns.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; choose a new directory (nothing was overwritten)")
    t = unpack_ticket(ns.ticket)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out} ({e.strerror}); choose a writable directory") from None
    save_tensors(out / "init.safetensors", t.model.state_dict())
    save_tensors(out / "mask.safetensors", t.mask)
    written = ["init.safetensors", "mask.safetensors"]
    if t.weights is not None:
        save_tensors(out / "weights.safetensors", t.weights)
        written.append("weights.safetensors")
    print(
        f"{t.header['model']} (seed {t.header['seed']}, round {t.header['round']}): wrote {', '.join(written)} to {out}"
    )
    return 0


PACK = Command("pack", configure_pack, pack_command, group="tools")
UNPACK = Command("unpack", configure_unpack, unpack_command, group="tools")
