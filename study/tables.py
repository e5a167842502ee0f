"""The paper's tables from result files: Tables 1/2 (z per digit), Table 3 (cars), Table 4 (L/M
summary) and Tables C.3/C.4 (P_u / P_r), as text, Markdown, LaTeX, CSV and JSON, with several seeds
aggregated per cell.

ztest.py computes every result's z-table (eq. 1) and hands the rows down: `summarise` and `export`
take them as data, so that nothing here imports ztest. Run it through ztest.py:

    python ztest.py results/quick --out-dir DIR
"""
import csv
import io
import json
import math
import os
import sys
import textwrap

import numpy as np

import data
from study import quality
from study.readings import (ANSWER, BASELINE_DEV, CONFIDENT, FACTOR_CONFIDENT, MIN_N, READ_KEYS, SUFFIX, UNFIT,
                            Reading, resolve, summary_letter)

MODEL_ORDER = ("VAE", "GAN", "GAN-SD", "DM")      # column order of Tables 1-4
MNIST_CLASSES = data.MNIST_CLASSES
NOTE_Z = "bold / *: the RGF is learned (L: p > 0.05 with at least min-n samples, or as the summary rule says); " \
         "(n): too few samples (n_u or n_r below min-n), never L; -: z undefined (P_u of 0 or 1, or n = 0)"
LETTERS = {"L": "learned", "M": "memorised", "?": "significant in the other direction", "-": "z undefined",
           "n": "too few samples (n_u or n_r below min-n; never counted as L)",
           "b": "broken baseline (|P_u - 0.5| above the baseline threshold; never L or M)",
           "u": "unfit (the rare digit's fit in the D_r model, 0 = real plain digits, 1 = real ones with the "
                "factor as every rare digit of D_r, has its upper 95% bound under the unfit threshold; never L or M)",
           "i": "inconclusive (neither shown equivalent nor shown to differ)",
           "x": "no counts for this reading in the result (colour has no morphometric reading; or made before "
                "the reading existed)"}


