"""ztest.py: the z-test of eq. 1 and the L/M verdict, applied to the samples of a trained model.

Paper: "Do Generative Models Learn Rare Generative Factors?", section 4 (the framework, eq. 1 and the
L/M rule) and section 6 (Tables 1-4). The oracles (oracles.py) label the samples of the models trained
on D_u and on D_r; eq. 1 compares the factor's share per class; `evaluate`, which vae.py, gan.py and
ddpm.py call after training, prints the z-table and saves result.json.

The research machinery is in study/: our readings (readings.py, calibration.py), the sample-quality report
(quality.py), the tables, the audit, the paper comparison and the figures; docs/readings.md says why.

Run it:
    python ztest.py runs/ --summary answer --out-dir results   # the answer's Table 4; Tables 1-4 to results/
    python ztest.py runs/ --summary paper --min-n 0    # the paper's reading of Table 4
    python ztest.py results/quick --null-check          # every reading on D_u models against their reseeded copy
    python ztest.py --u U.npz --r R.npz --factor colour --rare 1 --model MyGAN --save audit.json
The last line audits any generator: U.npz / R.npz, uint8 samples [N,3,28,28] (cars: 64) of its D_u / D_r models.
"""
import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np
from scipy.stats import norm

import data
import oracles
import study.audit
from study import calibration, cli, figures, morphometry, paper, provenance, quality, readings, report, tables
from study.readings import (ALPHA, BASELINE_DEV, CONFIDENT, MARGIN, MIN_N, SUMMARIES, UNFIT, Reading, adjust_p,
                            check_count, check_prop, cohens_h, summary_letter, tost, z_two_sample)


# --------------------------------------------------------------------------- eq. 1 and the verdict (section 4)
def z_score(p_r, p_u, n):
    """Eq. 1: z = (P_r - P_u) / sqrt(P_u (1 - P_u) / n), the one-sample z-test of P_r against P_u.

    P_u, P_r: proportion of samples with f = 1 within class c, from the models trained on D_u and D_r.
    n: the paper writes M; it is the class count, the D_r samples the label oracle assigns to class c
    (section 6.1's P_r 0.87 against P_u 0.35 with z = 17.05 needs n ~ 245 of M = 1000; docs/readings.md).
    The Total row uses all M. NaN ("-") when z is undefined: P_u of 0 or 1, or n = 0; never inf."""
    p_r, p_u, n = check_prop("p_r", p_r), check_prop("p_u", p_u), check_count("n", n)
    if n == 0 or p_u in (0.0, 1.0):
        return math.nan
    return (p_r - p_u) / math.sqrt(p_u * (1.0 - p_u) / n)


def p_value(z):
    """Two-sided p-value of a standard normal z (scipy.stats.norm); NaN stays NaN."""
    return math.nan if not math.isfinite(z) else float(2 * norm.sf(abs(z)))


def verdict(z, p, c, rare, alpha=ALPHA, n=None, min_n=0, p_u=None, baseline_dev=None, fit_hi=None, unfit=None):
    """Section 4's rule: "L" (learned) when p > alpha; "M" (memorised) when p <= alpha and either c = k
    with z > 0 or c != k with z < 0; "?" for any other significant deviation (the paper calls it rare);
    "-" when z is undefined. The Total row (c = None) counts as c != k: D_r has the factor in one class
    only, so memorisation lowers its overall share.
    Our letters come first and never give L or M (readings.our_letter): "n" (too few samples) when
    n = min(n_u, n_r) < min_n, "b" (broken baseline) when |P_u - 0.5| > baseline_dev, and for the rare
    digit "u" (unfit) when its D_r fit's upper 95% bound fit_hi < unfit. min_n = 0, both None: the paper's."""
    ours = readings.our_letter(n, min_n, p_u, baseline_dev, fit_hi if c == rare else None, unfit)
    if ours:
        return ours
    if not (math.isfinite(z) and math.isfinite(p)):
        return "-"
    if p > alpha:
        return "L"
    return "M" if ((z > 0) if c == rare else (z < 0)) else "?"


