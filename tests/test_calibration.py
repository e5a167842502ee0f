"""The null check and the calibrated reading (study/calibration.py) on synthetic D_u models whose
training noise is known, and on the committed results.

    python -m pytest -q tests/test_calibration.py
"""
import math
import os

import numpy as np
import pytest

import ztest
from study import calibration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _result(seed, n, k, model="gan", factor="colour", rare=1):
    """A result.json as far as the null check reads it: the D_u model's counts, all and readable."""
    table = {"n": list(n), "k": list(k)}
    return {"run_name": model, "model": model.upper(), "factor": factor, "rare": rare, "seed": seed,
            "data_seed": 0, "classes": [str(c) for c in range(len(table["n"]))], "counts": {"u": table},
            "readable": {"u": {"0.9": table}}}


def _noisy_models(tau, seeds, rng, n=1000, classes=200):
    """D_u models whose class shares P differ between seeds by N(0, tau^2) around 0.5, each sampled
    binomially n times per class."""
    out = []
    for s in range(seeds):
        p = np.clip(0.5 + rng.normal(0, tau, classes), 0.01, 0.99)
        out.append(_result(s, [n] * classes, rng.binomial(n, p)))
    return out


def test_identical_seeds_read_l_in_every_class_under_every_test():
    same = [_result(s, [1000] * 10, [500] * 10) for s in (0, 1)]
    counts, taus, n_pairs, _ = calibration.null_check(same)
    assert n_pairs == 1 and taus["all"] == 0.0
    assert all(bad == 0 and n == 10 for bad, n in counts.values())


def test_tau2_recovers_the_training_noise_it_was_given():
    rng = np.random.default_rng(0)
    pairs = calibration.null_pairs(_noisy_models(0.05, 3, rng))
    assert len(pairs) == 3
    assert math.sqrt(calibration.tau2(pairs, "all")) == pytest.approx(0.05, rel=0.15)


def test_eq1_over_rejects_on_noisy_seeds_and_the_calibrated_test_does_not():
    """Training noise of sd 0.05 with 1,000 samples a class: eq. 1 calls most null classes significant;
    the calibrated test, with tau^2 from another factor's pairs (leave one factor out), about 5%."""
    rng = np.random.default_rng(1)
    results = _noisy_models(0.05, 3, rng) + [dict(r, factor="thin") for r in _noisy_models(0.05, 3, rng)]
    counts, _, n_pairs, _ = calibration.null_check(results)
    rate = lambda test: (sum(v[0] for k, v in counts.items() if k[:2] == ("all", test))
                         / sum(v[1] for k, v in counts.items() if k[:2] == ("all", test)))
    assert n_pairs == 6
    assert rate("eq. 1") > 0.5
    assert rate("calibrated") < 0.09


def test_two_d_u_tables_for_one_model_are_refused():
    with pytest.raises(ValueError, match="two D_u tables"):
        calibration.du_tables([_result(0, [10] * 10, [5] * 10), _result(0, [10] * 10, [4] * 10)])


def test_the_committed_null_pairs_give_the_measured_rates():
    """The committed quick study: eq. 1 calls 50 of 170 null classes significant; the calibrated test,
    held out, at most 10% under both readings (a binomial 95% bound of 5% on 170 classes is 8.2%: the
    stroke pairs, 2 seeds, pooled, stay above it), and on colour, where every model has its own tau^2 from
    3 seeds, at most 12 of 120 (nominal 6); TAU2 is the pooled tau^2. No morphometric pairs: none kept
    the D_u measurements."""
    results = calibration.load([os.path.join(REPO, "results", "quick")])
    counts, taus, n_pairs, sources = calibration.null_check(results)
    total = lambda reading, test, f="": [sum(v[i] for k, v in counts.items() if k[:2] == (reading, test)
                                             and f in k[3]) for i in (0, 1)]
    assert n_pairs >= 14
    for reading in ("all", "readable"):
        bad, n = total(reading, "calibrated")
        assert bad / n <= 0.10, (reading, bad, n)
        bad, n = total(reading, "calibrated", "colour")
        assert n == 120 and bad <= 12, (reading, bad, n)
        assert taus[reading] == pytest.approx(calibration.TAU2[reading], rel=0.01)
        assert all("3 seeds" in next(iter(v)) for k, v in sources.items() if k[0] == reading and k[2] == "colour")
    assert taus["morph"] is None and not any(k[0] == "morph" for k in counts)
    if n_pairs == 17:             # colour (4 models, 3 seeds), thin (VAE, DM) and thick (VAE, GAN, DM): 2 seeds
        assert total("all", "eq. 1") == [50, 170]


def test_the_command_line_refuses_a_folder_without_null_pairs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        calibration.main([str(tmp_path)])
    assert e.value.code == 2 and "two --seed values" in capsys.readouterr().err


