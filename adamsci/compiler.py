r"""The model compiler: a model ``f(x, *params)`` written once, for every fitter.

A model is what ``scipy.optimize.curve_fit`` takes: ``f(x, *params)``,
vectorised over the points (the last axis of ``x``), its parameter names from
its signature (as ``xarray.DataArray.curvefit`` reads them)::

    def decay(t, amplitude, rate, offset):
        return amplitude * np.exp(-rate * t) + offset

:func:`compile_model` reads the function's source and compiles its body,
point by point, into two scalar functions -- ``value(x, p)`` and ``grad(x, p,
out)``, which returns the value and writes the exact derivatives
``df/dp_j`` into ``out`` (forward-mode automatic differentiation of the
expressions, done once when the model is compiled) -- in a module of
generated Python that :func:`adamsci.fit_batch` (CPU and CUDA), the
accessor and the compiled engine of :func:`adamsci.curve_fit` compile into
their kernels. See the "Writing a model" page of the documentation.

What compiles
-------------
The body of a ``def`` (or a ``lambda``): assignments to local names (``u, v
= x`` unpacks the coordinates of a model of several), ``+=`` and friends,
and one ``return`` at the end. Expressions of numbers, the parameters, ``x``
(or ``x[0]``, ``x[1]``, ...), locals, numeric globals (inlined as
constants), ``+ - * / **``, conditional expressions and comparisons, and the
elementwise functions of NumPy, ``math`` and ``scipy.special`` listed
in :data:`FUNCTIONS`. Anything else -- ``if``/``for`` statements, reductions
(``np.sum``, ``x.mean()``), calls of other functions, array indexing --
raises :class:`ModelCompileError` naming the construct and the line; a
vectorised model can always be written without them (``np.where`` for a
branch).

Caching
-------
The generated module is written to a file named by a digest of the model's
source, its parameter names, the values of the globals it reads and this
compiler's version (in ``$ADAMSCI_CACHE_DIR``, default ``$NUMBA_CACHE_DIR/
adamsci-models`` or ``~/.cache/adamsci/models``), and Numba caches the
kernels compiled from it on disk as for any ``cache=True`` function. Editing
the model changes the digest: a new module, compiled anew.
"""
import ast
import hashlib
import importlib.util
import inspect
import linecache
import math
import numbers
import os
import sys
import textwrap
import threading
import types
import weakref

import numpy as np

__all__ = ["compile_model", "CompiledModel", "ModelCompileError",
           "FUNCTIONS", "import_generated"]

#: Bumped whenever the generated code changes (part of the digest).
VERSION = "3"


def _kernels_digest():
    """A digest of the source of the adamsci kernels the generated modules
    compile into themselves (Numba's disk cache checks only the file of the
    function it caches: without this, a cached model would keep the code
    of an older adamsci)."""
    h = hashlib.sha1()
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.join(here, "kernels")):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


_KERNELS = _kernels_digest()


class ModelCompileError(TypeError):
    """A model the compiler cannot take: the message names the construct,
    the line of the model's source and what to do instead."""


# ---------------------------------------------------------------------------
# the functions a model may call: name -> (number of arguments, derivative)
# ---------------------------------------------------------------------------
# Each derivative rule returns, for the call's value ``v`` (a temporary of
# the generated code) and its arguments ``a`` (expressions), the partial
# derivative with respect to each argument as an expression string (None:
# zero). The generated code computes them once per point.
def _d_exp(v, a):
    return [v]


def _d_log(v, a):
    return [f"1.0 / {a[0]}"]


