"""The layout that keeps the tutorial apart from the study: the size of each core file, short functions,
model scripts that read in one sitting, and imports that run one way (no cycle; the model scripts
never import study/).

    python -m pytest -q tests/test_layout.py
"""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vae", "gan", "ddpm")
CORE = ("data", "oracles", "ztest")
# the line budgets of the design (docstrings and comments included)
MAX_LINES = {"vae.py": 250, "gan.py": 280, "ddpm.py": 340, "data.py": 550, "ztest.py": 400, "oracles.py": 450}
MAX_FUNCTION = 50
MAX_DOCSTRING = 25
MAX_README = 170


def _sources():
    """Every .py file of the project (the top level, study/ and tests/), as {module name: path}."""
    out = {}
    for folder in ("", "study", "tests"):
        for f in sorted(os.listdir(os.path.join(REPO, folder))):
            if f.endswith(".py"):
                name = os.path.splitext(f)[0]
                key = f"{folder}.{name}" if folder else name
                out[key.replace(".__init__", "")] = os.path.join(REPO, folder, f)
    return out


def _tree(path):
    with open(path) as fh:
        return ast.parse(fh.read(), path)


def _imports(path, modules):
    """The project modules that `path` imports anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _graph():
    src = {k: v for k, v in _sources().items() if not k.startswith("tests.")}
    return {m: _imports(p, set(src)) - {m} for m, p in src.items()}


def test_the_core_files_keep_their_line_budgets():
    over = {}
    for name, most in MAX_LINES.items():
        with open(os.path.join(REPO, name)) as fh:
            n = sum(1 for _ in fh)
        if n > most:
            over[name] = (n, most)
    assert not over, f"files over their line budget (lines, budget): {over}"


def test_no_function_is_over_50_lines():
    long = [f"{os.path.relpath(p, REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in _sources().values() for n in ast.walk(_tree(p))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION]
    assert not long, "functions over 50 lines: " + "; ".join(long)


def test_imports_run_one_way_without_a_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"
    assert graph["study"] == set(), "study/__init__.py must import nothing (its modules load on demand)"


def test_study_never_imports_ztest_or_a_model_script():
    graph = _graph()
    bad = {m: sorted(graph[m] & {"ztest", *MODELS}) for m in graph if m.startswith("study.")}
    assert not any(bad.values()), f"study modules that import ztest or a model script: {bad}"


@pytest.mark.parametrize("model", MODELS)
def test_a_model_script_imports_only_data_oracles_and_ztest(model):
    imported = _imports(_sources()[model], set(_sources()) | {"study"})
    assert imported <= set(CORE), f"{model}.py imports {sorted(imported - set(CORE))} from the project"


@pytest.mark.parametrize("model", MODELS)
def test_a_model_script_reads_in_one_sitting(model):
    """A short docstring; the model classes before the training code; train() shows its epoch loop."""
    tree = _tree(_sources()[model])
    doc = ast.get_docstring(tree, clean=False) or ""
    assert doc and len(doc.strip().splitlines()) <= MAX_DOCSTRING, f"{model}.py's docstring is over 25 lines"
    top = {n.name: n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    classes = [n.lineno for n in tree.body if isinstance(n, ast.ClassDef) and
               any(getattr(b, "attr", getattr(b, "id", "")) == "Module" for b in n.bases)]
    assert classes and max(classes) < top["train_epoch"] < top["train"], \
        f"{model}.py: the nn.Module classes must come before train_epoch() and train()"
    loops = [n for n in ast.walk(next(n for n in tree.body if getattr(n, "name", "") == "train"))
             if isinstance(n, ast.For) and getattr(n.target, "id", "") == "epoch"]
    assert loops, f"{model}.py: train() must show its epoch loop (for epoch in ...)"


def test_the_readme_is_short_and_its_setup_stays_inside_the_clone():
    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    assert len(text.splitlines()) <= MAX_README, f"README.md has {len(text.splitlines())} lines (at most 170)"
    assert "../shared" not in text, "README.md names a path outside the clone"
    assert "```bash\n.venv/bin/python -m pytest -q tests\n```" in text, "README.md lost the test command CI runs"
