"""The work of each command of the command line (``check``, ``derive``, ``emit``, ``latex``,
``regen``), loaded by ``cli`` only once the arguments are parsed. Work over several files prints
progress on stderr; nothing is written unless everything it writes has run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .algebra.cost import large_sizes
from .algebra.grad import adjoint_name, backward
from .algebra.simplify import (
    Gradient,
    compact_backward,
    compact_gradients,
    derive_backward,
)
from .algebra.stabilize import forward_rewrites
from .codegen.cost_model import backward_costs, widest_arrays
from .codegen.emit import module_source
from .codegen.files import (
    TARGETS,
    inputs_digest,
    inputs_line,
    is_generated,
    stated_inputs,
    text_digest,
    without_inputs,
    write_atomically,
)
from .program.ir import ProgramError
from .program.load import load, load_with_files
from .project import find_root, origin_of, project_folders
from .tex.documents import PREAMBLE, document
from .tex.engines import compile_pdf, to_png
from .verify.smoke import Module, verify


def _progress(position: int, total: int, name: str, work: str) -> None:
    """``[2/6] batchnorm: derive, emit, check`` on stderr, for work over several files."""
    if total > 1:
        print(f"[{position}/{total}] {name}: {work}", file=sys.stderr, flush=True)


def _writable_folder(folder: Path) -> None:
    """Refuse ``-o`` before any work when nothing could be written there."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is" if existing == folder else f"{existing} is"
        raise ProgramError(f"cannot write {folder}: {where} a file, not a folder; give -o a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ProgramError(f"cannot write {folder}: {existing} is not writable; give -o a "
                           "folder you can write")


def _derived(program):
    """The backward Program and, for a compact derivation, its gradients with their steps."""
    if program.adjoints == "all":
        return derive_backward(program), None
    return compact_backward(program)


def generated_modules(root: Path, progress: bool = False, reuse: bool = False
                      ) -> tuple[dict[Path, Module | str], int]:
    """Every file the generated folder should hold, by path, built in memory first: a Module per
    derivation and target, and the derivation's LaTeX document as text; and how many derivations
    were not run. With ``reuse``, a derivation whose generated files state the digest of its
    inputs as they are now (its file, what it loads, symderive's version) keeps them as they
    are, without being run."""
    root = Path(root)
    source_folder, generated = project_folders(root)
    derivations = sorted(source_folder.glob("*.py"))
    if not derivations:
        raise ProgramError(f"no derivations found in {source_folder}")
    for path in derivations:  # each header can name its file, before any derivation runs
        origin_of(path, root)
    files: dict[Path, Module | str] = {}
    kept = 0
    for position, path in enumerate(derivations, 1):
        own = own_files(generated, path.stem)
        if reuse and current(own, root):
            if progress:
                _progress(position, len(derivations), path.stem, "unchanged since generated")
            files.update({file: file.read_text() for file in own})
            kept += 1
            continue
        if progress:
            _progress(position, len(derivations), path.stem, "derive, emit, latex")
        program, read = load_with_files(path)
        files.update(derivation_modules(program, path, root, generated, read))
    return files, kept


def own_files(generated: Path, name: str) -> list[Path]:
    """The files derivation ``name`` puts in the generated folder."""
    return [generated / f"{name}_{target}.py" for target in TARGETS] + [generated / f"{name}.tex"]


def current(files: list[Path], root: Path) -> bool:
    """Whether every one of a derivation's generated files exists and states the digest its
    inputs have now (and all state the same inputs)."""
    stated = []
    for file in files:
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError):
            return False
        found = stated_inputs(text)
        if found is None or found.get("text") != text_digest(without_inputs(text)):
            return False  # none stated, or the file was edited since it was written
        stated.append(found)
    inputs = [{k: v for k, v in s.items() if k != "text"} for s in stated]
    if any(s != inputs[0] for s in inputs):
        return False
    return inputs[0].get("digest") == inputs_digest(inputs[0]["files"], root, __version__)


def derivation_modules(program, path: Path, root: Path, generated: Path,
                       read: tuple[Path, ...] = ()) -> dict[Path, Module | str]:
    """The files one derivation (``program``, loaded from ``path``, having read the derivation
    files ``read``: itself and what it loads) puts in ``generated``."""
    backward, gradients = _derived(program)
    origin = origin_of(path, root)
    files: dict[Path, Module | str] = {}
    for target in TARGETS:
        source = module_source(program, backward, target, origin)
        files[generated / f"{program.name}_{target}.py"] = Module(
            program, target, stamped(source, path, read, root))
    files[generated / f"{program.name}.tex"] = stamped(
        document(program, gradients=gradients), path, read, root, comment="%")
    return files