# --------------------------------------------------------------------------- the z-table
def count_classes(y, f, n_classes):
    """Per class c: n[c] = samples labelled c, k[c] = of those, samples with f = 1."""
    y, f = np.asarray(y), np.asarray(f)
    if y.ndim != 1 or y.shape != f.shape:
        raise ValueError(f"labels and factors must be 1-D of equal length, got {y.shape} and {f.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be integers in 0..{n_classes - 1}, got values {np.unique(y)[:10]}")
    if f.size and not np.isin(f, (0, 1)).all():
        raise ValueError(f"factors must be 0 or 1, got values {np.unique(f)[:10]}")
    n = np.bincount(y.astype(np.int64), minlength=n_classes)
    k = np.bincount(y.astype(np.int64), weights=f.astype(np.int64), minlength=n_classes).astype(np.int64)
    return {"n": n.tolist(), "k": k.tolist()}


def readable_counts(y, f, p_label, p_factor, n_classes):
    """count_classes on the samples of the readable reading, at every threshold (readings.readable_masks:
    "0.9", "0.9+f", ...); result.json keeps them, so that a table can ask for any threshold."""
    y, f = np.asarray(y), np.asarray(f)
    return {key: count_classes(y[keep], f[keep], n_classes)
            for key, keep in readings.readable_masks(p_label, p_factor).items()}


def rows_from_counts(counts, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N,
                     margin=MARGIN, baseline_dev=BASELINE_DEV, tau2=0.0, unfit=UNFIT, fit=None):
    """The z-table from per-class counts {"u": {"n", "k"}, "r": {"n", "k"}}: one row per class plus
    Total, each with n, k, P for D_u and D_r, z, p, p_adj (corrected over the class rows; Total keeps its
    own p), Cohen's h, the verdict (taken on p_adj; "n" below min_n samples, "b" where |P_u - 0.5| >
    baseline_dev, "u" where the rare digit's fit (value, lower, upper: quality.cell_fit; None: from these
    counts) has its upper bound < unfit; None switches those off), the TOST p-value p_eq and the
    equivalence reading eq (readings.summary_letter). tau2: the calibrated test's training noise."""
    nu, ku, nr, kr = readings.checked_counts(counts, rare, classes, test, correction, alpha, min_n, baseline_dev)
    rows = []
    for c, name in list(enumerate(classes)) + [(None, "Total")]:
        sl = slice(None) if c is None else slice(c, c + 1)
        n_u, k_u, n_r, k_r = sum(nu[sl]), sum(ku[sl]), sum(nr[sl]), sum(kr[sl])
        if k_u > n_u or k_r > n_r:
            raise ValueError(f"class {name}: factor count exceeds the class count ({k_u}/{n_u}, {k_r}/{n_r})")
        P_u = k_u / n_u if n_u else math.nan
        P_r = k_r / n_r if n_r else math.nan
        if test != "one-sample":      # ours: P_u's sampling noise too, and with "calibrated" the training noise
            z = z_two_sample(k_r, n_r, k_u, n_u, tau2 if test == "calibrated" else 0.0)
        else:   # eq. 1 with n = n_r (the Total row: n = M, all D_r samples)
            z = z_score(P_r, P_u, n_r) if n_u and n_r else math.nan
        rows.append({"class": "Total" if c is None else c, "name": name, "n_u": n_u, "k_u": k_u,
                     "P_u": P_u, "n_r": n_r, "k_r": k_r, "P_r": P_r, "z": z, "p": p_value(z),
                     "h": cohens_h(P_r, P_u), "p_eq": tost(k_r, n_r, k_u, n_u, margin, test, tau2)})
    adj = adjust_p([r["p"] for r in rows[:-1]], correction)
    for r, pa in zip(rows, list(adj) + [rows[-1]["p"]]):
        r["p_adj"] = float(pa)
        r["verdict"] = verdict(r["z"], r["p_adj"], None if r["class"] == "Total" else r["class"], rare, alpha,
                               min(r["n_u"], r["n_r"]), min_n, r["P_u"], baseline_dev,
                               (readings.fit_bounds(kr[rare], nr[rare]) if fit is None else fit)[2], unfit)
        r["eq"] = summary_letter(r, "equivalence", alpha, min_n)
    return rows


def z_table(y_u, f_u, y_r, f_r, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N,
            baseline_dev=BASELINE_DEV):
    """Per-class rows plus a Total row (see rows_from_counts) from the oracle labels y and factors f of
    the samples of the D_u model (y_u, f_u) and of the D_r model (y_r, f_r)."""
    C = len(classes)
    counts = {"u": count_classes(y_u, f_u, C), "r": count_classes(y_r, f_r, C)}
    return rows_from_counts(counts, rare, classes, test, correction, alpha, min_n, baseline_dev=baseline_dev)


