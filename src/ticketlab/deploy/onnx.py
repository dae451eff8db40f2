"""ONNX export and ONNX Runtime: the runtime users ship on, as an export format and as the bench's baseline.

``to_onnx`` writes a model with ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``: it needs no
extra packages and handles every registered model), a dynamic batch dimension, input ``input`` and output
``logits``. ``quantize_int8`` makes the int8 form with ONNX Runtime's own static quantisation
(``onnxruntime.quantization.quantize_static``): QDQ format, int8 weights per output channel, uint8
activations calibrated on training examples - the int8 model a user of ONNX Runtime would ship. ``session``
opens a file with a stated number of intra-op threads (one inter-op thread, every graph optimisation on).

``onnx`` and ``onnxruntime`` are the optional extra ``ticketlab[onnx]``; without them these functions stop
with a one-line error.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..io import _atomic_write

OPSET = 17


def available() -> bool:
    """Whether the optional extra (onnx and onnxruntime) is installed."""
    try:
        import onnx  # noqa: F401  (optional: the onnx extra)
        import onnxruntime  # noqa: F401  (optional: the onnx extra)
    except ImportError:
        return False
    return True


def require() -> None:
    if not available():
        raise UserError(
            "ONNX export and the onnxruntime bench need onnx and onnxruntime: pip install 'ticketlab[onnx]'"
        )


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Write ``model`` (eval mode, on CPU) as ONNX with a dynamic batch dimension."""
    require()

    model = model.cpu().eval()
    path = Path(path)

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, *input_shape),),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )

    _atomic_write(path, write)
    return path


def session(model: str | Path | bytes, threads: int | None = None):
    """An ONNX Runtime CPU session of ``model`` (a file, or the model's bytes) with ``threads`` intra-op threads
    (default: torch's count)."""
    require()
    import onnxruntime as ort  # optional: the onnx extra

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), sess_options=opts, providers=["CPUExecutionProvider"]
    )


class OrtModel:
    """An ONNX Runtime session called like a model: tensor in, tensor out (what the bench and accuracy use)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.sess = session(path, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sess.run(["logits"], {"input": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})
        return torch.from_numpy(out[0])

    def eval(self) -> OrtModel:
        return self

    def train(self, mode: bool = True) -> OrtModel:
        return self

    @property
    def training(self) -> bool:
        return False


def quantize_int8(fp32: str | Path, out: str | Path, calibration: torch.Tensor, batch: int = 64) -> Path:
    """ONNX Runtime's static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations) of the ONNX
    model ``fp32``, calibrated (min-max) on ``calibration`` inputs."""
    require()
    from onnxruntime.quantization import (  # optional: the onnx extra
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # optional: the onnx extra

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter(
                [
                    {"input": calibration[i : i + batch].numpy().astype(np.float32)}
                    for i in range(0, len(calibration), batch)
                ]
            )

        def get_next(self):
            return next(self.chunks, None)

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

        def write(t: str) -> None:
            quantize_static(
                str(pre),
                t,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )

        _atomic_write(out, write)
    return out


def max_difference(model, ort_model: OrtModel, x: torch.Tensor, batch: int = 1000) -> float:
    """The largest absolute difference between ``model``'s and the session's outputs over ``x``."""
    worst = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            worst = max(worst, float((model(x[i : i + batch]) - ort_model(x[i : i + batch])).abs().max()))
    return worst