# --- the null check under every reading of the tables (ztest.py --null-check) -----------------------
def _rates(letters):
    """{reading: share of classes not L} over every pair, "x" (no counts for the reading) left out."""
    out = {}
    for (how, _, _), v in letters.items():
        kept = [x for x in v if x != "x"]
        bad, n = out.get(how, (0, 0))
        out[how] = (bad + len(kept) - kept.count("L"), n + len(kept))
    return {how: bad / n for how, (bad, n) in out.items() if n}


def test_a_synthetic_null_pair_reads_l_everywhere_when_the_seeds_agree():
    same = [_result(s, [1000] * 10, [500] * 10) for s in (0, 1)]
    rates = _rates(ztest.null_check(same))
    assert set(rates) >= {"ours", "paper", "equivalence", "readable", "calibrated"}
    assert all(r == 0.0 for r in rates.values()), rates
    text = calibration.format_null_letters(ztest.null_check(same))
    assert "GAN/colour" in text and "0/10" in text and "\nmorphometric " not in text   # no morphometric counts


def test_the_null_check_over_rejects_with_eq1_and_not_with_the_calibrated_reading():
    """Training noise of sd 0.05 on 1,000 samples a class, two factors with three seeds each: eq. 1 (ours,
    paper) calls most null classes significant; the calibrated reading, its tau^2 left out by factor,
    about the nominal 5%."""
    rng = np.random.default_rng(2)
    results = _noisy_models(0.05, 3, rng) + [dict(r, factor="thin") for r in _noisy_models(0.05, 3, rng)]
    rates = _rates(ztest.null_check(results))
    assert rates["ours"] > 0.5 and rates["paper"] > 0.5
    assert rates["calibrated"] < 0.09


def test_a_d_u_only_run_reads_as_a_null_pair(tmp_path):
    """du.json, what --stage u leaves, is the D_u half of a result: two seeds of it make a null pair."""
    import json
    args = {"dataset": "mnist", "factor": "thin", "seed": 0, "data_seed": 0, "samples": 100, "oracles": "robust"}
    table = {"n": [10] * 10, "k": [5] * 10}
    for seed in (0, 1):
        rec = calibration.du_record({**args, "seed": seed}, "VAE", "vae", table, {"0.9": table})
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "du.json").write_text(json.dumps(rec))
    results = calibration.load([str(tmp_path)])
    assert [r["format"] for r in results] == [calibration.DU_FORMAT] * 2
    pairs = calibration.null_results(results)
    assert len(pairs) == 1 and pairs[0]["model"] == "VAE" and pairs[0]["seed"] == (0, 1)
    assert _rates(ztest.null_check(results))["ours"] == 1.0    # 10 samples a class: "n", never L


def test_the_committed_null_check_under_the_calibrated_reading_is_near_nominal():
    """The committed quick study, every null pair: eq. 1 as we read it (ours) 50 of 170 classes not L;
    the calibrated reading, tau^2 held out (per model and factor on colour), at most 10%."""
    results = calibration.load([os.path.join(REPO, "results", "quick")])
    letters = ztest.null_check(results)
    rates = _rates(letters)
    assert rates["calibrated"] <= 0.10, rates
    if len(calibration.null_pairs(results)) == 17:
        assert sum(len(v) - v.count("L") for k, v in letters.items() if k[0] == "ours") == 50


def test_the_calibrated_reading_keeps_the_colour_rare_digit_memorised():
    """Calibrating the test does not kill its power: in every committed colour cell of the GAN, the
    GAN-SD and the DM, the rare digit is still M under the calibrated reading, with each model's own tau^2
    (3 seeds of each on colour), unless its fit is clearly short of its data (u: upper 95% bound < 0.8)."""
    results = [r for r in calibration.load_results([os.path.join(REPO, "results", "quick")])
               if r["factor"] == "colour" and r["model"] in ("GAN", "GAN-SD", "DM")]
    assert len(results) >= 18
    for res in results:
        row = ztest.result_rows(res)[res["rare"]]
        assert "seeds" in res["tau2_source"]["readable"]
        assert row["verdict_cal"] == "M" or (row["verdict_cal"] == "u" and ztest.quality.cell_fit(res)[2] < 0.8), \
            (res["model"], res["rare"], res["seed"], row["z_cal"], row["P_r_cal"])
        assert row["verdict_cal"] == "M" or res["model"] == "DM"     # the quick DM alone draws too few red 2s


# --- tau^2 per model and factor (synthetic pairs) -----------------------------------------------------
def _with_morph(res, rng, tau, n=1000):
    """res with a morphometric D_u half whose class shares differ by N(0, tau^2) between seeds."""
    p = np.clip(0.5 + rng.normal(0, tau, len(res["counts"]["u"]["n"])), 0.01, 0.99)
    table = {"n": [n] * len(p), "k": rng.binomial(n, p).tolist()}
    return {**res, "morphometric": {"counts": {"u": table}}}


