"""Any cell's figures (study/figures.py through ztest.py --figures DIR --cell MODEL/CELL), with no training:
the P_u/P_r chart of eq. 1 with its bars checked against result.json, Figure 3 of the GAN-SD with its
legend off the curves, every model's training curves and labelled samples from --smoke runs, and bad
--cell values answered in one line with exit 2. Every PNG stays under 150 KB.

    python -m pytest -q tests/test_figures.py
"""
import filecmp
import json
import os

import matplotlib
import matplotlib.colors
import numpy as np
import PIL.Image
import pytest

import ddpm
import gan
import oracles
import vae
import ztest
from study import calibration, figures, paper, tables
from study.readings import Reading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "results", "quick")
MAX_PNG = 150 * 1024
RUNS = {"vae": (vae, []), "gan": (gan, []), "gan-sd": (gan, ["--sd-lambda", "0.8"]), "ddpm": (ddpm, [])}


def _committed(cell):
    path = os.path.join(QUICK, cell, "result.json")
    if not os.path.exists(path):
        pytest.skip(f"no committed result {path}")
    with open(path) as fh:
        return json.load(fh)


def _small_png(path):
    assert os.path.exists(path), f"{path} was not written"
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert os.path.getsize(path) <= MAX_PNG, f"{path} is {os.path.getsize(path)} bytes, over 150 KB"


def test_wilson_interval():
    lo, hi = figures.wilson(30, 100)
    assert lo == pytest.approx(0.2189, abs=1e-4) and hi == pytest.approx(0.3958, abs=1e-4)   # textbook values
    assert figures.wilson(0, 20)[0] == 0 and figures.wilson(20, 20)[1] == 1 and figures.wilson(0, 20)[1] > 0
    assert all(v != v for v in figures.wilson(0, 0))                                          # n = 0: nan


def test_pupr_chart_of_a_committed_cell_draws_the_result_without_training(tmp_path, monkeypatch, capsys):
    """--figures DIR --cell ddpm/thick-rare1-seed0: the chart is written from result.json alone (the oracles
    are never loaded), and the bars it drew are the result's P_u and P_r, its intervals Wilson's, its
    letters the result's verdicts, for all samples and for the readable reading."""
    res = _committed(os.path.join("ddpm", "thick-rare1-seed0"))
    monkeypatch.setattr(oracles, "load_oracles", lambda *a, **k: pytest.fail("the chart needs no oracles"))
    drawn, plot = {}, figures.plot_pupr
    monkeypatch.setattr(figures, "plot_pupr", lambda *a, **k: drawn.setdefault("bars", plot(*a, **k)))
    ztest.main([QUICK, "--figures", str(tmp_path), "--cell", "ddpm/thick-rare1-seed0"])
    assert "wrote" in capsys.readouterr().out
    _small_png(tmp_path / "pupr-ddpm-thick-rare1-seed0.png")
    _small_png(tmp_path / "curves-ddpm-thick-rare1-seed0.png")
    assert not (tmp_path / "figure3-ddpm-thick-rare1-seed0.png").exists()      # Figure 3 is the GAN's
    bars = drawn["bars"]
    for panel, sfx, letter in (("all", "", "verdict"), ("readable", "_read", "verdict_read")):
        for w in ("u", "r"):
            assert bars[panel][f"P_{w}"] == pytest.approx([row[f"P_{w}{sfx}"] for row in res["rows"]], abs=1e-12)
            want = [figures.wilson(row[f"k_{w}{sfx}"], row[f"n_{w}{sfx}"]) for row in res["rows"]]
            assert [v for ci in bars[panel][f"ci_{w}"] for v in ci] == pytest.approx([v for ci in want for v in ci],
                                                                                   abs=1e-12)
        now = ztest.result_rows(calibration.load_results([QUICK + "/ddpm/thick-rare1-seed0/result.json"])[0])
        assert bars[panel]["letters"] == [row[letter] for row in now]      # today's rules (the unfit rule)


