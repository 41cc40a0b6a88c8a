"""Output comparison, the way the reference harnesses compare: small pure functions, one per rule.

Two modes, each a faithful port of a reference harness's comparison (the execution side lives in
:mod:`fst_agent.env.harness`, the orchestration in :mod:`fst_agent.env.judge`):

``lcb`` (the default) — LiveCodeBench ``lcb_runner/evaluation/testing_util.py``:
    stdin: strip the whole output, split on ``"\\n"``, strip each line; the line counts must match and
    each line must be equal as text or equal as a list of exact :class:`~decimal.Decimal` numbers (so
    ``0.50`` equals ``0.5``, but ``0.333333`` never equals ``0.3333333``: no tolerance).
    functional: ``got == expected`` with JSON round-trip semantics (tuples become lists, dict keys
    become strings), since ``expected`` itself came from JSON.

``apps`` — APPS ``eval/testing_util.py`` (``run_test``), first match wins:
    stdin: (1) stripped whole output, also with every line stripped; (2) output lines equal to the
    non-empty stripped expected lines (raw, then without empty output lines); (3) one float per line,
    ``np.allclose`` (rtol 1e-5, atol 1e-8) when the counts match; (4) **sets** of whitespace tokens per
    line, compared as a set of sets (token order, line order and repeated lines ignored); (5) the same
    with every token a float rounded to 3 decimals. Rules (4) and (5) accept wrong answers ("1 2" for
    "2 1", or a missing repeated line): see ``tests/judge/test_compare.py``.
    functional: tuples become lists, ``==`` against ``expected`` or ``expected[0]`` (Codewars outputs are
    stored one level deeper), string dict keys in ``expected`` become ints.

Per-problem checkers (``CodeProblem.checker``) replace the mode's rule for one problem. A checker is
any callable ``(test: TestCase, got) -> Comparison`` where ``got`` is the program's whole stdout (stdin
tests) or its decoded return value (functional tests). Built-ins, by name (see :func:`resolve_checker`):

=================  =================================================================================
``lcb``            the lcb mode's rule
``apps``           the apps mode's rule
``tokens``         whitespace-insensitive: the whitespace-separated tokens must be equal, in order
``tokens_nocase``  the same, letter case ignored ("any case is accepted", e.g. YES/yes)
``float[:TOL]``    tokens in order; numeric tokens may differ by ``TOL`` absolute *or* relative
                   (default 1e-6, Codeforces style); functional values compared recursively alike
``codewars``       functional: equal to ``expected`` or, for a one-element list, to ``expected[0]``
                   (APPS stores Codewars outputs one level deeper); stdin tests: the lcb rule
=================  =================================================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal

from fst_agent.types import TestCase

Mode = Literal["lcb", "apps"]
MODES: tuple[Mode, ...] = ("lcb", "apps")


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one test's output: ``matched``, a one-line ``message`` saying where it
    differs (empty on a match), and the ``rule`` that decided (e.g. ``"decimal"``, ``"token_sets"``)."""

    matched: bool
    message: str = ""
    rule: str = ""


Checker = Callable[[TestCase, Any], Comparison]


class Opaque:
    """A return value the harness could not carry back as data (an object of a user class, a
    generator, ...). It equals nothing, so it never matches an expected JSON value."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(("opaque", self.text))

    def __repr__(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------------------
# message helpers
# --------------------------------------------------------------------------------------------------


def show(value: Any, limit: int = 60) -> str:
    """A short quoted rendering for one-line messages (long values cut in the middle)."""
    text = (
        repr(value)
        if not isinstance(value, str)
        else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    )
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if len(text) > limit:
        half = (limit - 5) // 2
        text = text[:half] + " ... " + text[-half:]
    return text


def _ok(rule: str) -> Comparison:
    return Comparison(True, "", rule)


def _wrong(message: str, rule: str = "") -> Comparison:
    return Comparison(False, message, rule)


def _first_line_difference(expected: list[str], got: list[str]) -> str:
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        if e != g:
            return f"line {i + 1}: expected {show(e)}, got {show(g)}"
    n = min(len(expected), len(got))
    if len(got) > n:
        return f"line {n + 1}: expected no more output, got {show(got[n])}"
    if len(expected) > n:
        return f"line {n + 1}: expected {show(expected[n])}, got no more output"
    return "outputs differ"


# --------------------------------------------------------------------------------------------------
# LiveCodeBench
# --------------------------------------------------------------------------------------------------


def stripped_lines(text: str) -> list[str]:
    """LiveCodeBench's ``get_stripped_lines``: strip the whole text, split on "\\n", strip each line."""
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def compare_stdout_lcb(expected: str, got: str) -> Comparison:
    """LiveCodeBench's stdin rule (``grade_stdio``): line counts equal; each stripped line equal as text
    or as a list of exact Decimals."""
    exp_lines, got_lines = stripped_lines(expected), stripped_lines(got)
    if len(exp_lines) != len(got_lines):
        where = _first_line_difference(exp_lines, got_lines)
        return _wrong(f"{where} (expected {len(exp_lines)} lines, got {len(got_lines)})", "line_count")
    rule = "exact"
    for i, (e, g) in enumerate(zip(exp_lines, got_lines, strict=True)):
        if e == g:
            continue
        g_dec, e_dec = _decimals(g), _decimals(e)
        if g_dec is not None and e_dec is not None and g_dec == e_dec:
            rule = "decimal"
            continue
        return _wrong(f"line {i + 1}: expected {show(e)}, got {show(g)}", "line")
    return _ok(rule)


