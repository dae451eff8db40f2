"""ticketlab report: one self-contained page for runs of every kind, seed groups, sweeps and folders of runs."""

import re

import helpers
import pytest
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.report import build_report

pytestmark = pytest.mark.slow  # end-to-end: `make test-slow` and CI run these

TINY = ["--model", "lenet300", "--dataset", "digits", "--quiet"]
TRAIN = ["--iterations", "20", "--eval-every", "10"]


def run(*argv):
    assert main([*argv]) == 0, argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs of every kind (lenet300 on sklearn's digits, 20 steps per training)."""
    import torch

    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()  # `bench --threads 1` sets it; module fixtures run before conftest's guard
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        imp = root / "imp"
        run("imp", *TINY, *TRAIN, "--rounds", "10", "--rate", "0.3", "--control", "reinit", "--out", str(imp))
        run("imp", *TINY, *TRAIN, "--rounds", "2", "--seeds", "2", "--out", str(root / "imp-seeds"))
        run(
            "sweep",
            "imp",
            "--vary",
            "rate=0.2,0.5",
            "--seeds",
            "2",
            *TINY,
            *TRAIN,
            "--rounds",
            "1",
            "--out",
            str(root / "sweep"),
        )
        run(
            "dst",
            *TINY,
            "--method",
            "rigl",
            "--density",
            "0.2",
            "--iterations",
            "40",
            "--eval-every",
            "20",
            "--delta-t",
            "10",
            "--out",
            str(root / "dst"),
        )
        run("prune-init", *TINY, *TRAIN, "--method", "snip", "--density", "0.2", "--out", str(root / "snip"))
        run("structured", *TINY, *TRAIN, "--method", "l1", "--out", str(root / "structured"))
        run(
            "compress",
            *TINY,
            "--source",
            str(imp),
            "--density",
            "0.2",
            "--steps",
            "2",
            "--iterations",
            "20",
            "--out",
            str(root / "compress"),
        )
        run("colt", *TINY, *TRAIN, "--target-density", "0.5", "--skip-imp", "--out", str(root / "colt"))
        run(
            "double-descent",
            *TINY,
            *TRAIN,
            "--rate",
            "0.5",
            "--min-density",
            "0.2",
            "--imp-only",
            "--out",
            str(root / "dd"),
        )
        run("supermask", *TINY, *TRAIN, "--method", "edge-popup", "--density", "0.5", "--out", str(root / "sm"))
        run("baselines", str(imp), "--use-rounds", "1", "--only", "shuffle", "--quiet")
        run("deconstruct", str(imp), "--use-rounds", "1", "--untrained-only", "--criteria", "large_final", "--quiet")
        run("instability", str(imp), "--rewind", "0", "--points", "5", "--quiet")
        run("robustness", str(imp), "--eps", "0.05", "--steps", "2", "--samples", "50", "--quiet")
        run("verify", str(imp), "--eps", "0.01", "--method", "ibp", "--samples", "10", "--quiet")
        run("export", str(imp), "--format", "compact")
        run("bench", str(imp), "--repeats", "1", "--batch-sizes", "1", "--threads", "1")
    torch.set_num_threads(threads)
    return root


def sections(page: str) -> list[str]:
    return re.findall(r'data-kind="([^"]+)"', page)


def report(runs, tmp_path, *names) -> str:
    out = build_report([runs / n for n in names], tmp_path / "r.html")
    return out.read_text()


@pytest.mark.parametrize(
    "name,kind,plots",
    [
        ("imp", "imp", 5),  # accuracy vs density, curves, heatmap, FLOPs, mask; + results inside
        ("imp-seeds", "imp (seeds)", 5),
        ("sweep", "imp (sweep)", 1),
        ("dst", "dst", 3),  # curves, calibration, mask
        ("snip", "prune-init", 2),  # curves, mask
        ("structured", "structured", 1),
        ("compress", "compress", 2),
        ("colt", "colt", 2),
        ("dd", "double-descent", 2),
        ("sm", "supermask", 1),
    ],
)
def test_every_run_kind_gets_its_section_plots_table_and_config(runs, tmp_path, name, kind, plots):
    page = report(runs, tmp_path, name)
    assert sections(page)[0] == kind
    top = page.split('data-kind="')[1]  # the run's own section, up to its first child
    top = top.split('class="child"')[0]
    assert top.count("<figure") >= plots and top.count("<svg") >= plots
    assert "<pre>" in top and "Config" in top
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?(https?:|//)""", page)  # nothing to fetch


def test_results_inside_a_run_are_included(runs, tmp_path):
    page = report(runs, tmp_path, "imp")
    kinds = sections(page)
    for k in ("baselines", "deconstruct", "instability", "robustness", "verify", "export", "bench"):
        assert k in kinds, k
    robust = page.split('data-kind="robustness"')[1].split("</section>")[0]
    assert "<svg" in robust and "robust_acc 0.05" in robust


def test_config_and_command_reproduce_the_run(runs, tmp_path, capsys):
    page = report(runs, tmp_path, "imp-seeds")
    import html

    cmd = re.search(r'<code class="cmd">([^<]+)</code>', page).group(1)
    toml = html.unescape(re.search(r"</code>\s*<pre>(.*?)</pre>", page, re.S).group(1))
    assert "--seed 0 --seeds 2" in cmd and "--config imp-seeds.toml" in cmd
    (tmp_path / "imp-seeds.toml").write_text(toml)
    from ticketlab.io import read_json

    # the same command with a new --out makes a group with the same config
    argv = cmd.split()[1:]
    argv[argv.index("--config") + 1] = str(tmp_path / "imp-seeds.toml")
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main([*argv, "--quiet"]) == 0
    assert read_json(tmp_path / "again" / "config.json") == read_json(runs / "imp-seeds" / "config.json")


def test_seed_group_plots_bands_and_several_paths_are_compared(runs, tmp_path):
    page = report(runs, tmp_path, "imp-seeds", "dst", "snip")
    assert sections(page)[:4] == ["comparison", "imp (seeds)", "dst", "prune-init"]
    comp = page.split('data-kind="comparison"')[1].split("</section>")[0]
    for name in ("imp-seeds", "dst", "snip"):
        assert f"{runs / name}</text>" in comp  # each run's line, labelled by its path
    assert "± " in page  # mean ± std of the seeds in the headline table


def test_a_folder_of_runs_reports_each(runs, tmp_path):
    page = build_report([runs], tmp_path / "r.html").read_text()
    kinds = sections(page)
    assert kinds[0] == "comparison" and {"imp", "imp (seeds)", "imp (sweep)", "dst", "colt"} <= set(kinds)


def test_a_ten_round_imp_report_is_under_a_megabyte(runs, tmp_path):
    out = build_report([runs / "imp"], tmp_path / "r.html")
    assert out.stat().st_size < 1_000_000
    assert "round 10" in out.read_text()


def test_cli_writes_the_report_and_replaces_only_its_own(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(runs / "snip"), "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out and out.exists()
    assert main(["report", str(runs / "dst"), "--out", str(out)]) == 0  # its own report: replaced
    assert 'data-kind="dst"' in out.read_text()
    other = tmp_path / "notes.html"
    other.write_text("<html>my notes</html>")
    code = main(["report", str(runs / "dst"), "--out", str(other)])
    one_line_exit_2(code, capsys.readouterr().err, "is not a ticketlab report")
    assert other.read_text() == "<html>my notes</html>"


def test_the_report_is_written_through_a_temporary_of_its_own_sparing_a_users_tmp_file(runs, tmp_path):
    out = tmp_path / "r.html"
    (tmp_path / "r.html.tmp").write_text("my draft")  # a fixed temporary name would destroy this
    assert main(["report", str(runs / "snip"), "--out", str(out)]) == 0
    assert (tmp_path / "r.html.tmp").read_text() == "my draft"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.html.tmp"]


@pytest.mark.parametrize(
    "setup,msg",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "holds no ticketlab runs"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("[1, 2]")), "is not a ticketlab run config"),
        (lambda p: p.write_text("x"), "is not a directory"),
    ],
)
def test_bad_paths_are_one_line_errors_and_write_nothing(tmp_path, capsys, setup, msg):
    setup(tmp_path / "p")
    code = main(["report", str(tmp_path / "p"), "--out", str(tmp_path / "r.html")])
    one_line_exit_2(code, capsys.readouterr().err, msg)
    assert not (tmp_path / "r.html").exists()