def stamped(text: str, path: Path, read: tuple[Path, ...], root: Path | None,
            comment: str = "#") -> str:
    """A generated module's text with its inputs line after the header (a document's as its last
    line): the derivation ``path`` and the files it ``read``, relative to the project ``root``
    (none outside a project)."""
    if root is None:
        return text
    names = [origin_of(path, root)] + [origin_of(file, root) for file in read
                                       if Path(file).resolve() != Path(path).resolve()]
    line = inputs_line(names, root, __version__, text, comment)
    if comment == "%":
        return text + line + "\n"
    header, rest = text.split("\n", 1)
    return f"{header}\n{line}\n{rest}"


def written_by_symderive(path: Path) -> bool:
    """A module with symderive's header, or a .tex beginning with its document preamble."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return text.startswith(PREAMBLE) if path.suffix == ".tex" else is_generated(text)


def generated_files(root: Path) -> dict[Path, str]:
    """Every file ``generated/`` should hold, by path, with its text."""
    return {path: item if isinstance(item, str) else item.source
            for path, item in generated_modules(root)[0].items()}


def cmd_check(args) -> int:
    from .verify.check import run_check  # torch: loaded only by the command that runs modules

    programs = [load(path) for path in args.files]  # every file must load before any runs
    ok = True
    for position, program in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive, emit, check")
        report = run_check(program, args.dtype, args.seed)
        print(json.dumps(report.as_json()) if args.json else report.table(), flush=True)
        ok &= report.ok
    return 0 if ok else 1


def materialised_adjoints(program):
    """Every adjoint the backward materialises, as Gradients: the compact ones (inputs and the
    names in ``adjoints=``), or for ``adjoints="all"`` every adjoint's atomic statements summed."""
    import sympy as sp


    if program.adjoints != "all":
        return compact_gradients(program)
    parts: dict[str, list] = {}
    for statement in backward(program).body:
        parts.setdefault(statement.name, []).append(statement)
    return [Gradient(name[1:], found[0].lhs, sp.Add(*[s.rhs for s in found]), (), program)
            for name, found in parts.items()]


def cmd_derive(args) -> int:

    programs = [load(path) for path in args.files]
    for position, program in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive")
        started = time.perf_counter()
        everything = args.all or args.wrt is not None
        if program.adjoints == "all" or everything:
            gradients = materialised_adjoints(program)
            backward_of = derive_backward(program)
        else:
            backward_of, gradients = compact_backward(program)
        seconds = time.perf_counter() - started
        chosen = [g for g in gradients if g.choice is not None]
        if not everything:
            gradients = [g for g in gradients if program.input(g.name) is not None]
        if args.wrt is not None:
            known = [g.name for g in gradients]
            for name in args.wrt:
                if name not in known:
                    raise ProgramError(f"{program.name}: no gradient with respect to '{name}'; "
                                       f"the materialised adjoints are {', '.join(known)} (list "
                                       "another in the Builder's adjoints= to materialise it)")
            gradients = [g for name in dict.fromkeys(args.wrt) for g in gradients
                         if g.name == name]
        costs = backward_costs(program, backward_of)
        sizes, large = dict(program.sizes), large_sizes(program)
        rows = [g.summary(program) for g in gradients]
        for gradient, row in zip(gradients, rows):
            found = costs.get(adjoint_name(gradient.name))
            row["cost"] = found.summary(sizes, large) if found is not None else None
        total = costs["total"].summary(sizes, large)
        if args.json:
            print(json.dumps({"derivation": program.name, "seconds": seconds, "gradients": rows,
                              "materialised": {g.name: _choice_json(g.choice) for g in chosen},
                              "cost": total, "large_sizes": {str(k): v for k, v in
                                                             large.items()},
                              "widest": widest_arrays(program, backward_of)}))
            continue
        print(f"{program.name}: {len(gradients)} gradients in {seconds:.2f} s")
        if args.steps:
            for name, rule, before, after, _ in forward_rewrites(program):
                print(f"forward {name}: {rule}: {before} -> {after}")
        for gradient in chosen:
            print(f"materialised {adjoint_name(gradient.name)}: {gradient.choice}")
        for gradient, row in zip(gradients, rows):
            print(f"{gradient.lhs} = {gradient.expr}")
            print(f"    ops {row['ops']}, reductions {row['reductions']}, steps {row['steps']}, "
                  f"uses {', '.join(row['uses'])}")
            if args.cost and row["cost"] is not None:
                print(f"    cost {row['cost']['flops']} operations, {row['cost']['bytes']} bytes")
            if args.steps:
                for step in gradient.steps:
                    print(f"    {step.rule:>15}: {step.after}")
        if args.cost:
                print(f"backward cost: {total['flops']} operations, {total['bytes']} bytes moved "
                  f"(example sizes: {total['example']['flops']:.3g} operations; large "
                  f"{', '.join(f'{k}={v}' for k, v in large.items())}: "
                  f"{total['large']['flops']:.3g} operations)")
    return 0


