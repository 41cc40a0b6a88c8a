"""The comparison rules, on real outputs from ../shared/data where there is one."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from fst_agent.env.compare import (
    BUILTIN_CHECKERS,
    Comparison,
    FloatChecker,
    Opaque,
    allclose,
    compare,
    compare_stdout_apps,
    compare_stdout_float,
    compare_stdout_lcb,
    compare_stdout_tokens,
    compare_value_apps,
    compare_value_lcb,
    json_semantics,
    resolve_checker,
    stripped_lines,
)
from fst_agent.types import TestCase


def _row(shared_data, file: str, pid: str) -> dict:
    with (shared_data / file).open() as fh:
        for line in fh:
            row = json.loads(line)
            if row["id"] == pid:
                return row
    raise KeyError(pid)


def stdin_test(expected: str) -> TestCase:
    return TestCase(kind="stdin", input="", expected=expected)


def fn_test(expected) -> TestCase:  # noqa: ANN001
    return TestCase(kind="functional", input=[], expected=expected, fn_name="f")


# -- LiveCodeBench's stdin rule --------------------------------------------------------------------


def test_lcb_strips_whole_output_and_each_line():
    assert stripped_lines("\n  1 2  \n3\n\n") == ["1 2", "3"]
    assert compare_stdout_lcb("1 2\n3\n", "  1 2   \n3").matched
    assert compare_stdout_lcb("1 2\n3", "1 2\n3\n\n\n").matched


def test_lcb_trailing_spaces_in_real_expected_output(shared_data):
    # apps-train-0044 and 2386 expect "8 6 \n12 10 8 \n..." (a space before each newline)
    row = _row(shared_data, "apps.jsonl", "apps-train-0044")
    expected = row["outputs"][0]
    assert " \n" in expected
    without = "\n".join(line.rstrip() for line in expected.split("\n"))
    assert compare_stdout_lcb(expected, without).matched
    assert compare_stdout_apps(expected, without).matched


def test_leading_blank_line_of_apps_2027_test_15(shared_data):
    row = _row(shared_data, "apps.jsonl", "apps-train-2027")
    assert row["outputs"][15] == "\n1\n"  # the expected output starts with an empty line
    for got in ("\n1\n", "1\n", "1"):
        assert compare_stdout_lcb(row["outputs"][15], got).matched, got
        assert compare_stdout_apps(row["outputs"][15], got).matched, got
    assert not compare_stdout_lcb(row["outputs"][15], "\n2\n").matched


def test_lcb_line_count_and_message():
    c = compare_stdout_lcb("1\n5\n", "1\n4\n")
    assert not c.matched and c.message == "line 2: expected '5', got '4'"
    c = compare_stdout_lcb("1\n5\n", "1\n5\n6\n")
    assert not c.matched and "expected 2 lines, got 3" in c.message and "line 3" in c.message
    c = compare_stdout_lcb("1\n5\n", "1\n")
    assert not c.matched and "line 2: expected '5', got no more output" in c.message


def test_lcb_decimal_equality_is_exact_but_ignores_notation():
    assert compare_stdout_lcb("0.5", "0.50").rule == "decimal"
    assert compare_stdout_lcb("1000", "1e3").matched
    assert compare_stdout_lcb("1 2.50", "1.0 2.5").matched
    assert not compare_stdout_lcb("0.3333333", "0.333333").matched  # no tolerance at all
    assert not compare_stdout_lcb("1 2", "2 1").matched
    assert not compare_stdout_lcb("YES", "yes").matched


def test_float_problem_apps_0018(shared_data):
    # Expected "1.0000000000000002 ..." — the reference output's float noise; other correct solutions
    # print "1.0" or a different last digit. lcb (exact Decimals) rejects them, apps's allclose and a
    # float:TOL checker accept them.
    row = _row(shared_data, "apps.jsonl", "apps-train-0018")
    expected = row["outputs"][0]
    assert expected.startswith("1.0000000000000002\n")
    other = "1.0\n2.4142135623730954\n127.32133646887213\n"
    assert not compare_stdout_lcb(expected, other).matched
    assert compare_stdout_apps(expected, other).rule == "allclose"
    test = TestCase(kind="stdin", input=row["inputs"][0], expected=expected)
    assert resolve_checker("float:1e-6")(test, other).matched
    assert not resolve_checker("float:1e-6")(test, "1.0\n2.4142\n127.32133646887213\n").matched


def test_float_problem_apps_0024_mixed_tokens(shared_data):
    row = _row(shared_data, "apps.jsonl", "apps-train-0024")
    expected = row["outputs"][0]
    assert expected.startswith("Y 67.985071301 1.014928699\n")
    other = expected.replace("67.985071301", "67.98507130").replace("1.014928699", "1.0149287")
    assert not compare_stdout_lcb(expected, other).matched
    assert not compare_stdout_apps(expected, other).matched  # "Y" is not a float: no apps fallback fits
    assert compare_stdout_float(expected, other, 1e-6).matched
    assert not compare_stdout_float(expected, other.replace("Y 0.0", "N 0.0", 1), 1e-6).matched


def test_lcb_abc314_a_trailing_zeros(shared_data):
    # "Do not remove the trailing 0s" — yet LiveCodeBench's Decimal equality accepts dropping them;
    # the lcb mode reproduces that; a stricter problem checker ("tokens") rejects it.
    row = _row(shared_data, "lcb.jsonl", "lcb-atcoder-abc314_a")
    test = next(t for t in row["tests"] if t["input"].strip() == "32")
    assert test["output"].strip().endswith("50")
    dropped = test["output"].strip()[:-1]
    assert compare_stdout_lcb(test["output"], dropped).rule == "decimal"
    assert not compare_stdout_tokens(test["output"], dropped).matched


def test_case_insensitive_checker_for_codeforces_1873_a(shared_data):
    row = _row(shared_data, "lcb.jsonl", "lcb-codeforces-1873_A")
    expected = row["tests"][0]["output"]
    lower = expected.lower()
    assert not compare_stdout_lcb(expected, lower).matched
    assert resolve_checker("tokens_nocase")(stdin_test(expected), lower).matched


# -- APPS's stdin rule and where it accepts wrong answers -------------------------------------------


@pytest.mark.parametrize(
    ("expected", "got", "apps_rule"),
    [
        ("1 2\n", "2 1\n", "token_sets"),  # token order ignored: a wrong permutation passes
        ("1\n2\n", "2\n1\n", "token_sets"),  # line order ignored
        ("1\n1\n2\n", "1\n2\n", "token_sets"),  # a missing repeated line is not noticed
        ("0.1234 7", "7 0.1231", "token_sets_rounded"),  # 3 decimals, and order ignored again
        ("1.000001\n", "1.000006\n", "allclose"),  # rtol 1e-5
    ],
)
def test_apps_lenient_fallbacks_accept_wrong_answers(expected, got, apps_rule):
    """Documented: APPS's fallbacks (4)-(5) accept these wrong answers; lcb (our default) rejects them."""
    apps = compare_stdout_apps(expected, got)
    assert apps.matched and apps.rule == apps_rule
    assert not compare_stdout_lcb(expected, got).matched