FUNCTIONS = {
    # name: (math expression template, arity, partial derivatives)
    "exp": ("math.exp({0})", 1, _d_exp),
    "expm1": ("math.expm1({0})", 1, lambda v, a: [f"({v} + 1.0)"]),
    "exp2": ("2.0 ** {0}", 1, lambda v, a: [f"({v} * 0.6931471805599453)"]),
    "log": ("math.log({0})", 1, _d_log),
    "log10": ("math.log10({0})", 1,
              lambda v, a: [f"0.4342944819032518 / {a[0]}"]),
    "log2": ("math.log2({0})", 1,
             lambda v, a: [f"1.4426950408889634 / {a[0]}"]),
    "log1p": ("math.log1p({0})", 1, lambda v, a: [f"1.0 / (1.0 + {a[0]})"]),
    "sqrt": ("math.sqrt({0})", 1, lambda v, a: [f"0.5 / {v}"]),
    "cbrt": ("math.copysign(abs({0}) ** (1.0 / 3.0), {0})", 1,
             lambda v, a: [f"1.0 / (3.0 * {v} * {v})"]),
    "sin": ("math.sin({0})", 1, lambda v, a: [f"math.cos({a[0]})"]),
    "cos": ("math.cos({0})", 1, lambda v, a: [f"-math.sin({a[0]})"]),
    "tan": ("math.tan({0})", 1, lambda v, a: [f"(1.0 + {v} * {v})"]),
    "arcsin": ("math.asin({0})", 1,
               lambda v, a: [f"1.0 / math.sqrt(1.0 - {a[0]} * {a[0]})"]),
    "arccos": ("math.acos({0})", 1,
               lambda v, a: [f"-1.0 / math.sqrt(1.0 - {a[0]} * {a[0]})"]),
    "arctan": ("math.atan({0})", 1,
               lambda v, a: [f"1.0 / (1.0 + {a[0]} * {a[0]})"]),
    "sinh": ("math.sinh({0})", 1, lambda v, a: [f"math.cosh({a[0]})"]),
    "cosh": ("math.cosh({0})", 1, lambda v, a: [f"math.sinh({a[0]})"]),
    "tanh": ("math.tanh({0})", 1, lambda v, a: [f"(1.0 - {v} * {v})"]),
    "arcsinh": ("math.asinh({0})", 1,
                lambda v, a: [f"1.0 / math.sqrt({a[0]} * {a[0]} + 1.0)"]),
    "arccosh": ("math.acosh({0})", 1,
                lambda v, a: [f"1.0 / math.sqrt({a[0]} * {a[0]} - 1.0)"]),
    "arctanh": ("math.atanh({0})", 1,
                lambda v, a: [f"1.0 / (1.0 - {a[0]} * {a[0]})"]),
    "abs": ("abs({0})", 1, lambda v, a: [f"math.copysign(1.0, {a[0]})"]),
    "square": ("({0} * {0})", 1, lambda v, a: [f"2.0 * {a[0]}"]),
    "reciprocal": ("(1.0 / {0})", 1, lambda v, a: [f"-{v} * {v}"]),
    "erf": ("math.erf({0})", 1,
            lambda v, a: [f"1.1283791670955126 * math.exp(-{a[0]} * {a[0]})"]),
    "erfc": ("math.erfc({0})", 1,
             lambda v, a: [f"-1.1283791670955126 * math.exp(-{a[0]} * "
                           f"{a[0]})"]),
    "sign": ("math.copysign(1.0, {0}) if {0} != 0.0 else 0.0", 1,
             lambda v, a: [None]),
    "floor": ("math.floor({0})", 1, lambda v, a: [None]),
    "ceil": ("math.ceil({0})", 1, lambda v, a: [None]),
    "arctan2": ("math.atan2({0}, {1})", 2,
                lambda v, a: [f"{a[1]} / ({a[0]} * {a[0]} + {a[1]} * {a[1]})",
                              f"-{a[0]} / ({a[0]} * {a[0]} + {a[1]} * "
                              f"{a[1]})"]),
    "hypot": ("math.hypot({0}, {1})", 2,
              lambda v, a: [f"{a[0]} / {v}", f"{a[1]} / {v}"]),
    "power": None,      # a ** b, below
    "minimum": None,    # select, below
    "maximum": None,
    "where": None,
}
# the names of the same functions in math and scipy.special, and aliases
_ALIASES = {"absolute": "abs", "fabs": "abs", "asin": "arcsin",
            "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
            "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh",
            "pow": "power", "fmin": "minimum", "fmax": "maximum"}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MODULES = ("numpy", "math", "scipy.special", "cmath")


def _canonical(name):
    name = _ALIASES.get(name, name)
    return name if name in FUNCTIONS else None


# ---------------------------------------------------------------------------
# reading the model's source
# ---------------------------------------------------------------------------
def _source_tree(func):
    """``(node, filename, lines)``: the ``FunctionDef`` or ``Lambda`` node of
    ``func`` in its file (a notebook cell counts), parsed whole."""
    code = func.__code__
    filename = code.co_filename
    lines = linecache.getlines(filename, func.__globals__)
    if not lines:
        try:
            src = inspect.getsource(func)
        except (OSError, TypeError) as exc:
            raise ModelCompileError(
                f"the source of model {func.__name__!r} cannot be read "
                f"({exc}); define it in a file or a notebook cell") from None
        lines = [""] * (code.co_firstlineno - 1) + \
            textwrap.dedent(src).splitlines(True)
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        ast.increment_lineno(tree, code.co_firstlineno - 1)
    argnames = list(code.co_varnames[:code.co_argcount +
                                     code.co_kwonlyargcount])
    if code.co_flags & inspect.CO_VARARGS:
        argnames.append(code.co_varnames[len(argnames)])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            first = min([node.lineno] + [d.lineno for d in getattr(
                node, "decorator_list", [])])
            if code.co_firstlineno not in (node.lineno, first):
                continue
            if isinstance(node, ast.FunctionDef) and \
                    node.name != func.__name__:
                continue
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            if a.vararg:
                names.append(a.vararg.arg)
            if names == argnames:
                found.append(node)
    if len(found) != 1:
        raise ModelCompileError(
            f"the source of model {func.__name__!r} could not be found "
            f"unambiguously in {filename} (line {code.co_firstlineno}); "
            f"define it with def")
    return found[0], filename, lines


# ---------------------------------------------------------------------------
# the compiler proper: expressions -> temporaries with their derivatives
# ---------------------------------------------------------------------------
class _Value:
    """An expression of the generated code and its partial derivatives with
    respect to the parameters (``{j: expression}``; absent: zero)."""

    __slots__ = ("expr", "d", "const")

    def __init__(self, expr, d=None, const=None):
        self.expr = expr
        self.d = d or {}
        self.const = const


def _mul(a, b):
    """The product of two expression strings (None: zero, "1.0": one)."""
    if a is None or b is None:
        return None
    if a == "1.0":
        return b
    if b == "1.0":
        return a
    return f"({a}) * ({b})"


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return f"{a} + {b}"


