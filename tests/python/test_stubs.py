"""The type stubs (voxtral/_voxtral.pyi) describe the module as it is: the same classes,
methods, properties and parameters (with defaults) as the binary module's own signatures."""

import ast
import inspect
import re
from pathlib import Path

import voxtral
from voxtral import _voxtral

STUBS = Path(voxtral.__file__).with_name("_voxtral.pyi")


def stub_classes():
    tree = ast.parse(STUBS.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def runtime_params(method):
    """Parameter names and defaults from pybind11's signature line, e.g.
    'transcribe(self: voxtral.Model, audio: handle, *, sample_rate: Optional[int] = None, ...)'."""
    line = method.__doc__.splitlines()[0]
    inside = line[line.index("(") + 1 : line.rindex(")")]
    params = []
    for part in re.split(r", (?![^\[]*\])", inside):
        if part in ("*", ""):
            params.append(part)
            continue
        name, _, rest = part.partition(":")
        default = rest.split(" = ")[1] if " = " in rest else None
        params.append((name.strip(), default))
    return params


def stub_params(func: ast.FunctionDef):
    args = func.args
    params = [(a.arg, None) for a in args.args]
    defaults = [ast.unparse(d) for d in args.defaults]
    for i, d in enumerate(defaults):
        k = len(params) - len(defaults) + i
        params[k] = (params[k][0], d)
    if args.kwonlyargs:
        params.append("*")
        params += [(a.arg, ast.unparse(d)) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return params


def test_the_package_exports_every_public_name_of_the_module():
    public = {n for n in dir(_voxtral) if not n.startswith("_")}
    assert set(voxtral.__all__) - {"__version__"} == public
    assert set(stub_classes()) == public


def test_every_class_has_the_stubs_members():
    for name, node in stub_classes().items():
        runtime = getattr(_voxtral, name)
        stubbed = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        own = {n for n in vars(runtime) if not n.startswith("_")}  # not inherited (RuntimeError's)
        assert {n for n in stubbed if not n.startswith("_")} == own, name
        assert stubbed <= set(dir(runtime)), name


def test_the_methods_take_the_stubs_parameters_and_defaults():
    for name, node in stub_classes().items():
        runtime = getattr(_voxtral, name)
        for func in node.body:
            if not isinstance(func, ast.FunctionDef) or any(
                isinstance(d, ast.Name) and d.id == "property" for d in func.decorator_list
            ):
                continue
            method = getattr(runtime, func.name)
            if not inspect.isroutine(method) or func.name in ("__iter__", "__next__", "__enter__", "__exit__"):
                continue
            got = [p if isinstance(p, str) else (p[0], p[1]) for p in runtime_params(method)]
            want = stub_params(func)
            assert [p if isinstance(p, str) else p[0] for p in got] == [p if isinstance(p, str) else p[0] for p in want], (
                name,
                func.name,
            )
            for g, w in zip(got, want):
                if not isinstance(g, str) and w[1] is not None:
                    assert g[1].strip("'") == w[1].strip("'"), (name, func.name, g, w)


def test_the_package_is_typed():
    assert Path(voxtral.__file__).with_name("py.typed").is_file()