def test_each_model_and_factor_gets_its_own_tau2_from_three_seeds():
    """Two models on one factor, one with training noise sd 0.05 and one with none, 3 seeds each: each cell
    reads its own tau^2 (the oracle's and the morphometric one), not the pooled one, and says so."""
    rng = np.random.default_rng(3)
    noisy = [dict(_with_morph(r, rng, 0.08), run_name="vae", model="VAE") for r in _noisy_models(0.05, 3, rng)]
    calm = [_with_morph(r, rng, 0.0) for r in _noisy_models(0.0, 3, rng)]
    pairs = calibration.null_pairs(noisy + calm)
    for model, tau, tau_m in (("vae", 0.05, 0.08), ("gan", 0.0, 0.0)):
        values, sources = calibration.cell_tau2(pairs, model, "colour")
        assert math.sqrt(values["all"]) == pytest.approx(tau, abs=0.012), model
        assert math.sqrt(values["morph"]) == pytest.approx(tau_m, abs=0.015), model
        assert sources == {r: f"{model}/colour, 3 seeds" for r in calibration.READINGS}


def test_fewer_than_three_seeds_fall_back_to_the_pooled_tau2_and_say_so():
    rng = np.random.default_rng(4)
    two = calibration.null_pairs(_noisy_models(0.05, 2, rng))
    values, sources = calibration.cell_tau2(two, "gan", "colour")
    assert values == {"all": calibration.TAU2["all"], "readable": calibration.TAU2["readable"],
                      "morph": calibration.TAU2["readable"]}
    assert sources == {"all": "pooled", "readable": "pooled", "morph": "pooled, the oracle's"}
    res = [dict(r, rare=1) for r in _noisy_models(0.05, 2, rng)]
    calibration.attach_tau2(res, res)
    assert res[0]["tau2_source"]["readable"] == "pooled" and "pooled in every result" in \
        calibration.tau2_note(res)


def test_the_pair_under_test_never_enters_its_own_tau2():
    """Held out: with seeds 0-2, the pair (0, 1) is calibrated with the tau^2 of (0, 2) and (1, 2) alone;
    making (0, 1) wildly different does not move it. With 2 seeds of its factor it falls back to the
    other factors' pairs, and with none of those it has no calibrated entry."""
    rng = np.random.default_rng(5)
    models = _noisy_models(0.03, 3, rng)
    pairs = calibration.null_pairs(models)
    test = next(p for p in pairs if p[2:4] == (0, 1))
    values, sources = calibration.cell_tau2(pairs, "gan", "colour", leave_out=test)
    assert values["all"] == calibration.tau2([p for p in pairs if p is not test], "all")
    assert sources["all"] == "gan/colour, 3 seeds"
    wild = [models[0], {**models[1], "counts": {"u": {"n": [1000] * 200, "k": [990, 10] * 100}}}, models[2]]
    wild_pairs = calibration.null_pairs(wild)
    wild_test = next(p for p in wild_pairs if p[2:4] == (0, 1))
    other = calibration.cell_tau2(wild_pairs, "gan", "colour", leave_out=wild_test)[0]["all"]
    alone = calibration.tau2([p for p in wild_pairs if p is not wild_test], "all")
    assert other == alone and other < calibration.tau2(wild_pairs, "all")
    two = calibration.null_pairs(models[:2])
    assert calibration.cell_tau2(two, "gan", "colour", leave_out=two[0]) == ({}, {})
    thin = [dict(r, factor="thin") for r in _noisy_models(0.03, 2, rng)]
    mixed = calibration.null_pairs(models[:2] + thin)
    values, sources = calibration.cell_tau2(mixed, "gan", "colour", leave_out=mixed[0])
    assert values["all"] == calibration.tau2([p for p in mixed if p[1] == "thin"], "all") and sources["all"] == "pooled"


def test_the_held_out_null_check_per_model_and_factor_is_near_nominal():
    """Five seeds with training noise sd 0.05 on 50 classes, for the oracle and the morphometric readings:
    eq. 1 rejects most null classes; the calibrated test with each pair's own held-out tau^2, near 5%. The
    text has a row per model, factor and reading."""
    rng = np.random.default_rng(6)
    results = [_with_morph(r, rng, 0.05) for r in _noisy_models(0.05, 5, rng, classes=50)]
    counts, taus, n_pairs, sources = calibration.null_check(results)
    assert n_pairs == 10
    for reading in ("all", "morph"):
        eq1, cal = counts[(reading, "eq. 1", "gan", "colour")], counts[(reading, "calibrated", "gan", "colour")]
        assert eq1[0] / eq1[1] > 0.5 and cal[0] / cal[1] < 0.09, (reading, eq1, cal)
        assert sources[(reading, "gan", "colour")] == {"gan/colour, 5 seeds"}
    text = calibration.format_null_check(counts, taus, n_pairs, sources)
    rows = [line.split("  ")[0] for line in text.splitlines()[2:] if line.startswith("gan/colour")]
    assert len(rows) == 3 and "morphometric" in text and "gan/colour, 5 seeds" in text
