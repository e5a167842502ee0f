"""The null check and the calibrated reading: eq. 1 against a model's own training noise.

Eq. 1 treats P_u as exact and counts only the sampling noise of the D_r model's samples. Two trainings of
the same model on the same data differ by more than that, so a difference that eq. 1 calls significant
can be a second seed's doing. The null check measures it: the D_u models of one model and factor in two
training seeds see the same data, so eq. 1, read with one of them as "D_r", should call every class L.
The share of classes that come out otherwise is the reading's false-positive rate (nominal: 5%).

The calibrated reading adds the training noise to the test: a two-sample z whose variance is the
binomial variance of both proportions plus 2 tau^2, where tau^2 is the between-seed variance of a class's
factor share P, pooled over every null pair (method of moments: E[(P_s - P_s')^2] = 2 tau^2 + binomial).
With one seed a cell borrows the pooled tau^2 of the committed results (TAU2 below); the null check
measures that correction on pairs left out of the estimate (leave one factor out).

    python -m study.calibration results/quick          # the null check and tau^2, per reading
"""
import argparse
import itertools
import json
import math
import os
import sys

from scipy.stats import norm

ALPHA = 0.05
READINGS = ("all", "readable")             # all samples; the samples the label oracle reads with p > 0.9
CONFIDENT = "0.9"
# tau^2 pooled over every null pair of results/quick (14 pairs, 140 classes): `python -m study.calibration
# results/quick` prints it again, and docs/readings.md says how it was measured.
TAU2 = {"all": 0.000218, "readable": 0.000440}


# --- the D_u models of each training seed -----------------------------------------------------------
def du_tables(results):
    """{(run_name, factor, rare-free cell key, seed): {"all": (n, k), "readable": (n, k)}} for the D_u
    model of every result. Results of one D_u model (rare 1 and rare 2 of one seed) give it once."""
    out = {}
    for res in results:
        if res.get("dataset", "mnist") != "mnist":
            continue
        key = (res["run_name"], res["factor"], res.get("data_seed", 0), res["seed"])
        read = res.get("readable", {}).get("u", {}).get(CONFIDENT)
        table = {"all": (res["counts"]["u"]["n"], res["counts"]["u"]["k"]),
                 "readable": (read["n"], read["k"]) if read else None}
        if out.setdefault(key, table) != table:
            raise ValueError(f"two D_u tables for {key}: the results come from different D_u models")
    return out


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
    a, b = pair[4][reading], pair[5][reading]
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


def z_calibrated(k_r, n_r, k_u, n_u, tau2_):
    """(P_r - P_u) / sqrt(P(1 - P)(1/n_u + 1/n_r) + 2 tau^2), P pooled: the two-sample z of eq. 1's
    proportions with each model's training noise added. nan when the variance is 0."""
    p = (k_u + k_r) / (n_u + n_r)
    var = p * (1 - p) * (1 / n_u + 1 / n_r) + 2 * tau2_
    return (k_r / n_r - k_u / n_u) / math.sqrt(var) if var > 0 else float("nan")


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
    paper's one-sample test), the two-sample test and the calibrated test with tau^2 left out by factor
    (estimated from the pairs of the other factors only; a pair whose factor is the only one with seeds
    has no calibrated entry). Also the pooled tau^2 per reading and the number of pairs."""
    pairs = null_pairs(results)
    counts = {}
    for reading in READINGS:
        for pair in pairs:
            held = tau2([p for p in pairs if p[1] != pair[1]], reading)
            for ku, nu, kr, nr in _classes(pair, reading):
                zs = {"eq. 1": z_eq1(kr, nr, ku, nu), "two-sample": z_calibrated(kr, nr, ku, nu, 0.0)}
                if held is not None:     # no other factor has seeds: nothing to calibrate this pair with
                    zs["calibrated"] = z_calibrated(kr, nr, ku, nu, held)
                for test, z in zs.items():
                    c = counts.setdefault((reading, test, pair[0], pair[1]), [0, 0])
                    c[0] += significant(z, alpha)
                    c[1] += 1
    return counts, {r: tau2(pairs, r) for r in READINGS}, len(pairs)


def format_null_check(counts, taus, n_pairs):
    """The null check as a text table: per reading and test, the share of classes not L per model/factor
    and over all pairs."""
    cells = sorted({k[2:] for k in counts})
    head = ["reading", "test"] + [f"{m}/{f}" for m, f in cells] + ["all pairs"]
    lines = []
    for reading in READINGS:
        for test in ("eq. 1", "two-sample", "calibrated"):
            row = [counts.get((reading, test, m, f), [0, 0]) for m, f in cells]
            bad, n = sum(r[0] for r in row), sum(r[1] for r in row)
            lines.append([reading, test] + [f"{b}/{t}" for b, t in row] + [f"{bad}/{n} ({bad / max(n, 1):.1%})"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    tau_line = ", ".join(f"{r} {t:.6f} (sd {math.sqrt(t):.4f})" for r, t in taus.items() if t is not None)
    return "\n".join([f"null check: {n_pairs} pairs of D_u models in two training seeds; classes not L "
                      f"(nominal 5%); calibrated: tau^2 left out by factor", fmt(head)]
                     + [fmt(line) for line in lines] + [f"pooled tau^2 over every pair: {tau_line}"])


# --- command line -----------------------------------------------------------------------------------------
def load(paths):
    """Every result.json under the given files or folders, as dicts."""
    out = []
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f == "result.json")
        for f in files:
            with open(f) as fh:
                out.append(json.load(fh))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="result.json files or folders holding them")
    args = p.parse_args(argv)
    missing = [x for x in args.paths if not os.path.exists(x)]
    if missing:
        print(f"calibration: error: {missing[0]} does not exist; accepted: result.json files or folders",
              file=sys.stderr)
        sys.exit(2)
    results = load(args.paths)
    if not null_pairs(results):
        print("calibration: error: no model and factor has D_u models in two training seeds; accepted: "
              "results with at least two --seed values of one model and factor", file=sys.stderr)
        sys.exit(2)
    print(format_null_check(*null_check(results)))


if __name__ == "__main__":
    main()