def test_pupr_chart_letters_follow_the_summary_reading(tmp_path):
    res = {**_committed(os.path.join("vae", "thin-rare2-seed0")), "file": "x/vae/thin-rare2-seed0/result.json"}
    rows = ztest.result_rows(res, Reading())
    paper = figures.plot_pupr(res, rows, tmp_path / "p.png", Reading(summary="paper", min_n=0))
    assert set(paper["all"]["letters"]) <= {"L", "M"} and len(paper["all"]["letters"]) == 11
    ours = figures.plot_pupr(res, rows, tmp_path / "o.png", Reading(summary="readable"))
    assert ours["all"]["letters"] == [r["verdict"] for r in rows]     # readable: the all-samples panel reads ours
    assert ours["readable"]["letters"] == [r["verdict_read"] for r in rows]


def test_figure3_renders_for_the_gan_sd_with_its_legend_off_the_axes(tmp_path, monkeypatch, capsys):
    """Figure 3 for gan-sd/thin-rare1-seed0 from its result.json; the legend sits outside the axes, so it
    covers neither the D_u nor the D_r curve."""
    _committed(os.path.join("gan-sd", "thin-rare1-seed0"))
    boxes, save = [], figures._save

    def spy(fig, path, dpi):
        fig.canvas.draw()
        ax = fig.axes[0]
        boxes.append((os.path.basename(path), ax.get_legend().get_window_extent(), ax.get_window_extent()))
        save(fig, path, dpi)
    monkeypatch.setattr(figures, "_save", spy)
    ztest.main([QUICK, "--figures", str(tmp_path), "--cell", "gan-sd/thin-rare1-seed0"])
    capsys.readouterr()
    _small_png(tmp_path / "figure3-gan-sd-thin-rare1-seed0.png")
    legend, axes = next((lg, ax) for name, lg, ax in boxes if name.startswith("figure3-"))
    assert legend.y1 <= axes.y0, "Figure 3's legend overlaps the plot"


COMMITTED = ("gan/colour-rare1-seed0", "ddpm/thick-rare1-seed0", "vae/fracture-rare1-seed0")   # results/README.md


@pytest.mark.parametrize("cell", COMMITTED)
def test_the_committed_pupr_charts_are_redrawn_byte_for_byte(cell, tmp_path, monkeypatch, capsys):
    """results/figures/pupr-MODEL-CELL.png is what --figures DIR --cell MODEL/CELL draws from the committed
    result (skipped, as in test_results, when another matplotlib drew it); every committed PNG <= 150 KB."""
    committed = os.path.join(REPO, "results", "figures", f"pupr-{cell.replace('/', '-')}.png")
    for png in os.listdir(os.path.dirname(committed)):
        _small_png(os.path.join(os.path.dirname(committed), png))
    with PIL.Image.open(committed) as im:
        if not im.info.get("Software", "").startswith(f"Matplotlib version{matplotlib.__version__},"):
            pytest.skip(f"{committed} was drawn by another matplotlib than {matplotlib.__version__}")
    monkeypatch.chdir(REPO)
    ztest.main([os.path.join("results", "quick"), "--figures", str(tmp_path), "--cell", cell])
    capsys.readouterr()
    assert filecmp.cmp(tmp_path / os.path.basename(committed), committed, shallow=False), \
        f"{committed} differs from what ztest.py --cell {cell} draws now: redraw it (results/README.md)"


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, mnist_root, cache_dir):
    """The four models' --smoke runs (colour, rare 1, seed 0) in one runs folder."""
    runs = tmp_path_factory.mktemp("runs")
    for name, (script, extra) in RUNS.items():
        script.main(["--smoke", "--device", "cpu", "--data-root", mnist_root, "--cache-dir", cache_dir,
                     "--runs", str(runs), *extra])
    return str(runs)