def _neg(a):
    return None if a is None else f"-({a})"


class _Compiler:
    def __init__(self, func, node, filename, param_names):
        self.func = func
        self.node = node
        self.filename = filename
        self.where = f"{os.path.basename(filename)}"
        code = func.__code__
        self.globals = dict(func.__globals__)
        if code.co_freevars:
            for name, cell in zip(code.co_freevars, func.__closure__ or ()):
                try:
                    self.globals[name] = cell.cell_contents
                except ValueError:
                    pass
        a = node.args
        positional = [x.arg for x in a.posonlyargs + a.args]
        if not positional:
            self.fail(node, "a model takes the independent variable x as "
                            "its first argument")
        self.x_name = positional[0]
        self.vararg = a.vararg.arg if a.vararg else None
        names = positional[1:]
        if self.vararg is not None:
            if param_names is None:
                raise ModelCompileError(
                    f"model {func.__name__!r} takes *{self.vararg}: "
                    f"param_names must be given (its number of parameters "
                    f"cannot be read from the signature)")
            names = list(param_names)
            if positional[1:]:
                self.fail(node, "mix of named parameters and *args")
        elif param_names is not None and list(param_names) != names:
            if len(param_names) != len(names):
                raise ModelCompileError(
                    f"param_names {tuple(param_names)} has "
                    f"{len(param_names)} names; model {func.__name__!r} "
                    f"has {len(names)} parameters {tuple(names)}")
        if not names:
            raise ModelCompileError(
                f"model {func.__name__!r} has no parameters: f(x, p1, p2, "
                f"...) takes them after x")
        self.names = names if param_names is None else list(param_names)
        self.n = len(self.names)
        self.args = positional[1:]
        self.lines = []          # generated statements (value and grad)
        self.vlines = []         # generated statements (value only)
        self.env = {}            # local name -> _Value
        self.count = 0
        self.xdim = None         # None unknown, 0 scalar x, k coordinates
        self.used_globals = {}

    # -- errors ---------------------------------------------------------
    def fail(self, node, what):
        line = getattr(node, "lineno", self.node.lineno)
        text = linecache.getline(self.filename, line).strip()
        raise ModelCompileError(
            f"model {self.func.__name__!r} ({self.where}, line {line}: "
            f"{text!r}): {what}. The model compiler takes elementwise "
            f"expressions (see adamsci.compiler); pass jac=... or write the "
            f"construct another way.")

    # -- temporaries ----------------------------------------------------
    def temp(self, expr, d):
        """A new temporary ``t<k> = expr`` and its derivatives."""
        k = self.count
        self.count += 1
        name = f"t{k}"
        self.lines.append(f"{name} = {expr}")
        self.vlines.append(f"{name} = {expr}")
        dd = {}
        for j, e in sorted(d.items()):
            if e is None:
                continue
            dn = f"d{k}_{j}"
            self.lines.append(f"{dn} = {e}")
            dd[j] = dn
        return _Value(name, dd)

    # -- the body -------------------------------------------------------
    def body(self):
        node = self.node
        if isinstance(node, ast.Lambda):
            return self.expr(node.body)
        stmts = list(node.body)
        if stmts and isinstance(stmts[0], ast.Expr) and isinstance(
                stmts[0].value, ast.Constant) and isinstance(
                stmts[0].value.value, str):
            stmts = stmts[1:]          # the docstring
        result = None
        for i, st in enumerate(stmts):
            if isinstance(st, ast.Return):
                if i != len(stmts) - 1:
                    self.fail(st, "a return before the end of the body")
                if st.value is None:
                    self.fail(st, "a model must return its value")
                result = self.expr(st.value)
            elif isinstance(st, ast.Assign):
                value = st.value
                for target in st.targets:
                    self.assign(target, value, st)
            elif isinstance(st, ast.AnnAssign) and st.value is not None:
                self.assign(st.target, st.value, st)
            elif isinstance(st, ast.AugAssign):
                if not isinstance(st.target, ast.Name):
                    self.fail(st, "augmented assignment to something other "
                                  "than a name")
                binop = ast.BinOp(left=ast.Name(id=st.target.id,
                                                ctx=ast.Load()),
                                  op=st.op, right=st.value)
                ast.copy_location(binop, st)
                self.env[st.target.id] = self.expr(binop)
            elif isinstance(st, ast.Pass):
                continue
            else:
                kind = type(st).__name__.lower()
                kind = {"if": "an 'if' statement (use np.where)",
                        "for": "a 'for' loop", "while": "a 'while' loop",
                        "expr": "an expression statement",
                        "functiondef": "a nested function",
                        "import": "an import", "importfrom": "an import",
                        "with": "a 'with' block", "try": "a 'try' block",
                        }.get(kind, f"a {type(st).__name__} statement")
                self.fail(st, f"{kind} is not supported")
        if result is None:
            self.fail(node, "the model has no return statement")
        return result

    def assign(self, target, value, st):
        if isinstance(target, ast.Name):
            self.env[target.id] = self.expr(value)
            return
        if isinstance(target, (ast.Tuple, ast.List)) and all(
                isinstance(e, ast.Name) for e in target.elts):
            # u, v = x: the coordinates of the point; a, b = (e1, e2)
            if isinstance(value, ast.Name) and value.id == self.x_name:
                self.use_coordinates(len(target.elts), st)
                for c, e in enumerate(target.elts):
                    self.env[e.id] = _Value(f"x[{c}]")
                return
            if isinstance(value, (ast.Tuple, ast.List)) and len(
                    value.elts) == len(target.elts):
                vals = [self.expr(v) for v in value.elts]
                for e, v in zip(target.elts, vals):
                    self.env[e.id] = v
                return
        self.fail(st, "this assignment (only names, 'u, v = x' and tuples "
                      "of the same length can be assigned)")

    def use_coordinates(self, k, node):
        if self.xdim == 0:
            self.fail(node, f"{self.x_name} is used both as one coordinate "
                            f"and as several")
        self.xdim = max(self.xdim or 0, k)

    # -- expressions ----------------------------------------------------
    def expr(self, node):
        method = getattr(self, "e_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"the expression {ast.unparse(node)!r} "
                            f"({type(node).__name__}) is not supported")
        return method(node)

    def e_Constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            self.fail(node, f"the constant {v!r} is not a real number")
        return _Value(repr(float(v)), const=float(v))

    def e_Name(self, node):
        name = node.id
        if name in self.env:
            return self.env[name]
        if name == self.x_name:
            if self.xdim not in (None, 0):
                self.fail(node, f"{name} is used both as one coordinate and "
                                f"as several")
            self.xdim = 0
            return _Value("x")
        if name in self.args:
            j = self.args.index(name)
            return _Value(f"p{j}", {j: "1.0"})
        return self.global_value(node, name)

    def global_value(self, node, name):
        if name not in self.globals:
            if name in ("abs",):
                self.fail(node, f"{name} used as a value")
            self.fail(node, f"the name {name!r} is not defined")
        v = self.globals[name]
        if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (numbers.Real, np.floating, np.integer)):
            self.fail(node, f"the global {name!r} ({type(v).__name__}) is "
                            f"not a number; only numeric globals are "
                            f"inlined")
        self.used_globals[name] = float(v)
        return _Value(repr(float(v)), const=float(v))

    def e_Attribute(self, node):
        mod = self.module_of(node.value)
        if mod is not None and node.attr in _CONSTANTS:
            v = _CONSTANTS[node.attr]
            return _Value(repr(v), const=v)
        self.fail(node, f"the attribute {ast.unparse(node)!r}")

    def module_of(self, node):
        """The name of the module ``node`` refers to (numpy, math, ...), or
        None."""
        if isinstance(node, ast.Name) and node.id not in self.env:
            v = self.globals.get(node.id)
            if isinstance(v, types.ModuleType) and v.__name__ in _MODULES:
                return v.__name__
        if isinstance(node, ast.Attribute):
            parent = self.module_of(node.value)
            if parent == "scipy" or (parent is None and isinstance(
                    node.value, ast.Name) and getattr(self.globals.get(
                        node.value.id), "__name__", "") == "scipy"):
                return "scipy." + node.attr
        return None

    def e_Subscript(self, node):
        if isinstance(node.value, ast.Name) and node.value.id == self.x_name \
                and node.value.id not in self.env:
            index = node.slice
            if isinstance(index, ast.Constant) and isinstance(
                    index.value, int) and index.value >= 0:
                self.use_coordinates(index.value + 1, node)
                return _Value(f"x[{index.value}]")
            self.fail(node, f"{self.x_name} indexed by "
                            f"{ast.unparse(index)!r} (only x[0], x[1], ... "
                            f"pick a coordinate)")
        if isinstance(node.value, ast.Name) and \
                node.value.id == self.vararg:
            index = node.slice
            if isinstance(index, ast.Constant) and isinstance(
                    index.value, int) and 0 <= index.value < self.n:
                j = index.value
                return _Value(f"p{j}", {j: "1.0"})
            self.fail(node, f"{self.vararg} indexed by "
                            f"{ast.unparse(index)!r} (a constant in "
                            f"0..{self.n - 1} is needed)")
        self.fail(node, f"indexing {ast.unparse(node)!r} (arrays other "
                        f"than x's coordinates are not supported)")

    def e_UnaryOp(self, node):
        a = self.expr(node.operand)
        if isinstance(node.op, ast.UAdd):
            return a
        if isinstance(node.op, ast.USub):
            if a.const is not None:
                return _Value(repr(-a.const), const=-a.const)
            return self.temp(f"-{a.expr}", {j: _neg(e)
                                            for j, e in a.d.items()})
        if isinstance(node.op, ast.Not):
            return self.temp(f"not ({a.expr})", {})
        self.fail(node, f"the operator {type(node.op).__name__}")

    def e_BinOp(self, node):
        a = self.expr(node.left)
        b = self.expr(node.right)
        op = node.op
        if a.const is not None and b.const is not None:
            try:
                v = float(eval(f"({a.const!r}) {_OPS[type(op)]} "
                               f"({b.const!r})"))
                return _Value(repr(v), const=v)
            except (KeyError, ZeroDivisionError, OverflowError):
                pass
        if isinstance(op, ast.Add):
            keys = set(a.d) | set(b.d)
            return self.temp(f"{a.expr} + {b.expr}",
                             {j: _add(a.d.get(j), b.d.get(j)) for j in keys})
        if isinstance(op, ast.Sub):
            keys = set(a.d) | set(b.d)
            return self.temp(f"{a.expr} - {b.expr}", {
                j: _add(a.d.get(j), _neg(b.d.get(j))) for j in keys})
        if isinstance(op, ast.Mult):
            keys = set(a.d) | set(b.d)
            return self.temp(f"{a.expr} * {b.expr}", {
                j: _add(_mul(a.d.get(j), b.expr), _mul(a.expr, b.d.get(j)))
                for j in keys})
        if isinstance(op, ast.Div):
            if b.const is not None:     # a / c
                return self.temp(f"{a.expr} / {b.expr}", {
                    j: f"({e}) / {b.expr}" for j, e in a.d.items()})
            # one division: a * (1 / b). When b depends on the parameters
            # only (a width, a lifetime), LLVM computes 1 / b once per
            # evaluation instead of at every point.
            r = self.temp(f"1.0 / {b.expr}", {})
            v = self.temp(f"{a.expr} * {r.expr}", {})
            for j in sorted(set(a.d) | set(b.d)):
                num = _add(a.d.get(j), _neg(_mul(v.expr, b.d.get(j))))
                dn = f"d{v.expr[1:]}_{j}"
                self.lines.append(f"{dn} = ({num}) * {r.expr}")
                v.d[j] = dn
            return v
        if isinstance(op, ast.Pow):
            return self.power(node, a, b)
        self.fail(node, f"the operator {type(op).__name__} "
                        f"({ast.unparse(node)!r})")

    def power(self, node, a, b):
        if b.const is not None:
            c = b.const
            if c == 2.0:
                return self.temp(f"{a.expr} * {a.expr}", {
                    j: f"2.0 * {a.expr} * ({e})" for j, e in a.d.items()})
            if c == 1.0:
                return a
            if c == 0.5:
                return self.call_function(node, "sqrt", [a])
            return self.temp(f"{a.expr} ** {c!r}", {
                j: f"{c!r} * {a.expr} ** {c - 1.0!r} * ({e})"
                for j, e in a.d.items()})
        v = self.temp(f"{a.expr} ** {b.expr}", {})
        v.d = {}
        for j in sorted(set(a.d) | set(b.d)):
            parts = []
            if j in a.d:
                parts.append(f"{b.expr} * {a.expr} ** ({b.expr} - 1.0) * "
                             f"({a.d[j]})")
            if j in b.d:
                parts.append(f"{v.expr} * math.log({a.expr}) * ({b.d[j]})")
            dn = f"d{v.expr[1:]}_{j}"
            self.lines.append(f"{dn} = {' + '.join(parts)}")
            v.d[j] = dn
        return v

    def e_Compare(self, node):
        parts = []
        left = self.expr(node.left)
        for op, right in zip(node.ops, node.comparators):
            r = self.expr(right)
            if type(op) not in _CMP:
                self.fail(node, f"the comparison {type(op).__name__}")
            parts.append(f"({left.expr} {_CMP[type(op)]} {r.expr})")
            left = r
        return self.temp(" and ".join(parts), {})

    def e_BoolOp(self, node):
        vals = [self.expr(v) for v in node.values]
        op = " and " if isinstance(node.op, ast.And) else " or "
        return self.temp(op.join(f"({v.expr})" for v in vals), {})

    def e_IfExp(self, node):
        return self.select(self.expr(node.test), self.expr(node.body),
                           self.expr(node.orelse))

    def select(self, c, a, b):
        keys = set(a.d) | set(b.d)
        return self.temp(f"{a.expr} if {c.expr} else {b.expr}", {
            j: f"{a.d.get(j) or '0.0'} if {c.expr} else "
               f"{b.d.get(j) or '0.0'}" for j in keys})

    def e_Call(self, node):
        name = None
        f = node.func
        if isinstance(f, ast.Attribute) and self.module_of(f.value):
            name = _canonical(f.attr)
            label = ast.unparse(f)
        elif isinstance(f, ast.Name) and f.id not in self.env:
            label = f.id
            g = self.globals.get(f.id)
            if f.id in ("abs", "min", "max", "pow", "float") and g is None:
                name = {"min": "minimum", "max": "maximum",
                        "float": "float"}.get(f.id, _canonical(f.id))
            elif g is not None and getattr(g, "__module__", None) in (
                    "numpy", "math", "scipy.special", None) and \
                    getattr(g, "__name__", None):
                name = _canonical(g.__name__)
        else:
            label = ast.unparse(f)
        if name is None:
            self.fail(node, f"the call of {label} (not an elementwise "
                            f"function the compiler knows: see "
                            f"adamsci.compiler.FUNCTIONS)")
        if node.keywords:
            self.fail(node, f"keyword arguments of {label}")
        args = [self.expr(a) for a in node.args]
        if name == "float":
            if len(args) != 1:
                self.fail(node, "float() of one argument")
            return args[0]
        return self.call_function(node, name, args)

    def call_function(self, node, name, args):
        if name == "power":
            if len(args) != 2:
                self.fail(node, "power of two arguments")
            return self.power(node, args[0], args[1])
        if name in ("minimum", "maximum"):
            if len(args) != 2:
                self.fail(node, f"{name} of two arguments")
            cmp = "<=" if name == "minimum" else ">="
            c = self.temp(f"{args[0].expr} {cmp} {args[1].expr}", {})
            return self.select(c, args[0], args[1])
        if name == "where":
            if len(args) != 3:
                self.fail(node, "np.where of three arguments")
            return self.select(*args)
        template, arity, rule = FUNCTIONS[name]
        if len(args) != arity:
            self.fail(node, f"{name} takes {arity} argument(s)")
        exprs = [a.expr for a in args]
        if all(a.const is not None for a in args):
            v = float(eval(template.format(*exprs), {"math": math}))
            return _Value(repr(v), const=v)
        v = self.temp(template.format(*exprs), {})
        partials = rule(v.expr, exprs)
        v.d = {}
        for j in sorted(set().union(*(a.d for a in args))):
            total = None
            for a, pa in zip(args, partials):
                total = _add(total, _mul(pa, a.d.get(j)))
            if total is None:
                continue
            dn = f"d{v.expr[1:]}_{j}"
            self.lines.append(f"{dn} = {total}")
            v.d[j] = dn
        return v


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
        ast.Pow: "**"}
