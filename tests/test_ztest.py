"""ztest.py and the study modules it drives (study/readings.py, quality.py, tables.py, paper.py, figures.py):
eq. 1 against hand-computed values, the L/M/? rule of section 4, degenerate cases, validation,
corrections, Tables 1-4 from result files, and the audit mode.

    python -m pytest -q tests/test_ztest.py
"""
import csv
import io
import json
import math
import os
import shutil

import numpy as np
import pytest

import data
import ztest
from study import calibration, figures, paper, quality, readings, tables

CLASSES = data.MNIST_CLASSES


# --------------------------------------------------------------------------- eq. 1 and the p-value
def test_z_score_matches_hand_computation():
    # The paper's GAN colour example (section 6.1): 87% green for digit 1 against 35% for D_u, n = 1000.
    # sqrt(0.35 * 0.65 / 1000) = sqrt(0.0002275) = 0.0150831; (0.87 - 0.35) / 0.0150831 = 34.4757.
    # statsmodels' proportions_ztest(870, 1000, value=0.35, prop_var=0.35) computes the same statistic.
    assert ztest.z_score(0.87, 0.35, 1000) == pytest.approx(34.4757, abs=1e-4)
    # Textbook: 60 of 100 against p0 = 0.5: (0.6 - 0.5) / sqrt(0.25 / 100) = 0.1 / 0.05 = 2.0
    assert ztest.z_score(0.6, 0.5, 100) == pytest.approx(2.0)
    # The sign follows P_r - P_u; n enters as sqrt(n): 4x the samples, 2x the z
    assert ztest.z_score(0.4, 0.5, 100) == pytest.approx(-2.0)
    assert ztest.z_score(0.6, 0.5, 400) == pytest.approx(4.0)


def test_p_value_two_sided():
    # Standard normal tables: P(|Z| > 1.959964) = 0.05; P(|Z| > 2) = 0.0455003; P(|Z| > 0) = 1
    assert ztest.p_value(1.959964) == pytest.approx(0.05, abs=1e-6)
    assert ztest.p_value(-2.0) == pytest.approx(0.0455003, abs=1e-7) == ztest.p_value(2.0)
    assert ztest.p_value(0.0) == 1.0
    assert math.isnan(ztest.p_value(math.nan))
    assert ztest.p_value(40.0) == 0.0 or ztest.p_value(40.0) < 1e-300


def test_degenerate_cases_give_nan_never_inf():
    assert math.isnan(ztest.z_score(0.3, 0.0, 100))       # P_u = 0: the variance of eq. 1 vanishes
    assert math.isnan(ztest.z_score(0.3, 1.0, 100))       # P_u = 1
    assert math.isnan(ztest.z_score(0.3, 0.5, 0))         # no sample of the class
    assert math.isfinite(ztest.z_score(1.0, 1e-300, 10**9))
    assert math.isnan(readings.z_two_sample(0, 10, 0, 10))   # pooled P = 0
    assert math.isnan(readings.z_two_sample(3, 10, 0, 0))    # empty D_u sample
    assert math.isnan(readings.cohens_h(math.nan, 0.5))


@pytest.mark.parametrize("call, named", [
    (lambda: ztest.z_score(1.2, 0.5, 10), "1.2"), (lambda: ztest.z_score(0.5, -0.1, 10), "-0.1"),
    (lambda: ztest.z_score(math.nan, 0.5, 10), "nan"), (lambda: ztest.z_score(0.5, 0.5, -1), "-1"),
    (lambda: ztest.z_score(0.5, 0.5, 3.5), "3.5"), (lambda: ztest.z_score(0.5, 0.5, "10"), "'10'"),
    (lambda: ztest.z_score(True, 0.5, 10), "True"), (lambda: readings.z_two_sample(11, 10, 1, 10), "k_r=11"),
    (lambda: readings.adjust_p([0.1], "bonferroni"), "bonferroni"),
    (lambda: ztest.rows_from_counts(_counts([5] * 10, [1] * 10), 1, CLASSES, test="t-test"), "t-test"),
    (lambda: ztest.rows_from_counts(_counts([5] * 10, [6] * 10), 1, CLASSES), "exceeds"),
    (lambda: ztest.rows_from_counts(_counts([5] * 10, [1] * 10), 10, CLASSES), "10"),
    (lambda: ztest.z_table([0, 11], [0, 1], [0], [0], 1, CLASSES), "labels"),
    (lambda: ztest.z_table([0, 1], [0, 2], [0], [0], 1, CLASSES), "factors"),
    (lambda: ztest.z_table([0, 1], [0], [0], [0], 1, CLASSES), "equal length")])
def test_validation_names_the_bad_value(call, named):
    with pytest.raises(ValueError, match=None) as e:
        call()
    assert named in str(e.value)


def test_integral_counts_of_any_numeric_type_are_accepted():
    assert ztest.z_score(0.6, 0.5, np.int64(100)) == ztest.z_score(0.6, 0.5, 100.0) == pytest.approx(2.0)


# --------------------------------------------------------------------------- beyond the paper
def test_two_sample_test_cohens_h_and_corrections():
    # Pooled two-proportion test, textbook numbers: 45/100 against 35/100, pooled P = 0.4;
    # se = sqrt(0.4 * 0.6 * (1/100 + 1/100)) = sqrt(0.0048) = 0.0692820; z = 0.10 / 0.0692820 = 1.44338
    assert readings.z_two_sample(45, 100, 35, 100) == pytest.approx(1.44338, abs=1e-5)
    # h = 2 asin(sqrt(0.5)) - 2 asin(sqrt(0.25)) = 2 (pi/4) - 2 (pi/6) = pi/6
    assert readings.cohens_h(0.5, 0.25) == pytest.approx(math.pi / 6)
    p = [0.01, 0.04, 0.03, math.nan, 0.2]
    # Holm, m = 4 defined p-values sorted 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.2,
    # made non-decreasing: 0.04, 0.09, 0.09, 0.2
    np.testing.assert_allclose(readings.adjust_p(p, "holm"), [0.04, 0.09, 0.09, math.nan, 0.2])
    # BH: x m/i = 0.04, 0.06, 0.05333, 0.2, made non-increasing from the top: 0.04, 0.05333, 0.05333, 0.2
    np.testing.assert_allclose(readings.adjust_p(p, "bh"), [0.04, 0.16 / 3, 0.16 / 3, math.nan, 0.2])
    np.testing.assert_allclose(readings.adjust_p(p, "none"), p)
    assert readings.adjust_p([0.5, 0.9], "holm").max() == 1.0        # capped at 1


# --------------------------------------------------------------------------- the verdict (section 4)
@pytest.mark.parametrize("z, p, c, expect", [
    (3.0, 0.003, 1, "M"),      # rare class k = 1, more factor than D_u: memorised
    (-3.0, 0.003, 1, "?"),     # rare class, less factor: an unexpected significant deviation
    (-3.0, 0.003, 4, "M"),     # another class, less factor: memorised
    (3.0, 0.003, 4, "?"),
    (1.0, 0.3173, 4, "L"),     # not significant: learned
    (-1.96, 0.05, 4, "M"),     # p = 0.05 is significant (L needs p > 0.05)
    (-3.0, 0.003, None, "M"),  # Total behaves as c != k
    (math.nan, math.nan, 4, "-")])
def test_verdict_rule(z, p, c, expect):
    assert ztest.verdict(z, p, c, rare=1) == expect


def _counts(n, k, nr=None, kr=None):
    return {"u": {"n": list(n), "k": list(k)}, "r": {"n": list(nr or n), "k": list(kr or k)}}


