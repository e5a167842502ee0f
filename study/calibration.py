"""The null check and the calibrated reading: eq. 1 against a model's own training noise.

Eq. 1 treats P_u as exact and counts only the sampling noise of the D_r model's samples. Two trainings of
the same model on the same data differ by more than that, so a difference that eq. 1 calls significant
can be a second seed's doing. The null check measures it: the D_u models of one model and factor in two
training seeds see the same data, so eq. 1, read with one of them as "D_r", should call every class L.
The share of classes that come out otherwise is the reading's false-positive rate (nominal: 5%).

The calibrated reading adds the training noise to the test: a two-sample z whose variance is the
binomial variance of both proportions plus 2 tau^2, where tau^2 is the between-seed variance of a class's
factor share P (method of moments: E[(P_s - P_s')^2] = 2 tau^2 + binomial). tau^2 is estimated per model
and factor, from that model's D_u models on that factor in at least MIN_SEEDS training seeds, for the
oracle's reading and for the morphometric one (the stroke measured on the same samples). A model and
factor with fewer seeds falls back to the pooled estimate of the committed results (readings.TAU2; the
morphometric reading then borrows the oracle's) and is marked "pooled". The null check measures every
such correction held out: the pair under test never enters its own tau^2 (per model and factor: the
other pairs of its seeds; pooled: the pairs of the other factors).

    python -m study.calibration results/quick          # tau^2 per reading, and the tests' null rates
    python ztest.py results/quick --null-check         # the null check under every reading of the tables

A D_u-only run (`--stage u`) leaves du.json beside its samples (ztest.save_du): the D_u model's counts,
read here like the D_u half of a result.json.
"""
import argparse
import itertools
import math
import os
import sys

from scipy.stats import norm

import data
from study.readings import ANSWER, SUMMARIES, TAU2, z_two_sample
from study.tables import load_results as load_results_only, read_json, result_problem

ALPHA = 0.05
READINGS = ("all", "readable", "morph")    # all samples; those the label oracle reads with p > 0.9; the
                                           # morphometric call on those (stroke factors only)
CONFIDENT = "0.9"
MIN_SEEDS = 3                              # tau^2 per model and factor from at least 3 D_u seeds, else pooled
DU_FORMAT = "rgf-du/1"                     # du.json: a D_u model's labelled samples, without a D_r model


# --- the D_u models of each training seed -----------------------------------------------------------
def du_tables(results):
    """{(run_name, factor, data seed, seed): {"model", "classes", "counts", "readable", "morph"}}: the
    labelled samples of the D_u model of every result.json (its "u" half) and du.json. Results of one D_u
    model (rare 1 and rare 2 of one seed) give it once; "all" / "readable" are the (n, k) lists tau2 uses."""
    out = {}
    for res in results:
        if res.get("dataset", "mnist") != "mnist":
            continue
        key = (res["run_name"], res["factor"], res.get("data_seed", 0), res["seed"])
        read = res.get("readable", {}).get("u")
        morph = (res.get("morphometric") or {}).get("counts", {}).get("u")
        table = {"model": res.get("model", res["run_name"]), "classes": res.get("classes", data.MNIST_CLASSES),
                 "counts": res["counts"]["u"], "readable": read,
                 "all": (res["counts"]["u"]["n"], res["counts"]["u"]["k"]),
                 "readable_nk": (read[CONFIDENT]["n"], read[CONFIDENT]["k"]) if read else None,
                 "morph_nk": (morph["n"], morph["k"]) if morph else None}
        old = out.setdefault(key, {**table, "morph": morph})
        if (old["counts"], old["readable"]) != (table["counts"], table["readable"]):
            raise ValueError(f"two D_u tables for {key}: the results come from different D_u models")
        old["morph"] = old["morph"] or morph
        old["morph_nk"] = old["morph_nk"] or table["morph_nk"]
    return out