_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.Eq: "==", ast.NotEq: "!="}


# ---------------------------------------------------------------------------
# the generated module
# ---------------------------------------------------------------------------
_TEMPLATE = '''"""Generated by adamsci.compiler {version} from model {name!r}
({origin}). Do not edit: the file is rewritten when the model changes."""
# adamsci kernels {kernels}
import math

import numpy as np
from numba import njit

from adamsci.kernels import fitloop, stream

NAME = {name!r}
PARAM_NAMES = {param_names!r}
N = {n}                 # parameters
NN = {nn}
XDIM = {xdim}              # coordinates of a point (0: x is a number)
JIT = dict(nogil=True, error_model="numpy")


@njit(inline="always", **JIT)
def point(X, ix, k):
    """The coordinates of point ``k`` of fit ``ix`` (``X[ix, :, k]``)."""
    return {point}


@njit(inline="always", **JIT)
def value(x, p):
    """The model at one point ``x`` for the parameters ``p``."""
{unpack}{value_body}
    return {result}


@njit(inline="always", **JIT)
def grad(x, p, out):
    """The model at ``x``; ``out[j] = df/dp_j`` (exact derivatives)."""
{unpack}{grad_body}
{outputs}
    return {result}


@njit(inline="always", **JIT)
def chi2_pass(X, Y, W, i, ix, iw, p, out, g, A, want_a):
    """``chi2`` of fit ``i`` at ``p``; ``g = -J^T W r`` and, when ``want_a``,
    ``A = J^T W J`` (row-major). Points of weight 0 are skipped (``out``:
    work space of the generic pass, for models of many parameters)."""
{chi2_body}


@njit(cache=True, **JIT)
def fit_cpu(X, Y, W, P0, LO, HI, XS, method, settings, P, COV, CHI2, NIT,
            STATUS, lo, hi):
    """Fits ``lo:hi`` (see :mod:`adamsci.kernels.fitloop`)."""
    work = fitloop.cpu_work(N, NN, P0.dtype)
    for i in range(lo, hi):
        fitloop.fit_one(chi2_pass, i, X, Y, W, P0, LO, HI, XS, method,
                        settings, P, COV, CHI2, NIT, STATUS, work)


@njit(cache=True, **JIT)
def data_pass(X, Y, W, p, lo, hi, loss, f_scale, omit, g, A):
    """curve_fit's pass over points ``lo:hi``: adds the gradient to ``g``
    and the Gauss-Newton matrix to ``A``; returns ``(cost, points
    counted)`` (see :func:`adamsci.kernels.stream.data_pass`)."""
{pass_body}


@njit(cache=True, **JIT)
def minibatch(p, X, Y, W, sampler, batch, loss, f_scale, omit, shuffle,
              total):
    """curve_fit's minibatch objective: ``(f, g)`` of the next ``batch``
    points, scaled by ``total / batch`` (see
    :func:`adamsci.kernels.stream.minibatch`)."""
{minibatch_body}
'''