@pytest.mark.parametrize("model", sorted(RUNS))
def test_every_models_figures_render_from_a_smoke_run(model, smoke_runs, mnist_root, cache_dir, tmp_path, capsys):
    """--cell MODEL/colour-rare1-seed0 --runs: the P_u/P_r chart, the training curves (from history.csv,
    the same as result.json's history), Figure 3 for the GANs and the samples labelled by the oracles;
    each a PNG under 150 KB."""
    cell = f"{model}/colour-rare1-seed0"
    out = tmp_path / "figures"
    ztest.main([smoke_runs, "--figures", str(out), "--cell", cell, "--runs", smoke_runs, "--data-root", mnist_root,
                "--cache-dir", cache_dir, "--device", "cpu"])
    capsys.readouterr()
    kinds = ["pupr", "curves", "samples"] + (["figure3"] if model.startswith("gan") else [])
    for kind in kinds:
        _small_png(out / f"{kind}-{model}-colour-rare1-seed0.png")
    assert sorted(os.listdir(out)) == sorted(f"{kind}-{model}-colour-rare1-seed0.png" for kind in kinds)
    with open(os.path.join(smoke_runs, model, "colour-rare1-seed0", "result.json")) as fh:
        drawn = figures.plot_curves(figures.histories(json.load(fh)), tmp_path / "c.png", model)   # result.json's
    assert set(drawn) >= {"vae": {"loss", "rec", "kl"}, "gan": {"loss_d", "loss_g"}, "gan-sd": {"loss_d", "loss_g"},
                          "ddpm": {"loss"}}[model]
    assert all({"D_u model", "D_r model"} <= set(lines) for lines in drawn.values())


def test_the_history_of_a_smoke_result_matches_its_history_csv(smoke_runs):
    """A --smoke run writes result.json with the history of both models, as in their history.csv."""
    for model in RUNS:
        path = os.path.join(smoke_runs, model, "colour-rare1-seed0", "result.json")
        with open(path) as fh:
            res = {**json.load(fh), "file": path}
        from_csv = figures.histories(res, figures.run_folders(res, smoke_runs))
        for w in ("u", "r"):
            assert res["history"][w] and len(res["history"][w]) == len(from_csv[w])
            for a, b in zip(res["history"][w], from_csv[w]):
                assert {k: float(v) for k, v in a.items()} == pytest.approx(b)


@pytest.mark.parametrize("argv,words", [
    (["--cell", "ddpm/no-such-cell"], "--cell ddpm/no-such-cell"),
    (["--cell", "nowhere/thick-rare1-seed0"], "--cell nowhere/thick-rare1-seed0"),
    (["--cell"], "--cell"),                                    # several results: MODEL/CELL is needed
    (["--cell", "ddpm/thick-rare1-seed0", "--runs", "/nonexistent/runs"], "--runs /nonexistent/runs"),
    (["--cell", "ddpm/thick-rare1-seed0", "--runs", "EMPTY"], "no samples of the cell ddpm/thick-rare1-seed0"),
])
def test_bad_cell_values_are_one_line_and_exit_2(argv, words, tmp_path, capsys):
    out, empty = tmp_path / "figures", tmp_path / "runs"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        ztest.main([QUICK, "--figures", str(out), *[str(empty) if a == "EMPTY" else a for a in argv]])
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert e.value.code == 2 and words in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and cap.out == "" and not out.exists()


# --------------------------------------------------------------------------- figures that explain themselves
def _spy_figures(monkeypatch):
    """Every figure study/figures.py saves, as {file name: figure}, kept open after it is written."""
    figs, save, save_small = {}, figures._save, figures._save_small

    def keep(saver):
        def spy(fig, path, *a, **k):
            figs[os.path.basename(str(path))] = fig
            saver(fig, path, *a, **k)
        return spy
    monkeypatch.setattr(figures, "_save", keep(save))
    monkeypatch.setattr(figures, "_save_small", keep(save_small))
    return figs


def _legend_entries(legend):
    """{label: (facecolour, edgecolour, hatch)} of a legend's patch entries."""
    return {t.get_text(): (tuple(h.get_facecolor()), tuple(h.get_edgecolor()), h.get_hatch())
            for t, h in zip(legend.get_texts(), legend.legend_handles)}


def _agg_of(letters):
    """An aggregate (ztest.aggregate's shape, seed 0) of VAE cells {(factor, rare): [11 letters]}; the
    other cells not run."""
    return {("mnist", f, k, 1.0, 0.0, "VAE"): {"seeds": [0], "rows": [{"verdicts": [v]} for v in vs]}
            for (f, k), vs in letters.items()}


def test_every_letter_of_the_tables_has_a_colour_and_an_unknown_one_fails_in_one_line():
    assert set(tables.LETTERS) <= set(figures.LETTER_COLOURS) == set(figures.SHORT)
    with pytest.raises(ValueError, match="no colour") as e:
        figures.letter_style("Z")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cell", ["vae/colour-rare2-seed0", "gan/thick-rare2-seed0"])