def fmt(v, spec=".2f"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def cell_name(res):
    """(MODEL, CELL) of a result file: its run folder's name and its cell folder's (gan, colour-rare1-seed0)."""
    folder = os.path.dirname(os.path.abspath(res["file"]))
    return os.path.basename(os.path.dirname(folder)), os.path.basename(folder)


def title(res):
    """A result's name: model, factor (or cars), rare class, skew and seed."""
    skew = "" if (res["p_in"], res["p_out"]) == (1.0, 0.0) else f", p_in {res['p_in']:g}, p_out {res['p_out']:g}"
    what = "cars" if res["dataset"] == "cars" else res["factor"]
    return f"{res['model']}, {what}, rare class {res['classes'][res['rare']]}{skew}, seed {res['seed']}"


# --------------------------------------------------------------------------- result files, cells
# The result.json versions this code reads ("format"; a file without one predates it and is read as
# version 1): ztest.evaluate and the audit write "rgf-result/1".
RESULT_FORMATS = ("rgf-result/1",)
COUNTS_SHAPE = "{'u': {'n': [...], 'k': [...]}, 'r': {'n': [...], 'k': [...]}}"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _what(v):
    """A value's type and its start, for an error line: str 'abc', list of 3, ..."""
    if isinstance(v, (list, dict)):
        return f"{type(v).__name__} of {len(v)}"
    return f"{type(v).__name__} {str(v)[:30]!r}" if isinstance(v, str) else f"{type(v).__name__} {v!r}"


def _counts_problem(counts, C, sides=("u", "r")):
    """Why `counts` is not {side: {"n": C ints >= 0, "k": C ints, k <= n}} for each side, or None."""
    if not isinstance(counts, dict):
        return f"must be {COUNTS_SHAPE}, got {_what(counts)}"
    for w in sides:
        nk = counts.get(w)
        if not isinstance(nk, dict) or not all(isinstance(nk.get(a), list) for a in ("n", "k")):
            return f"must be {COUNTS_SHAPE}; its {w!r} is {_what(nk)}" + (
                "" if not isinstance(nk, dict) else f" with n {_what(nk.get('n'))}, k {_what(nk.get('k'))}")
        for a in ("n", "k"):
            if len(nk[a]) != C or not all(_is_int(v) and v >= 0 for v in nk[a]):
                return f"{w}.{a} must be {C} integer counts >= 0 (one per class), got {str(nk[a])[:60]}"
        if any(k > n for n, k in zip(nk["n"], nk["k"])):
            return f"{w}.k exceeds {w}.n in a class"
    return None


def result_problem(res):
    """Why a result dict cannot be read (its "format" version, or the type of a field the tables, the
    readings and the cell report use), as "field 'NAME' ...", or None. Optional fields are checked when
    present."""
    if not isinstance(res, dict):
        return f"holds {_what(res)}, not a result object"
    missing = [k for k in ("model", "dataset", "factor", "rare", "seed", "classes", "counts") if k not in res]
    if missing:
        return f"is not a result file (missing {', '.join(missing)})"
    fmt_ = res.get("format", RESULT_FORMATS[0])
    if fmt_ not in RESULT_FORMATS:
        return f"field 'format' is {fmt_!r}; accepted: {', '.join(RESULT_FORMATS)} (a newer or another kind of file)"
    for name, ok, accepted in _field_checks(res):
        if not ok:
            return f"field '{name}' is {_what(res[name])}; accepted: {accepted}"
    return _nested_problem(res, len(res["classes"]))


def _field_checks(res):
    """[(field, its value is fine, what is accepted)] of a result's top-level fields."""
    classes = res["classes"]
    checks = [("model", isinstance(res["model"], str) and res["model"] != "", "a non-empty string"),
              ("dataset", res["dataset"] in data.DATASETS, " or ".join(data.DATASETS)),
              ("factor", res["factor"] in data.FACTORS, ", ".join(data.FACTORS)),
              ("classes", isinstance(classes, list) and all(isinstance(c, str) for c in classes) and
               len(classes) == len(data.class_names(res["dataset"])),
               f"a list of the {len(data.class_names(res['dataset']))} class names of {res['dataset']}"),
              ("rare", _is_int(res["rare"]) and isinstance(classes, list) and 0 <= res["rare"] < len(classes),
               f"an integer class index 0..{len(classes) - 1 if isinstance(classes, list) else '?'}"),
              ("seed", _is_int(res["seed"]) and res["seed"] >= 0, "an integer >= 0")]
    checks += [(k, _is_num(res[k]) and 0 <= res[k] <= 1, "a number in [0, 1]") for k in ("p_in", "p_out") if k in res]
    checks += [(k, isinstance(res[k], dict), "an object") for k in ("readable", "quality", "config", "history",
                                                                     "tau2_cell", "provenance")
               if res.get(k) is not None]
    checks += [(k, isinstance(res[k], bool), "true or false") for k in ("oracle_smoke", "oracle_below_target")
               if k in res]
    return checks + ([("morphometric", isinstance(res["morphometric"], dict), "an object")]
                     if res.get("morphometric") else [])


def _nested_problem(res, C):
    """Why the counts (all, readable, morphometric) or another nested field of a result is not as the
    readings read it, as "field 'NAME' ...", or None."""
    why = _counts_problem(res["counts"], C)
    if why:
        return f"field 'counts' {why}"
    for w, by_t in (res.get("readable") or {}).items():
        if not isinstance(by_t, dict):
            return f"field 'readable' must map u and r to {{threshold: counts}}; its {w!r} is {_what(by_t)}"
        for t, nk in by_t.items():
            why = _counts_problem({w: nk}, C, (w,))
            if why:
                return f"field 'readable' ({w}, threshold {t}) {why}"
    if res.get("morphometric") and res["morphometric"].get("counts") is not None:
        why = _counts_problem(res["morphometric"]["counts"], C)
        if why:
            return f"field 'morphometric.counts' {why}"
    if res.get("tau2_cell") and not all(_is_num(v) and v >= 0 for v in res["tau2_cell"].values()):
        return "field 'tau2_cell' must map readings to numbers >= 0"
    if isinstance(res.get("quality"), dict) and not all(isinstance(res["quality"].get(w), dict) for w in ("u", "r")):
        return "field 'quality' must hold objects u and r (the sample-quality report)"
    return None


def read_json(f, what="result file"):
    """The JSON object of file f; ValueError (one line naming the file) when it cannot be read."""
    try:
        with open(f) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {f}: {getattr(e, 'strerror', None) or e}") from None


def read_result(f):
    """The result dict of file f, checked (result_problem); ValueError naming the file and the field."""
    res = read_json(f)
    why = result_problem(res)
    if why:
        raise ValueError(f"{f} {why}" if why.startswith(("is ", "holds ")) else f"{f}: {why}")
    return res


def load_results(paths):
    """Result dicts from result.json files and from folders searched for them, each checked
    (result_problem): a bad file raises ValueError naming the file and the field."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(d, "result.json") for d, _, fs in os.walk(p) if "result.json" in fs)
        elif not os.path.exists(p):
            raise ValueError(f"{p}: no such file or folder; accepted: result.json files or folders holding them "
                             f"(e.g. results/quick)")
        else:
            files.append(p)
    out = [{"p_in": 1.0, "p_out": 0.0, **read_result(f), "file": f} for f in files]
    if not out:
        raise ValueError(f"no result.json found in {', '.join(paths)}; accepted: result.json files or folders "
                         f"holding them (e.g. results/quick)")
    return out


def model_key(m):
    """Columns in the paper's order VAE / GAN / GAN-SD / DM; variants (VAE-b4, ...) after their base."""
    base = next((i for i, b in sorted(enumerate(MODEL_ORDER), key=lambda t: -len(t[1])) if m.startswith(b)), 4)
    return base, m != (MODEL_ORDER[base] if base < 4 else ""), m


def cells(results):
    """Results grouped by cell (dataset, factor, rare, p_in, p_out, model): {key: {seed: result}}; a
    repeated seed is reported and ignored."""
    out = {}
    for res in results:
        key = (res["dataset"], res["factor"], res["rare"], res["p_in"], res["p_out"], res["model"])
        seeds = out.setdefault(key, {})
        if res["seed"] in seeds:
            print(f"warning: {res['file']} repeats seed {res['seed']} of {key}; ignored", file=sys.stderr)
            continue
        seeds[res["seed"]] = res
    return out


def summarise(cell_rows, reading=Reading()):
    """{key: {seed: z-table rows}} -> per cell and class: the mean and spread (sample sd) of the finite z
    over seeds, the Table 4 letter of every seed under the reading's summary rule, and the D_u and D_r
    counts."""
    agg = {}
    for key, seeds in cell_rows.items():
        how = resolve(reading.summary, key[1])     # "answer": calibrated on colour, morphometric on strokes
        sfx = SUFFIX.get(how, "")     # z and counts of the readable, calibrated or morphometric reading
        per = [seeds[s] for s in sorted(seeds)]
        rows = []
        for i, row in enumerate(per[0]):
            z = np.array([r[i].get("z" + sfx, math.nan) for r in per], dtype=float)
            z = z[np.isfinite(z)]
            v = "".join(summary_letter(r[i], how, reading.alpha, reading.min_n) for r in per)
            rows.append({"name": row["name"], "z_mean": float(z.mean()) if len(z) else math.nan,
                         "z_sd": float(z.std(ddof=1)) if len(z) > 1 else math.nan, "verdicts": v,
                         "n_L": v.count("L"),
                         **{k: [r[i].get(k + sfx, 0) for r in per] for k in ("k_u", "n_u", "k_r", "n_r")}})
        agg[key] = {"seeds": sorted(seeds), "rows": rows}
    return agg


def format_rows(rows, title="", confidence=CONFIDENT):
    """A z-table as aligned text (the per-model view of Tables 1-3): all samples (the paper's reading and
    ours, with the TOST p-value and the equivalence reading), then, when the rows carry them, the readable
    reading on the samples the label oracle reads with p > confidence ('), the calibrated test on those
    samples (cal) and the morphometric reading (*)."""
    read, cal, morph = ("verdict" + SUFFIX[k] in rows[0] for k in ("readable", "calibrated", "morphometric"))
    head = ["class", "n_u", "P_u", "n_r", "P_r", "z", "p", "h", "verdict", "p_eq", "eq"]
    head += ["|", "n_u'", "P_u'", "n_r'", "P_r'", "z'", "p'", "read"] if read else []
    head += ["|", "z_cal", "cal"] if cal else []
    head += ["|", "P_u*", "P_r*", "z*", "morph"] if morph else []
    body = []
    for r in rows:
        line = [str(r["name"]), str(r["n_u"]), fmt(r["P_u"], ".3f"), str(r["n_r"]), fmt(r["P_r"], ".3f"),
                fmt(r["z"]), fmt(r["p_adj"], ".3g"), fmt(r["h"]), r["verdict"], fmt(r.get("p_eq"), ".3g"),
                r.get("eq", "")]
        if read:
            line += ["|", str(r["n_u_read"]), fmt(r["P_u_read"], ".3f"), str(r["n_r_read"]),
                     fmt(r["P_r_read"], ".3f"), fmt(r["z_read"]), fmt(r["p_adj_read"], ".3g"), r["verdict_read"]]
        line += ["|", fmt(r["z_cal"]), r["verdict_cal"]] if cal else []
        line += ["|", fmt(r["P_u_morph"], ".3f"), fmt(r["P_r_morph"], ".3f"), fmt(r["z_morph"]),
                 r["verdict_morph"]] if morph else []
        body.append(line)
    legend = (f"\nleft: all samples; ('): the readable reading, samples the label oracle reads with p > "
              f"{confidence:g}" if read else "") + ("; cal: those samples, the calibrated test (training "
              "noise counted)" if cal else "") + ("; *: the morphometric call of the stroke, calibrated "
              "test" if morph else "")
    return (title + "\n" if title else "") + data.text_grid(head, body) + legend


# --------------------------------------------------------------------------- Tables 1-4, C.3, C.4
def _z_part(row, seeds):
    """One model's entry of a Table 1/2 cell; bold (L) when most seeds give L."""
    if seeds == 1:
        return fmt(row["z_mean"]) + (" (n)" if row["verdicts"] == "n" else ""), row["verdicts"] == "L"
    sd = "" if not math.isfinite(row["z_sd"]) else f"±{row['z_sd']:.2f}"
    return f"{fmt(row['z_mean'])}{sd} ({row['n_L']}/{seeds} L)", 2 * row["n_L"] > seeds


def _groups(agg, dataset):
    return sorted({k[2:5] for k in agg if k[0] == dataset})


def _models(agg, dataset, group):
    return sorted({k[5] for k in agg if k[0] == dataset and k[2:5] == group}, key=model_key)


def _skew(pin, pout):
    return "" if (pin, pout) == (1.0, 0.0) else f", p_in {pin:g}, p_out {pout:g}"


def _table_z(agg, group, how):
    """Table 1 (k = 1) / Table 2 (k = 2): z per digit, one column per factor, "VAE / GAN / GAN-SD / DM"."""
    k, pin, pout = group
    models = _models(agg, "mnist", group)
    factors = [f for f in data.FACTORS if any(("mnist", f) + group + (m,) in agg for m in models)]
    body = []
    for i, name in enumerate(MNIST_CLASSES + ("Total",)):
        cells = [[_z_part(c["rows"][i], len(c["seeds"])) if c else ("n/a", False)
                  for c in (agg.get(("mnist", f) + group + (m,)) for m in models)] for f in factors]
        body.append([[(name, False)]] + cells)
    paper, skew = (pin, pout) == (1.0, 0.0) and k in (1, 2), _skew(pin, pout)
    return {"slug": f"table{k}" if paper else f"table-z-rare{k}" + skew.replace(", ", "-").replace(" ", ""),
            "title": (f"Table {k}: " if paper else "") + f"z-scores, RGF in digit {k}{skew}{how}",
            "header": ["digit"] + [f"{f} ({' / '.join(models)})" for f in factors], "rows": body, "note": NOTE_Z}


def _table4(agg, groups, how):
    """Table 4: the verdict of every MNIST cell (one letter per model and seed), with counts per column;
    '?' and '-' are counted on their own rows."""
    head, cols = ["digit"], []          # cols[j][i][m]: verdict string of column j, row i, model m
    for g in groups:
        models = _models(agg, "mnist", g)
        for f in data.FACTORS:
            cells = [agg.get(("mnist", f) + g + (m,)) for m in models]
            if any(cells):
                head.append(f"{f} (k={g[0]}" + ("" if g[1:] == (1.0, 0.0) else f", {g[1]:g}/{g[2]:g}") + ")")
                cols.append([[c["rows"][i]["verdicts"] if c else "n/a" for c in cells] for i in range(11)])
    body = [[[(n, False)]] + [[(v, False) for v in col[i]] for col in cols]
            for i, n in enumerate(MNIST_CLASSES + ("all",))]
    for sym in ("L", "?", "-", "n", "b", "u", "i", "x"):
        counts = [[sum(col[i][m].count(sym) for i in range(11)) for m in range(len(col[0]))] for col in cols]
        if sym == "L" or any(map(any, counts)):
            body.append([[("Count" if sym == "L" else f"Count {sym}", False)]]
                        + [[(str(n), False) for n in c] for c in counts])
    verdicts = [v for col in cols for row in col for v in row if v != "n/a"]
    used = [s for s in LETTERS if s not in "LM" and any(s in v for v in verdicts)]
    return {"slug": "table4", "title": f"Table 4: RGF learning (L) vs. memorization (M){how}", "header": head,
            "rows": body, "note": f"A total of {sum(v.count('L') for v in verdicts)} cases were learned out of "
                                  f"{sum(len(v) - v.count('x') for v in verdicts)}. Cells: one letter per model and seed"
                                  + "".join(f"; {s}: {LETTERS[s]}" for s in used) + "."}


SHORT = {"L": "learned", "M": "memorised", "?": "significant the other way", "-": "z undefined",
         "n": "too few samples", "b": "broken baseline", "u": "unfit", "i": "inconclusive",
         "x": "no counts for this reading", ".": "not run"}


def _wrap(text, width):
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def table4_compact(agg, reading=Reading(), width=100):
    """Table 4 in at most `width` columns (beyond it only when one factor's column alone is wider): one
    block per rare digit (and skew), one column per factor, each cell the letters of the models side by
    side ("MMM MM M MMM": VAE GAN GAN-SD DM, one letter per seed; "." not run), a Count row of L per
    model, then the count of L per model over the whole table. The text of ztest.py --print table4."""
    out = [_wrap(f"Table 4: RGF learning (L) vs. memorization (M){_how(reading)}", width)]
    per_model, letters = {}, []
    for g in _groups(agg, "mnist"):
        models = _models(agg, "mnist", g)
        cols = []        # (factor, [[letters of model m] for each row], [L count per model])
        for f in data.FACTORS:
            cells = [agg.get(("mnist", f) + g + (m,)) for m in models]
            if not any(cells):
                continue
            rows = [[c["rows"][i]["verdicts"] if c else "." for c in cells] for i in range(11)]
            counts = [sum(r[m].count("L") for r in rows) for m in range(len(models))]
            for m, model in enumerate(models):
                vs = [r[m] for r in rows if r[m] != "."]
                got = per_model.setdefault(model, [0, 0])
                got[0] += sum(v.count("L") for v in vs)
                got[1] += sum(len(v) - v.count("x") for v in vs)
            letters += [r[m] for r in rows for m in range(len(models))]
            cols.append((f, rows, counts))
        out += ["", _wrap(f"RGF in digit {g[0]}{_skew(*g[1:])}; each cell: {' '.join(models)}, one letter per "
                          f"seed", width)] + _blocks(cols, len(models), width)
    if not per_model:
        return ""
    total_l, total = sum(v.count("L") for v in letters), sum(len(v) - v.count("x") - v.count(".") for v in letters)
    out += ["", _wrap("L per model: " + ", ".join(f"{m} {l} of {n}" for m, (l, n) in
                                                   sorted(per_model.items(), key=lambda kv: model_key(kv[0])))
                      + f"; in all, {total_l} learned of {total}.", width)]
    used = [c for c in SHORT if c not in "LM" and any(c in v for v in letters)]
    out.append(_wrap("L: learned; M: memorised" + "".join(f"; {c}: {SHORT[c]}" for c in used)
                     + " (docs/readings.md)", width))
    return "\n".join(out)


def _blocks(cols, n_models, width):
    """The lines of one rare digit's compact Table 4: cols = [(factor, rows of letters per model, L count
    per model)], as many factors side by side as `width` holds, then the next ones below."""
    labels = list(MNIST_CLASSES) + ["all", "Count L"]
    label_w, out, block = max(len(x) for x in labels + ["digit"]), [], []
    used = label_w
    for f, rows, counts in cols:           # each model's letters padded to one width down the column
        w = [max(len(str(counts[m])), *(len(r[m]) for r in rows)) for m in range(n_models)]
        body = [" ".join(r[m].ljust(w[m]) for m in range(n_models)).rstrip() for r in rows]
        body.append(" ".join(str(counts[m]).ljust(w[m]) for m in range(n_models)).rstrip())
        col_w = max(len(f), *(len(b) for b in body))
        if block and used + 2 + col_w > width:
            out += _grid(labels, block, label_w) + [""]
            block, used = [], label_w
        block.append((f, body, col_w))
        used += 2 + col_w
    return out + (_grid(labels, block, label_w) if block else [])


def _grid(labels, block, label_w):
    """Lines of the compact Table 4: the labels, then each (factor, cells, width) column."""
    head = ["digit".rjust(label_w)] + [f.ljust(w) for f, _, w in block]
    rule = ["-" * label_w] + ["-" * w for _, _, w in block]
    lines = [head, rule] + [[lab.rjust(label_w)] + [body[i].ljust(w) for _, body, w in block]
                            for i, lab in enumerate(labels)]
    return ["  ".join(line).rstrip() for line in lines]


def _table3(agg, group, how):
    """Table 3: CompCars; per model the D_r samples per make in black / white, and z."""
    head, body = ["make"], [[[(n, False)]] for n in ("Volkswagen", "Toyota", "Total")]
    for m in _models(agg, "cars", group):
        c = agg[("cars", "colour") + group + (m,)]
        head += [f"{m} black", f"{m} white", f"{m} z"]
        for i, r in enumerate(c["rows"]):      # f = 1 is white (data.make_cars_dataset)
            white, n = np.mean(r["k_r"]), np.mean(r["n_r"])
            body[i] += [[(f"{n - white:.0f}", False)], [(f"{white:.0f}", False)], [_z_part(r, len(c["seeds"]))]]
    return {"slug": "table3", "title": f"Table 3: CompCars, z-scores, colour RGF: white Volkswagen, black "
            f"Toyota{how}", "header": head, "rows": body,
            "note": "black / white: D_r samples per make (label oracle) and colour (factor oracle); " + NOTE_Z}


def _table_p(agg, group):
    """Tables C.3 (k = 1) and C.4 (k = 2): P_u and P_r per class with n_u and n_r, one row per factor and
    model: the check of the paper's premise that the D_u model is balanced (P_u near 0.5). Over several
    seeds, P pools the counts and n is the mean per seed."""
    k, pin, pout = group
    paper, skew = (pin, pout) == (1.0, 0.0) and k in (1, 2), _skew(pin, pout)
    body = []
    for f in data.FACTORS:
        for m in _models(agg, "mnist", group):
            c = agg.get(("mnist", f) + group + (m,))
            if c:
                body.append([[(f"{f} {m}", False)]] + [[_p_part(r, "u"), _p_part(r, "r")] for r in c["rows"]])
    slug = {1: "tableC3", 2: "tableC4"}[k] if paper else f"table-p-rare{k}" + skew.replace(", ", "-").replace(" ", "")
    title = (f"Table C.{k + 2}: " if paper else "") + f"P_u / P_r per class (n_u / n_r), RGF in digit {k}{skew}"
    return {"slug": slug, "title": title, "header": ["factor, model"] + list(MNIST_CLASSES + ("Total",)),
            "rows": body, "note": "P_u (n_u) / P_r (n_r): share of samples with the factor among those the label "
                                  "oracle puts in the class; !: |P_u - 0.5| > 0.25, the D_u model is not balanced "
                                  "there (the paper's premise is P_u near 0.5)"}


def _p_part(row, which):
    k, n = sum(row[f"k_{which}"]), sum(row[f"n_{which}"])
    if not n:
        return "- (0)", False
    flag = "!" if which == "u" and abs(k / n - 0.5) > 0.25 else ""
    return f"{k / n:.2f}{flag} ({n / len(row[f'n_{which}']):.0f})", False


def _how(r):
    """The reading's words in a table's title; empty for our default reading."""
    return ("" if r.test == "one-sample" else f", {r.test} test") + \
        ("" if r.correction == "none" else f", {r.correction} correction") + \
        ("" if r.summary == "ours" else f", {r.summary} summary") + \
        ("" if r.min_n == MIN_N else f", min-n {r.min_n}") + \
        ("" if r.summary not in SUFFIX and r.summary != ANSWER else " (" + (
            "colour calibrated, stroke factors morphometric; " if r.summary == ANSWER else "")
         + f"label p > {r.confidence:g}" + (
            f", factor p > {FACTOR_CONFIDENT:g}" if r.factor_confident else "") + ")") + \
        ("" if r.baseline_dev == BASELINE_DEV else f", baseline threshold {r.baseline_dev:g}") + \
        ("" if r.unfit == UNFIT else ", unfit rule off" if r.unfit is None else f", unfit threshold {r.unfit:g}")


def _table_skew(agg, how):
    """Appendix E: per model, factor and rare digit run under both skews, the rare digit's z and the Total
    row's under full skew (p_in 1, p_out 0) and under each relaxed one, the relaxed z as a share of the
    full one, and the letters; None when no relaxed cell has a full-skew twin."""
    body = []
    for key in sorted((k for k in agg if k[0] == "mnist" and k[3:5] != (1.0, 0.0)),
                      key=lambda k: (k[1], k[2], k[3], k[4], model_key(k[5]))):
        full = agg.get(key[:3] + (1.0, 0.0) + key[5:])
        if full is None:
            continue
        (_, f, k, pin, pout, m), relaxed = key, agg[key]
        for i, name in ((k, str(k)), (-1, "Total")):
            zf, zr = full["rows"][i]["z_mean"], relaxed["rows"][i]["z_mean"]
            share = f"{zr / zf:.2f}" if math.isfinite(zf) and math.isfinite(zr) and zf else "-"
            body.append([[(x, False)] for x in (m, f, str(k), f"{pin:g} / {pout:g}", name, fmt(zf),
                         full["rows"][i]["verdicts"], fmt(zr), relaxed["rows"][i]["verdicts"], share)])
    if not body:
        return None
    return {"slug": "table-skew", "title": f"Relaxed skew (Appendix E) against full skew: z of the rare digit and "
            f"of Total{how}", "header": ["model", "factor", "rare", "p_in / p_out", "row", "z full", "full",
                                         "z relaxed", "relaxed", "relaxed / full"],
            "rows": body, "note": "z: the mean over seeds; relaxed / full: how much of the full skew's z is left "
            "when p_in of the rare digit carries the factor and p_out of every other digit does"}


def _table_changed(agg, other, how):
    """Against another study (other: its aggregate under the same reading): every row whose seed-0 letter
    differs, in the cells both ran with seed 0, with both studies' z and letters; None when they share none.
    A row that either study could not read under this reading (x: no counts, e.g. no morphometric reading)
    has no letter to change: it is counted in the note, not listed."""
    body, shared, unread = [], 0, 0
    for key in sorted(agg, key=lambda k: (k[:5], model_key(k[5]))):
        old, new = other.get(key), agg[key]
        if old is None or 0 not in old["seeds"] or 0 not in new["seeds"]:
            continue
        i, j = old["seeds"].index(0), new["seeds"].index(0)
        for a, b in zip(old["rows"], new["rows"]):
            if "x" in (a["verdicts"][i], b["verdicts"][j]):
                unread += 1
                continue
            shared += 1
            if a["verdicts"][i] != b["verdicts"][j]:
                body.append([[(x, False)] for x in (key[5], key[1], str(key[2]), f"{key[3]:g} / {key[4]:g}",
                             a["name"], fmt(a["z_mean"]), a["verdicts"], fmt(b["z_mean"]), b["verdicts"])])
    if not shared + unread:
        return None
    return {"slug": "changed", "title": f"Letters that differ from the other study's (--against), seed 0{how}",
            "header": ["model", "factor", "rare", "p_in / p_out", "row", "z other", "other", "z here", "here"],
            "rows": body,
            "note": f"{len(body)} of the {shared} rows of the cells both studies ran with seed 0 have another letter"
            + (f" ({unread} more rows that one study could not read under this reading, x, are left out)" if unread else "")
            + "; z: the mean over each study's seeds; letters: one per seed, in seed order"}


def _interval(ft, k):
    v, ci = (ft or {}).get(k), (ft or {}).get(k + "_ci")
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}" + (" [{:.2f}, {:.2f}]".format(*ci) if ci else "")