#: Above this many parameters the generated chi2_pass accumulates into
#: arrays (the generic loop) rather than one local per sum (n (n + 3) / 2
#: of them).
UNROLL_MAX = 12


def _chi2_body(c, result, point):
    """The model's chi2 pass: the per-point code of ``grad`` with one local
    accumulator per entry of ``g`` and of the lower triangle of ``A`` (in
    registers: the sums over points are the fits' hot loop)."""
    n = c.n
    if n > UNROLL_MAX:
        return ("    return fitloop.chi2_pass(grad, point, X, Y, W, i, ix, "
                "iw, p, out, g, A, want_a)")
    d = [result.d.get(j, "0.0") for j in range(n)]
    lines = [f"p{j} = p[{j}]" for j in range(n)]
    lines.append("chi2 = 0.0")
    lines += [f"g{j} = 0.0" for j in range(n)]
    lines += [f"a{j}_{m} = 0.0" for j in range(n) for m in range(j + 1)]
    lines.append("for k in range(Y.shape[1]):")
    lines.append("    w = W[iw, k]")
    lines.append("    if w > 0.0:")
    body = [f"x = {point}"] + c.lines + [
        f"r = Y[i, k] - {result.expr}", "wr = w * r", "chi2 += wr * r"]
    body += [f"g{j} -= wr * {d[j]}" for j in range(n)]
    body.append("if want_a:")
    body += [f"    a{j}_{m} += w * {d[j]} * {d[m]}" for j in range(n)
             for m in range(j + 1)]
    lines += [f"        {ln}" for ln in body]
    lines += [f"g[{j}] = g{j}" for j in range(n)]
    lines.append("if want_a:")
    for j in range(n):
        for m in range(n):
            lines.append(f"    A[{j * n + m}] = a{max(j, m)}_{min(j, m)}")
    lines.append("return chi2")
    return _indent(lines).rstrip("\n")