def test_a_cell_with_an_unfit_rare_digit_draws_u_in_its_own_colour(cell, tmp_path, monkeypatch, capsys):
    """--figures DIR --cell MODEL/CELL of a cell whose rare digit reads u (unfit) writes its figures (it
    used to stop with "'u' is not in list"); the u above the rare digit is filled with u's colour, not x's
    or not run's, and the footer names it."""
    _committed(cell)
    figs = _spy_figures(monkeypatch)
    ztest.main([QUICK, "--figures", str(tmp_path), "--cell", cell])
    assert "wrote" in capsys.readouterr().out
    name = f"pupr-{cell.replace('/', '-')}.png"
    _small_png(tmp_path / name)
    boxes = [t for ax in figs[name].axes for t in ax.texts if t.get_text() == "u"]
    assert boxes, f"no u drawn in {name}"
    colour = {tuple(b.get_bbox_patch().get_facecolor()) for b in boxes}
    assert colour == {matplotlib.colors.to_rgba(figures.LETTER_COLOURS["u"])}
    others = {matplotlib.colors.to_rgba(figures.letter_style(k)["fc"]) for k in ("x", None)}
    assert not colour & others, "u is filled like x or a cell not run"
    footer = [t.get_text() for t in figs[name].texts if t.get_text().startswith("letters")]
    assert footer and "u unfit" in footer[0], footer


def test_table4_legend_and_squares_tell_u_x_and_not_run_apart(tmp_path, monkeypatch):
    """The heat map's legend has an entry each for u, x and not run, no two alike, and each square is
    filled as its legend entry says."""
    figs = _spy_figures(monkeypatch)
    agg = _agg_of({("colour", 1): ["M"] * 10 + ["u"], ("thin", 1): ["x"] * 11})     # the rest not run
    figures.plot_table4(agg, None, tmp_path / "t4.png")
    _small_png(tmp_path / "t4.png")
    fig = figs["t4.png"]
    entries = _legend_entries(fig.legends[0])
    u, x, not_run = entries["u: unfit"], entries[f"x: {figures.SHORT['x']}"], entries["not run"]
    assert len({u, x, not_run}) == 3, entries
    assert len(set(entries.values())) == len(entries), "two legend entries look alike"
    squares = {(round(p.get_x()), round(p.get_y())): (tuple(p.get_facecolor()), tuple(p.get_edgecolor()), p.get_hatch())
               for p in fig.axes[0].patches}
    # columns: (k, factor, model) with VAE first in each factor; rows: digits 0-9, then all (row 10)
    assert squares[(0, 10)] == u and squares[(4, 0)] == x and squares[(1, 0)] == not_run


def _labelled(fig, name):
    """Every axes of a figure has an x and a y label, or, drawn without axes (an image grid), a title."""
    for ax in fig.axes:
        if ax.axison:
            assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"{name}: an axes without x or y label"
        else:
            assert ax.get_title().strip(), f"{name}: an image panel without a title"