def du_record(args, model, run_name, counts, readable, morph=None):
    """du.json of a D_u-only run (--stage u): its counts in result.json's layout, the "u" half only, with
    the morphometric reading of its samples on a stroke factor (morph: study/morphometry.reading)."""
    keys = ("dataset", "factor", "seed", "data_seed", "samples", "oracles")
    return {"format": DU_FORMAT, "model": model, "run_name": run_name, **{k: args[k] for k in keys},
            "classes": list(data.class_names(args["dataset"])), "counts": {"u": counts}, "readable": {"u": readable},
            **({"morphometric": morph} if morph else {})}


def null_pairs(results):
    """Every pair of training seeds of one model and factor (same data seed): [(model, factor, seed_a,
    seed_b, table_a, table_b)], seed_a < seed_b; table_b plays the D_r model."""
    groups = {}
    for (model, factor, data_seed, seed), table in du_tables(results).items():
        groups.setdefault((model, factor, data_seed), {})[seed] = table
    return [(m, f, a, b, seeds[a], seeds[b]) for (m, f, _), seeds in sorted(groups.items())
            for a, b in itertools.combinations(sorted(seeds), 2)]


# --- statistics ----------------------------------------------------------------------------------------
def _classes(pair, reading):
    """Per class of one null pair: (k_u, n_u, k_r, n_r), classes with no samples on either side dropped."""
    key = {"all": "all", "readable": "readable_nk", "morph": "morph_nk"}[reading]
    a, b = (pair[i][key] for i in (4, 5))
    if a is None or b is None:
        return []
    return [(ku, nu, kr, nr) for nu, ku, nr, kr in zip(a[0], a[1], b[0], b[1]) if nu and nr]


def tau2(pairs, reading):
    """The between-seed variance of a class's P, pooled over the classes of `pairs` (moment estimate,
    clipped at 0); None without a pair."""
    terms = []
    for pair in pairs:
        for ku, nu, kr, nr in _classes(pair, reading):
            pu, pr, p = ku / nu, kr / nr, (ku / nu + kr / nr) / 2
            terms.append(((pr - pu) ** 2 - p * (1 - p) * (1 / nu + 1 / nr)) / 2)
    return max(sum(terms) / len(terms), 0.0) if terms else None


def own_pairs(pairs, model, factor, reading, leave_out=None):
    """The null pairs of one model and factor that have counts for `reading`, without `leave_out` (the pair
    under test); [] unless they span at least MIN_SEEDS training seeds."""
    own = [p for p in pairs if p[:2] == (model, factor) and p is not leave_out and _classes(p, reading)]
    return own if len({s for p in own for s in p[2:4]}) >= MIN_SEEDS else []


def cell_tau2(pairs, model, factor, leave_out=None):
    """tau^2 of every reading for one model and factor, and where each comes from: ({reading: tau^2},
    {reading: source}). Per model and factor (source "<model>/<factor>, <n> seeds") from own_pairs; else
    pooled (source "pooled"): for a null pair under test (leave_out given) over the pairs of the other
    factors, for a cell the committed readings.TAU2. A pooled morphometric tau^2 is the morphometric one of
    the other factors' pairs where they have it, else the oracle's readable one ("pooled, the oracle's")."""
    values, sources = {}, {}
    for r in READINGS:
        own = own_pairs(pairs, model, factor, r, leave_out)
        if own:
            values[r] = tau2(own, r)
            sources[r] = f"{model}/{factor}, {len({s for p in own for s in p[2:4]})} seeds"
        elif leave_out is None:
            values[r] = TAU2["readable" if r == "morph" else r]
            sources[r] = "pooled, the oracle's" if r == "morph" else "pooled"
        else:                  # a null pair under test: the other factors' pairs; morph: else the oracle's
            others = [p for p in pairs if p[1] != factor]
            t, src = tau2(others, r), "pooled"
            if t is None and r == "morph":
                t, src = tau2(others, "readable"), "pooled, the oracle's"
            if t is not None:
                values[r], sources[r] = t, src
    return values, sources


