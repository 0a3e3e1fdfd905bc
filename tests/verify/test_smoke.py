"""The smoke run: every module emit or regen is about to write runs once, in a child process, on
the example sizes; a failure names the statement whose emitted line failed."""
import pytest

from symderive.algebra.simplify import derive_backward
from symderive.codegen.emit import module_source
from symderive.program.ir import ProgramError
from symderive.program.load import load
from symderive.verify.smoke import EmissionError, Module, verify


def modules(root, name):
    program = load(root / "derivations" / f"{name}.py")
    backward = derive_backward(program)
    return [Module(program, target, module_source(program, backward, target))
            for target in ("numpy", "torch")]


def test_every_derivation_runs(root):
    verify([m for name in ("batchnorm", "cross_entropy", "makemore_mlp_layers")
            for m in modules(root, name)])


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_a_broken_line_names_its_statement(root, target):
    module = next(m for m in modules(root, "batchnorm") if m.target == target)
    broken = module.source.replace("bnraw = bndiff*bnvar_inv", "bnraw = bndiff*bnvar_inv[:, None]")
    assert broken != module.source
    with pytest.raises(EmissionError, match=r"forward fails .* statement 'bnraw\[i, j\] = "
                                            r"bndiff\[i, j\]\*bnvar_inv\[j\]'"):
        verify([Module(module.program, target, broken)])


def test_a_broken_function_is_reported(root):
    module = next(m for m in modules(root, "cross_entropy") if m.target == "torch")
    broken = module.source.replace("return tuple(", "return (")
    with pytest.raises(EmissionError, match="the autograd Function"):
        verify([Module(module.program, "torch", broken)])


def test_running_out_of_memory_is_the_derivation_s_problem(root):
    module = modules(root, "cross_entropy")[0]
    broken = module.source.replace('"""Every forward value', 'raise MemoryError("too big")\n    """')
    with pytest.raises(ProgramError, match="smaller example sizes"):
        verify([Module(module.program, "numpy", broken)])


def test_generated_code_cannot_print_into_the_caller(root, capfd):
    module = modules(root, "cross_entropy")[0]
    chatty = module.source.replace('"""Every forward value', 'print("hello")\n    """')
    verify([Module(module.program, "numpy", chatty)])
    assert "hello" not in capfd.readouterr().out


def test_a_broken_double_backward_is_reported(root):
    module = next(m for m in modules(root, "batchnorm") if m.target == "torch")
    broken = module.source.replace("grads = double_backward(", "grads = double_backward(None, ")
    assert broken != module.source
    with pytest.raises(EmissionError, match="the double backward fails"):
        verify([Module(module.program, "torch", broken)])
