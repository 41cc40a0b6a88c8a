import pytest

from fst_math.answers import answers_match, extract_final_answer, parse_number


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("71", "71"), ("1,250", "1250"), ("$37.40", "37.4"), ("25%", "0.25"), ("19/12", "1.58333333333"),
        ("The answer is 42.", "42"), ("\\frac{19}{12}", "19/12"), ("x^2+6x+9", "x**2 + 6*x + 9"),
        ("(x+3)**2", "x**2 + 6*x + 9"), ("3x^2 + 2", "3*x**2 + 2"), ("(a-b)*(a+b)", "a**2 - b**2"),
        ("x + 1", "(x**2 - 1)/(x - 1)"),
    ],
)
def test_equivalent_answers_match(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [("70", "71"), ("x + 2", "x + 1"), ("b**2 - a**2", "a**2 - b**2"), ("x + 1", "y + 1"), ("seven", "7"),
     ("37.5", "37.4"), ("__import__('os').system('true')", "0")],
)
def test_different_answers_do_not(predicted, gold):
    assert not answers_match(predicted, gold)


def test_model_text_is_never_evaluated():
    # a call is not in the whitelist: it falls back to string comparison and is simply unequal
    assert not answers_match("__import__('os').getcwd()", "x + 1")


def test_final_answer_extraction():
    assert extract_final_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert extract_final_answer("so \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert parse_number("1,000.5") == pytest.approx(1000.5) and parse_number("x") is None