def _loss_sums(c, result, point, rows, want_a):
    """The loop of curve_fit's kernels over the points ``rows`` yields:
    the model's per-point code, its loss (:func:`adamsci.kernels.stream.
    loss_terms`) and one local per sum -- ``cost``, ``count``, ``g{j}`` and,
    with ``want_a``, ``a{j}_{m}`` (the lower triangle of ``A``)."""
    n = c.n
    d = [result.d.get(j, "0.0") for j in range(n)]
    lines = [f"p{j} = p[{j}]" for j in range(n)]
    lines += ["ix = 0", "weighted = W.size > 0", "cost = 0.0", "count = 0"]
    lines += [f"g{j} = 0.0" for j in range(n)]
    if want_a:
        lines += [f"a{j}_{m} = 0.0" for j in range(n) for m in range(j + 1)]
    lines.append(f"for k in {rows}:")
    body = [f"x = {point}"] + c.lines + [
        f"f = {result.expr}", "y = Y[k]",
        "if omit and not (f - f == 0.0 and y - y == 0.0):", "    continue",
        "w = W[k] if weighted else 1.0",
        "lc, ldf, lw = stream.loss_terms(f, y, w, loss, f_scale)",
        "cost += lc", "count += 1"]
    body += [f"dp{j} = {d[j]}" for j in range(n)]
    body += [f"g{j} += ldf * dp{j}" for j in range(n)]
    if want_a:
        body += [f"a{j}_{m} += lw * dp{j} * dp{m}" for j in range(n)
                 for m in range(j + 1)]
    return lines + [f"    {ln}" for ln in body]


