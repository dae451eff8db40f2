"""Training hyperparameters (a dataclass whose fields become CLI flags)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..data.augment import AUGMENTATIONS
from ..errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
ADV_METHODS = ("none", "pgd", "trades", "fgsm-rs")
# Adversarial-training fields: left out of a stored config while --adv is none, so the configs (and run
# folder hashes) of every run made before they existed stay the same.
ADV_FIELDS = ("adv", "adv_eps", "adv_steps", "adv_step_size", "adv_norm", "trades_beta")
# Augmentation fields: left out of a stored config while --augment is none, for the same reason.
AUGMENT_FIELDS = ("augment", "augment_sigma")
CERTIFIED_METHODS = ("none", "ibp", "crown-ibp")
# Certified-training fields: left out of a stored config while --certified is none, for the same reason.
CERTIFIED_FIELDS = ("certified", "cert_eps", "cert_start", "cert_ramp", "cert_kappa")
# ReLU-stability regulariser fields: left out of a stored config while --rs-weight is 0, for the same reason.
RS_FIELDS = ("rs_weight", "rs_eps")
PRECISIONS = ("fp32", "bf16")
KERNELS = ("dense", "sparse", "auto")  # --kernels: see ticketlab.sparse.kernels
DEFAULT_ITERATIONS = 2000


@dataclass
class TrainConfig:
    """How one network trains: optimizer, learning-rate schedule, batch, length, evaluation, and the loss
    terms' settings (adversarial, certified, ReLU-stability, augmentation). Every field is a flag of every
    training command; ``validate()`` refuses impossible values in one line."""

    # --help sections of these fields (flags.help_section): by name or name prefix, the rest under "training"
    HELP_SECTION = "training"
    HELP_SECTIONS = {
        "adv": "adversarial training",
        "trades": "adversarial training",
        "augment": "augmentation",
        "certified": "certified training",
        "cert": "certified training",
        "rs": "ReLU-stability regulariser",
    }

    optimizer: str = field(default="adam", metadata={"help": f"one of {', '.join(OPTIMIZERS)}"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 (sgd, adam) or decoupled (adamw) decay"})
    batch_size: int = field(default=100, metadata={"help": "examples per step"})
    iterations: int | None = field(default=None, metadata={"help": "training steps (or give --epochs; default 2000)"})
    epochs: float | None = field(default=None, metadata={"help": "training length in epochs"})
    lr_schedule: str = field(default="constant", metadata={"help": f"one of {', '.join(SCHEDULES)}"})
    milestones: list[int] = field(
        default_factory=list, metadata={"help": "step schedule: iterations at which lr *= gamma (comma list)"}
    )
    gamma: float = field(default=0.1, metadata={"help": "step schedule factor"})
    warmup: int = field(default=0, metadata={"help": "linear lr warmup iterations"})
    eval_every: int = field(default=100, metadata={"help": "evaluate validation and test every N iterations"})
    adv: str = field(
        default="none",
        metadata={
            "help": "adversarial training: none, pgd (Madry et al.), trades (Zhang et al.) or fgsm-rs (Wong et al.)"
        },
    )
    adv_eps: float = field(default=0.0, metadata={"help": "adversarial training radius, in pixel units"})
    adv_steps: int = field(default=10, metadata={"help": "attack steps per training step (pgd, trades)"})
    adv_step_size: float | None = field(
        default=None, metadata={"help": "attack step (default 2.5 eps / steps; fgsm-rs 1.25 eps)"}
    )
    adv_norm: str = field(default="linf", metadata={"help": "linf or l2 (pgd, fgsm-rs)"})
    trades_beta: float = field(default=6.0, metadata={"help": "TRADES robustness weight"})
    augment: str = field(
        default="none",
        metadata={"help": "training augmentation: none, gaussian (noise) or augmix (Hendrycks et al.), in pixel space"},
    )
    augment_sigma: float = field(default=0.1, metadata={"help": "gaussian augmentation std, pixel units"})
    certified: str = field(
        default="none", metadata={"help": "certified training: none, ibp (Gowal et al.) or crown-ibp (Zhang et al.)"}
    )
    cert_eps: float = field(default=0.0, metadata={"help": "certified training L-inf radius, in pixel units"})
    cert_start: float = field(
        default=0.01,
        metadata={"help": "fraction of training at eps 0 before the ramp (CROWN-IBP's Fashion-MNIST: 1 of 100 epochs)"},
    )
    cert_ramp: float = field(
        default=0.61,
        metadata={"help": "fraction of training over which eps rises linearly to --cert-eps (kappa and beta follow)"},
    )
    cert_kappa: float = field(
        default=0.5, metadata={"help": "final weight of the natural loss (it falls linearly from 1 during the ramp)"}
    )
    rs_weight: float = field(
        default=0.0,
        metadata={
            "help": "ReLU-stability regulariser weight (Xiao et al.'s RS loss as Li et al.'s CertifiedPruning uses it: "
            "0.01); 0 = off"
        },
    )
    rs_eps: float = field(default=0.0, metadata={"help": "the regulariser's L-inf radius (IBP bounds), pixel units"})
    kernels: str = field(
        default="dense",
        metadata={
            "help": "masked layers' kernels: dense, sparse (forward, backward and optimizer update over the kept "
            "weights only: float32 Linear and Conv2d layers on the CPU; needs a C compiler) or auto (per layer, "
            "whichever measures faster at the batch size)"
        },
    )
    precision: str = field(
        default="fp32",
        metadata={
            "help": "fp32, or bf16: the training step's forward and loss under bfloat16 autocast (weights, optimizer "
            "state and evaluation stay fp32)"
        },
    )

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"unknown lr schedule {self.lr_schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.iterations is not None and self.epochs is not None:
            raise UserError("give --iterations or --epochs, not both")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--iterations must be >= 1, got {self.iterations}")
        if self.epochs is not None and not self.epochs > 0:
            raise UserError(f"--epochs must be > 0, got {self.epochs}")
        if self.eval_every < 1:
            raise UserError(f"--eval-every must be >= 1, got {self.eval_every}")
        if self.warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {self.warmup}")
        if self.kernels not in KERNELS:
            raise UserError(f"unknown --kernels {self.kernels!r}; choose one of: {', '.join(KERNELS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown --precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.augment not in AUGMENTATIONS:
            raise UserError(f"unknown --augment {self.augment!r}; choose one of: {', '.join(AUGMENTATIONS)}")
        if not self.augment_sigma > 0:
            raise UserError(f"--augment-sigma must be > 0, got {self.augment_sigma}")
        if self.adv not in ADV_METHODS:
            raise UserError(f"unknown --adv {self.adv!r}; choose one of: {', '.join(ADV_METHODS)}")
        if self.adv != "none":
            if not (self.adv_eps > 0 and math.isfinite(self.adv_eps)):
                raise UserError(f"--adv {self.adv} needs --adv-eps > 0 (pixel units), got {self.adv_eps}")
            if self.adv_steps < 1:
                raise UserError(f"--adv-steps must be >= 1, got {self.adv_steps}")
            if self.adv_step_size is not None and not self.adv_step_size > 0:
                raise UserError(f"--adv-step-size must be > 0, got {self.adv_step_size}")
            if self.adv_norm not in ("linf", "l2") or (self.adv == "trades" and self.adv_norm != "linf"):
                raise UserError(f"--adv-norm must be linf or l2 (trades: linf), got {self.adv_norm!r}")
            if self.trades_beta < 0:
                raise UserError(f"--trades-beta must be >= 0, got {self.trades_beta}")

        if self.certified not in CERTIFIED_METHODS:
            raise UserError(f"unknown --certified {self.certified!r}; choose one of: {', '.join(CERTIFIED_METHODS)}")
        if self.certified != "none":
            if self.adv != "none":
                raise UserError("give --adv or --certified, not both")
            if not (self.cert_eps > 0 and math.isfinite(self.cert_eps)):
                raise UserError(f"--certified {self.certified} needs --cert-eps > 0 (pixel units), got {self.cert_eps}")
            if not (0 <= self.cert_start <= 1 and 0 <= self.cert_ramp <= 1 and self.cert_start + self.cert_ramp <= 1):
                raise UserError("--cert-start and --cert-ramp are fractions of training in [0, 1] with sum <= 1")
            if not 0 <= self.cert_kappa <= 1:
                raise UserError(f"--cert-kappa must be in [0, 1], got {self.cert_kappa}")

        if not (self.rs_weight >= 0 and math.isfinite(self.rs_weight)):
            raise UserError(f"--rs-weight must be >= 0, got {self.rs_weight}")
        if self.rs_weight > 0 and not (self.rs_eps > 0 and math.isfinite(self.rs_eps)):
            raise UserError(f"--rs-weight needs --rs-eps > 0 (pixel units), got {self.rs_eps}")

    def refuse_stray_settings(self) -> None:
        """Refuse a setting of a training term that is off (``--adv-eps`` without ``--adv``): in one run it would
        do nothing (a sweep over ``adv=none,pgd`` shares such settings on purpose, so validate does not call this)."""
        defaults = {f.name: f.default for f in fields(self)}
        for group, off, use in (
            (ADV_FIELDS, "none", "--adv pgd, trades or fgsm-rs"),
            (CERTIFIED_FIELDS, "none", "--certified ibp or crown-ibp"),
            (AUGMENT_FIELDS, "none", "--augment gaussian or augmix"),
            (RS_FIELDS, 0, "--rs-weight > 0"),
        ):
            if getattr(self, group[0]) != off:
                continue
            stray = [k for k in group[1:] if getattr(self, k) != defaults[k]]
            if stray:
                flag = "--" + stray[0].replace("_", "-")
                raise UserError(f"{flag} is used only with {use}; add that, or leave {flag} out")

    def to_dict(self) -> dict:
        """The fields as a dict, without the adversarial ones while --adv is none (see ADV_FIELDS) and the
        augmentation ones while --augment is none."""
        d = asdict(self)
        if self.adv == "none":
            for k in ADV_FIELDS:
                d.pop(k)
        if self.augment == "none":
            for k in AUGMENT_FIELDS:
                d.pop(k)
        if self.certified == "none":
            for k in CERTIFIED_FIELDS:
                d.pop(k)
        if self.rs_weight == 0:
            for k in RS_FIELDS:
                d.pop(k)
        if self.precision == "fp32":  # left out at its default, as above
            d.pop("precision")
        if self.kernels == "dense":  # left out at its default (sparse kernels round differently: own folders)
            d.pop("kernels")
        return d

    def passes_per_example(self) -> int:
        """Forward-pass equivalents per example and step, for training FLOPs: 3 (forward + backward), plus 2
        per attack step (a forward and an input-gradient backward); TRADES adds the clean forward of its
        attack and trains on clean and adversarial inputs (3 + 3). Certified training: an estimate (below).
        The stability regulariser adds IBP's centre and radius passes, forward and backward (6)."""
        return self._passes() + (6 if self.rs_weight > 0 else 0)

    def _passes(self) -> int:
        if self.certified != "none":  # clean pass, IBP's centre and radius passes (3 + 6); CROWN-IBP adds a
            return 9 if self.certified == "ibp" else 36  # backward pass of 9 margin rows (10 classes): 3 x 9
        if self.adv == "none":
            return 3
        steps = 1 if self.adv == "fgsm-rs" else self.adv_steps
        return 3 + 2 * steps + (4 if self.adv == "trades" else 0)

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, n_train // self.batch_size)

    def total_iterations(self, n_train: int) -> int:
        """The budget in steps: ``iterations``, else ``epochs`` x steps per epoch, else 2000 steps."""
        if self.iterations is not None:
            return self.iterations
        if self.epochs is None:
            return DEFAULT_ITERATIONS
        return max(1, int(round(self.epochs * self.steps_per_epoch(n_train))))