def test_z_table_rows_use_the_class_count_and_total_uses_m():
    # D_u model: 100 samples per digit, 35 green among the 1s, 50 green elsewhere.
    # D_r model: 100 samples per digit, 87 green among the 1s, 1 green elsewhere.
    y = np.repeat(np.arange(10), 100)
    f_u = np.concatenate([(np.arange(100) < (35 if d == 1 else 50)).astype(int) for d in range(10)])
    f_r = np.concatenate([(np.arange(100) < (87 if d == 1 else 1)).astype(int) for d in range(10)])
    rows = ztest.z_table(y, f_u, y, f_r, rare=1, classes=CLASSES)
    assert [r["name"] for r in rows] == list(CLASSES) + ["Total"]
    one, zero, total = rows[1], rows[0], rows[-1]
    # digit 1: (0.87 - 0.35) / sqrt(0.35 * 0.65 / 100) = 0.52 / 0.0476970 = 10.9022 (n = 100, not M = 1000)
    assert (one["n_r"], one["k_r"], one["P_r"], one["P_u"]) == (100, 87, 0.87, 0.35)
    assert one["z"] == pytest.approx(10.9022, abs=1e-4) and one["verdict"] == "M"
    # digit 0: (0.01 - 0.5) / sqrt(0.25 / 100) = -0.49 / 0.05 = -9.8
    assert zero["z"] == pytest.approx(-9.8) and zero["verdict"] == "M"
    # Total: P_u = (35 + 9 * 50) / 1000 = 0.485, P_r = (87 + 9) / 1000 = 0.096, n = M = 1000:
    # (0.096 - 0.485) / sqrt(0.485 * 0.515 / 1000) = -0.389 / 0.0158043 = -24.6135
    assert total["n_r"] == 1000 and total["z"] == pytest.approx(-24.6135, abs=1e-4)
    assert {"P_u", "P_r", "n_u", "n_r", "z", "p", "p_adj", "h", "verdict"} <= set(total)


def test_z_table_with_an_empty_class_and_degenerate_p_u():
    y_u, f_u = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])       # class 0 of D_u: P_u = 0
    y_r, f_r = np.array([0, 0, 0]), np.array([1, 0, 0])              # class 1 never sampled by D_r
    rows = ztest.z_table(y_u, f_u, y_r, f_r, rare=1, classes=("a", "b"), min_n=0, baseline_dev=None)   # the paper's rule
    assert math.isnan(rows[0]["z"]) and rows[0]["verdict"] == "-"
    # ours with min-n 0: P_u = 0 is a broken baseline, which outranks the undefined z
    assert ztest.z_table(y_u, f_u, y_r, f_r, rare=1, classes=("a", "b"), min_n=0)[0]["verdict"] == "b"
    assert rows[1]["n_r"] == 0 and math.isnan(rows[1]["P_r"]) and rows[1]["verdict"] == "-"
    assert "-" in ztest.format_rows(rows)
    assert [r["verdict"] for r in ztest.z_table(y_u, f_u, y_r, f_r, rare=1, classes=("a", "b"))] == ["n"] * 3


def test_correction_changes_verdicts_only_through_p_adj():
    counts = _counts([100] * 10, [50] * 10, [100] * 10, [50, 60, 50, 50, 50, 50, 50, 50, 50, 39])
    plain = ztest.rows_from_counts(counts, 1, CLASSES, unfit=None)       # (the unfit rule: tested on its own)
    holm = ztest.rows_from_counts(counts, 1, CLASSES, correction="holm", unfit=None)
    # digit 1: z = 0.1 / 0.05 = 2.0, p = 0.0455 -> M uncorrected; Holm with m = 10: p x 9 or 10 > 0.05 -> L
    assert plain[1]["z"] == holm[1]["z"] == pytest.approx(2.0)
    assert plain[1]["verdict"] == "M" and holm[1]["verdict"] == "L" and holm[1]["p_adj"] > 0.3
    assert plain[9]["z"] == pytest.approx(-2.2) and holm[-1]["p_adj"] == holm[-1]["p"]   # Total: own p


# --------------------------------------------------------------------------- tables from result files
def _result(tmp_path, model, factor, rare, seed, counts, dataset="mnist", classes=CLASSES, p_in=1.0):
    res = {"model": model, "dataset": dataset, "factor": factor, "rare": rare, "seed": seed, "p_in": p_in,
           "p_out": 0.0, "classes": list(classes), "counts": counts,
           "rows": ztest.rows_from_counts(counts, rare, classes)}
    path = tmp_path / f"{model}-{dataset}-{factor}-{rare}-{seed}-{p_in}" / "result.json"
    data.save_json(res, path)
    return path


MEM = _counts([100] * 10, [50] * 10, [100] * 10, [1, 90, 1, 1, 1, 1, 1, 1, 1, 1])     # memorised everywhere
LEARN = _counts([100] * 10, [50] * 10)                                                   # identical: all L


