"""The paper's Tables 1, 2 and 4 beside ours, for results/README.md: the agreement of our Table 4 with
the paper's under every reading, the paper's L cells beside ours, the seeds' agreement, and Tables 1-2
side by side.

The paper's cells are data (results/paper/paper-cells.csv, 440 cells). ztest.py aggregates the results
under each reading and hands them down; nothing here imports ztest. Run it through ztest.py:

    python ztest.py results/quick --paper results/paper/paper-cells.csv --out-dir DIR
"""
import csv
import math
import os

import numpy as np

import data
from study.readings import SUMMARIES, answer_for
from study.tables import MNIST_CLASSES, MODEL_ORDER, fmt, model_key


PAPER_COLUMNS = ("rare", "factor", "digit", "model", "z", "z_bold", "letter")


def load_paper(path):
    """The paper's Tables 1, 2 and 4 entered as data (results/paper/paper-cells.csv): {(rare, factor, digit,
    model): {"z": float or nan, "bold": bool, "letter": "L" or "M"}}, digit "0".."9" or "Total"."""
    accepted = f"accepted: a CSV with the columns {','.join(PAPER_COLUMNS)}, as results/paper/paper-cells.csv"
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"--paper {path}: {getattr(e, 'strerror', None) or e}; {accepted}") from None
    if missing := [c for c in PAPER_COLUMNS if c not in (reader.fieldnames or ())]:
        raise ValueError(f"--paper {path} is not the paper's cells (no column {missing[0]!r}); {accepted}")
    try:
        return {(int(r["rare"]), r["factor"], r["digit"], r["model"]):
                {"z": float(r["z"]) if r["z"] else math.nan, "bold": r["z_bold"] == "1", "letter": r["letter"]}
                for r in rows}
    except (TypeError, ValueError) as e:
        raise ValueError(f"--paper {path}: a row that is not a cell ({e}); {accepted}") from None


def our_letter(agg, rare, factor, digit, model):
    """Seed 0's letter of a cell (the paper's tables are one run per cell), or None when not run."""
    cell = agg.get(("mnist", factor, rare, 1.0, 0.0, model))
    if not cell or 0 not in cell["seeds"]:
        return None
    i = 10 if digit == "Total" else int(digit)
    return cell["rows"][i]["verdicts"][cell["seeds"].index(0)]


def agreement(aggs, paper):
    """Per model and factor, for every reading in aggs ({reading name: aggregate}): how many of the
    paper's Table 4 cells (both rare digits, 10 digits and 'all') we ran, how many get the paper's letter,
    and how many we decide at all (L or M). Rows [model, factor, cells, always M, then matches/decided per
    reading]. "always M" is the bar any reading must clear: the paper's Table 4 is mostly M, so writing M in
    every cell we ran agrees with it that often."""
    rows = []
    for model in MODEL_ORDER:
        for factor in data.FACTORS:
            keys = [k for k in paper if k[1] == factor and k[3] == model]
            line, ran, bar = [model, factor], None, None
            for name, agg in aggs.items():
                ours = [(our_letter(agg, k[0], factor, k[2], model), paper[k]["letter"]) for k in keys]
                ours = [(o, p) for o, p in ours if o is not None]
                ran = len(ours)
                if ran and bar is None:
                    m = sum(p == "M" for _, p in ours)
                    bar = f"{m}/{ran} ({m / ran:.0%})"
                match, decided = sum(o == p for o, p in ours), sum(o in "LM" for o, _ in ours)
                if ours and all(set(o) == {"x"} for o, _ in ours):   # no counts for this reading (colour: morphometric)
                    line.append("-")
                    continue
                line.append(f"{match}/{ran} ({match / ran:.0%}); decided {decided}" if ran else "-")
            if ran:
                rows.append(line[:2] + [str(ran), bar] + line[2:])
    return rows


def side_by_side(agg, paper, rare, factor):
    """Our Table 1 (rare 1) or 2 (rare 2) column of a factor next to the paper's: rows [digit, then per
    model 'ours (letter) | paper (letter)']."""
    body = []
    for digit in MNIST_CLASSES + ("Total",):
        line = [digit]
        for model in MODEL_ORDER:
            cell = agg.get(("mnist", factor, rare, 1.0, 0.0, model))
            i = 10 if digit == "Total" else int(digit)
            ours = "n/a" if not cell else f"{fmt(cell['rows'][i]['z_mean'])} ({cell['rows'][i]['verdicts']})"
            p = paper[(rare, factor, digit, model)]
            line.append(f"{ours} | {fmt(p['z'])} ({p['letter']})")
        body.append(line)
    return body


def seed_agreement(agg):
    """Per cell run with several seeds (model, factor, rare digit): how many of its 11 rows (digits and
    Total) get the same letter in every seed, and the median spread (sd) of z over seeds."""
    rows = []
    for key in sorted((k for k, c in agg.items() if len(c["seeds"]) > 1), key=lambda k: (k[1], k[2], model_key(k[5]))):
        c = agg[key]
        same = sum(len(set(r["verdicts"])) == 1 for r in c["rows"])
        sds = [r["z_sd"] for r in c["rows"] if math.isfinite(r["z_sd"])]
        rows.append([key[5], key[1], str(key[2]), ",".join(map(str, c["seeds"])), f"{same}/{len(c['rows'])}",
                     fmt(float(np.median(sds))) if sds else "-"])
    return rows