def test_apps_rules_in_order():
    assert compare_stdout_apps("3\n", "3").rule == "stripped"
    assert compare_stdout_apps("1 2\n3\n", " 1 2 \n 3 ").rule == "stripped_lines"
    assert compare_stdout_apps("a\n\nb\n", "a\nb").rule == "nonempty_lines"
    assert not compare_stdout_apps("1 2\n", "1 3\n").matched
    assert allclose([1.0, float("inf")], [1.0, float("inf")])
    assert not allclose([float("nan")], [float("nan")])


# -- functional ------------------------------------------------------------------------------------


def test_lcb_functional_json_semantics():
    assert compare_value_lcb([1, 2], (1, 2)).matched
    assert compare_value_lcb([[1, 2]], [(1, 2)]).matched  # nested tuples too (JSON round trip)
    assert compare_value_lcb({"1": 2}, {1: 2}).matched
    assert compare_value_lcb(1, True).matched == (True == 1)  # Python's ==, as LiveCodeBench
    assert not compare_value_lcb([1, 2], frozenset({1, 2})).matched
    assert not compare_value_lcb([1, 2], [2, 1]).matched
    assert not compare_value_lcb("x", Opaque("<object>")).matched
    assert json_semantics({True: (1,)}) == {"true": [1]}
    c = compare_value_lcb([3, 1], [3, 2])
    assert c.message == "expected [3, 1], got [3, 2]"