def result_rows(res, reading=Reading()):
    """A result's z-table, recomputed from its counts so that any reading applies; each row also carries
    the readings on the readable samples (n_u_read ... verdict_read; z_cal ... verdict_cal, the calibrated
    test; z_morph ... verdict_morph, the morphometric call) when the result holds their counts."""
    r, tau = reading, readings.taus_of(res)
    opts = (res["rare"], res["classes"], r.test, r.correction, r.alpha, r.min_n, r.margin, r.baseline_dev)
    fit = quality.cell_fit(res)    # the fit the cell's report prints decides "u" in every reading
    rows = rows_from_counts(res["counts"], *opts, tau2=tau["all"], unfit=r.unfit, fit=fit)
    for sfx, counts, test, tau2 in readings.extra_readings(res, r):
        for row, rd in zip(rows, rows_from_counts(counts, *opts[:2], test, *opts[3:], tau2, r.unfit, fit)):
            row.update({k + sfx: rd[k] for k in readings.READ_KEYS})
    return rows


def aggregate(results, reading=Reading()):
    """Results grouped by cell (tables.cells), their z-tables summarised over seeds (tables.summarise)."""
    cells = tables.cells(results)
    return tables.summarise({key: {s: result_rows(res, reading) for s, res in seeds.items()}
                             for key, seeds in cells.items()}, reading)


format_rows = tables.format_rows     # a z-table as aligned text (study/tables.py)


# --------------------------------------------------------------------------- labelling the samples (section 4, step 4)
def label_samples(orc, samples, dataset, factor, rare, p_in=1.0, p_out=0.0, root=None, cache_dir=None,
                  data_seed=0, min_n=MIN_N, smoke=False):
    """The oracles label every sample of {"u": uint8 [M,3,H,W], "r": ...}, from the models trained on D_u
    and D_r. Returns (counts, readable, quality, morph): eq. 1's per-class counts, the readable reading's
    at every threshold, the sample-quality report (study/quality.py) and, on a stroke factor, the
    morphometric reading (study/morphometry.py; None on colour)."""
    classes = data.class_names(dataset)
    calls = {w: oracles.classify(orc, samples[w]) for w in ("u", "r")}
    probs = {w: oracles.predict_proba(orc, samples[w]) for w in ("u", "r")}
    counts = {w: count_classes(*calls[w], len(classes)) for w in ("u", "r")}
    readable = {w: readable_counts(*calls[w], *probs[w], len(classes)) for w in ("u", "r")}
    refs = quality.real_references(dataset, factor, rare, p_in, p_out, root, cache_dir, data_seed)
    q = quality.sample_report(orc, samples, calls, probs, counts, classes, refs, min_n)
    morph = morphometry.reading(orc, samples, factor, rare, root, cache_dir, data_seed, smoke) \
        if dataset == "mnist" else None
    q["fit"] = morphometry.fit_tie(morph, rare) if morph else quality.oracle_fit(readable, rare)
    return counts, readable, q, morph


def audit(u, r, factor="colour", rare=1, dataset="mnist", model="audit", root=None, cache_dir=None,
          device="auto", data_seed=0, smoke=False, min_n=MIN_N, recipe="robust"):
    """Evaluate any generator: its samples from the D_u model (u) and the D_r model (r), each an .npz file
    or a uint8 array [N,3,28,28] (docs/own-generator.md), are labelled by the oracles and compared with
    eq. 1. Returns a result dict (render it like ours)."""
    su, sr = (study.audit.load_samples(p, study.audit.shape(dataset)) for p in (u, r))
    dev = data.pick_device(device)
    orc = oracles.load_oracles(factor, dataset, root=root, cache_dir=cache_dir, device=dev, data_seed=data_seed,
                               smoke=smoke, recipe_name=recipe)
    labelled = label_samples(orc, {"u": su, "r": sr}, dataset, factor, rare, root=root, cache_dir=cache_dir,
                             data_seed=data_seed, min_n=min_n, smoke=smoke)
    res = study.audit.record(u, r, len(sr), labelled, orc, factor, rare, dataset, model, data_seed, smoke, min_n,
                             recipe, dev)
    res["rows"] = result_rows(res, Reading(min_n=min_n))
    return res