def attach_tau2(results, du_results):
    """Each MNIST result gets the tau^2 its calibrated and morphometric readings use ("tau2_cell") and
    their sources ("tau2_source"), per model and factor from the D_u models of du_results (result.json
    and du.json, as `load` reads them) where they have MIN_SEEDS seeds, else pooled. Returns results."""
    try:
        pairs = null_pairs([r for r in du_results if "run_name" in r])   # (hand-made results have none)
    except ValueError as e:       # two D_u tables for one model and seed: no estimate is sound, say so
        print(f"warning: tau^2 pooled for every cell ({e})", file=sys.stderr)
        pairs = []
    for res in results:
        if res.get("dataset", "mnist") == "mnist" and "run_name" in res:
            res["tau2_cell"], res["tau2_source"] = cell_tau2(pairs, res["run_name"], res["factor"])
    return results


def tau2_note(results):
    """One sentence for the calibrated and morphometric tables: which models and factors read with their
    own tau^2 (MIN_SEEDS D_u seeds), and how many cells fall back to the pooled one; "" without results."""
    own, pooled = set(), 0
    for res in results:
        src = res.get("tau2_source") or {}
        if "seeds" in src.get("readable", "") or "seeds" in src.get("morph", ""):
            own.add(f"{res['model']}/{res['factor']}")
        else:
            pooled += 1
    if not own:
        return f"tau^2 of the calibrated tests: pooled in every result (no model and factor has {MIN_SEEDS} " \
               f"D_u seeds yet)." if pooled else ""
    return (f"tau^2 of the calibrated tests: per model and factor (from >= {MIN_SEEDS} D_u seeds) for "
            + ", ".join(sorted(own)) + f"; pooled (fewer seeds) in {pooled} result" + ("s" if pooled != 1 else "") + ".")


def note_tau2(tabs, results, summary):
    """The tables of a calibrated, morphometric or answer summary: tau2_note appended to each note."""
    if summary in ("calibrated", "morphometric", ANSWER):
        for t in tabs:
            note = t.get("note", "").rstrip()
            t["note"] = (note + ("" if not note or note.endswith(".") else ".") + " " + tau2_note(results)).strip()


def z_calibrated(k_r, n_r, k_u, n_u, tau2_):
    """(P_r - P_u) / sqrt(P(1 - P)(1/n_u + 1/n_r) + 2 tau^2), P pooled: the two-sample z of eq. 1's
    proportions with each model's training noise added (readings.z_two_sample). nan when the variance is 0."""
    return z_two_sample(k_r, n_r, k_u, n_u, tau2_)


def z_eq1(k_r, n_r, k_u, n_u):
    """Eq. 1 as the paper applies it: (P_r - P_u) / sqrt(P_u (1 - P_u) / n_r), P_u taken as exact."""
    pu = k_u / n_u
    return (k_r / n_r - pu) / math.sqrt(pu * (1 - pu) / n_r) if 0 < pu < 1 else float("nan")


def significant(z, alpha=ALPHA):
    """Two-sided p < alpha; an undefined z is not L either (the paper counts it as M)."""
    return not (abs(z) < norm.isf(alpha / 2)) if z == z else True