def test_codewars_wrapping_apps_4184(shared_data):
    row = _row(shared_data, "apps.jsonl", "apps-train-4184")
    assert row["outputs"][0] == [False]  # is_prime(1) -> False, stored one level deeper
    test = TestCase(kind="functional", input=row["inputs"][0], expected=row["outputs"][0], fn_name="is_prime")
    assert compare_value_apps(test.expected, False).rule == "equal_unwrapped"
    assert not compare_value_lcb(test.expected, False).matched  # LiveCodeBench's exact rule fails it
    assert BUILTIN_CHECKERS["codewars"](test, False).matched
    assert BUILTIN_CHECKERS["codewars"](test, [False]).matched
    assert not BUILTIN_CHECKERS["codewars"](test, True).matched


def test_apps_functional_dict_keys_and_tuples():
    assert compare_value_apps({"1": "a"}, {1: "a"}).matched
    # APPS turns only the top level (or the wrapped gt[0] case) into lists: nested tuples fail there,
    # while lcb's JSON semantics accept them
    assert not compare_value_apps([[1, 2], [3, 4]], [(1, 2), (3, 4)]).matched
    assert compare_value_lcb([[1, 2], [3, 4]], [(1, 2), (3, 4)]).matched
    assert compare_value_apps([[[1, 2], [3, 4]]], [(1, 2), (3, 4)]).rule == "equal_unwrapped"
    assert compare_value_apps([1, 2], (1, 2)).matched


# -- checkers --------------------------------------------------------------------------------------


def test_resolve_checker_names_and_callables():
    assert resolve_checker(None, "lcb") is BUILTIN_CHECKERS["lcb"]
    assert resolve_checker(None, "apps") is BUILTIN_CHECKERS["apps"]
    assert resolve_checker("float:1e-4") == FloatChecker(1e-4)
    assert resolve_checker("float") == FloatChecker(1e-6)

    def mine(test, got):  # noqa: ANN001
        return Comparison(got.strip() == "ok", "not ok")

    assert resolve_checker(mine) is mine
    with pytest.raises(ValueError, match="unknown checker"):
        resolve_checker("nope")
    with pytest.raises(ValueError, match="tolerance"):
        resolve_checker("float:abc")
    with pytest.raises(ValueError, match="mode"):
        resolve_checker(None, "exact")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BUILTIN_CHECKERS["x"] = mine  # type: ignore[index]


def test_float_checker_tokens_and_values():
    chk = FloatChecker(1e-6)
    assert chk(stdin_test("0.5 x"), "0.5000004 x").matched
    assert not chk(stdin_test("0.5 x"), "0.5000004 y").matched
    assert not chk(stdin_test("0.5"), "0.5 0.5").matched
    assert chk(stdin_test("1000000"), "1000000.5").matched  # relative 5e-7
    assert not chk(stdin_test("1"), "nan").matched
    assert chk(fn_test([0.5, [1.0]]), (0.5000001, [1])).matched
    assert not chk(fn_test([1, 2]), [1, 3]).matched
    assert chk(fn_test(True), 1.0).matched == (True == 1.0)  # bools compare as Python's == does
    assert not chk(fn_test(True), 0.0).matched


def test_tokens_checker():
    assert compare_stdout_tokens("1 2\n3", "1\n2 3\n").matched
    c = compare_stdout_tokens("1 2 3", "1 2 4")
    assert c.message == "token 3: expected '3', got '4'"


def test_a_raising_checker_is_a_mismatch_naming_it():
    def broken(test, got):  # noqa: ANN001
        raise KeyError("oops")

    c = compare(stdin_test("1"), "1", broken)
    assert not c.matched and c.rule == "checker_error" and "broken" in c.message


def test_decimal_values_round_trip_through_equality():
    assert compare_value_lcb(0.5, Decimal("0.5")).matched
