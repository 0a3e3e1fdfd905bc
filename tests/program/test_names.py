"""The name table of ``symderive.validate`` is complete: every identifier an emitted module binds or
reads (its symbol table: names, function and class definitions, parameters, imports) is a program
name, a name derived from one, a temporary the emitter invents, or in ``RESERVED`` or
``HELPER_LOCALS``; a helper local occurs only where no program name can meet it. The corpus is
generated/ and the examples emitted afresh, so a printer that starts writing a new identifier fails
here until the table has it. Programs whose names are the temporaries the emitter would pick still
emit, with the temporaries renamed, and pass ``symderive check`` and gradgradcheck.
"""
import functools
import re
import symtable
import types
from collections import defaultdict
from pathlib import Path

import pytest
import sympy as sp
import torch

from symderive.algebra.double import Double, derive_double
from symderive.algebra.simplify import derive_backward
from symderive.cli import main
from symderive.codegen.emit import module_source
from symderive.program.load import load
from symderive.program.names import HELPER_LOCALS, RESERVED, function_class_name

ROOT = Path(__file__).resolve().parents[2]
DERIVATIONS = sorted((ROOT / "derivations").glob("*.py"))
EXAMPLES = sorted(path for folder in ("activations", "layers")
                  for path in (ROOT / "examples" / folder).glob("*.py") if path.name != "table.py")
# What the emitter invents, each numbered by ``fuse.fresh_name`` when taken:
# lower.shared_contractions' t0, fuse.fused's <statement>_scale and fuse.shared_reductions'
# sum_<reads>, max_<reads> and shared_sum / shared_max.
TEMPORARY = re.compile(r"t\d+|(sum|max|common)_\w+|shared_(sum|max|common)\d*|\w+_scale\d*"
                       r"|\w+_(arg)?max\d*|\w+_norm(_grads)?\d*"
                       r"|(exp|log|tanh|sigmoid|softplus|erf|erfc|sin|cos|sinh|cosh|atan)_\w+")
COMPREHENSIONS = ("genexpr", "listcomp", "dictcomp", "setcomp", "lambda")


def program_names(programs) -> set[str]:
    """The program's own names and those derived from them: every array, size, constant and index
    label of the forward, its backward and the double backward's programs, each array's adjoint,
    the program's name and its Function classes."""
    names = set()
    for program in programs:
        arrays = set(program.names)
        names |= arrays | {"d" + name for name in arrays} | {program.name}
        names |= {str(symbol) for symbol, _ in (*program.sizes, *program.constants)}
        for record in (*program.inputs, *program.body):
            for part in (record.lhs, getattr(record, "rhs", record.lhs)):
                names |= {str(k.label) for k in sp.sympify(part).atoms(sp.Idx)}
    function = function_class_name(programs[0].name)
    return names | {function, function[:-len("Function")] + "Backward"}


@functools.lru_cache(maxsize=None)
def _derived(path: Path):
    program = load(path)
    backward = derive_backward(program)
    double = derive_double(program, backward)
    extra = (double.program, double.backward) if isinstance(double, Double) else ()
    return program, backward, extra


@functools.lru_cache(maxsize=None)
def modules_of(path: Path) -> tuple:
    """``(label, source, programs)`` for the NumPy and torch modules of a derivation, emitted here;
    for derivations/, generated/'s files too where they differ (regen --check tells when)."""
    program, backward, extra = _derived(path)
    found = []
    for target in ("numpy", "torch"):
        programs = (program, backward) + (extra if target == "torch" else ())
        source = module_source(program, backward, target)
        found.append((f"{path.stem}_{target}", source, programs))
        written = ROOT / "generated" / f"{program.name}_{target}.py"
        if path.parent.name == "derivations" and written.read_text() != source:
            found.append((f"generated/{written.name}", written.read_text(), programs))
    return tuple(found)


def scopes(table: symtable.SymbolTable, path: str = ""):
    """Every scope of a module as ``(path, table)``; a comprehension is numbered in its parent."""
    yield path or "<module>", table
    seen: dict[str, int] = defaultdict(int)
    for child in table.get_children():
        name = child.get_name()
        if name in COMPREHENSIONS:
            name, seen[name] = f"{name}#{seen[name]}", seen[name] + 1
        yield from scopes(child, f"{path}/{name}" if path else name)