def _row(agg, rare, factor, digit, model):
    """(z, letters) of one row of a cell: z the mean over its seeds, one letter per seed; None when not run."""
    cell = agg.get(("mnist", factor, rare, 1.0, 0.0, model))
    if not cell:
        return None
    row = cell["rows"][10 if digit == "Total" else int(digit)]
    return row["z_mean"], row["verdicts"]


def l_cells(aggs, paper):
    """Every cell of the paper's Table 4 that it reads L (learned), beside ours under the study's answer (calibrated on colour, morphometric on the strokes; readings.answer_for) and under eq. 1
    (the "ours" reading): rows [model, factor, rare, digit, the paper's z, the paper's letters of the four
    models in that row (VAE GAN GAN-SD DM), our answer's z and letters, eq. 1's z and letters, the answer's
    letters of every model we ran in that row ('.': not run)]; z is the mean over seeds, the letters one per
    seed. Cells we did not run are left out. These
    are the paper's claims that a model learns (SD helps the GAN, the VAE learns fracture), cell by cell."""
    ours = sorted({k[5] for agg in aggs.values() for k in agg}, key=model_key)
    rows = []
    for (rare, factor, digit, model), cell in sorted(paper.items(), key=lambda kv: (kv[0][1], kv[0][0], model_key(kv[0][3]),
                                                                                 kv[0][2] == "Total", kv[0][2])):
        answer = aggs.get(answer_for(factor))
        if cell["letter"] != "L" or answer is None or (mine := _row(answer, rare, factor, digit, model)) is None:
            continue
        eq1 = _row(aggs["ours"], rare, factor, digit, model) if "ours" in aggs else None
        letters = "".join(paper[(rare, factor, digit, m)]["letter"] for m in MODEL_ORDER)
        theirs = " ".join(f"{m} {(_row(answer, rare, factor, digit, m) or (0, '.'))[1]}" for m in ours)
        rows.append([model, factor, str(rare), digit, fmt(cell["z"]), letters, fmt(mine[0]), mine[1],
                     fmt(eq1[0]) if eq1 else "-", eq1[1] if eq1 else "-", theirs])
    return rows


def _md(head, rows, rule=None):
    return ["| " + " | ".join(head) + " |", rule or "|---" * len(head) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def compare(aggs, paper, reading, out_dir=None):
    """Print (and write to out_dir as compare.md) our Table 4's agreement with the paper's under the four
    readings (aggs: {reading name: aggregate}, one per SUMMARIES), and our Tables 1-2 beside the paper's,
    factor by factor, under `reading`."""
    head = ["model", "factor", "cells", "always M: same letter as the paper"] + \
        [f"{n}: same letter as the paper" for n in aggs]   # (+ answer)
    rows = agreement(aggs, paper)
    text = ["### Agreement with the paper's Table 4 (seed 0)", ""] + _md(head, rows, "|" + "---|" * len(head))
    print("\nAgreement with the paper's Table 4 (seed 0)\n" + data.text_grid(head, rows))
    lh = ["model", "factor", "rare", "digit", "paper z", "paper: VAE GAN GAN-SD DM", "answer z", "answer",
          "eq. 1 z", "eq. 1", "the answer's letters in that row"]
    if lrows := l_cells(aggs, paper):
        print("\nThe paper's L cells, ours beside (answer: calibrated on colour, morphometric on the strokes; "
              "z: mean over seeds, letters: one per seed)\n" + data.text_grid(lh, lrows))
        text += ["", "### The paper's L cells, ours beside", "",
                 "The answer: the calibrated reading on colour, the morphometric one on the strokes; eq. 1: the "
                 "paper's test with our n (the \"ours\" reading). z: the mean over seeds; letters: one per seed.", ""] + _md(lh, lrows)
    agg = aggs[reading.summary]
    seeds = seed_agreement(agg)
    if seeds:
        sh = ["model", "factor", "rare", "seeds", "rows with one letter in every seed", "median sd of z"]
        print(f"\nSeeds ({reading.summary} reading)\n" + data.text_grid(sh, seeds))
        text += ["", f"### Seeds ({reading.summary} reading)", ""] + _md(sh, seeds)
    for k in (1, 2):
        for f in data.FACTORS:
            if not any(key[1:3] == (f, k) for key in agg):
                continue
            title = f"Table {k}, {f}: our z (letters, {reading.summary} reading) | the paper's z (letter)"
            head = " | ".join(f"{m} ours | {m} paper" for m in MODEL_ORDER)
            text += ["", f"### {title}", "", f"| digit | {head} |", "|---" * (1 + 2 * len(MODEL_ORDER)) + "|"]
            text += ["| " + " | ".join(r) + " |" for r in side_by_side(agg, paper, k, f)]
    if out_dir:
        data.save_text("\n".join(text) + "\n", os.path.join(out_dir, "compare.md"))
        print(f"wrote {os.path.join(out_dir, 'compare.md')}")
