import json

import pytest
import torch

from ticketlab.cli import main
from ticketlab.deploy import load_compact, load_int8, load_sparse
from ticketlab.deploy.runs import load_run
from ticketlab.io import read_json


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
                "60",
                "--eval-every",
                "30",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_export_writes_every_form_with_the_masked_models_outputs(imp_run, capsys):
    assert main(["export", str(imp_run), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "imp round 2" in printed and "int8" in printed
    rm = load_run(imp_run)
    x = rm.data.x_test[:16]
    folder = imp_run / "export" / "round_02"
    with torch.no_grad():
        ref = rm.model(x)
        assert torch.allclose(load_compact(folder / "compact.safetensors")[0](x), ref, atol=1e-5)
        assert torch.allclose(load_sparse(folder / "sparse.safetensors")[0](x), ref, atol=1e-5)
        assert (load_int8(folder / "int8.safetensors")[0](x) - ref).abs().max() < 0.1 * ref.abs().max()
    info = read_json(folder / "export.json")
    sparse_layers = info["sparse"]["bytes"] - info["sparse"].get("onnx_bytes", 0)  # the ONNX path, when chosen
    assert sparse_layers < 0.2 * info["dense"]["bytes"]  # 4% density: 8 bytes per kept weight
    assert json.loads((folder / "compact.json").read_text())["widths"]["5"][0] == 10


def test_export_reuses_files_and_takes_a_round(imp_run):
    folder = imp_run / "export" / "round_02"
    assert main(["export", str(imp_run), "--format", "compact", "--quiet"]) == 0
    stamp = (folder / "compact.safetensors").stat().st_mtime_ns
    assert main(["export", str(imp_run), "--format", "compact", "--quiet"]) == 0
    assert (folder / "compact.safetensors").stat().st_mtime_ns == stamp
    assert main(["export", str(imp_run), "--round", "1", "--format", "sparse", "--quiet"]) == 0
    assert (imp_run / "export" / "round_01" / "sparse.safetensors").exists()


def test_bench_times_every_form_and_states_threads(imp_run, capsys):
    assert main(["bench", str(imp_run), "--threads", "1", "--repeats", "2", "--batch-sizes", "1,8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 thread(s)" in out and all(f in out for f in ("dense", "compact", "sparse", "int8"))
    r = read_json(imp_run / "export" / "round_02" / "bench-1t.json")
    assert set(r["latency_s"]) == {"1", "8"} and r["speedup"]["8"]["dense"] == 1.0


@pytest.mark.parametrize(
    "args,msg",
    [
        (["export", "nowhere"], "not a ticketlab run directory"),
        (["export", "{run}", "--format", "tflite"], "unknown export format"),
        (["export", "{run}", "--round", "9"], "no finished round 9"),
        (["bench", "{run}", "--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_export_and_bench_input_exits_2(imp_run, capsys, args, msg):
    assert main([a.replace("{run}", str(imp_run)) for a in args]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