# --- the null check ----------------------------------------------------------------------------------------
def null_check(results, alpha=ALPHA):
    """Per (model, factor) and test: (classes not L, classes) over every null pair, for eq. 1 (the
    paper's one-sample test), the two-sample test and the calibrated test, held out (cell_tau2 with the
    pair under test left out: per model and factor where its other pairs span MIN_SEEDS seeds, else
    pooled over the other factors; a pair with neither has no calibrated entry), under the oracle's
    readings and the morphometric one. Returns (counts {(reading, test, model, factor): [not L, classes]},
    the pooled tau^2 per reading, the number of pairs, sources {(reading, model, factor): {source}})."""
    pairs = null_pairs(results)
    counts, sources = {}, {}
    for reading in READINGS:
        for pair in pairs:
            values, src = cell_tau2(pairs, pair[0], pair[1], leave_out=pair)
            held = values.get(reading)
            if _classes(pair, reading) and held is not None:
                sources.setdefault((reading, pair[0], pair[1]), set()).add(src[reading])
            for ku, nu, kr, nr in _classes(pair, reading):
                zs = {"eq. 1": z_eq1(kr, nr, ku, nu), "two-sample": z_calibrated(kr, nr, ku, nu, 0.0)}
                if held is not None:     # no other factor has seeds: nothing to calibrate this pair with
                    zs["calibrated"] = z_calibrated(kr, nr, ku, nu, held)
                for test, z in zs.items():
                    c = counts.setdefault((reading, test, pair[0], pair[1]), [0, 0])
                    c[0] += significant(z, alpha)
                    c[1] += 1
    return counts, {r: tau2(pairs, r) for r in READINGS}, len(pairs), sources


def null_results(results):
    """Every null pair as a result that ztest.result_rows reads: seed a's D_u model as "u", seed b's as
    "r", with tau^2 held out (cell_tau2 with the pair left out); rare is 0, a placeholder (no digit of a
    null pair is rare)."""
    pairs, out = null_pairs(results), []
    for pair in pairs:
        model, factor, a, b, ta, tb = pair
        held, src = cell_tau2(pairs, model, factor, leave_out=pair)
        res = {"model": ta["model"], "run_name": model, "factor": factor, "dataset": "mnist", "rare": 0,
               "classes": ta["classes"], "seed": (a, b), "counts": {"u": ta["counts"], "r": tb["counts"]},
               "tau2_cell": held, "tau2_source": src}
        if ta["readable"] and tb["readable"]:
            res["readable"] = {"u": ta["readable"], "r": tb["readable"]}
        if ta["morph"] and tb["morph"]:
            res["morphometric"] = {"counts": {"u": ta["morph"], "r": tb["morph"]}}
        out.append(res)
    return out