def _table_fit(results, agg, how):
    """Per cell: the D_r model's rare digit, its fit and tie with 95% intervals in every seed (as each cell's
    report prints them: quality.rare_fit; results before the readable counts: the factor's share among
    all samples), and its z and letters under the reading; None without results."""
    body = []
    for key, seeds in sorted(cells(results).items(), key=lambda kv: (kv[0][:5], model_key(kv[0][5]))):
        fits = [quality.rare_fit(seeds[s]) for s in sorted(seeds)]
        fit = " / ".join("{:.2f} [{:.2f}, {:.2f}]".format(*quality.cell_fit(seeds[s])) for s in sorted(seeds))
        row = agg[key]["rows"][key[2]]
        measure = {f["measure"] if f else "factor oracle (all samples)" for f in fits}
        body.append([[(x, False)] for x in (key[5], key[1], str(key[2]), f"{key[3]:g} / {key[4]:g}",
                     ",".join(map(str, sorted(seeds))), " / ".join(sorted(measure)), fit,
                     " / ".join(_interval(f, "tie") for f in fits), fmt(row["z_mean"]), row["verdicts"])])
    if not body:
        return None
    return {"slug": "table-fit", "title": f"The rare digit of each D_r model: fit, tie and z{how}",
            "header": ["model", "factor", "rare", "p_in / p_out", "seeds", "measure", "fit [95%]", "tie [95%]",
                       "z", "letters"], "rows": body,
            "note": "fit: where the D_r model's rare digit sits between real plain digits (0) and real ones with "
            "the factor (1), as D_r holds them; tie: how far it moved from the D_u model's towards them; one "
            "per seed; u where the fit's upper bound is under 0.8; z: the mean over seeds"}