def test_tables_1_2_4_from_result_files(tmp_path, capsys):
    for model, counts in (("VAE", LEARN), ("GAN", MEM), ("GAN-SD", MEM), ("DM", MEM)):
        _result(tmp_path / "runs", model, "colour", 1, 0, counts)
    _result(tmp_path / "runs", "DM", "thin", 2, 0, MEM)
    _result(tmp_path / "runs", "GAN", "thin", 3, 0, MEM, p_in=0.9)
    ztest.main([str(tmp_path / "runs"), "--out-dir", str(tmp_path / "results"), "--print", "full"])   # every table
    out = capsys.readouterr().out
    assert "Table 1: z-scores, RGF in digit 1" in out and "Table 2: z-scores, RGF in digit 2" in out
    assert "z-scores, RGF in digit 3, p_in 0.9, p_out 0" in out and "Table 4" in out
    assert "colour (VAE / GAN / GAN-SD / DM)" in out               # the paper's column order
    # digit 1 row: the VAE's D_r 1s are green as often as its D_u 1s (z = 0), though every 1 of D_r is:
    # unfit ("u"), not learned, so not bold; the others: (0.9 - 0.5) / 0.05 = 8.00
    line = next(x for x in out.splitlines() if x.strip().startswith("1 ") and "8.00" in x)
    assert "0.00 / 8.00 / 8.00 / 8.00" in line
    md = (tmp_path / "results/tables.md").read_text()
    assert "| 1 | 0.00 / 8.00 / 8.00 / 8.00 |" in md and "| 0 | **0.00** / -9.80" in md   # digit 0: learned
    assert r"\textbf{0.00} / -9.80" in (tmp_path / "results/tables.tex").read_text()
    t4 = list(csv.reader(io.StringIO((tmp_path / "results/table4.csv").read_text())))
    assert t4[0] == ["digit", "colour (k=1)", "thin (k=2)", "thin (k=3, 0.9/0)"]
    assert t4[1] == ["0", "L / M / M / M", "M", "M"] and t4[2][1] == "u / M / M / M"
    assert t4[-3] == ["Count", "10 / 0 / 0 / 0", "0", "0"]
    # MEM puts the factor on digit 1: for rare digits 2 and 3 that is significant the "wrong" way ('?'),
    # and their own P_r of 0.01 is a rare digit unfit ('u')
    assert t4[-2] == ["Count ?", "0 / 0 / 0 / 0", "1", "1"] and t4[-1] == ["Count u", "1 / 0 / 0 / 0", "1", "1"]
    assert "A total of 10 cases were learned out of 66." in out  # 4 + 1 + 1 columns x 11 rows
    rows = (tmp_path / "results/rows.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 11 and rows[0].startswith("model,dataset,factor,rare,p_in,p_out,seed,class")
    saved = json.loads((tmp_path / "results/tables.json").read_text())
    assert [t["slug"] for t in saved["tables"]][:2] == ["table1", "table2"] and len(saved["cells"]) == 6


def test_seeds_are_aggregated_per_cell(tmp_path, capsys):
    shifted = _counts([100] * 10, [50] * 10, [100] * 10, [40, 70, 50, 50, 50, 50, 50, 50, 50, 50])
    files = [_result(tmp_path, "GAN", "colour", 1, s, c) for s, c in ((0, MEM), (1, LEARN), (2, shifted))]
    ztest.main([str(f) for f in files] + ["--unfit", "0"])      # the paper's letters for the rare digit
    out = capsys.readouterr().out
    # digit 1 z per seed: 8.0, 0.0, (0.7 - 0.5) / 0.05 = 4.0 -> mean 4.00, sd 4.00; one seed of three is L
    assert "4.00±4.00 (1/3 L)" in out
    assert "MLM" in out                                              # Table 4: one letter per seed


def test_table_3_for_cars(tmp_path, capsys):
    cars = ("Volkswagen", "Toyota")
    # D_r samples: 558 Volkswagen (397 white), 442 Toyota (106 white): the VAE column of the paper's Table 3
    counts = {"u": {"n": [500, 500], "k": [220, 240]}, "r": {"n": [558, 442], "k": [397, 106]}}
    f = _result(tmp_path, "VAE", "colour", 0, 0, counts, dataset="cars", classes=cars)
    ztest.main([str(f)])
    out = capsys.readouterr().out
    assert "Table 3: CompCars" in out and "VAE black" in out
    vw = next(x for x in out.splitlines() if x.strip().startswith("Volkswagen"))
    # 161 black, 397 white; z = (397/558 - 0.44) / sqrt(0.44 * 0.56 / 558) = 0.271470 / 0.0210136 = 12.92
    assert vw.split()[1:4] == ["161", "397", "12.92"]
    total = next(x for x in out.splitlines() if x.strip().startswith("Total"))
    assert total.split()[1:3] == ["497", "503"]


@pytest.mark.parametrize("argv, words", [([], "nothing to do"), (["/nonexistent/result.json"], "/nonexistent/result.json: no such file or folder; accepted"),
                                         (["results/qiuck"], "results/qiuck: no such file or folder"),
                                         (["--test", "exact"], "exact"), (["--alpha", "2"], "--alpha 2"),
                                         (["--u", "a.npz"], "both --u and --r")])
def test_command_line_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        ztest.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err


def test_not_a_result_file(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"rows": []}')
    with pytest.raises(SystemExit):
        ztest.main([str(tmp_path / "x.json")])
    assert "not a result file (missing model" in capsys.readouterr().err


# --------------------------------------------------------------------------- audit mode
def test_audit_any_generator(tmp_path, capsys, monkeypatch):
    """Samples of 'another' generator are classified by the oracles (faked here: the label is the bright
    column, the factor the channel) and compared with eq. 1; the saved result renders like ours."""
    def images(labels, green):
        x = np.zeros((len(labels), 3, 28, 28), np.uint8)
        x[np.arange(len(labels)), np.asarray(green).astype(int), :, np.asarray(labels)] = 255
        return x

    def classify(orc, x):
        x = np.asarray(x)
        return x.max(1).max(1).argmax(1).astype(np.int64), (x[:, 1].sum((1, 2)) > 0).astype(np.int64)

    def predict_proba(orc, x):      # confident on even columns only
        y, f = classify(orc, x)
        p = np.full((len(y), 10), 0.0)
        p[np.arange(len(y)), y] = np.where(y % 2 == 0, 0.99, 0.6)
        return p, f.astype(float)

    monkeypatch.setattr(ztest.oracles, "load_oracles", lambda *a, **k: {"acc": {"label": 1.0, "factor": 1.0}})
    monkeypatch.setattr(ztest.oracles, "classify", classify)
    monkeypatch.setattr(ztest.oracles, "predict_proba", predict_proba)
    monkeypatch.setattr(ztest.oracles, "features", lambda orc, x: np.asarray(x, float).reshape(len(x), 3, -1).mean(2))
    y = np.repeat(np.arange(10), 20)
    real = images(np.repeat(np.arange(10), 50), np.arange(500) % 2)
    monkeypatch.setattr(quality, "real_references", lambda *a, **k: {w: (real, None, np.arange(500) % 2) for w in "ur"})
    np.savez(tmp_path / "u.npz", x=images(y, np.arange(200) % 2))
    np.savez(tmp_path / "r.npz", samples=images(y, y == 1))
    ztest.main(["--u", str(tmp_path / "u.npz"), "--r", str(tmp_path / "r.npz"), "--rare", "1", "--model", "X",
                "--device", "cpu", "--min-n", "20", "--save", str(tmp_path / "audit.json")])
    res = json.loads((tmp_path / "audit.json").read_text())
    # digit 1: P_u = 0.5, P_r = 1, n = 20: 0.5 / sqrt(0.25 / 20) = 4.4721; other digits -4.4721
    assert res["rows"][1]["z"] == pytest.approx(4.4721, abs=1e-4) and res["rows"][1]["verdict"] == "M"
    assert res["rows"][0]["z"] == pytest.approx(-4.4721, abs=1e-4) and res["model"] == "X"
    # the readable reading keeps the even digits (p 0.99 > 0.9); the odd ones have no readable sample
    assert res["rows"][0]["n_r_read"] == 20 and res["rows"][1]["n_r_read"] == 0
    assert res["rows"][1]["verdict_read"] == "n" and res["rows"][0]["verdict_read"] == "M"
    q = res["quality"]
    assert q["u"]["confident"] == pytest.approx(0.5) and q["real"] == {"confident_f0": 0.5, "confident_f1": 0.5}
    assert q["fd"]["floor_u"] >= 0 and q["fd"]["n_u"] == 200
    capsys.readouterr()
    ztest.main([str(tmp_path / "audit.json")])
    assert "Table 1" in capsys.readouterr().out
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 3, 28, 28), np.float32))
    with pytest.raises(SystemExit) as e:
        ztest.main(["--u", str(tmp_path / "bad.npz"), "--r", str(tmp_path / "r.npz")])
    assert e.value.code == 2 and "float32" in capsys.readouterr().err


# --------------------------------------------------------------------------- min-n, TOST, the paper's summary
def test_too_few_samples_is_never_learned():
    # class 0: 10 samples each, identical shares: eq. 1 gives p = 1 (L under the paper's rule)
    counts = _counts([10] + [100] * 9, [5] + [50] * 9)
    theirs = ztest.rows_from_counts(counts, 1, CLASSES, min_n=0, unfit=None)
    ours = ztest.rows_from_counts(counts, 1, CLASSES, unfit=None)      # (the rare digit is not the point here)
    assert theirs[0]["verdict"] == "L" and ours[0]["verdict"] == "n" and ours[0]["p"] == theirs[0]["p"]
    assert [r["verdict"] for r in ours[1:]] == [r["verdict"] for r in theirs[1:]] == ["L"] * 10
    # the threshold is "n_u or n_r below min-n": 29 in D_r alone is enough
    few_r = ztest.rows_from_counts(_counts([100] * 10, [50] * 10, [29] + [100] * 9, [14] + [50] * 9), 1, CLASSES,
                                   unfit=None)
    assert few_r[0]["verdict"] == "n" and few_r[1]["verdict"] == "L"
    for how in readings.SUMMARIES:
        assert readings.summary_letter(ours[0], how) != "L"
    with pytest.raises(ValueError, match="-1"):
        ztest.rows_from_counts(counts, 1, CLASSES, min_n=-1)


def test_tost_closed_form():
    # P_u = P_r = 0.5, n_r = 400: se = sqrt(0.25 / 400) = 0.025; p = sf(0.1 / 0.025) = sf(4) = 3.167e-5
    assert readings.tost(200, 400, 50, 100) == pytest.approx(3.16712e-5, rel=1e-4)
    # d = 0.05, se = 0.025: p = max(sf(0.15 / 0.025), cdf(-0.05 / 0.025)) = cdf(-2) = 0.0227501
    assert readings.tost(220, 400, 50, 100) == pytest.approx(0.0227501, rel=1e-5)
    # d exactly at the margin: p = 0.5; beyond it: p > 0.5
    assert readings.tost(240, 400, 50, 100) == pytest.approx(0.5)
    assert readings.tost(300, 400, 50, 100) > 0.5
    # two-sample: unpooled se = sqrt(0.25/100 + 0.25/100) = 0.0707107; p = sf(0.1 / 0.0707107) = sf(1.41421)
    assert readings.tost(50, 100, 50, 100, test="two-sample") == pytest.approx(0.0786496, rel=1e-5)
    # at P_u = 0.5 and d = 0, equivalence needs n_r >= 68 (se <= 0.1 / 1.645); with d = 0.05, n_r >= 271
    assert readings.tost(34, 68, 500, 1000) < 0.05 < readings.tost(33, 66, 500, 1000)
    assert readings.tost(154, 280, 500, 1000) < 0.05 < readings.tost(143, 260, 500, 1000)   # P_r = 0.55
    assert math.isnan(readings.tost(0, 100, 0, 100)) and math.isnan(readings.tost(3, 0, 1, 10))
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="margin"):
            readings.tost(5, 10, 5, 10, margin=bad)


def _tost_independent(k_r, n_r, k_u, n_u, margin, test, alpha):
    """Written apart from readings.tost: the confidence-interval form. Equivalence at level alpha holds iff
    the 1 - 2 alpha interval of d lies inside (-margin, margin); the p-value is that of the nearer bound."""
    from scipy import stats
    p_r, p_u = k_r / n_r, k_u / n_u
    se = math.sqrt(p_u * (1 - p_u) / n_r) if test == "one-sample" else \
        math.sqrt(p_r * (1 - p_r) / n_r + p_u * (1 - p_u) / n_u)
    lo, hi = stats.norm.interval(1 - 2 * alpha, loc=p_r - p_u, scale=se)
    p = stats.norm(loc=abs(p_r - p_u), scale=se).cdf(margin)
    return -margin < lo and hi < margin, 1 - p