def _pass_body(c, result, point):
    """curve_fit's pass: :func:`adamsci.kernels.stream.data_pass` with the
    model's per-point code and one local per sum, as in :func:`_chi2_body`
    (the generic pass for models of many parameters)."""
    n = c.n
    if n > UNROLL_MAX:
        return ("    return stream.data_pass(grad, point, X, Y, W, p, lo, "
                "hi, loss, f_scale, omit, g, A)")
    lines = _loss_sums(c, result, point, "range(lo, hi)", True)
    lines += [f"g[{j}] += g{j}" for j in range(n)]
    lines += [f"A[{j}, {m}] += a{max(j, m)}_{min(j, m)}" for j in range(n)
              for m in range(n)]
    lines.append("return cost, count")
    return _indent(lines).rstrip("\n")


def _minibatch_body(c, result, point):
    """curve_fit's minibatch objective: :func:`adamsci.kernels.stream.
    minibatch` with the model's per-point code, as :func:`_pass_body`."""
    n = c.n
    if n > UNROLL_MAX:
        return ("    return stream.minibatch(grad, point, p, X, Y, W, "
                "sampler, batch, loss, f_scale, omit, shuffle, total)")
    lines = ["rows = np.empty(batch, np.int64)",
             "stream.batch_points(sampler, Y.size, batch, shuffle, rows)"]
    lines += _loss_sums(c, result, point, "rows", False)
    lines += ["scale = total / max(count, 1)", f"g = np.empty({n})"]
    lines += [f"g[{j}] = g{j} * scale" for j in range(n)]
    lines.append("return cost * scale, g")
    return _indent(lines).rstrip("\n")


def _indent(lines):
    return "".join(f"    {ln}\n" for ln in lines)


def _origin(func):
    code = func.__code__
    return f"{code.co_filename}, line {code.co_firstlineno}"


def _generate(func, param_names):
    node, filename, _ = _source_tree(func)
    c = _Compiler(func, node, filename, param_names)
    result = c.body()
    if c.xdim is None:
        c.xdim = 0          # x unused: one coordinate
    n = c.n
    unpack = _indent([f"p{j} = p[{j}]" for j in range(n)])
    outputs = _indent([f"out[{j}] = {result.d.get(j, '0.0')}"
                       for j in range(n)])
    if c.xdim == 0:
        point = "X[ix, 0, k]"
    else:
        point = "(" + ", ".join(f"X[ix, {d}, k]" for d in range(c.xdim)) + \
            ",)"
    text = _TEMPLATE.format(
        version=VERSION, kernels=_KERNELS, name=func.__name__,
        origin=_origin(func),
        param_names=tuple(c.names), n=n, nn=n * n, xdim=c.xdim,
        point=point,
        unpack=unpack, value_body=_indent(c.vlines),
        grad_body=_indent(c.lines), outputs=outputs.rstrip("\n"),
        result=result.expr, chi2_body=_chi2_body(c, result, point),
        pass_body=_pass_body(c, result, point),
        minibatch_body=_minibatch_body(c, result, point))
    return text, c