def tables(agg, reading=Reading(), other=None, results=()):
    """Tables 1/2 (and one such table per other rare digit or skew), Table 4, Tables C.3/C.4, the rare
    digit's fit (results: those agg was made from) and Table 3 (cars), and with other (another study's
    aggregate) the letters that changed against it, as dicts {slug, title, header, rows, note}; a cell is
    a list of (text, is_L) parts joined by " / "."""
    how, groups = _how(reading), _groups(agg, "mnist")
    out = [_table_z(agg, g, how) for g in groups] + ([_table4(agg, groups, how)] if groups else [])
    out += [_table_p(agg, g) for g in groups]
    extra = [_table_skew(agg, how), _table_fit(results, agg, how) if results else None,
             _table_changed(agg, other, how) if other is not None else None]
    return out + [t for t in extra if t] + [_table3(agg, g, how) for g in _groups(agg, "cars")]


# --------------------------------------------------------------------------- the command line's printout
PRINTS = ("table4", "full")        # ztest.py --print


def add_option(p):
    """ztest.py's --print and --against."""
    p.add_argument("--print", choices=PRINTS, help="what to print: table4, Table 4 alone in at most 100 columns "
                   "with the count of L per model (the default with --out-dir, which holds every table), or "
                   "full, every table as wide text (the default without --out-dir)")
    p.add_argument("--against", metavar="RESULTS", help="another study's result files or folder: one more table, "
                   "changed, of every row whose seed-0 letter differs from it, with both z (default: none)")