def test_tost_against_an_independent_implementation_on_400_random_cases():
    rng = np.random.default_rng(13)
    checked = 0
    for _ in range(400):
        n_u, n_r = (int(v) for v in rng.integers(20, 2000, size=2))
        k_u, k_r = int(rng.integers(1, n_u)), int(rng.integers(1, n_r))
        margin, test, alpha = float(rng.uniform(0.02, 0.4)), ("one-sample", "two-sample")[checked % 2], 0.05
        p = readings.tost(k_r, n_r, k_u, n_u, margin, test)
        inside, p_ref = _tost_independent(k_r, n_r, k_u, n_u, margin, test, alpha)
        assert p == pytest.approx(p_ref, rel=1e-6, abs=1e-12)
        assert (p <= alpha) == inside
        checked += 1
    assert checked == 400


def test_summary_rules():
    rows = ztest.rows_from_counts(
        _counts([100] * 9 + [10], [50] * 9 + [5], [1000, 100, 50, 100, 100, 100, 100, 100, 100, 10],
                [500, 90, 25, 60, 50, 50, 50, 50, 50, 5]), 1, CLASSES)
    # 0: n_r = 1000, d = 0 -> L, shown equivalent; 1: memorised; 3: z = 2.0 (p 0.046, wrong direction) -> ?
    # 2: d = 0 but n_r = 50 -> L under eq. 1, not shown equivalent (i: p_eq = sf(1.41) = 0.079); 9: n
    letters = {how: [readings.summary_letter(r, how) for r in rows] for how in readings.SUMMARIES}
    assert letters["ours"][:4] + [letters["ours"][9]] == ["L", "M", "L", "?", "n"]
    assert letters["paper"][:4] + [letters["paper"][9]] == ["L", "M", "L", "M", "M"]
    assert letters["equivalence"][:4] + [letters["equivalence"][9]] == ["L", "M", "i", "?", "n"]
    paper0 = [readings.summary_letter(r, "paper", min_n=0) for r in rows]
    assert paper0[9] == "L"                                  # --min-n 0: the paper's rule exactly
    assert [r["eq"] for r in rows] == letters["equivalence"]
    with pytest.raises(ValueError, match="bogus"):
        readings.summary_letter(rows[0], "bogus")


def test_summary_paper_reproduces_the_binary_rule_on_known_verdicts(tmp_path, capsys):
    # ours: digit 1 M, digit 0 ? (significant, wrong direction: z = +3), digits 2-8 L, digit 9 b (P_u = 0:
    # a broken baseline; the paper's rule reads its undefined z as M)
    counts = _counts([100] * 10, [50] * 9 + [0], [100] * 10, [65, 90, 50, 50, 50, 50, 50, 50, 50, 10])
    f = _result(tmp_path, "GAN", "colour", 1, 0, counts)
    ztest.main([str(f), "--out-dir", str(tmp_path / "ours")])
    ztest.main([str(f), "--summary", "paper", "--out-dir", str(tmp_path / "paper")])
    ours = list(csv.reader(io.StringIO((tmp_path / "ours/table4.csv").read_text())))
    theirs = list(csv.reader(io.StringIO((tmp_path / "paper/table4.csv").read_text())))
    assert [r[1] for r in ours[1:11]] == ["?", "M", "L", "L", "L", "L", "L", "L", "L", "b"]
    assert [r[1] for r in theirs[1:11]] == ["M", "M", "L", "L", "L", "L", "L", "L", "L", "M"]
    assert theirs[12] == ["Count", "7"] and "paper summary" in (tmp_path / "paper/tables.md").read_text()
    assert "; ?: significant in the other direction; b: broken baseline" in (tmp_path / "ours/tables.md").read_text()