# --------------------------------------------------------------------------- evaluation of a model script's run
def finished_result(dirs, args, eval_keys=()):
    """The saved result of this cell when it is done with the same settings (printed again), else None.
    With --force, or --stage u, nothing counts as done; other sampling settings (eval_keys) only resample."""
    path = os.path.join(dirs["r"], "result.json")
    if args.force or args.stage == "u" or not os.path.exists(path):
        return None
    try:
        res = tables.read_result(path)          # checked: a damaged file is one line, not a traceback
    except ValueError as e:
        data.fail(f"{e}; use --force to redo the cell")
    now = json.loads(data.sample_key(args, "r", eval_keys))
    if res.get("oracle_recipe", "paper") != args.oracles or any(res["identity"].get(k) != now[k] for k in eval_keys):
        return None                        # other oracles or other sampling: label again, or resample first
    data.check_identity(path, res["identity"], now)
    print(f"{path} exists: cell already done (use --force to redo it)")
    print(format_rows(result_rows(res, Reading(min_n=args.min_n)), tables.title(res)))
    if "quality" in res:
        print(quality.format_quality(res["quality"], res["classes"], res["rare"]))
    return res


def evaluate(args, name, run_name, dirs, runs, device, eval_keys=()):
    """Section 4, steps 4-5: the oracles label the M samples of the D_u and the D_r model, eq. 1 compares
    the factor's share per class, the z-table is printed and saved as result.json in the D_r folder.
    runs: {"u": (samples, history, timings), "r": (...)}, as the script's training returned them; with
    --stage r the D_u samples come from an earlier run. Returns the result, or None when there is
    nothing to compare yet (--stage u, which saves du.json instead, or no D_u samples)."""
    if args.stage == "u":
        return save_du(args, name, run_name, dirs, runs["u"][0], device)
    if "u" not in runs:
        su = data.cached_samples(dirs["u"], args, "u", eval_keys)
        if su is None:
            print(f"no D_u samples in {dirs['u']} yet: run --stage u (or all) for the z-test")
            return None
        runs = {"u": (su, {}, {}), **runs}
    times = {f"{k}_{w}": v for w in ("u", "r") for k, v in runs[w][2].items()}
    t0 = time.time()
    orc = oracles.load_oracles(args.factor, args.dataset, root=args.data_root, cache_dir=args.cache_dir,
                               device=device, data_seed=args.data_seed, smoke=args.smoke, recipe_name=args.oracles)
    times["oracles"] = time.time() - t0
    t0 = time.time()
    counts, readable, q, morph = label_samples(orc, {w: runs[w][0] for w in ("u", "r")}, args.dataset, args.factor,
                                               args.rare, args.p_in, args.p_out, args.data_root, args.cache_dir,
                                               args.data_seed, args.min_n, args.smoke)
    times["classify"] = time.time() - t0
    below = {k: v for k, v in orc["acc"].items() if v < orc["target"]}
    if below and not args.smoke:    # (smoke oracles are trained for seconds; their accuracy is not checked)
        print(f"WARNING: oracle accuracy below target ({', '.join(f'{k} {v:.2%}' for k, v in below.items())}"
              f" < {orc['target']:.0%}): verdicts of this cell are not trustworthy", file=sys.stderr)
    hist = {w: runs[w][1] for w in ("u", "r") if w in data.stages(args)}
    res = {"format": "rgf-result/1", "model": name, "run_name": run_name, "dataset": args.dataset,
           "factor": args.factor, "rare": args.rare, "p_in": args.p_in, "p_out": args.p_out, "seed": args.seed,
           "data_seed": args.data_seed, "samples": args.samples, "classes": list(data.class_names(args.dataset)),
           "counts": counts, "readable": readable, "test": "one-sample", "correction": "none", "min_n": args.min_n,
           "margin": MARGIN, "baseline_dev": BASELINE_DEV, "confidence": CONFIDENT, "tau2": readings.TAU2,
           "oracle_acc": orc["acc"], "oracle_recipe": args.oracles,
           "oracle_below_target": bool(below), "oracle_smoke": bool(args.smoke), "device": str(device),
           "timings": times, "history": hist, **provenance.run_fields(dirs, vars(args), device),
           "identity": json.loads(data.sample_key(args, "r", eval_keys)),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **({"morphometric": morph} if morph else {})}
    res["quality"], res["rows"] = q, result_rows(res, Reading(min_n=args.min_n))
    print(format_rows(res["rows"], tables.title(res)))
    print(quality.format_quality(res["quality"], res["classes"], args.rare))
    data.save_json(res, os.path.join(dirs["r"], "result.json"))
    print(f"saved {os.path.join(dirs['r'], 'result.json')}")
    return res