def format_null_letters(letters, how_order=SUMMARIES):
    """The null check of ztest.py --null-check as a text table: per reading (a row) and model/factor (a
    column), the classes that are not L over every null pair, and over all of them; letters is
    {(reading, model, factor): [letter per class and pair]}, "x" (no counts for that reading) left out."""
    if not letters:
        raise ValueError("the null check needs D_u models of one model and factor in two training seeds; none here")
    cells = sorted({k[1:] for k in letters})
    head, lines = ["reading"] + [f"{m}/{f}" for m, f in cells] + ["all pairs"], []
    for how in how_order:
        row = [[v for v in letters.get((how, m, f), []) if v != "x"] for m, f in cells]
        if not any(row):
            continue
        bad, n = sum(len(r) - r.count("L") for r in row), sum(map(len, row))
        lines.append([how] + [f"{len(r) - r.count('L')}/{len(r)}" if r else "-" for r in row]
                     + [f"{bad}/{n} ({bad / n:.1%})"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([f"null check: classes not L when a D_u model is read against its own reseeded copy "
                      f"(nominal 5%; calibrated and morphometric: tau^2 held out, "
                      f"per model and factor where >= {MIN_SEEDS} seeds, else left out by factor)", fmt(head)]
                     + [fmt(line) for line in lines])


NAMES = {"all": "oracle, all", "readable": "oracle, readable", "morph": "morphometric"}


def format_null_check(counts, taus, n_pairs, sources=None):
    """The null check as text, one row per model and factor and reading (the oracle's on all samples and
    on the readable ones, the morphometric call on the readable ones): the classes not L over its null
    pairs under eq. 1, the two-sample test and the calibrated test with tau^2 held out, and where that
    tau^2 came from; then the same over every pair, and the pooled tau^2 per reading."""
    sources = sources or {}
    tests = ("eq. 1", "two-sample", "calibrated")
    head = ["model/factor", "reading", "classes"] + list(tests) + ["calibrated: tau^2 from (held out)"]
    cell = lambda c: f"{c[0]}/{c[1]} ({c[0] / c[1]:.0%})" if c[1] else "-"
    lines, totals = [], {}
    for model, factor in sorted({k[2:] for k in counts}):
        for reading in READINGS:
            got = [counts.get((reading, t, model, factor)) for t in tests]
            if not got[0]:
                continue
            for t, c in zip(tests, got):
                if c:
                    tot = totals.setdefault((reading, t), [0, 0])
                    tot[0], tot[1] = tot[0] + c[0], tot[1] + c[1]
            src = "; ".join(sorted(sources.get((reading, model, factor), ()))) or "none (no other pairs)"
            lines.append([f"{model}/{factor}", NAMES[reading], str(got[0][1])] + [cell(c or (0, 0)) for c in got]
                         + [src])
    for reading in READINGS:
        if (reading, "eq. 1") in totals:
            lines.append(["all pairs", NAMES[reading], str(totals[(reading, "eq. 1")][1])]
                         + [cell(totals.get((reading, t), (0, 0))) for t in tests] + [""])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    tau_line = ", ".join(f"{NAMES[r]} {t:.6f} (sd {math.sqrt(t):.4f})" for r, t in taus.items() if t is not None)
    return "\n".join([f"null check per model and factor: {n_pairs} pairs of D_u models in two training seeds; "
                      f"classes not L (nominal 5%); tau^2 per model and factor from >= {MIN_SEEDS} seeds without "
                      f"the pair under test, else pooled over the other factors", fmt(head)]
                     + [fmt(line) for line in lines] + [f"pooled tau^2 over every pair: {tau_line}"])


# --- command line -----------------------------------------------------------------------------------------
def load(paths, names=("result.json", "du.json")):
    """Every result.json and du.json (a D_u-only run) under the given files or folders, as dicts; names:
    which of the two files a folder is searched for."""
    out = []
    for path in paths:
        files = ([path] if "result.json" in names or os.path.basename(path) in names else []) \
            if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f in names)
        for f in files:
            out.append(_checked(f, read_json(f, "results file")))
    return out


def load_results(paths):
    """The result.json files under `paths` (tables.load_results), each with the tau^2 of its model and
    factor for the calibrated readings, from the D_u models of those results and of the du.json files
    beside them (study/calibration.attach_tau2)."""
    results = load_results_only(paths)
    return attach_tau2(results, results + load(paths, names=("du.json",)))


def _checked(f, res):
    """A result.json (tables.result_problem) or du.json read from file f; ValueError naming the file and
    the field when it cannot be read."""
    if isinstance(res, dict) and res.get("format") == DU_FORMAT:
        why = None if isinstance(res.get("counts"), dict) and isinstance(res["counts"].get("u"), dict) else \
            "field 'counts' must be {'u': {'n': [...], 'k': [...]}}"
        for k in ("run_name", "factor", "seed"):
            why = why or (None if k in res else f"is not a du.json (missing {k})")
    else:
        why = result_problem(res)
        why = why or (None if "run_name" in res else "is not a result file of a model script (missing run_name)")
    if why:
        raise ValueError(f"{f} {why}" if why.startswith(("is ", "holds ")) else f"{f}: {why}")
    return res


def _fail(msg):
    print(f"calibration: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="result.json files or folders holding them")
    p.error = lambda msg: _fail(msg)             # argparse's errors too: one line, exit 2
    args = p.parse_args(argv)
    missing = [x for x in args.paths if not os.path.exists(x)]
    if missing:
        _fail(f"{missing[0]} does not exist; accepted: result.json files or folders")
    try:
        results = load(args.paths)
    except ValueError as e:
        _fail(str(e))
    if not null_pairs(results):
        print("calibration: error: no model and factor has D_u models in two training seeds; accepted: "
              "results with at least two --seed values of one model and factor", file=sys.stderr)
        sys.exit(2)
    print(format_null_check(*null_check(results)))


if __name__ == "__main__":
    main()