def test_tables_c3_c4_in_every_format(tmp_path, capsys):
    unbalanced = _counts([100] * 10, [50] * 9 + [10], [100] * 10, [1, 90] + [1] * 8)
    _result(tmp_path / "runs", "GAN", "colour", 1, 0, unbalanced)
    _result(tmp_path / "runs", "VAE", "thin", 2, 0, LEARN)
    ztest.main([str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")])
    c3 = list(csv.reader(io.StringIO((tmp_path / "out/tableC3.csv").read_text())))
    assert c3[0] == ["factor, model"] + [str(d) for d in range(10)] + ["Total"]
    assert c3[1][:3] == ["colour GAN", "0.50 (100) / 0.01 (100)", "0.50 (100) / 0.90 (100)"]
    assert c3[1][10] == "0.10! (100) / 0.01 (100)"           # |P_u - 0.5| > 0.25 is flagged
    c4 = list(csv.reader(io.StringIO((tmp_path / "out/tableC4.csv").read_text())))
    assert c4[1][0] == "thin VAE" and "!" not in "".join(c4[1])
    for ext, words in (("md", "### Table C.3: P_u / P_r"), ("tex", r"Table C.4: P\_u / P\_r"), ("txt", "Table C.4")):
        assert words in (tmp_path / f"out/tables.{ext}").read_text()


@pytest.mark.parametrize("argv, words", [(["--min-n", "-1"], "--min-n -1"), (["--margin", "0"], "--margin 0"),
                                         (["--margin", "1.5"], "--margin 1.5"), (["--summary", "bogus"], "bogus")])
def test_bad_reading_options(tmp_path, argv, words, capsys):
    f = _result(tmp_path, "GAN", "colour", 1, 0, LEARN)
    with pytest.raises(SystemExit) as e:
        ztest.main([str(f)] + argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err


# --------------------------------------------------------------------------- the sample-quality report
def test_quality_report_on_a_synthetic_case_with_known_warnings():
    # D_u: 1,000 samples, class 3 holds 300 (30% > 25%), class 9 holds 10 (1% < 2%, and n_u < 30),
    #      class 0 has P_u = 0.9 (|P_u - 0.5| > 0.25); the label oracle is confident on 700 of them.
    n_u = [100, 80, 80, 300, 80, 80, 80, 90, 100, 10]
    k_u = [90, 40, 40, 150, 40, 40, 40, 45, 50, 5]
    n_r = [100] * 10                                     # D_r: balanced, no collapse
    counts = {"u": {"n": n_u, "k": k_u}, "r": {"n": n_r, "k": [1, 90] + [1] * 8}}
    p_u = np.full((1000, 10), 0.05)
    p_u[:700, 0] = 0.95                                  # p > 0.9 on 700 samples
    p_r = np.full((1000, 10), 0.1)                        # never confident
    q = quality.quality({"u": p_u, "r": p_r}, counts, CLASSES)
    assert q["u"]["confident"] == pytest.approx(0.7) and q["r"]["confident"] == 0.0
    assert q["u"]["histogram"] == n_u and q["u"]["share_min"] == 0.01 and q["u"]["share_max"] == 0.3
    assert q["r"]["share_min"] == q["r"]["share_max"] == 0.1
    assert len(q["warnings"]) == 2
    collapse, baseline = q["warnings"]
    assert collapse.startswith("mode collapse in the D_u samples") and "3 30.0%" in collapse and "9 1.0%" in collapse
    assert "D_u baseline" in baseline and "9 (n_u 10)" in baseline and "0 (P_u 0.90)" in baseline
    assert "7 (" not in baseline                          # P_u = 0.5 everywhere else
    text = quality.format_quality(q, CLASSES)
    assert "D_u: 70.0% of the samples" in text and text.count("WARNING: ") == 2
    # a clean run: no warnings
    balanced = {"n": [100] * 10, "k": [50] * 10}
    clean = quality.quality({"u": p_u, "r": p_u}, {"u": balanced, "r": balanced}, CLASSES)
    assert clean["warnings"] == [] and "WARNING" not in quality.format_quality(clean, CLASSES)


# --------------------------------------------------------------------------- the readable reading, the baseline letter
def _readable_case():
    """Per class 100 D_u samples, 50 with the factor, 60 of them read confidently (30 with, 30 without).
    D_r: the rare class 1 has 100 samples, 50 with the factor: 40 confident, all with it, and 60
    unreadable, of which 10 with it; every other class has 100 samples without the factor, 60 confident.
    The label oracle's p is 0.95 on a confident sample, 0.5 on the others; the factor oracle is sure
    (p 0.99 / 0.01) except on 10 confident D_u 1s with the factor (p 0.6)."""
    def model(which):
        y, f, conf, pf = [], [], [], []
        for c in range(10):
            if which == "u":
                cf, cc = [1] * 30 + [0] * 30 + [1] * 20 + [0] * 20, [1] * 60 + [0] * 40
            elif c == 1:
                cf, cc = [1] * 40 + [1] * 10 + [0] * 50, [1] * 40 + [0] * 60
            else:
                cf, cc = [0] * 100, [1] * 60 + [0] * 40
            y += [c] * 100
            f += cf
            conf += cc
            pf += [0.6 if which == "u" and c == 1 and i < 10 else (0.99 if v else 0.01) for i, v in enumerate(cf)]
        y, f, conf = np.array(y), np.array(f), np.array(conf)
        p = np.full((1000, 10), 0.0)
        p[np.arange(1000), y] = np.where(conf == 1, 0.95, 0.5)
        return y, f, p, np.array(pf)
    return {w: model(w) for w in ("u", "r")}


def test_readable_reading_on_synthetic_counts_with_a_known_answer():
    case = _readable_case()
    counts = {w: ztest.count_classes(case[w][0], case[w][1], 10) for w in case}
    readable = {w: ztest.readable_counts(*case[w], 10) for w in case}
    assert readable["u"]["0.9"]["n"] == [60] * 10 and readable["u"]["0.9"]["k"] == [30] * 10
    assert readable["r"]["0.9"]["n"][1] == 40 and readable["r"]["0.9"]["k"][1] == 40
    assert readable["u"]["0.5"]["n"] == [60] * 10             # p 0.5 is not > 0.5: the unreadable ones go
    assert readable["u"]["0.9+f"]["n"][1] == 50 and readable["u"]["0.9+f"]["k"][1] == 20
    res = {"rare": 1, "classes": list(CLASSES), "counts": counts, "readable": readable}
    one = ztest.result_rows(res, readings.Reading(unfit=None))[1]     # (the unfit rule is tested on its own)
    # all samples: P_u = 0.5, P_r = 0.5, z = 0: learned, as the paper's reading says
    assert one["P_r"] == 0.5 and one["z"] == 0 and one["verdict"] == "L"
    # readable: P_u' = 30/60, P_r' = 40/40: z' = 0.5 / sqrt(0.25 / 40) = 6.3246, memorised
    assert one["n_u_read"] == 60 and one["P_r_read"] == 1.0
    assert one["z_read"] == pytest.approx(6.3246, abs=1e-4) and one["verdict_read"] == "M"
    # the factor-confident variant: P_u' = 20/50 (10 unsure 1s with the factor dropped)
    sure = ztest.result_rows(res, readings.Reading(factor_confident=True))[1]
    assert sure["n_u_read"] == 50 and sure["P_u_read"] == 0.4
    # another class: z' = (0 - 0.5) / sqrt(0.25 / 60) = -7.7460
    assert ztest.result_rows(res)[0]["z_read"] == pytest.approx(-7.7460, abs=1e-4)
    text = ztest.format_rows(ztest.result_rows(res))
    assert "verdict" in text and "read" in text and "6.32" in text and "readable reading" in text
    # a result made before the reading existed: no readable columns, and the readable summary says "x"
    old = ztest.result_rows({**res, "readable": {}})
    assert "verdict_read" not in old[1] and readings.summary_letter(old[1], "readable") == "x"


def test_readable_summary_renders_table_4(tmp_path, capsys):
    case = _readable_case()
    res = {"model": "VAE", "dataset": "mnist", "factor": "colour", "rare": 1, "seed": 0, "p_in": 1.0, "p_out": 0.0,
           "classes": list(CLASSES), "counts": {w: ztest.count_classes(case[w][0], case[w][1], 10) for w in case},
           "readable": {w: ztest.readable_counts(*case[w], 10) for w in case}}
    data.save_json(res, tmp_path / "runs/vae/result.json")
    ztest.main([str(tmp_path / "runs"), "--out-dir", str(tmp_path / "ours"), "--unfit", "0"])
    ztest.main([str(tmp_path / "runs"), "--summary", "readable", "--out-dir", str(tmp_path / "read"), "--unfit", "0"])
    ours = list(csv.reader(io.StringIO((tmp_path / "ours/table4.csv").read_text())))
    read = list(csv.reader(io.StringIO((tmp_path / "read/table4.csv").read_text())))
    assert ours[2] == ["1", "L"] and read[2] == ["1", "M"] and read[1] == ["0", "M"]
    assert "readable summary (label p > 0.9)" in (tmp_path / "read/tables.md").read_text()
    t1 = list(csv.reader(io.StringIO((tmp_path / "read/table1.csv").read_text())))
    assert t1[2][1] == "6.32"                                  # Table 1 shows the readable z
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ours/rows.csv").read_text())))
    assert rows[1]["verdict"] == "L" and rows[1]["verdict_read"] == "M" and rows[1]["n_r_read"] == "40"


def test_broken_baseline_gets_its_own_letter():
    # class 3: P_u = 0.2 (|0.2 - 0.5| = 0.3 > 0.25); D_r draws it with the factor 1% of the time
    counts = _counts([100] * 10, [50, 50, 50, 20, 50, 50, 50, 50, 50, 50], [100] * 10, [1, 90] + [1] * 8)
    rows = ztest.rows_from_counts(counts, 1, CLASSES)
    assert rows[3]["verdict"] == "b" and rows[3]["z"] == pytest.approx(-4.75)   # z is still computed
    assert [r["verdict"] for r in rows[:3]] == ["M"] * 3
    assert readings.summary_letter(rows[3], "paper") == "M" and readings.summary_letter(rows[3], "equivalence") == "b"
    # a looser threshold accepts it; None switches the rule off (the paper's)
    assert ztest.rows_from_counts(counts, 1, CLASSES, baseline_dev=0.35)[3]["verdict"] == "M"
    assert ztest.rows_from_counts(counts, 1, CLASSES, baseline_dev=None)[3]["verdict"] == "M"
    # exactly at the threshold is still a baseline (0.25 and 0.75 pass, 0.24 does not)
    edge = _counts([100] * 10, [25, 75, 24] + [50] * 7)
    assert [r["verdict"] for r in ztest.rows_from_counts(edge, 1, CLASSES)[:3]] == ["L", "L", "b"]
    # "too few samples" comes first
    few = _counts([10] + [100] * 9, [1] + [50] * 9)
    assert ztest.rows_from_counts(few, 1, CLASSES)[0]["verdict"] == "n"
    with pytest.raises(ValueError, match="baseline_dev"):
        ztest.rows_from_counts(counts, 1, CLASSES, baseline_dev=0.7)


def test_broken_baseline_in_table_4(tmp_path):
    counts = _counts([100] * 10, [50, 50, 50, 20, 50, 50, 50, 50, 50, 50], [100] * 10, [1, 90] + [1] * 8)
    _result(tmp_path / "runs", "GAN", "colour", 1, 0, counts)
    ztest.main([str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")])
    t4 = list(csv.reader(io.StringIO((tmp_path / "out/table4.csv").read_text())))
    assert t4[4] == ["3", "b"] and ["Count b", "1"] in t4
    assert "b: broken baseline" in (tmp_path / "out/tables.md").read_text()
    ztest.main([str(tmp_path / "runs"), "--baseline-dev", "0.4", "--out-dir", str(tmp_path / "loose")])
    assert list(csv.reader(io.StringIO((tmp_path / "loose/table4.csv").read_text())))[4] == ["3", "M"]


@pytest.mark.parametrize("argv, words", [
    (["x.json", "--summary", "bogus"], "--summary 'bogus'"),
    (["x.json", "--baseline-dev", "0.7"], "--baseline-dev 0.7"),
    (["x.json", "--baseline-dev", "0"], "--baseline-dev 0"),
    (["x.json", "--confidence", "0.85"], "--confidence 0.85"),
    (["x.json", "--confidence", "abc"], "abc")])
def test_bad_reading_values_are_one_line_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        ztest.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err


# --------------------------------------------------------------------------- the Fréchet distance
def test_frechet_distance_of_gaussians_in_closed_form():
    # 1-d: N(0, 1) against N(1, 4): (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert quality.frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0)
    # diagonal covariances: the 1-d formula per axis, summed
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 1.0, 9.0])
    want = 1.0 + sum(a + b - 2 * np.sqrt(a * b))
    assert quality.frechet_distance([0, 0, 0], np.diag(a), [1, 0, 0], np.diag(b)) == pytest.approx(want)
    # a random SPD matrix against c^2 times itself: (1 - c)^2 tr(S), for non-diagonal S
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    S = A @ A.T + 0.1 * np.eye(6)
    assert quality.frechet_distance(np.zeros(6), S, np.zeros(6), 9 * S) == pytest.approx(4 * np.trace(S))
    # the matrix square root, checked where its answer is known: against the identity, FD is
    # sum_i (1 - sqrt(lambda_i)) over the eigenvalues of the other covariance
    lam = np.linalg.eigvalsh(S)
    assert quality.frechet_distance(np.zeros(6), np.eye(6), np.zeros(6), S) == pytest.approx(np.sum((1 - np.sqrt(lam)) ** 2))
    # symmetric in its arguments, zero on itself, and equal to scipy's sqrtm form on non-commuting matrices
    B = rng.normal(size=(6, 6))
    T = B @ B.T + 0.1 * np.eye(6)
    from scipy.linalg import sqrtm
    ref = np.trace(S + T - 2 * np.real(sqrtm(S @ T)))
    assert quality.frechet_distance(np.zeros(6), S, np.zeros(6), T) == pytest.approx(ref, rel=1e-6)
    assert quality.frechet_distance(np.zeros(6), T, np.zeros(6), S) == pytest.approx(ref, rel=1e-6)
    assert quality.frechet_distance(np.ones(6), S, np.ones(6), S) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="Fréchet"):
        quality.frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


def test_frechet_report_floor_on_samples_of_known_gaussians():
    rng = np.random.default_rng(1)
    real = {w: rng.normal(size=(4000, 4)) for w in ("u", "r")}
    same = {"u": rng.normal(size=(2000, 4)), "r": rng.normal(loc=1.0, size=(2000, 4))}   # D_r: shifted by 1
    fd = quality.frechet_report(same, real)
    assert fd["n_u"] == 2000 and fd["floor_u"] < 0.05 and fd["u"] < 0.05          # both near 0
    assert fd["r"] == pytest.approx(4.0, abs=0.2) and fd["floor_r"] < 0.05           # |mu|^2 = 4
    assert quality.frechet_report(same, real) == fd                                    # deterministic


# --------------------------------------------------------------------------- the paper side by side, the figures
PAPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "paper", "paper-cells.csv")


def test_the_papers_cells_are_its_tables():
    cells = paper.load_paper(PAPER)
    assert len(cells) == 440 and sum(c["letter"] == "L" for c in cells.values()) == 43    # "43 ... out of 440"
    assert cells[(1, "colour", "1", "GAN")]["z"] == 17.05 and cells[(2, "thin", "Total", "DM")]["z"] == -32.41
    assert math.isnan(cells[(1, "colour", "0", "VAE")]["z"]) and cells[(1, "fracture", "7", "VAE")]["letter"] == "L"


def test_agreement_side_by_side_and_figures(tmp_path, capsys):
    # GAN, colour, rare 1: memorised everywhere, as the paper's Table 4 says (22 of 22 cells M)
    res = {"model": "GAN", "run_name": "gan", "dataset": "mnist", "factor": "colour", "rare": 1, "seed": 0,
           "p_in": 1.0, "p_out": 0.0, "classes": list(CLASSES), "counts": MEM, "config": {"sd_lambda": 0.0},
           "disc_loss": {w: [[e, v, 0.7 - 0.01 * e * v, 0] for e in (1, 2) for v in (0, 1)] for w in "ur"}}
    data.save_json(res, tmp_path / "runs/gan/colour-rare1-seed0/result.json")
    ztest.main([str(tmp_path / "runs"), "--paper", PAPER, "--out-dir", str(tmp_path / "out"),
                "--figures", str(tmp_path / "fig")])
    out = capsys.readouterr().out
    assert "Agreement with the paper's Table 4" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("GAN") and "colour" in x)
    assert "11/11 (100%)" in line               # rare 1 only: 11 cells (digits and 'all'), all M as the paper's
    text = (tmp_path / "out/compare.md").read_text()
    assert "| 1 | n/a | 17.05 (M) |" not in text and "Table 1, colour" in text
    table = text[text.index("Table 1, colour"):].split("\n\n")[1].splitlines()
    assert table[0].startswith("| digit | VAE ours | VAE paper | GAN ours | GAN paper |")
    assert len({line.count("|") for line in table}) == 1   # header, rule and rows have as many cells
    assert (tmp_path / "fig/figure3-gan-colour-rare1.png").stat().st_size > 5000
    assert (tmp_path / "fig/table4-ours.png").stat().st_size > 5000