def save_du(args, name, run_name, dirs, samples, device):
    """--stage u: the D_u model's samples labelled and saved as du.json beside them, so that two training
    seeds of a D_u model read as a null pair without a D_r model (study/calibration.py). Returns None."""
    orc = oracles.load_oracles(args.factor, args.dataset, root=args.data_root, cache_dir=args.cache_dir,
                               device=device, data_seed=args.data_seed, smoke=args.smoke, recipe_name=args.oracles)
    C = len(data.class_names(args.dataset))
    calls, probs = oracles.classify(orc, samples), oracles.predict_proba(orc, samples)
    morph = morphometry.reading(orc, {"u": samples}, args.factor, args.rare, args.data_root, args.cache_dir,
                                args.data_seed, args.smoke, halves=("u",))   # strokes: the morphometric null check's
    rec = calibration.du_record(vars(args), name, run_name, count_classes(*calls, C),
                                readable_counts(*calls, *probs, C), morph)
    data.save_json(rec, os.path.join(dirs["u"], "du.json"))
    print(f"saved {os.path.join(dirs['u'], 'du.json')} (the D_u model's counts, for the null check)")


plot_disc_loss = figures.plot_disc_loss         # Figure 3 of a GAN result; gan.py draws it for every cell


def null_check(results, reading=Reading()):
    """The null check (study/calibration.py): two trainings of one D_u model in different seeds, read as if one
    were the D_r model under every rule of Table 4; every class should read L. {(rule, model, factor): [letters]}."""
    letters = {}
    for res in calibration.null_results(results):
        rows = result_rows(res, reading._replace(unfit=None))[:-1]     # no rare digit: no unfit rule
        for how in SUMMARIES:
            min_n = 0 if how == "paper" else reading.min_n
            letters.setdefault((how, res["model"], res["factor"]), []).extend(
                summary_letter(row, how, reading.alpha, min_n) for row in rows)
    return letters


