"""ONNX export and ONNX Runtime: round trips of every registered model's compact form, export --format onnx,
the bench's onnxruntime rows, and a one-line error without the extra."""

import pytest
import torch
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.deploy.compact import compact
from ticketlab.io import read_json
from ticketlab.models import MODELS, build_model

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'ticketlab[onnx]')")
from ticketlab.deploy.onnx import OrtModel, max_difference, to_onnx  # noqa: E402

SHAPES = {"cnn1d": (1, 40), "mlp1d": (1, 40)}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_models_compact_form_round_trips_through_onnxruntime(name, tmp_path):
    shape = SHAPES.get(name, (3, 32, 32))
    model = build_model(name, shape, 10)
    g = torch.Generator().manual_seed(0)
    mask = {
        n: torch.rand(p.shape, generator=g) < 0.3
        for n, p in model.named_parameters()
        if n.endswith("weight") and p.dim() > 1
    }
    small = compact(model, shape, mask)
    ort = OrtModel(to_onnx(small, shape, tmp_path / "m.onnx"), threads=1)
    x = torch.randn(5, *shape, generator=g)  # a batch size other than the export's: the batch axis is dynamic
    with torch.no_grad():
        scale = float(small(x).abs().max())
    assert max_difference(small, ort, x) <= 1e-5 * max(1.0, scale)  # untrained masked nets have huge logits


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp") / "run"
    assert (
        main(
            [
                "imp",
                "--model",
                "lenet300",
                "--dataset",
                "digits",
                "--rounds",
                "2",
                "--rate",
                "0.8",
                "--iterations",
                "200",
                "--eval-every",
                "100",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_export_onnx_writes_dense_compact_and_int8_checked_through_onnxruntime(imp_run, capsys):
    assert main(["export", str(imp_run), "--format", "compact,onnx", "--quiet"]) == 0
    assert "max |diff|" in capsys.readouterr().out
    folder = imp_run / "export" / "round_02"
    info = read_json(folder / "export.json")
    for form in ("dense-onnx", "compact-onnx", "int8-onnx"):
        assert (folder / f"{form.removesuffix('-onnx')}.onnx").exists()
    assert info["dense-onnx"]["max_abs_diff"] < 1e-5 and info["compact-onnx"]["max_abs_diff"] < 1e-5
    assert info["dense-onnx"]["test_acc"] == info["dense"]["test_acc"]
    # int8 (ONNX Runtime's QDQ static quantisation): nearly every prediction the float model's, a quarter the bytes
    assert info["int8-onnx"]["same_predictions"] >= 0.97
    assert abs(info["int8-onnx"]["test_acc"] - info["compact"]["test_acc"]) <= 0.03
    assert info["int8-onnx"]["bytes"] < 0.35 * info["compact-onnx"]["bytes"]


def test_bench_adds_onnxruntime_rows_and_speedups_against_them(imp_run, capsys):
    assert main(["bench", str(imp_run), "--threads", "1", "--repeats", "2", "--batch-sizes", "1,8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "x ort" in out and "dense-onnx" in out and "int8-onnx" in out
    r = read_json(imp_run / "export" / "round_02" / "bench-1t.json")
    assert set(r["latency_s"]["8"]) >= {"dense", "sparse", "dense-onnx", "compact-onnx", "int8-onnx"}
    assert r["speedup_vs_onnxruntime"]["8"]["dense-onnx"] == 1.0


def test_onnx_without_the_extra_is_one_line(imp_run, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnx(name, *a, **kw):
        level = a[3] if len(a) > 3 else kw.get("level", 0)
        if name in ("onnx", "onnxruntime") and level == 0:  # the packages, not ticketlab.deploy.onnx
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    code = main(["export", str(imp_run), "--format", "onnx"])
    one_line_exit_2(code, capsys.readouterr().err, "pip install 'ticketlab[onnx]'")


def test_the_fastest_path_per_batch_size_is_stored_honoured_and_equal(tmp_path, monkeypatch):
    from ticketlab.deploy import load_sparse, save_sparse, sparsify
    from ticketlab.deploy.paths import FastestPath, with_fastest_path

    model = build_model("lenet300", (1, 8, 8), 10).eval()
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=g) < 0.05 for n, p in model.named_parameters() if n.endswith("weight")}
    small = compact(model, (1, 8, 8), mask)
    eager = sparsify(small, input_shape=(1, 8, 8), repeats=3)
    fast = with_fastest_path(eager, small, (1, 8, 8), repeats=3)
    if not isinstance(fast, FastestPath):  # never faster on this machine: wrap anyway to test the mechanics
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            fast = FastestPath(eager, to_onnx(small, (1, 8, 8), f"{d}/m.onnx").read_bytes(), {1: "eager"})
    fast.paths = {1: "onnxruntime", 256: "eager"}
    recipe = {
        "model": "lenet300",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "widths": __import__("ticketlab.deploy", fromlist=["widths"]).widths(small),
    }
    save_sparse(fast, tmp_path / "s.safetensors", recipe)
    back, _ = load_sparse(tmp_path / "s.safetensors")
    assert isinstance(back, FastestPath) and back.paths == {1: "onnxruntime", 256: "eager"}
    x1, x300 = torch.randn(1, 1, 8, 8), torch.randn(300, 1, 8, 8)
    with torch.no_grad():
        assert back._session is None
        assert torch.allclose(back(x1), small(x1), atol=1e-5) and back._session is not None  # ONNX path
        calls = []
        back.eager.register_forward_pre_hook(lambda *a: calls.append(1))
        assert torch.allclose(back(x300), small(x300), atol=1e-5) and calls  # eager path (nearest size 256)
        for p in ("eager", "onnxruntime"):
            assert torch.allclose(back(x300, path=p), small(x300), atol=1e-5)
    import ticketlab.deploy.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "available", lambda: False)  # loaded where onnxruntime is missing
    back.paths = back.paths
    assert back.path_for(1) == "eager"
    assert with_fastest_path(eager, small, (1, 8, 8)) is eager
