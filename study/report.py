"""One cell's report from its result.json, with no training: the z-table as its run printed it, the
cell's Table 4 letter under every reading, the sample-quality report, and where the result came from.

    python ztest.py results/quick/gan/colour-rare1-seed0/result.json --cell
    python ztest.py results/quick --cell gan/colour-rare1-seed0

ztest.py computes the z-table's rows and its text (eq. 1 is ztest's) and hands them down; nothing here
imports ztest.
"""
import sys

import data
from study import quality
from study.readings import SUMMARIES, resolve, summary_letter, taus_of
from study.tables import cell_name

HOW = {"ours": "ours", "paper": "paper's", "equivalence": "equivalence", "readable": "readable", "calibrated": "calibrated",
       "morphometric": "morphometric"}


SMOKE_ORACLES = "SMOKE ORACLES: oracles trained for seconds; the verdicts of this audit mean nothing."


def smoke(res):
    """The line a smoke result's report begins with, or None: data.SMOKE_LINE for a model script's --smoke
    run (its config has smoke), SMOKE_ORACLES for an audit labelled by the smoke oracles (oracle_smoke)."""
    if (res.get("config") or {}).get("smoke"):
        return data.SMOKE_LINE
    return SMOKE_ORACLES if res.get("oracle_smoke") else None


def begin(res, reading):
    """A cell's report begins: a smoke result's line first (smoke: on stdout for a model script's run, on
    stderr beside the warnings for a --smoke audit). Returns the reading to report it with: --summary
    answer becomes its factor's (readings.resolve)."""
    line = smoke(res)
    if line:
        print(line, file=sys.stdout if line == data.SMOKE_LINE else sys.stderr)
    return reading._replace(summary=resolve(reading.summary, res["factor"]))


def pick(results, spec):
    """The one result that `spec` names: "" when a single result was given, else MODEL/CELL, the end of
    its path (gan/colour-rare1-seed0, or the run folder's name alone when that is unique)."""
    if not spec:
        if len(results) != 1:
            raise ValueError(f"--cell without a MODEL/CELL needs one result file, got {len(results)}; "
                             f"e.g. --cell {_name(results[0])}")
        return results[0]
    want = spec.strip("/").split("/")
    hits = [r for r in results if _name(r).split("/")[-len(want):] == want]
    if len(hits) != 1:
        some = ", ".join(sorted(_name(r) for r in hits or results)[:3])
        raise ValueError(f"--cell {spec} matches {len(hits)} of the results given; accepted: the MODEL/CELL "
                         f"folder of one of them, e.g. {some}")
    return hits[0]


def _name(res):
    """MODEL/CELL of a result file: gan/colour-rare1-seed0 (tables.cell_name)."""
    return "/".join(cell_name(res))


def letters(rows, reading):
    """The cell's Table 4 letter per class under each summary rule (the paper's with min-n 0, as
    ztest.py --summary paper --min-n 0 reads it), as text."""
    head = ["class"] + [HOW[h] for h in SUMMARIES]
    body = [[str(r["name"])] + [summary_letter(r, h, reading.alpha, 0 if h == "paper" else reading.min_n)
                                for h in SUMMARIES] for r in rows]
    return ("Table 4's letter under each reading (docs/readings.md; the paper's with min-n 0)\n"
            + data.text_grid(head, body))


def origin(res):
    """One line: when and where the result was made, from its provenance (absent in older files)."""
    p = res.get("provenance")
    if not p:
        return f"made {res.get('created', '?')} on {res.get('device', '?')} (torch {res.get('torch', '?')}); " \
               f"no provenance recorded (a result from before it was)"
    code = "no git checkout" if not p.get("commit") else \
        f"commit {p['commit'][:12]}{' (dirty)' if p.get('dirty') else ''}"
    machine = p.get("gpu") or p.get("cpu") or "?"
    return f"made {res.get('created', '?')} by {code} on {machine} ({res.get('device', '?')}), " \
           f"torch {p['versions'].get('torch')}, numpy {p['versions'].get('numpy')}"


def cell(res, ztable, rows, reading):
    """The report: `ztable` (ztest.format_rows of `rows`, the result's z-table under the reading), the
    letters under every reading, the quality report (when the result has one) and the origin line."""
    parts = [ztable, letters(rows, reading)]
    if "quality" in res:       # results from before the fit was kept: the factor oracle's, from the counts
        fit = res["quality"].get("fit") or quality.rare_fit(res)
        parts.append(quality.format_quality({**res["quality"], "fit": fit}, res["classes"], res["rare"]))
    src = res.get("tau2_source") or {}
    tau = taus_of(res)
    taus = "tau^2 of the calibrated tests: " + "; ".join(
        f"{w} {tau[k]:.6f} ({src.get(k, 'pooled')})"
        for k, w in (("readable", "oracle"), ("morph", "morphometric")) if k != "morph" or res.get("morphometric"))
    return "\n\n".join(parts) + "\n" + taus + "\n" + origin(res)