def _choice_json(choice) -> dict:
    return {"rule": choice.rule, "consumers": list(choice.consumers), "why": str(choice),
            "inlined": choice.inlined, "named": choice.named}


def cmd_emit(args) -> int:
    _writable_folder(Path(args.output))
    targets = TARGETS if args.target == "both" else (args.target,)
    origins = [origin_of(path) for path in args.files]  # each header can name its file
    programs = [(*load_with_files(path), origin, path)
                for path, origin in zip(args.files, origins)]
    modules: dict[Path, Module] = {}
    for position, (program, read, origin, path) in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive, emit")
        backward = derive_backward(program)
        root = find_root(Path(path).resolve().parent)
        for target in targets:
            source = module_source(program, backward, target, origin)
            modules[Path(args.output) / f"{program.name}_{target}.py"] = Module(
                program, target, stamped(source, Path(path), read, root))
    verify(list(modules.values()))  # every one runs once on the example sizes, or none is written
    for path, module in modules.items():
        write_atomically(path, module.source)
        print(path)
    return 0


def cmd_latex(args) -> int:

    programs = [load(path) for path in args.files]  # every file must load before any is written
    if args.output and len(programs) > 1:
        raise ProgramError("-o names one .tex file; give one derivation file, or leave -o out")
    for program, source in zip(programs, args.files):
        tex = Path(args.output) if args.output else Path(source).with_suffix(".tex").name
        tex = Path(tex)
        if tex.suffix != ".tex":
            raise ProgramError(f"-o {tex}: the output must end in .tex")
        write_atomically(tex, document(program, gradients=_derived(program)[1]))
        print(tex)
        if args.pdf or args.png:
            pdf = compile_pdf(tex)
            print(pdf)
            if args.png:
                for png in to_png(pdf):
                    print(png)
    return 0


def cmd_regen(args) -> int:
    if args.root is not None:
        root = Path(args.root)
    else:
        root = find_root()
        if root is None:
            raise ProgramError(f"no symderive project at or above {Path.cwd()}: no folder holds "
                               "derivations/ or a pyproject.toml with [tool.symderive]; give --root")
    modules, kept = generated_modules(root, progress=True, reuse=not (args.check or args.force))
    files = {path: item if isinstance(item, str) else item.source for path, item in modules.items()}
    folder = project_folders(root)[1]
    shown = origin_of(folder, root) + "/"  # as configured: src/pkg/generated/
    existing = set(folder.glob("*.py")) | set(folder.glob("*.tex")) if folder.is_dir() else set()
    existing = {p for p in existing if p in files or written_by_symderive(p)}  # never another's
    stale = sorted([p for p, text in files.items() if not p.is_file() or p.read_text() != text]
                   + [p for p in existing if p not in files])
    if args.check:
        for path in stale:
            print(f"stale: {path}")
        print(f"{shown}: {len(files)} files, {len(stale)} stale")
        return 1 if stale else 0
    verify([modules[path] for path in stale  # all run, or nothing is written
            if isinstance(modules.get(path), Module)])
    for path, text in files.items():
        if path in stale:
            write_atomically(path, text)
    for path in stale:
        if path not in files:
            path.unlink()
            print(f"removed: {path}")
    removed = [p for p in stale if p not in files]
    print(f"{shown}: {len(files)} files, {len(stale) - len(removed)} rewritten, "
          f"{len(removed)} removed" + (f", {kept} derivations unchanged (not run)" if kept else ""))
    return 0