def test_agreement_carries_the_always_m_bar(tmp_path):
    # VAE thin, rare 1: the paper has L at digits 4, 7 and 9, M at the other 8 of its 11 cells; a reading
    # that writes M everywhere agrees 8/11, and that bar is printed beside every reading's agreement
    _result(tmp_path, "VAE", "thin", 1, 0, MEM)
    agg = ztest.aggregate(tables.load_results([str(tmp_path)]))
    rows = paper.agreement({"ours": agg}, paper.load_paper(PAPER))
    assert rows == [["VAE", "thin", "11", "8/11 (73%)", "8/11 (73%); decided 11"]]


def test_the_papers_l_cells_are_listed_beside_ours(tmp_path):
    # thin, rare 1: the paper reads L at VAE digits 4, 7, 9 and GAN-SD digits 0, 1, 7. Ours: the VAE memorises
    # everything; the GAN-SD draws its 7s thin as often as under D_u (L) and memorises the rest
    _result(tmp_path, "VAE", "thin", 1, 0, MEM)
    _result(tmp_path, "GAN-SD", "thin", 1, 0, _counts([100] * 10, [50] * 10, [100] * 10, [1, 90] + [1] * 5 + [50, 1, 1]))
    agg = ztest.aggregate(tables.load_results([str(tmp_path)]))
    rows = paper.l_cells({"ours": agg, "morphometric": agg}, paper.load_paper(PAPER))   # thin's answer: morphometric
    assert [r[:4] for r in rows] == [["VAE", "thin", "1", d] for d in "479"] + [["GAN-SD", "thin", "1", d] for d in "017"]
    assert [r[7] for r in rows] == ["M", "M", "M", "M", "M", "L"] and [r[9] for r in rows] == [r[7] for r in rows]
    assert rows[1][4:6] == ["-0.78", "LMLM"] and rows[1][10] == "VAE M GAN-SD L"    # the paper's digit 7, both models
    assert abs(float(rows[5][6])) < 1 and float(rows[3][6]) < -5
    assert paper.l_cells({"ours": agg}, paper.load_paper(PAPER)) == []     # no answer reading for thin: nothing read