# --------------------------------------------------------------------------- command line
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.error = data.fail
    a = p.add_argument
    a("results", nargs="*", help="result.json files, or folders searched for them")
    a("--u", help="audit: .npz of uint8 samples from the model trained on D_u")
    a("--r", help="audit: .npz of uint8 samples from the model trained on D_r")
    a("--factor", default="colour", choices=data.FACTORS, help="audit: generative factor (default: colour)")
    a("--dataset", default="mnist", choices=data.DATASETS, help="audit: mnist or cars (default: mnist)")
    a("--rare", type=int, default=None, help="audit: rare class k (default: 1; 0 for cars)")
    a("--model", default="audit", help="audit: model name in the tables (default: audit)")
    a("--save", help="audit: write the result JSON here (render it later with the others; default: none)")
    readings.add_options(p)          # --test, --correction, --alpha, --min-n, --summary, ... (study/readings.py)
    a("--out-dir", help="write tables.{txt,md,tex,json}, table CSVs and rows.csv here (default: print only)")
    tables.add_option(p)             # --print: Table 4 in 100 columns, or every table; --against (study/tables.py)
    a("--paper", help="the paper's Tables 1, 2, 4 as data (results/paper/paper-cells.csv): print, and write "
      "to --out-dir, the agreement of our Table 4 with the paper's under every reading, its L cells beside "
      "ours and Tables 1-2 side by side (default: none)")
    figures.add_option(p)            # --figures: the study's figures, or one --cell's (study/figures.py)
    a("--runs", help="with --figures: the runs folder whose samples.npz the sample grid is drawn from (default: none)")
    a("--cell", nargs="?", const="", metavar="MODEL/CELL", help="one cell (e.g. gan/colour-rare1-seed0; none "
      "needed with one result.json): its z-table under every reading and its quality report, not the tables")
    a("--null-check", action="store_true", help="the null check: every two training seeds of a D_u model "
      "(result.json, du.json) read against each other under every rule; the share of classes not L (default: off)")
    a("--data-root", help="MNIST root for the oracles (default: $RGF_DATA_ROOT, else ./data)")
    a("--cache-dir", help="oracle cache (default: <data-root>/rgf-cache)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    a("--data-seed", type=int, default=0, help="data seed of the oracles' D_u (default: 0)")
    a("--smoke", action="store_true", help="audit with the smoke oracles (tests only; default: off)")
    a("--oracles", default="robust", choices=oracles.RECIPES, help="audit: the oracles' recipe, robust (ours) or paper "
      "(default: robust)")
    return p


def _audit(args, reading):
    """--u / --r: label any generator's samples, print its z-table; the results to render with the tables."""
    if not (args.u and args.r) or args.results:
        raise ValueError("audit mode needs both --u and --r, and no result files")
    rare = args.rare if args.rare is not None else (0 if args.dataset == "cars" else 1)
    if not 0 <= rare < (2 if args.dataset == "cars" else 10):
        raise ValueError(f"--rare {rare} out of range for {args.dataset}")
    res = audit(args.u, args.r, args.factor, rare, args.dataset, args.model, args.data_root, args.cache_dir,
                args.device, args.data_seed, args.smoke, reading.min_n, args.oracles)
    print(format_rows(result_rows(res, reading), tables.title(res), reading.confidence))
    print(quality.format_quality(res["quality"], res["classes"], res["rare"]))
    if args.save:
        data.save_json(res, args.save)
        print(f"saved {args.save}")
    return [{**res, "file": args.save or "audit"}] if args.out_dir else []


def render(results, args, reading, cells=None):
    """Tables 1-4 (printed; written with --out-dir), the paper side by side (cells: --paper), the figures."""
    agg = aggregate(results, reading)
    other = aggregate(calibration.load_results([args.against]), reading) if args.against else None
    tabs = tables.tables(agg, reading, other, results)     # printed (--print), written to --out-dir (study/tables.py)
    calibration.note_tau2(tabs, results, reading.summary)    # the calibrated tables: where each tau^2 came from
    tables.show(results, lambda res: result_rows(res, reading), agg, tabs, reading, args.print, args.out_dir)
    if cells:       # Table 4 under every reading (the paper's with --min-n 0), against the paper's
        aggs = {name: aggregate(results, reading._replace(summary=name, **({"min_n": 0} if name == "paper" else {})))
                for name in SUMMARIES} | {reading.summary: agg}           # --summary answer: its Tables 1-2 too
        paper.compare(aggs, cells, reading, args.out_dir)
    if args.figures:
        figures.figures(results, args.figures, agg, cells, args.runs, reading.summary)


def main(argv=None):
    args = cli.parse(build_parser(), argv, siblings=cli.ZTEST_SIBLINGS)[0]      # --runs-dir, --output: a hint
    data.check_paths(args, ("out_dir", "figures", "cache_dir"), ("save",), ("data_root",))   # before any work
    try:
        reading = readings.from_args(args)
        cells = paper.load_paper(args.paper) if args.paper else None      # every input read before any output
        if args.runs and not os.path.isdir(args.runs):
            raise ValueError(f"--runs {args.runs}: no such folder; accepted: a runs folder of the model scripts")
        if args.null_check:      # study/calibration.py: refuses results without two seeds of a D_u model
            both = calibration.load(args.results)       # every rule; then per model, factor and reading
            return print(calibration.format_null_letters(null_check(both, reading)), "",
                         calibration.format_null_check(*calibration.null_check(both, reading.alpha)), sep="\n")
        if args.u or args.r:
            results = _audit(args, reading)
        elif args.results:
            results = calibration.load_results(args.results)
        else:
            raise ValueError("nothing to do: give result.json files or folders, or --u U.npz --r R.npz")
        if results and args.cell is not None:     # one cell's report (study/report.py), from its result.json
            res = report.pick(results, args.cell)
            reading = report.begin(res, reading)     # a smoke run's line first; --summary answer: its factor's
            rows = result_rows(res, reading)
            if args.figures:       # its figures: P_u against P_r (eq. 1), the curves, Figure 3, labelled samples
                figures.cell(res, rows, args, reading)
            print(report.cell(res, format_rows(rows, tables.title(res), reading.confidence), rows, reading))
        elif results:
            render(results, args, reading, cells)
    except (ValueError, FileNotFoundError) as e:
        data.fail(str(e))


if __name__ == "__main__":
    main()