def _cache_dir():
    d = os.environ.get("ADAMSCI_CACHE_DIR")
    if not d:
        base = os.environ.get("NUMBA_CACHE_DIR")
        if base:
            d = os.path.join(base, "adamsci-models")
        else:
            d = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                             os.path.join(os.path.expanduser("~"), ".cache"),
                             "adamsci", "models")
    return d


def import_generated(text, digest):
    """Write ``text`` to the models' cache folder (once) and import it.

    Parameters
    ----------
    text : str
        The source of a generated module (``CompiledModel.source``).
    digest : str
        A short hash of ``text`` (16 hex digits of its SHA-1): names the
        module ``adamsci_model_<digest>`` and its file in the cache folder
        (``$ADAMSCI_CACHE_DIR``, else ``adamsci-models`` under
        ``$NUMBA_CACHE_DIR``, else ``~/.cache/adamsci/models``). A module
        of that name already imported in this process is returned as is;
        a file that differs from ``text`` is replaced atomically.

    Returns
    -------
    module
        The imported module (also in ``sys.modules``).
    """
    name = f"adamsci_model_{digest}"
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    folder = _cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".py")
    try:
        with open(path) as f:
            same = f.read() == text
    except OSError:
        same = False
    if not same:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)       # atomic: concurrent writers agree
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class CompiledModel:
    """A model compiled by :func:`compile_model`.

    Made by :func:`compile_model` (which memoises it per function); not
    meant to be built by hand.

    Parameters
    ----------
    func : callable
        The user's ``f(x, *params)``.
    text : str
        The generated module's source (becomes ``source``).
    compiler : object
        The private code generator that produced ``text``; its parameter
        names, number of parameters, ``xdim`` and the global constants
        the model read are copied from it.
    digest : str
        A short hash of ``text``: the generated module's name and cache
        file (see :func:`import_generated`).

    Attributes
    ----------
    func : callable
        The user's ``f(x, *params)``.
    name : str
        ``func.__name__``.
    param_names : tuple of str
        The parameters' names, in the order ``func`` takes them (or as
        ``param_names`` of :func:`compile_model` gave them).
    n_params : int
        ``len(param_names)``.
    xdim : int
        Coordinates of a point: 0 when ``x`` is one coordinate (data of
        shape ``(M,)``), ``k`` when the model reads ``x[0] ... x[k-1]``
        (data of shape ``(k, M)``).
    source : str
        The generated module (per-point ``value`` and ``grad``, and the CPU
        driver of :func:`adamsci.fit_batch`).
    module : module
        That module, imported.
    digest : str
        16 hex digits of the SHA-1 of ``source``.
    constants : dict
        Global (or closure) names the model read, with the float values
        frozen into the generated code at compile time.
    """

    def __init__(self, func, text, compiler, digest):
        self.func = func
        self.name = func.__name__
        self.param_names = tuple(compiler.names)
        self.n_params = compiler.n
        self.xdim = compiler.xdim
        self.source = text
        self.digest = digest
        self.constants = dict(compiler.used_globals)
        self.module = import_generated(text, digest)

    def __repr__(self):
        return (f"CompiledModel({self.name!r}, param_names="
                f"{self.param_names!r}, xdim={self.xdim})")


_LOCK = threading.RLock()
_MEMO = weakref.WeakKeyDictionary()


def compile_model(func, param_names=None):
    """Compile the model ``func(x, *params)`` (once per function: memoised).

    Parameters
    ----------
    func : callable
        A Python function (``def`` or ``lambda``; a Numba dispatcher's
        ``py_func`` is used) whose body is elementwise (see the module
        docs).
    param_names : sequence of str, optional
        Needed when ``func`` takes ``*params``; otherwise, when given, must
        have one name per parameter (they rename them).

    Returns
    -------
    CompiledModel

    Raises
    ------
    ModelCompileError
        The body uses a construct the compiler does not take; the message
        names it and its line.

    Examples
    --------
    >>> import numpy as np
    >>> from adamsci.compiler import compile_model
    >>> def decay(t, amplitude, rate):
    ...     return amplitude * np.exp(-rate * t)
    >>> m = compile_model(decay)
    >>> m.param_names, m.xdim
    (('amplitude', 'rate'), 0)
    >>> out = np.empty(2)
    >>> p = np.array([2.0, 0.5])
    >>> f = m.module.grad(1.0, p, out)     # value and exact derivatives
    >>> bool(np.isclose(f, 2 * np.exp(-0.5))), out.round(4).tolist()
    (True, [0.6065, -1.2131])
    """
    func = getattr(func, "py_func", func)
    if not callable(func) or not hasattr(func, "__code__"):
        raise ModelCompileError(f"a model must be a Python function "
                                f"f(x, *params), got {func!r}")
    key = None if param_names is None else tuple(str(n) for n in
                                                 param_names)
    with _LOCK:
        per_func = _MEMO.get(func)
        if per_func is not None and key in per_func:
            return per_func[key]
        text, compiler = _generate(func, key)
        digest = hashlib.sha1(text.encode()).hexdigest()[:16]
        model = CompiledModel(func, text, compiler, digest)
        try:
            _MEMO.setdefault(func, {})[key] = model
        except TypeError:
            pass
        return model