def test_against_lists_the_rows_whose_seed0_letter_changed(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    _result(old, "GAN", "colour", 1, 0, MEM)
    _result(old, "GAN", "colour", 1, 1, MEM)
    _result(old, "DM", "colour", 1, 0, MEM)                  # no twin in the new study: not compared
    # the new study: digit 3 drawn green as often as under D_u (L instead of M)
    _result(new, "GAN", "colour", 1, 0, _counts([100] * 10, [50] * 10, [100] * 10, [1, 90, 1, 50] + [1] * 6))
    _result(new, "VAE", "colour", 1, 0, MEM)                 # nor this one
    ztest.main([str(new), "--against", str(old), "--out-dir", str(tmp_path / "out")])
    rows = list(csv.reader(open(tmp_path / "out" / "changed.csv")))
    assert rows[1:] == [["GAN", "colour", "1", "1 / 0", "3", rows[1][5], "MM", rows[1][7], "L"]]
    assert float(rows[1][5]) < -5 and abs(float(rows[1][7])) < 1
    assert "1 of the 11 rows" in capsys.readouterr().out
    ztest.main([str(new), "--out-dir", str(tmp_path / "alone")])
    assert not os.path.exists(tmp_path / "alone" / "changed.csv")


def test_against_leaves_out_rows_one_study_could_not_read(tmp_path, capsys):
    # the quick DM thin cell predates the morphometric reading (x in every row), the cpu-full one has it
    results = os.path.dirname(os.path.dirname(PAPER))             # results/
    old, new = tmp_path / "old" / "result.json", tmp_path / "new" / "result.json"
    for src, dst in ((os.path.join(results, "quick"), old), (os.path.join(results, "cpu-full"), new)):
        dst.parent.mkdir()
        shutil.copy(os.path.join(src, "ddpm", "thin-rare1-seed0", "result.json"), dst)
    ztest.main([str(new), "--summary", "morphometric", "--against", str(old), "--out-dir", str(tmp_path / "out")])
    assert list(csv.reader(open(tmp_path / "out" / "changed.csv")))[1:] == []
    assert "0 of the 0 rows" in (out := capsys.readouterr().out) and "11 more rows that one study could not read" in out
    ztest.main([str(new), "--summary", "ours", "--against", str(old), "--out-dir", str(tmp_path / "ours")])
    out = capsys.readouterr().out
    assert "of the 11 rows" in out and "could not read" not in open(tmp_path / "ours" / "tables.md").read()


def test_the_fit_table_gives_each_seeds_fit_and_tie(tmp_path):
    # seed 0 with the readable counts: 90 of 100 readable 1s green under D_r, 50 of 100 under D_u: fit 0.90
    # [0.84, 0.96] (0.9 +- 1.96 * 0.03), tie (0.9 - 0.5) / 0.5 = 0.80; seed 1 without them: the share among
    # all of its 1s, 90 of 100 (MEM), its tie unknown; the tie's sd: sqrt((0.0009 + 0.0025 * 0.2^2) / 0.25) = 0.063
    path = _result(tmp_path, "GAN", "colour", 1, 0, MEM)
    res = json.loads(path.read_text())
    res["readable"] = {w: {"0.9": _counts([100] * 10, [50] * 10, [100] * 10, [1, 90] + [1] * 8)[w]} for w in "ur"}
    data.save_json(res, path)
    _result(tmp_path, "GAN", "colour", 1, 1, MEM)
    ztest.main([str(tmp_path), "--out-dir", str(tmp_path / "out")])
    rows = list(csv.reader(open(tmp_path / "out" / "table-fit.csv")))
    assert rows[0][:8] == ["model", "factor", "rare", "p_in / p_out", "seeds", "measure", "fit [95%]", "tie [95%]"]
    assert rows[1][:8] == ["GAN", "colour", "1", "1 / 0", "0,1", "factor oracle / factor oracle (all samples)",
                           "0.90 [0.84, 0.96] / 0.90 [0.84, 0.96]", "0.80 [0.68, 0.92] / -"]
    assert rows[1][9] == "MM" and len(rows) == 2


def test_seed_agreement_counts_rows_with_one_letter_in_every_seed(tmp_path):
    _result(tmp_path, "GAN", "colour", 1, 0, MEM)
    _result(tmp_path, "GAN", "colour", 1, 1, MEM)
    # seed 2: digit 3 learned (same share as D_u) instead of memorised
    _result(tmp_path, "GAN", "colour", 1, 2, _counts([100] * 10, [50] * 10, [100] * 10, [1, 90, 1, 50] + [1] * 6))
    rows = paper.seed_agreement(ztest.aggregate(tables.load_results([str(tmp_path)])))
    assert rows == [["GAN", "colour", "1", "0,1,2", "10/11", rows[0][5]]]  # digit 3 differs; Total stays M
    assert float(rows[0][5]) == 0.0                  # the other rows have the same z in every seed


def test_sample_grid_is_small_enough_to_commit(tmp_path):
    rng = np.random.default_rng(0)
    for run in ("vae", "gan", "gan-sd", "ddpm"):   # noise: the worst case for PNG compression
        x = rng.integers(0, 256, (64, 3, 28, 28), dtype=np.uint8)
        os.makedirs(tmp_path / run / "colour-rare1-seed0")
        np.savez(tmp_path / run / "colour-rare1-seed0" / "samples.npz", x=x)
    path = tmp_path / "grid.png"
    models = [("VAE", "vae"), ("GAN", "gan"), ("GAN-SD", "gan-sd"), ("DM", "ddpm")]
    assert figures.plot_samples(str(tmp_path), models, "colour", 1, 0, str(path)) == ["VAE", "GAN", "GAN-SD", "DM"]
    assert 5_000 < path.stat().st_size <= 150_000               # README: committed figures are <= 150 KB


# --- the unfit letter and the calibrated test ------------------------------------------------------
def test_an_unfit_rare_digit_reads_u_and_a_fitted_one_is_judged_by_the_test():
    """The rare digit of a D_r model drawing the factor in under UNFIT of its samples reads "u" (it did
    not fit its data), whatever its z; the other classes and the Total row never do."""
    unfit = _counts([500] * 10, [250] * 10, [500] * 10, [250, 275] + [250] * 8)    # rare 1: P_r 0.55
    rows = ztest.rows_from_counts(unfit, 1, CLASSES)
    assert rows[1]["P_r"] == 0.55 < readings.UNFIT and rows[1]["verdict"] == "u"
    assert rows[-1]["verdict"] != "u" and all(r["verdict"] == "L" for r in rows[2:10])
    assert ztest.rows_from_counts(unfit, 1, CLASSES, unfit=None)[1]["verdict"] == "M"     # z = 2.24 without it
    fitted = _counts([500] * 10, [250] * 10, [500] * 10, [250, 450] + [250] * 8)   # P_r 0.9
    assert ztest.rows_from_counts(fitted, 1, CLASSES)[1]["verdict"] == "M"
    low = _counts([500] * 10, [250] * 10, [500] * 10, [250, 100] + [250] * 8)      # P_r 0.2 < P_u: "?" before
    assert ztest.rows_from_counts(low, 1, CLASSES)[1]["verdict"] == "u"
    assert ztest.rows_from_counts(low, 1, CLASSES, unfit=None)[1]["verdict"] == "?"


def test_the_calibrated_test_adds_the_training_noise_to_the_two_sample_variance():
    k_r, n_r, k_u, n_u, tau2 = 330, 500, 250, 500, 0.0004
    p = (k_r + k_u) / (n_r + n_u)
    expect = (0.66 - 0.5) / math.sqrt(p * (1 - p) * (2 / 500) + 2 * tau2)
    assert readings.z_two_sample(k_r, n_r, k_u, n_u, tau2) == pytest.approx(expect)
    assert readings.z_two_sample(k_r, n_r, k_u, n_u) > readings.z_two_sample(k_r, n_r, k_u, n_u, tau2)
    counts = _counts([500] * 10, [250] * 10, [500] * 10, [250] * 9 + [285])
    two = ztest.rows_from_counts(counts, 1, CLASSES, test="two-sample")[9]
    cal = ztest.rows_from_counts(counts, 1, CLASSES, test="calibrated", tau2=tau2)[9]
    assert two["verdict"] == "?" and cal["verdict"] == "L" and abs(cal["z"]) < abs(two["z"])
    assert cal["p_eq"] > two["p_eq"]        # the equivalence test gets wider too
    assert ztest.rows_from_counts(counts, 1, CLASSES, test="calibrated", tau2=0.0)[9]["z"] == pytest.approx(two["z"])


def test_result_rows_carry_the_calibrated_reading_and_x_without_its_counts():
    res = {"rare": 1, "classes": list(CLASSES), "counts": _counts([500] * 10, [250] * 10, [500] * 10, [250, 450] + [250] * 8)}
    rows = ztest.result_rows(res)
    assert "verdict_cal" not in rows[0] and readings.summary_letter(rows[1], "calibrated") == "x"
    res["readable"] = {w: {"0.9": res["counts"][w]} for w in ("u", "r")}
    rows = ztest.result_rows(res)
    z = readings.z_two_sample(450, 500, 250, 500, readings.TAU2["readable"])
    assert rows[1]["z_cal"] == pytest.approx(z) and readings.summary_letter(rows[1], "calibrated") == "M"
    assert readings.summary_letter(rows[1], "morphometric") == "x"        # colour: no morphometric counts
    res["tau2"] = {"readable": 0.01}               # the run's record: the tables use the current pooled tau^2
    assert ztest.result_rows(res)[1]["z_cal"] == pytest.approx(z)
    res["tau2_cell"] = {"readable": 0.01}      # a null pair's, its own factor left out of the estimate
    assert ztest.result_rows(res)[1]["z_cal"] == pytest.approx(readings.z_two_sample(450, 500, 250, 500, 0.01))


def test_a_stroke_factors_measured_fit_decides_u_in_every_reading():
    """The DM of thick, rare 1: both calls read its D_r 1s as thick in 0.9 of samples, but their measured
    thickness sits a third of the way from real plain to real thick 1s. The stroke decides: `u` in every
    reading; a fit of 0.9 leaves the test to decide (M)."""
    def stats(mean):
        return {"n": [0, 200] + [0] * 8, "mean": [None, mean] + [None] * 8, "sd": [None, 1.0] + [None] * 8}

    counts = _counts([500] * 10, [250] * 10, [500] * 10, [250, 450] + [250] * 8)
    res = {"rare": 1, "classes": list(CLASSES), "counts": counts,
           "readable": {w: {"0.9": counts[w]} for w in ("u", "r")}}
    res["morphometric"] = {"main": "thickness", "counts": counts,
                           "ends": {"plain": stats(3.0), "factor": stats(6.0)},
                           "measures": {"u": {"thickness": stats(4.5)}, "r": {"thickness": stats(4.0)}}}
    row = ztest.result_rows(res)[1]
    assert (row["verdict"], row["verdict_read"], row["verdict_cal"], row["verdict_morph"]) == ("u",) * 4
    res["morphometric"]["measures"]["r"]["thickness"] = stats(5.7)                    # fit 0.9
    row = ztest.result_rows(res)[1]
    assert (row["verdict"], row["verdict_read"], row["verdict_cal"], row["verdict_morph"]) == ("M",) * 4


# --------------------------------------------------------------------------- the answer, printed (issue 39)
QUICK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "quick")