def show(results, rows_of, agg, tabs, reading=Reading(), how=None, out_dir=None):
    """ztest.py's tables: a warning for results of smoke or weak oracles, the printout (how: table4, the
    compact Table 4, and Table 3 of the cars and the changed letters (--against) as they are; full: every
    table; None: table4 with out_dir, else full), then every table written to out_dir (export; rows_of(result):
    its z-table)."""
    weak = [r["file"] for r in results if r.get("oracle_below_target") or r.get("oracle_smoke")]
    if weak:
        print(f"warning: {len(weak)} result(s) used smoke oracles or oracles under their accuracy target, e.g. "
              f"{weak[0]}", file=sys.stderr)
    brief = (how or ("table4" if out_dir else "full")) == "table4"
    if brief:
        print("\n\n".join(x for x in [table4_compact(agg, reading)]
                          + [render(t) for t in tabs if t["slug"] in ("table3", "changed")] if x))
    else:
        print("\n".join(render(t) for t in tabs))
    if out_dir:
        export(results, [rows_of(res) for res in results], tabs, agg, out_dir, reading, brief)


# --------------------------------------------------------------------------- the writer
def _tex(s):
    return s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_") \
        .replace("#", r"\#").replace("±", r"$\pm$")


def render(table, style="text"):
    """A table as text (L marked *), Markdown (L bold), LaTeX (L \\textbf) or CSV (L marked *)."""
    mark = {"text": "{}*", "csv": "{}*", "md": "**{}**", "tex": r"\textbf{{{}}}"}[style]
    esc = _tex if style == "tex" else (lambda s: s)
    cell = lambda parts: " / ".join(mark.format(esc(t)) if b else esc(t) for t, b in parts)
    head, body = [esc(h) for h in table["header"]], [[cell(c) for c in r] for r in table["rows"]]
    if style == "text":
        return f"{table['title']}\n{data.text_grid(head, body)}\n{table['note']}\n"
    if style == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([head] + body)
        return buf.getvalue()
    if style == "md":
        lines = ["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + body]
        return f"### {table['title']}\n\n" + "\n".join(lines) + f"\n\n{table['note']}\n"
    lines = [" & ".join(r) + r" \\" for r in [head] + body]
    return ("\\begin{table}[ht]\n\\centering\n\\caption{" + esc(table["title"]) + "}\n\\resizebox{\\textwidth}{!}{"
            "\\begin{tabular}{l" + "c" * (len(head) - 1) + "}\n\\hline\n" + lines[0] + "\n\\hline\n"
            + "\n".join(lines[1:]) + "\n\\hline\n\\end{tabular}}\n\\par\\small " + esc(table["note"])
            + "\n\\end{table}\n")


def export(results, rows, tabs, agg, out_dir, reading=Reading(), brief=False):
    """Write tables.{txt,md,tex,json}, one CSV per table and rows.csv (rows: every result's z-table, in
    the order of results); then one line saying so (brief: a short one, for the compact printout)."""
    for style, ext in (("text", "txt"), ("md", "md"), ("tex", "tex")):
        data.save_text("\n".join(render(t, style) for t in tabs), os.path.join(out_dir, f"tables.{ext}"))
    for t in tabs:
        data.save_text(render(t, "csv"), os.path.join(out_dir, f"{t['slug']}.csv"))
    cells = [{"dataset": k[0], "factor": k[1], "rare": k[2], "p_in": k[3], "p_out": k[4], "model": k[5], **v}
             for k, v in sorted(agg.items(), key=lambda kv: (kv[0][:5], model_key(kv[0][5])))]
    plain = [{**{k: v for k, v in t.items() if k != "rows"}, "rows": [[render({**t, "rows": [[c]], "header": ["x"]},
             "csv").splitlines()[1] for c in r] for r in t["rows"]]} for t in tabs]
    data.save_json({**reading._asdict(), "tables": plain, "cells": cells}, os.path.join(out_dir, "tables.json"))
    keys = ["model", "dataset", "factor", "rare", "p_in", "p_out", "seed", "class", "n_u", "k_u", "P_u",
            "n_r", "k_r", "P_r", "z", "p", "p_adj", "h", "verdict", "p_eq", "eq"] + \
        [k + sfx for sfx in SUFFIX.values() for k in READ_KEYS] + ["file"]
    flat = [data.json_safe({k: {**res, **r}.get(k, "") for k in keys}) for res, rs in zip(results, rows) for r in rs]
    data.save_csv(flat, os.path.join(out_dir, "rows.csv"))
    if brief:
        print(f"Every table under this reading (.txt, .md, .tex, .csv, .json) is in {out_dir}")
    else:
        print(f"wrote tables.txt/.md/.tex/.json, {', '.join(t['slug'] + '.csv' for t in tabs)} and rows.csv to "
              f"{out_dir}")