def json_semantics(value: Any) -> Any:
    """``value`` as a JSON round trip would give it back: tuples become lists, dict keys strings
    (``1`` → ``"1"``, ``True`` → ``"true"``); anything JSON cannot carry (sets, objects) is left as it
    is, so it stays unequal to every JSON value."""
    if isinstance(value, (list, tuple)):
        return [json_semantics(v) for v in value]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str):
                key: Any = k
            elif isinstance(k, bool) or k is None or isinstance(k, (int, float)):
                key = json.dumps(k)
            else:
                key = k
            out[key] = json_semantics(v)
        return out
    return value


def compare_value_lcb(expected: Any, got: Any) -> Comparison:
    """LiveCodeBench's functional rule: ``got == expected`` (tuples → lists; JSON round-trip semantics)."""
    if json_semantics(got) == expected:
        return _ok("equal")
    return _wrong(f"expected {show(expected)}, got {show(got)}", "equal")


# --------------------------------------------------------------------------------------------------
# APPS
# --------------------------------------------------------------------------------------------------


def allclose(got: list[float], expected: list[float], rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """``numpy.allclose(got, expected)`` without numpy: ``|g - e| <= atol + rtol * |e|`` everywhere
    (NaN never close; infinities close only to themselves)."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if math.isinf(g) or math.isinf(e):
            if g != e:
                return False
        elif not abs(g - e) <= atol + rtol * abs(e):
            return False
    return True


def compare_stdout_apps(expected: str, got: str) -> Comparison:
    """APPS's stdin rules, in its order (first match wins). ``got`` is split with ``splitlines()`` as
    APPS's ``Capturing`` does."""
    out = got.splitlines()
    gt = expected
    # (1) custom_compare_: whole output stripped, also every line stripped
    if "\n".join(out).strip() == gt.strip():
        return _ok("stripped")
    if "\n".join(o.strip() for o in out).strip() == gt.strip():
        return _ok("stripped_lines")
    if out == [gt]:
        return _ok("exact")
    # (2) expected: non-empty lines (emptiness tested before stripping, as APPS does), then stripped
    gt_lines = [line.strip() for line in gt.split("\n") if line]
    if out == gt_lines:
        return _ok("nonempty_lines")
    out = [o for o in out if o]
    if out == gt_lines:
        return _ok("nonempty_lines")
    # (3) one float per line, np.allclose when the counts match
    try:
        if allclose([float(o) for o in out], [float(e) for e in gt_lines]):
            return _ok("allclose")
    except ValueError:
        pass
    # (4) a set of per-line token sets (line order, token order and repeated lines all ignored)
    gt_sets = [set(line.split()) for line in gt_lines]
    out_sets = [set(tokens) for tokens in (o.split() for o in out) if tokens]
    if {frozenset(s) for s in out_sets} == {frozenset(s) for s in gt_sets}:
        return _ok("token_sets")
    # (5) the same with every token a float rounded to 3 decimals
    try:
        rounded_out = {frozenset(round(float(t), 3) for t in s) for s in out_sets}
        rounded_gt = {frozenset(round(float(t), 3) for t in s) for s in gt_sets}
        if rounded_out == rounded_gt:
            return _ok("token_sets_rounded")
    except (ValueError, OverflowError):
        pass
    return _wrong(_first_line_difference(gt_lines, out), "none")


def _int_keys(d: dict[Any, Any]) -> dict[Any, Any]:
    return {int(k): v for k, v in d.items()}


def compare_value_apps(expected: Any, got: Any) -> Comparison:
    """APPS's call-based rule: tuples → lists; ``got == expected`` or ``got == expected[0]``; string
    dict keys of ``expected`` as ints (APPS then wraps the dict in a list)."""
    gt = expected
    try:
        if isinstance(gt, dict):
            gt = [_int_keys(gt)]
        elif isinstance(gt, list) and gt and isinstance(gt[0], dict):
            gt = [_int_keys(gt[0])]
    except (ValueError, TypeError):
        pass
    out = list(got) if isinstance(got, tuple) else got
    if out == gt:
        return _ok("equal")
    if isinstance(gt, list) and gt and out == gt[0]:
        return _ok("equal_unwrapped")
    try:
        if isinstance(out[0], tuple) and [list(x) for x in out] == gt[0]:
            return _ok("equal_unwrapped")
    except (TypeError, IndexError, KeyError):
        pass
    return _wrong(f"expected {show(expected)}, got {show(got)}", "equal")


# --------------------------------------------------------------------------------------------------
# per-problem checkers
# --------------------------------------------------------------------------------------------------


def compare_stdout_tokens(expected: str, got: str, *, ignore_case: bool = False) -> Comparison:
    """Whitespace-insensitive: the whitespace-separated tokens must be equal, in order (``ignore_case``:
    "yes" equals "YES", for statements that say any case is accepted)."""
    if ignore_case:
        expected, got = expected.casefold(), got.casefold()
    exp, out = expected.split(), got.split()
    for i, (e, g) in enumerate(zip(exp, out, strict=False)):
        if e != g:
            return _wrong(f"token {i + 1}: expected {show(e)}, got {show(g)}", "tokens")
    if len(exp) != len(out):
        return _wrong(f"expected {len(exp)} tokens, got {len(out)}", "tokens")
    return _ok("tokens")


_FLOAT_TOKEN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _as_float(token: str) -> float | None:
    if not _FLOAT_TOKEN.match(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def floats_close(got: float, expected: float, tol: float) -> bool:
    """Within ``tol`` absolute or relative (to ``expected``): the usual checker for float answers."""
    return abs(got - expected) <= tol or abs(got - expected) <= tol * abs(expected)


def compare_stdout_float(expected: str, got: str, tol: float = 1e-6) -> Comparison:
    """Tokens in order; a numeric token matches a numeric token within ``tol`` (absolute or relative),
    any other token must be equal as text."""
    exp, out = expected.split(), got.split()
    if len(exp) != len(out):
        return _wrong(f"expected {len(exp)} tokens, got {len(out)}", "float")
    for i, (e, g) in enumerate(zip(exp, out, strict=True)):
        if e == g:
            continue
        ef, gf = _as_float(e), _as_float(g)
        if ef is None or gf is None or not floats_close(gf, ef, tol):
            return _wrong(f"token {i + 1}: expected {show(e)}, got {show(g)} (tolerance {tol:g})", "float")
    return _ok("float")


def values_close(expected: Any, got: Any, tol: float) -> bool:
    """Recursive equality with JSON semantics where numbers (not bools) may differ by ``tol``."""
    got = json_semantics(got)

    def close(e: Any, g: Any) -> bool:
        if isinstance(e, bool) or isinstance(g, bool):
            return e == g
        if isinstance(e, (int, float)) and isinstance(g, (int, float)):
            if isinstance(e, int) and isinstance(g, int):
                return e == g
            return math.isfinite(e) and math.isfinite(g) and floats_close(float(g), float(e), tol)
        if isinstance(e, list) and isinstance(g, list):
            return len(e) == len(g) and all(close(a, b) for a, b in zip(e, g, strict=True))
        if isinstance(e, dict) and isinstance(g, dict):
            return e.keys() == g.keys() and all(close(e[k], g[k]) for k in e)
        return e == g

    return close(expected, got)


def lcb_checker(test: TestCase, got: Any) -> Comparison:
    """The lcb mode's rule for either kind of test."""
    if test.kind == "stdin":
        return compare_stdout_lcb(test.expected, got)
    return compare_value_lcb(test.expected, got)


def apps_checker(test: TestCase, got: Any) -> Comparison:
    """The apps mode's rule for either kind of test."""
    if test.kind == "stdin":
        return compare_stdout_apps(test.expected, got)
    return compare_value_apps(test.expected, got)


def tokens_checker(test: TestCase, got: Any) -> Comparison:
    """Whitespace-insensitive token equality (functional tests: the lcb rule)."""
    if test.kind == "stdin":
        return compare_stdout_tokens(test.expected, got)
    return compare_value_lcb(test.expected, got)


def tokens_nocase_checker(test: TestCase, got: Any) -> Comparison:
    """Tokens in order, letter case ignored (functional tests: the lcb rule)."""
    if test.kind == "stdin":
        return compare_stdout_tokens(test.expected, got, ignore_case=True)
    return compare_value_lcb(test.expected, got)


def codewars_checker(test: TestCase, got: Any) -> Comparison:
    """Functional: equal to ``expected`` or, when that is a one-element list, to its element (APPS's
    storage of Codewars outputs); stdin: the lcb rule."""
    if test.kind == "stdin":
        return compare_stdout_lcb(test.expected, got)
    first = compare_value_lcb(test.expected, got)
    if first.matched or not (isinstance(test.expected, list) and len(test.expected) == 1):
        return first
    if json_semantics(got) == test.expected[0]:
        return _ok("equal_unwrapped")
    return first


@dataclass(frozen=True)
class FloatChecker:
    """``float:TOL``: numeric tokens (stdin) or numbers inside the value (functional) within ``tol``."""

    tol: float = 1e-6

    def __call__(self, test: TestCase, got: Any) -> Comparison:
        if test.kind == "stdin":
            return compare_stdout_float(test.expected, got, self.tol)
        if values_close(test.expected, got, self.tol):
            return _ok("float")
        return _wrong(f"expected {show(test.expected)}, got {show(got)} (tolerance {self.tol:g})", "float")


#: The named checkers (immutable). ``float:TOL`` is parsed by :func:`resolve_checker`.
BUILTIN_CHECKERS: Mapping[str, Checker] = MappingProxyType(
    {
        "lcb": lcb_checker,
        "apps": apps_checker,
        "tokens": tokens_checker,
        "tokens_nocase": tokens_nocase_checker,
        "float": FloatChecker(),
        "codewars": codewars_checker,
    }
)

MODE_CHECKERS: Mapping[Mode, Checker] = MappingProxyType({"lcb": lcb_checker, "apps": apps_checker})


def resolve_checker(spec: str | Checker | None, mode: Mode = "lcb") -> Checker:
    """The checker for ``spec``: None → the mode's rule; a name from :data:`BUILTIN_CHECKERS`;
    ``"float:TOL"`` (e.g. ``float:1e-6``); or any callable ``(test, got) -> Comparison``."""
    if mode not in MODE_CHECKERS:
        raise ValueError(f"unknown comparison mode {mode!r} (lcb, apps)")
    if spec is None or spec == "":
        return MODE_CHECKERS[mode]
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a checker is a name or a callable, not {type(spec).__name__}")
    name = spec.strip()
    if name in BUILTIN_CHECKERS:
        return BUILTIN_CHECKERS[name]
    if name.startswith("float:"):
        try:
            tol = float(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"checker {spec!r}: the tolerance after 'float:' must be a number") from None
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"checker {spec!r}: the tolerance must be finite and >= 0")
        return FloatChecker(tol)
    raise ValueError(
        f"unknown checker {spec!r}; known: {', '.join(BUILTIN_CHECKERS)}, float:TOL, or a callable"
    )


def compare(test: TestCase, got: Any, checker: Checker | None = None, mode: Mode = "lcb") -> Comparison:
    """Compare ``got`` with ``test.expected`` by ``checker`` (default: the mode's rule). A checker that
    raises is a bug in the checker, reported as a mismatch naming it rather than a crash of the judge."""
    fn = checker or MODE_CHECKERS[mode]
    try:
        result = fn(test, got)
    except Exception as exc:  # a user checker's bug must not take the other verdicts with it
        return _wrong(
            f"checker {getattr(fn, '__name__', fn)!r} raised {type(exc).__name__}: {exc}", "checker_error"
        )
    if not isinstance(result, Comparison):
        return _wrong(
            f"checker {getattr(fn, '__name__', fn)!r} returned {type(result).__name__}, not a Comparison",
            "checker_error",
        )
    return result