def _compact_letters(text):
    """{(rare digit, factor, row): [letters per model]} from the compact Table 4 printout."""
    got, rare, head = {}, None, None
    for line in text.splitlines():
        if line.startswith("RGF in digit "):
            rare = int(line.split()[3].rstrip(";,"))
        elif line.split()[:1] == ["digit"]:
            head = line.split()[1:]
        elif rare is not None and head and line.strip() and line.split()[0] in CLASSES + ("all",):
            label, cells = line.split()[0], line.split()[1:]
            per = len(cells) // len(head)
            for j, f in enumerate(head):
                got[(rare, f, label)] = cells[j * per:(j + 1) * per]
    return got


def _letters_of(agg):
    """{(rare digit, factor, row): [letters per model]} of an aggregate, as Table 4 lays it out."""
    return {(k[2], k[1], r["name"] if r["name"] != "Total" else "all"): [agg[k[:5] + (m,)]["rows"][i]["verdicts"]
            for m in tables.MODEL_ORDER if k[:5] + (m,) in agg]
            for k in agg for i, r in enumerate(agg[k]["rows"])}


def test_the_quickstart_prints_the_answer_in_100_columns(tmp_path, capsys, monkeypatch):
    """ztest.py results/quick --summary answer --out-dir DIR (README, Quickstart): Table 4 with colour under
    the calibrated reading and the stroke factors under the morphometric one, every line <= 100 columns,
    the L per model, where the full tables went; the letters are those of the calibrated / morphometric
    readings of the same results."""
    monkeypatch.chdir(tmp_path)                       # --out-dir answer: as short as the README's /tmp/tables
    ztest.main([QUICK, "--summary", "answer", "--out-dir", "answer"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100 and len(out.splitlines()) < 60
    assert out.startswith("Table 4: RGF learning (L) vs. memorization (M), answer summary (colour calibrated")
    assert out.splitlines()[-1] == "Every table under this reading (.txt, .md, .tex, .csv, .json) is in answer"
    per_model = next(line for line in out.splitlines() if line.startswith("L per model: "))
    results = calibration.load_results([QUICK])
    rows = {key: {s: ztest.result_rows(res) for s, res in seeds.items()} for key, seeds in tables.cells(results).items()}
    cal, morph = (_letters_of(tables.summarise(rows, readings.Reading(summary=h))) for h in ("calibrated", "morphometric"))
    printed = _compact_letters(out)
    assert len(printed) == 2 * 5 * 11 and set(printed) == set(cal)
    for (k, f, row), letters in printed.items():
        assert letters == (cal if f == "colour" else morph)[(k, f, row)], (k, f, row)
    learned = sum(v.count("L") for v in printed.values())
    decided = sum(len(v) - v.count("x") for vs in printed.values() for v in vs)
    assert sum(v.count("L") for k, vs in cal.items() for v in vs) == 9 and decided == 330     # README's figures
    assert per_model.startswith("L per model: VAE ") and per_model.endswith(f"in all, {learned} learned of {decided}.")
    written = list(csv.reader(io.StringIO((tmp_path / "answer" / "table4.csv").read_text())))
    assert written[2][1] == " / ".join(printed[(1, "colour", "1")])      # the files hold the same Table 4
    assert "answer summary" in (tmp_path / "answer" / "tables.md").read_text()


def test_print_full_and_print_table4_choose_the_printout(tmp_path, capsys):
    for model, counts in (("VAE", LEARN), ("GAN", MEM), ("GAN-SD", MEM), ("DM", MEM)):
        _result(tmp_path / "runs", model, "colour", 1, 0, counts)
    runs = str(tmp_path / "runs")
    ztest.main([runs, "--out-dir", str(tmp_path / "a")])                  # with --out-dir: Table 4 alone
    short = capsys.readouterr().out
    assert "Table 1" not in short and "\n      0  L  M M M\n" in short and "\nCount L  10 0 0 0\n" in short
    assert "L per model: VAE 10 of 11, GAN 0 of 11, GAN-SD 0 of 11, DM 0 of 11; in all, 10 learned of 44." in short
    ztest.main([runs, "--out-dir", str(tmp_path / "b"), "--print", "full"])   # today's printout: every table
    assert "Table 1: z-scores" in capsys.readouterr().out
    ztest.main([runs, "--print", "table4"])                                # compact without --out-dir too
    assert capsys.readouterr().out == short[:short.index("\nEvery table")] + "\n"
    assert (tmp_path / "a" / "tables.txt").read_text() == (tmp_path / "b" / "tables.txt").read_text()


def test_relaxed_skew_is_set_against_full_skew(tmp_path, capsys):
    """Appendix E: a relaxed-skew cell (p_in 0.9, p_out 0.1) beside the full-skew cell of the same model,
    factor and rare digit gets a row for the rare digit and one for Total: both z, both letters and the
    relaxed z as a share of the full one; without a relaxed cell there is no such table."""
    full = json.loads(open(os.path.join(QUICK, "gan", "colour-rare1-seed0", "result.json")).read())
    relaxed = json.loads(json.dumps(full))
    relaxed.update(p_in=0.9, p_out=0.1)
    for w in ("u", "r"):       # the D_r model keeps half the excess of the factor on its 1s
        relaxed["counts"][w] = {"n": full["counts"][w]["n"], "k": list(full["counts"][w]["k"])}
    n, k = full["counts"]["r"]["n"][1], full["counts"]["r"]["k"][1]
    relaxed["counts"]["r"]["k"][1] = (k + round(n * full["counts"]["u"]["k"][1] / full["counts"]["u"]["n"][1])) // 2
    for name, res in (("colour-rare1-seed0", full), ("colour-rare1-pin0.9-pout0.1-seed0", relaxed)):
        os.makedirs(tmp_path / "gan" / name)
        (tmp_path / "gan" / name / "result.json").write_text(json.dumps(res))
    ztest.main([str(tmp_path / "gan"), "--out-dir", str(tmp_path / "out")])
    capsys.readouterr()
    rows = list(csv.reader(open(tmp_path / "out" / "table-skew.csv")))
    assert rows[0][-1] == "relaxed / full" and [r[4] for r in rows[1:]] == ["1", "Total"]
    z_full, z_relaxed, share = float(rows[1][5]), float(rows[1][7]), float(rows[1][9])
    assert z_full > z_relaxed > 0 and share == pytest.approx(z_relaxed / z_full, abs=0.01) and 0.3 < share < 0.7
    ztest.main([str(tmp_path / "gan" / "colour-rare1-seed0"), "--out-dir", str(tmp_path / "alone")])
    assert not os.path.exists(tmp_path / "alone" / "table-skew.csv")
