"""No code path runs code from a user's file: every source file is parsed and checked.

Every ``.py`` under ``prism_science/``, ``training/`` and ``plugins/`` is parsed with ``ast``;
the test fails on pickle and its relatives (``pickle``, ``cPickle``, ``_pickle``, ``dill``,
``cloudpickle``, ``shelve``, ``marshal`` imported or called; ``joblib.load``), ``torch.load``
without ``weights_only=True``, ``np.load`` with ``allow_pickle`` not ``False``, ``eval`` /
``exec`` / ``compile`` of text, ``subprocess`` with ``shell=True``, ``os.system`` /
``os.popen``, ``yaml.load`` without a safe loader and ``yaml.unsafe_load``. A use that is safe
for a reason the parser cannot see goes in :data:`ALLOWED` with that reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("prism_science", "training", "plugins")

ROBUSTNESS_TITLE = "No code from a user's file runs"
ROBUSTNESS_KIND = "code checks"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| every `.py` of `prism_science/`, `training/` and `plugins/` parsed with `ast`, looking for
  pickle / cPickle / dill / cloudpickle / shelve / marshal imports and calls, `joblib.load`,
  `torch.load` without `weights_only=True`, `np.load` with `allow_pickle` not `False`, `eval` /
  `exec` / `compile`, `subprocess` with `shell=True`, `os.system` / `os.popen`, `yaml.load`
  without a safe loader | none, outside an allow-list whose every entry says why it is safe
  (empty today) |
| each rule fed a snippet that breaks it (and its safe twin) | the checker flags the one and not
  the other |
"""

PICKLING = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}

ALLOWED: dict[tuple[str, str], str] = {}
"""``(file relative to the repository, rule) -> why it is safe``; every hit not listed fails."""


def _name(node: ast.AST) -> str:
    """``a.b.c`` of a Name / Attribute chain ('' for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_hits(call: ast.Call, aliases: dict[str, str]) -> list[str]:
    """The rules one call breaks; ``aliases`` maps local names to the modules imported."""
    name = _name(call.func)
    head, _, rest = name.partition(".")
    full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
    module = full.split(".")[0]
    hits = []
    if module in PICKLING and rest:
        hits.append(f"{module} call")
    if full in ("joblib.load", "pandas.read_pickle"):
        hits.append(f"{full} (unpickles)")
    if full == "torch.load" and not _is_const(_keyword(call, "weights_only"), True):
        hits.append("torch.load without weights_only=True")
    if full == "numpy.load":
        allow = _keyword(call, "allow_pickle")
        if allow is not None and not _is_const(allow, False):
            hits.append("np.load with allow_pickle")
    if isinstance(call.func, ast.Name) and call.func.id in ("eval", "exec", "compile") \
            and call.func.id not in aliases:
        hits.append(f"{call.func.id}()")
    if module == "subprocess" and not _is_const(_keyword(call, "shell"), False) \
            and _keyword(call, "shell") is not None:
        hits.append("subprocess with shell=True")
    if full in ("os.system", "os.popen"):
        hits.append(full)
    if full == "yaml.unsafe_load":
        hits.append("yaml.unsafe_load")
    if full == "yaml.load":
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if _name(loader).split(".")[-1] not in SAFE_YAML_LOADERS:
            hits.append("yaml.load without SafeLoader")
    return hits


def find_hits(source: str) -> list[tuple[int, str]]:
    """``(line, rule)`` of every unsafe use in a module's source."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {"np": "numpy"}
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):  # imports first: ``import numpy as xp`` then ``xp.load``
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[(alias.asname or alias.name).split(".")[0]] = alias.name.split(".")[0]
                if alias.name.split(".")[0] in PICKLING:
                    hits.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if root in PICKLING:
                hits.append((node.lineno, f"from {node.module} import"))
            if root == "os" and any(a.name in ("system", "popen") for a in node.names):
                hits.append((node.lineno, "from os import system/popen"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            hits += [(node.lineno, rule) for rule in _call_hits(node, aliases)]
    return sorted(hits)


def _sources() -> list[Path]:
    files = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
                   if ".venv" not in p.parts and "__pycache__" not in p.parts)
    assert len(files) > 50, "the source folders were not found"
    return files


def test_no_unsafe_call_in_the_sources():
    found = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        for line, rule in find_hits(path.read_text(encoding="utf-8")):
            if (relative, rule) not in ALLOWED:
                found.append(f"{relative}:{line}: {rule}")
    assert not found, "unsafe calls (fix them, or allow-list one with the reason):\n" + \
        "\n".join(found)


def test_every_allow_list_entry_is_still_needed():
    hits = {(p.relative_to(ROOT).as_posix(), rule) for p in _sources()
            for _, rule in find_hits(p.read_text(encoding="utf-8"))}
    assert set(ALLOWED) <= hits, set(ALLOWED) - hits
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize("bad, good", [
    ("import pickle", "import json"),
    ("import dill as d", "import numpy as d"),
    ("from pickle import loads", "from json import loads"),
    ("import joblib\njoblib.load(p)", "import joblib\njoblib.dump(x, p)"),
    ("import torch\ntorch.load(p)", "import torch\ntorch.load(p, weights_only=True)"),
    ("import torch\ntorch.load(p, weights_only=False)",
     "import torch\ntorch.load(p, map_location='cpu', weights_only=True)"),
    ("from torch import load\nload(p)", "from torch import load\nload(p, weights_only=True)"),
    ("import numpy as np\nnp.load(p, allow_pickle=True)",
     "import numpy as np\nnp.load(p, allow_pickle=False)"),
    ("import numpy\nnumpy.load(p, allow_pickle=flag)", "import numpy\nnumpy.load(p)"),
    ("eval(text)", "model.eval()"),
    ("exec(code)", "executor.exec(code)"),
    ("compile(src, 'f', 'exec')", "re.compile(src)"),
    ("import subprocess\nsubprocess.run(cmd, shell=True)",
     "import subprocess\nsubprocess.run([a, b], shell=False)"),
    ("import os\nos.system(cmd)", "import os\nos.replace(a, b)"),
    ("import os\nos.popen(cmd)", "import os\nos.path.join(a, b)"),
    ("import yaml\nyaml.load(text)", "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)"),
    ("import yaml\nyaml.load(text, yaml.Loader)", "import yaml\nyaml.safe_load(text)"),
    ("import yaml\nyaml.unsafe_load(text)", "import yaml\nyaml.safe_dump(x)"),
])
def test_the_checker_flags_each_rule(bad, good):
    assert find_hits(bad), bad
    assert not find_hits(good), good
