"""The package's shape, checked on its real import graph: the stages are packages whose modules
import only the stages below them (import-linter's layers contract, in pyproject.toml), no two
modules import each other even through others (imports inside functions included), an import
inside a function is one of the few that load a heavy dependency late and says so, and no module
grows past about 600 lines."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "symderive"
LINT = Path(sys.executable).parent / "lint-imports"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(package: Path = PACKAGE) -> dict[str, dict[str, list[ast.ImportFrom]]]:
    """Per module, the package modules it imports, each with the import nodes (any depth)."""
    known = modules(package)
    graph: dict[str, dict[str, list]] = {name: {} for name in known}
    for name, path in known.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = here.split(".")[:len(here.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}"
                hit = full if full in known else target
                while hit and hit not in known:
                    hit = hit.rpartition(".")[0]
                if hit and hit != name:
                    graph[name].setdefault(hit, []).append(node)
    return graph


def cycle(graph) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for other in graph[module]:
            if state.get(other) == "open":
                return stack[stack.index(other):] + [other]
            if other not in state and (found := visit(other)):
                return found
        stack.pop()
        state[module] = "done"
        return None

    for module in graph:
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_layers_contract_holds():
    done = subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: the IR importing the checker (verify, two stages up) fails."""
    copy = tmp_path / "symderive"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    ir = copy / "program" / "ir.py"
    ir.write_text(ir.read_text().replace("from .errors import ProgramError",
                                         "from ..verify import check  # noqa\n"
                                         "from .errors import ProgramError", 1))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = subprocess.run([str(LINT), "--config", str(tmp_path / "pyproject.toml")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1 and "BROKEN" in done.stdout, done.stdout[-3000:]
    assert "symderive.program.ir -> symderive.verify.check" in done.stdout


def test_no_module_imports_itself_through_others():
    assert cycle(imports()) is None


def test_a_cycle_is_found():
    """The cycle finder itself, on a graph with one."""
    assert cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b": []}, "b": {}}) is None


# The imports inside functions the package keeps, each loading something heavy only where it is
# used (and saying so on its line): torch for checks, and the pytest items with --symderive.
LATE = {("symderive.api", "symderive.verify.check"),
        ("symderive.commands", "symderive.verify.check"),
        ("symderive.plugin", "symderive.plugin_items")}


def test_imports_inside_functions_are_the_few_heavy_ones_and_say_why():
    found = set()
    for module, targets in imports().items():
        path = modules()[module]
        lines = path.read_text().splitlines()
        spans = [(node.lineno, node.end_lineno) for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for target, nodes in targets.items():
            for node in nodes:
                if any(start < node.lineno <= end for start, end in spans):
                    found.add((module, target))
                    said = lines[node.lineno - 1] + lines[node.lineno - 2]
                    assert "#" in said, f"{module}: the late import of {target} says not why"
    assert found == LATE


def test_no_module_is_much_longer_than_600_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    longest = max(lengths, key=lengths.get)
    assert lengths[longest] <= 620, (longest, lengths[longest])
