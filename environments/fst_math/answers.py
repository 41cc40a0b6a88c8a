"""Verifiable answers: numbers (integers, decimals, fractions, percentages, thousands separators) and
symbolic expressions in one or more variables, compared without ever ``eval``-ing model text.

Expressions are parsed with :mod:`ast` into a whitelist (numbers, single names, + - * / **, unary
minus, parentheses) and compared by evaluating both sides at random points with exact fractions where
possible: two rational functions that agree at many random points are equal (Schwartz–Zippel).
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections.abc import Callable
from fractions import Fraction

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_FRAC = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")
_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.S)


def extract_final_answer(text: str) -> str:
    """The final answer inside a worked solution: GSM8K's ``#### 72``, LaTeX ``\\boxed{72}``, else the text."""
    if m := _GSM8K.search(text):
        return m.group(1).strip()
    if boxed := _BOXED.findall(text):
        return boxed[-1].strip()
    return text.strip()


def _clean(text: str) -> str:
    text = text.strip().strip("$").strip()
    text = re.sub(r"^(the\s+)?answer\s*(is|:)\s*", "", text, flags=re.I)
    text = text.rstrip(".").strip()
    text = _FRAC.sub(r"((\1)/(\2))", text)
    text = text.replace("{", "(").replace("}", ")").replace("^", "**").replace("\\cdot", "*")
    return text


def parse_number(text: str) -> Fraction | None:
    """An exact number from answer text, or None when it is not a plain number."""
    t = _clean(text).replace(",", "").replace(" ", "")
    if t.endswith("%"):
        inner = parse_number(t[:-1])
        return inner / 100 if inner is not None else None
    if _NUMBER.match(t):
        return Fraction(t)
    if re.fullmatch(r"[+-]?\d+/\d+", t) and not t.endswith("/0"):
        return Fraction(t)
    return None


class _Expr:
    """A whitelisted arithmetic expression, callable on {variable: value}."""

    _BINOPS: dict[type, Callable[[object, object], object]] = {
        ast.Add: lambda a, b: a + b,  # type: ignore[operator]
        ast.Sub: lambda a, b: a - b,  # type: ignore[operator]
        ast.Mult: lambda a, b: a * b,  # type: ignore[operator]
        ast.Div: lambda a, b: a / b,  # type: ignore[operator]
    }

    def __init__(self, text: str) -> None:
        cleaned = re.sub(r"(\d)\s*([a-zA-Z(])", r"\1*\2", _clean(text))  # 2x -> 2*x, 3(x+1) -> 3*(x+1)
        tree = ast.parse(cleaned, mode="eval")
        self.variables: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and (type(node.op) in self._BINOPS or isinstance(node.op, ast.Pow)):
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            pass
        elif isinstance(node, ast.Name) and len(node.id) <= 2:
            self.variables.add(node.id)
        else:
            raise ValueError(f"not an arithmetic expression: {ast.dump(node)[:60]}")

    def __call__(self, values: dict[str, Fraction]) -> Fraction:
        return self._eval(self._tree, values)

    def _eval(self, node: ast.AST, values: dict[str, Fraction]) -> Fraction:
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            inner = self._eval(node.operand, values)
            return -inner if isinstance(node.op, ast.USub) else inner
        assert isinstance(node, ast.BinOp)
        left, right = self._eval(node.left, values), self._eval(node.right, values)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > 64:
                raise ValueError("only small integer powers are compared exactly")
            return left ** int(right)
        return self._BINOPS[type(node.op)](left, right)  # type: ignore[return-value]


def _constant(text: str) -> Fraction | None:
    """The exact value of a plain number or of an arithmetic expression without variables."""
    number = parse_number(text)
    if number is not None:
        return number
    try:
        expr = _Expr(text)
        return None if expr.variables else expr({})
    except (SyntaxError, ValueError, RecursionError, ZeroDivisionError):
        return None


def answers_match(predicted: str, gold: str, *, rel_tol: float = 1e-6, trials: int = 12, seed: int = 0) -> bool:
    """Whether ``predicted`` states the same answer as ``gold`` (numbers with a relative tolerance for
    decimals; expressions by identity testing at random rational points)."""
    g_value, p_value = _constant(gold), _constant(predicted)
    if g_value is not None or p_value is not None:
        if g_value is None or p_value is None:
            return False
        if g_value == p_value:
            return True
        return math.isclose(float(g_value), float(p_value), rel_tol=rel_tol, abs_tol=1e-12)
    try:
        g, p = _Expr(gold), _Expr(predicted)
    except (SyntaxError, ValueError, RecursionError):
        return _clean(predicted).replace(" ", "").lower() == _clean(gold).replace(" ", "").lower()
    if g.variables != p.variables:
        return False
    rng = random.Random(seed)
    names = sorted(g.variables)
    agreed = 0
    for _ in range(trials * 3):
        point = {n: Fraction(rng.randint(-97, 97), rng.randint(1, 13)) for n in names}
        try:
            if g(point) != p(point):
                return False
        except ZeroDivisionError:
            continue
        agreed += 1
        if agreed >= trials:
            return True
    return agreed > 0