# -- in a real browser: headless Chromium (Debian's; .ci/run installs it), driven by Playwright ---------------
def nonblank(png: bytes) -> tuple[float, int]:
    """(fraction of pixels that are not background white, number of distinct colours) of a screenshot."""
    import io

    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    ink = (a < 235).any(axis=2).mean()
    return float(ink), len(np.unique(a.reshape(-1, 3), axis=0))


def test_the_page_renders_in_chromium_with_every_plot_visible_and_nothing_failing(runs, tmp_path):
    """No console errors, no page errors, no request but the page itself, every plot drawn and non-blank.

    TICKETLAB_REPORT_PATHS (paths joined by ':') reports those runs instead of the tiny ones, and
    TICKETLAB_SCREENSHOT=FILE.png saves the top of the page (the README's screenshot)."""
    import os

    sync_api, exe = helpers.chromium()
    given = os.environ.get("TICKETLAB_REPORT_PATHS")
    paths = given.split(os.pathsep) if given else [runs / "imp-seeds", runs / "sweep", runs / "dst", runs / "imp"]
    page_file = build_report(paths, tmp_path / "report.html")
    expected = page_file.read_text().count('<figure class="plot"')
    assert expected >= (1 if given else 10)
    errors, failed, requests = [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            plots = page.locator("figure.plot")
            assert plots.count() == expected
            for i in range(plots.count()):
                fig = plots.nth(i)
                box = fig.locator("svg").first.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 60, i
                fig.scroll_into_view_if_needed()
                ink, colours = nonblank(fig.locator("svg").first.screenshot())
                assert ink > 0.02 and colours >= 3, (i, ink, colours)
            shot = os.environ.get("TICKETLAB_SCREENSHOT")
            if shot:
                import io

                from PIL import Image

                page.evaluate("window.scrollTo(0, 0)")
                png = page.screenshot(clip={"x": 0, "y": 0, "width": 1300, "height": 1500})
                img = Image.open(io.BytesIO(png)).convert("RGB").resize((975, 1125), Image.LANCZOS)
                img.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)
        finally:
            browser.close()
    assert errors == [] and failed == []
    assert requests == [page_file.as_uri()]  # self-contained: the page loads nothing else


def test_a_categorical_sweep_axis_is_drawn_as_named_categories_in_the_tables_order(tmp_path):
    """`--vary method=set,rigl`: the plot's ticks name the methods in the table's order (set, then rigl; not
    sorted, not a numeric 0-1 axis), and the points are not joined by a line."""
    out = tmp_path / "sweep"
    run("sweep", "dst", "--vary", "method=set,rigl", "--vary", "density=0.2,0.1", *TINY, *TRAIN, "--out", str(out))
    page = build_report([out], tmp_path / "report.html").read_text()
    svg = next(s for s in re.findall(r"<svg.*?</svg>", page, re.S) if "test_acc" in s and ">method<" in s)
    texts = [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg) if t.strip()]
    assert "set" in texts and "rigl" in texts and texts.index("set") < texts.index("rigl")
    assert "density=0.2" in texts and "density=0.1" in texts  # the second axis: the legend
    table = page[page.index("method") :]
    assert table.index("set") < table.index("rigl")  # the table below lists them in the same order
    assert "one seed: no error bars" in page and "± std over seeds" not in page