def accounted(label: str, source: str, programs) -> tuple[list[str], dict]:
    """The identifiers of a module that are none of the allowed kinds (``module: scope: name``),
    and, per scope (program-named scopes written as <entry>, <Function>, <Backward>), the names of
    ``HELPER_LOCALS`` it uses with the scope's identifiers that are not in ``RESERVED``."""
    names = program_names(programs)
    entry, function = programs[0].name, function_class_name(programs[0].name)
    generic = {entry: "<entry>", function: "<Function>",
               function[:-len("Function")] + "Backward": "<Backward>"}
    missing, helper_scopes = [], {}
    for path, table in scopes(symtable.symtable(source, label, "exec")):
        path = "/".join(generic.get(part, part) for part in path.split("/"))
        symbols = [s for s in table.get_symbols() if not s.get_name().startswith(".")]
        for symbol in symbols:
            name = symbol.get_name()
            if name in names or name in RESERVED:
                continue
            if name in HELPER_LOCALS:
                helper_scopes.setdefault(path, (set(), frozenset(
                    s.get_name() for s in symbols if s.get_name() not in RESERVED)))
                helper_scopes[path][0].add((name, symbol.is_local()))
                continue
            if table.get_type() == "function" and symbol.is_assigned() and \
                    TEMPORARY.fullmatch(name):
                continue
            missing.append(f"{label}: {path}: {name}")
    return missing, helper_scopes


CORPUS = DERIVATIONS + EXAMPLES


@pytest.mark.parametrize("path", CORPUS, ids=[f"{p.parent.name}/{p.stem}" for p in CORPUS])
def test_every_identifier_of_an_emitted_module_is_accounted_for(path):
    missing = [line for module in modules_of(path) for line in accounted(*module)[0]]
    assert not missing, ("identifiers the emitted code uses that symderive.validate's table "
                         "lacks; add each to RESERVED (or HELPER_LOCALS, for a local of a helper "
                         "of fixed text):\n" + "\n".join(missing))


def test_helper_locals_are_bound_only_where_no_program_name_reaches():
    """A name in ``HELPER_LOCALS`` is a local (never a global read) of a scope whose identifiers
    outside ``RESERVED`` are the same in every module that has it: fixed text, which no program
    name enters, so a program may use the name."""
    seen = defaultdict(set)  # scope -> its identifiers outside RESERVED, one set per module
    for path in CORPUS:
        for module in modules_of(path):
            for scope, (used, identifiers) in accounted(*module)[1].items():
                assert all(local for _, local in used), (module[0], scope, used)
                seen[scope].add(identifiers)
    assert seen, "the corpus exercises no helper"
    varying = {scope: found for scope, found in seen.items() if len(found) > 1}
    assert not varying, ("a HELPER_LOCALS name is used in a scope that holds program names; "
                         f"move it to RESERVED: {sorted(varying)}")
    assert {"leading_sums", "labels_in_range", "<Function>/setup_context"} <= set(seen)


def test_the_table_is_split_in_two():
    assert not RESERVED & HELPER_LOCALS
    assert all(name.isidentifier() for name in RESERVED | HELPER_LOCALS)


# Derivations renamed so that a name the emitter wants for a temporary is the program's: the
# constant eps as batchnorm's hoisted factor and layernorm's shared sum of its double backward,
# glu's input as the contraction its double backward shares.
RENAMED = [
    ("derivations/batchnorm.py", 'symbols("eps", positive=True)',
     'symbols("dhprebn_scale", positive=True)', "dhprebn_scale2 = bngain*bnvar_inv",
     {"hprebn": (5, 4), "bngain": (4,), "bnbias": (4,)}),
    ("derivations/layernorm.py", 'symbols("eps", positive=True)',
     'symbols("sum_dgrad_x", positive=True)', "sum_dgrad_x2 = dgrad_x.sum(1)",
     {"x": (3, 4), "gamma": (4,), "beta": (4,)}),
    ("examples/layers/glu.py", 'symbols("x y", cls=IndexedBase)',
     'symbols("t0 y", cls=IndexedBase)', "t1 = dgrad_t0 @", {"t0": (3, 4)}),
]


@pytest.mark.parametrize("original, old, new, renamed, shapes", RENAMED,
                         ids=[Path(case[0]).stem for case in RENAMED])
def test_a_program_named_like_a_temporary_still_emits_and_checks(original, old, new, renamed,
                                                                  shapes, tmp_path, capsys):
    text = (ROOT / original).read_text()
    assert old in text
    path = tmp_path / Path(original).name
    path.write_text(text.replace(old, new))
    program = load(path)
    backward = derive_backward(program)
    source = module_source(program, backward, "torch")
    assert renamed in source
    missing, _ = accounted("renamed", source, (program, backward) + _derived(path)[2])
    assert not missing
    assert main(["check", str(path), "--dtype", "float64"]) == 0, capsys.readouterr().err
    module = types.ModuleType(program.name)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - our own module
    torch.manual_seed(0)
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True)
              for shape in shapes.values()]
    assert list(shapes) == [x.name for x in program.inputs]
    # the double backward, where two of the temporaries live, against finite differences
    assert torch.autograd.gradgradcheck(getattr(module, program.name), inputs)