def test_every_axes_of_every_figure_is_labelled(tmp_path, monkeypatch, capsys):
    """The Table 4 heat maps (alone and beside the paper's), a cell's P_u/P_r chart, training curves of
    each model (titled by what the column holds, not its name) and Figure 3, the sample grid and the
    labelled samples: no axes without its labels."""
    figs = _spy_figures(monkeypatch)
    agg = _agg_of({("colour", 1): ["M"] * 10 + ["u"]})
    figures.plot_table4(agg, None, tmp_path / "alone.png")
    figures.plot_table4(agg, paper.load_paper(os.path.join(REPO, "results", "paper", "paper-cells.csv")),
                        tmp_path / "beside.png")
    for cell in ("vae/colour-rare2-seed0", "gan-sd/colour-rare1-seed0", "ddpm/thick-rare1-seed0"):
        _committed(cell)
        ztest.main([QUICK, "--figures", str(tmp_path), "--cell", cell])
    capsys.readouterr()
    rng = np.random.default_rng(0)
    for w in ("u", "r"):             # samples of a cell's two models, the oracles' calls faked
        os.makedirs(tmp_path / "runs" / w)
        np.savez(tmp_path / "runs" / w / "samples.npz", x=rng.integers(0, 256, (64, 3, 28, 28), dtype=np.uint8))
    monkeypatch.setattr(oracles, "classify", lambda orc, x: (np.zeros(len(x), int), np.ones(len(x), int)))
    res = _committed("vae/colour-rare2-seed0")
    figures.plot_labelled_samples(res, {w: str(tmp_path / "runs" / w) for w in "ur"}, None, tmp_path / "lab.png")
    grid_cell = tmp_path / "runs" / "vae" / "colour-rare1-seed0"       # plot_samples reads RUNS/RUN/CELL/samples.npz
    os.makedirs(grid_cell)
    os.replace(tmp_path / "runs" / "r" / "samples.npz", grid_cell / "samples.npz")
    figures.plot_samples(str(tmp_path / "runs"), [("VAE", "vae")], "colour", 1, 0, tmp_path / "grid.png")
    want = {"alone.png", "beside.png", "lab.png", "grid.png", "figure3-gan-sd-colour-rare1-seed0.png"} | \
        {f"{kind}-{c.replace('/', '-')}.png" for kind in ("pupr", "curves")
         for c in ("vae/colour-rare2-seed0", "gan-sd/colour-rare1-seed0", "ddpm/thick-rare1-seed0")}
    assert want <= set(figs), sorted(want - set(figs))
    for name, fig in figs.items():
        _labelled(fig, name)
    for name in (n for n in figs if n.startswith("curves-")):
        titles = [ax.get_title() for ax in figs[name].axes]
        assert not set(titles) & {"loss", "rec", "kl", "loss_d", "loss_g"}, f"{name}: bare column names {titles}"
    assert any("KL term" in ax.get_ylabel() for ax in figs["curves-vae-colour-rare2-seed0.png"].axes)
    assert "rows and columns" in figs["grid.png"]._suptitle.get_text()


@pytest.mark.parametrize("factor,dataset,rare,with_f,without_f,things", [
    ("colour", "mnist", 1, "green", "red", "1s"), ("thick", "mnist", 2, "thick", "plain", "2s"),
    ("thin", "mnist", 1, "thin", "plain", "1s"), ("swell", "mnist", 1, "swollen", "plain", "1s"),
    ("fracture", "mnist", 2, "fractured", "plain", "2s"), ("colour", "cars", 0, "white", "black", "Volkswagens")])
def test_figure3_legend_names_the_factor_value_and_the_rare_class(factor, dataset, rare, with_f, without_f, things,
                                                                   tmp_path, monkeypatch):
    """Figure 3's lines read "D_r model, green 1s" / "D_r model, red 1s" (solid: f = 1, dashed: f = 0),
    and its title says the loss is D's, w.r.t. the "real" label, on the rare class's validation images."""
    figs = _spy_figures(monkeypatch)
    classes = ["Volkswagen", "Toyota"] if dataset == "cars" else [str(d) for d in range(10)]
    res = {"model": "GAN", "dataset": dataset, "factor": factor, "rare": rare, "classes": classes, "seed": 0,
           "p_in": 1.0, "p_out": 0.0, "config": {"sd_lambda": 0.0}, "sd_epochs": 0,
           "disc_loss": {w: [[e, v, 0.7 - 0.1 * e * v, 0] for e in (1, 2) for v in (0, 1)] for w in "ur"}}
    figures.plot_disc_loss(res, tmp_path / "f3.png")
    ax = figs["f3.png"].axes[0]
    lines = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    for w in ("u", "r"):
        assert lines.get(f"D_{w} model, {with_f} {things}") == "-", lines
        assert lines.get(f"D_{w} model, {without_f} {things}") == "--", lines
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {f"D_r model, {with_f} {things}",
                                                                  f"D_r model, {without_f} {things}"}
    what = "digit" if dataset == "mnist" else "class"
    assert 'w.r.t. the "real" label' in ax.get_title() and f"rare {what}'s validation images" in ax.get_title()


def test_the_answer_is_drawn_beside_the_paper(tmp_path, capsys):
    """--summary answer with --paper (the README's headline figure): table4-answer.png, colour read by the
    calibrated reading and the strokes by the morphometric one, under 150 KB."""
    ztest.main([QUICK, "--summary", "answer", "--paper", os.path.join(REPO, "results", "paper", "paper-cells.csv"),
                "--figures", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Agreement with the paper's Table 4" in out and "Seeds (answer reading)" in out
    _small_png(tmp_path / "table4-answer.png")
