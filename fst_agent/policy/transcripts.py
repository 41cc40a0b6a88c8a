"""Synthetic tool-call transcripts for pretraining the embedded tiny default model.

Every transcript is a real-looking episode of a registered environment, built from a fixed seed:

* the system message is the environment's seed context or a variation of it (the fast loop will evolve
  the context, so the model must not depend on one exact text);
* the user message is the environment's own opening text (``prompt_for`` of ``apps`` / ``livecodebench``,
  the question for ``math``), sometimes with the statement's section headers re-worded;
* assistant turns are a short thought in ``<think>`` tags plus one ``<tool_call>`` (``run_tests``,
  ``run_code``, ``submit``; ``python``/``submit`` for math) whose code is a correct or a known-wrong
  solution from the offline sets;
* tool responses use the environments' real formatting code (``describe_run`` / ``describe_report``) on
  *synthesized* results: nothing is executed. A correct solution passes and prints the expected output;
  a wrong one gets a plausible wrong answer (the expected output perturbed), a crash, or a timeout (for
  the solutions the offline set marks as too slow).

Problems in :func:`held_out_problem_ids` never appear, so tests can check the model on unseen tasks.
Math transcripts come from arithmetic word-problem templates written here (the math env's own offline
tasks are left unseen).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fst_agent.env.compare import compare, resolve_checker
from fst_agent.env.data.offline import load_offline_problems
from fst_agent.env.data.problems import CodeProblem
from fst_agent.env.judge import JudgeReport, excerpt, problem_checker
from fst_agent.types import (
    ExecutionResult,
    ExecutionStatus,
    ResourceLimits,
    TestCase,
    TestVerdict,
    VerdictKind,
)

#: problems per offline set kept out of the transcripts (chosen by a hash of the id: stable, no list to keep)
HELD_OUT_PER_SET = 4
_OFFLINE_ENV = {"apps": "apps", "livecodebench": "livecodebench"}


@dataclass(frozen=True)
class Transcript:
    """One synthetic episode: chat messages (dicts in transformers' shape) and the tool schemas."""

    env: str
    task_id: str
    scenario: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]


# --------------------------------------------------------------------------------------------------
# Tasks and environments
# --------------------------------------------------------------------------------------------------


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def held_out_problem_ids() -> frozenset[str]:
    """Offline problems never used in transcripts: the ``HELD_OUT_PER_SET`` lowest id hashes of each set."""
    out: set[str] = set()
    for kind in _OFFLINE_ENV:
        ids = sorted((p.id for p in load_offline_problems(kind)), key=_hash)  # type: ignore[arg-type]
        out.update(ids[:HELD_OUT_PER_SET])
    return frozenset(out)


def training_problems() -> list[tuple[str, CodeProblem]]:
    """(env name, problem) for every offline problem not held out."""
    held = held_out_problem_ids()
    return [
        (env, p)
        for kind, env in _OFFLINE_ENV.items()
        for p in load_offline_problems(kind)  # type: ignore[arg-type]
        if p.id not in held and p.solutions
    ]


@lru_cache(maxsize=8)
def env_class(name: str) -> type:
    from fst_agent.env.registry import EnvironmentRegistry

    return EnvironmentRegistry().load(name).cls


def make_env(name: str, **config: Any) -> Any:
    """An environment instance without a sandbox: enough for its prompt and result formatting."""
    return env_class(name)(config or None)


def tool_schemas(name: str) -> list[dict[str, Any]]:
    return [spec.json_schema for spec in env_class(name).tool_specs()]


# --------------------------------------------------------------------------------------------------
# Wording pools
# --------------------------------------------------------------------------------------------------

_CODE_SYSTEM_SENTENCES = [
    "You are an expert Python programmer.",
    "You are a careful competitive programmer who writes Python 3.",
    "You solve programming problems with tools.",
    "Read the problem statement carefully, including the input and output format.",
    "Write a complete Python 3 program.",
    "Test your program with run_tests before you submit it.",
    "Use run_code to try your own inputs.",
    "If a test fails, read the expected and actual output, fix the bug and test again.",
    "Handle edge cases such as a single element or empty input.",
    "Call submit with the final program when the public tests pass.",
    "Think briefly, then call exactly one tool per turn.",
    "Keep the code simple and efficient.",
    "Print exactly what the output format asks for, nothing more.",
    "For call-based problems, write only the function or the class Solution.",
]
_MATH_SYSTEM_SENTENCES = [
    "You solve math word problems.",
    "You are good at arithmetic and careful with units.",
    "Compute with the python tool instead of by hand.",
    "Print the values you need in the python tool.",
    "Call submit with only the final answer, as a number.",
    "Check your computation before you submit.",
    "Think briefly, then call one tool per turn.",
]

_THINK_TEST_FIRST = [
    "Let me check my solution against the public tests.",
    "I will write a direct solution and run the public tests.",
    "Plan: read the input, compute the answer, print it. First I run the tests.",
    "I'll start with a straightforward implementation and test it.",
    "A simple approach should work here. Testing it on the examples.",
    "The constraints are small, so a direct solution is fine. Let me run the tests.",
    "I write the solution and check it on the public examples.",
]
_THINK_TEST_FUNCTIONAL = [
    "I implement the function and run the public tests.",
    "Let me write the method and check it against the examples.",
    "The function just needs to compute the result directly. Testing it.",
    "I'll implement {fn} and run the tests.",
    "Writing {fn} now, then checking it on the public tests.",
]
_THINK_RUN_FIRST = [
    "Let me run the program on an example input.",
    "I'll try the code on a sample input first.",
    "First I run it on the example to see the output.",
    "Let me see what this program prints for a small input.",
    "Running the solution with a test input.",
]
_THINK_AFTER_WRONG = [
    "Test {i} failed: expected {exp}, got {got}. I need to fix the program.",
    "The output is wrong: expected {exp} but got {got}. Let me correct the logic and test again.",
    "Wrong answer on test {i}. I will fix the bug and rerun the tests.",
    "That does not match the expected output {exp}. Fixing the code.",
    "My answer {got} is not {exp}. Let me rewrite the solution.",
]
_THINK_AFTER_CRASH = [
    "The program crashed with {err}. Let me fix it.",
    "It raised {err}. I need to handle the input correctly.",
    "Runtime error ({err}). Rewriting the solution.",
]
_THINK_AFTER_TIMEOUT = [
    "It timed out; the solution is too slow. I need a faster algorithm.",
    "Too slow. Let me use a more efficient approach and test again.",
]
_THINK_AFTER_RUN_WRONG = [
    "The output {got} is not the expected {exp}. Let me fix it and run the tests.",
    "That printed {got}, but the answer should be {exp}. Fixing the code.",
    "Wrong output for this input. I will correct the program and test it.",
]
_THINK_SUBMIT_PASS = [
    "All public tests pass. Submitting.",
    "The tests pass, so I submit the program.",
    "Every public test passes. Time to submit.",
    "Correct on the examples. Submitting the final program.",
    "Looks good. Submitting.",
]
_THINK_SUBMIT_RUN_OK = [
    "The output {got} matches the expected answer. Submitting.",
    "It prints {got}, which is correct. Let me submit.",
    "Correct output. Submitting the program.",
]
_THINK_SUBMIT_DIRECT = [
    "This is a simple problem; I submit the solution directly.",
    "The solution is straightforward. Submitting it.",
]
_THINK_MATH = [
    "Let me compute it with python.",
    "I'll write the computation in python and print the result.",
    "Computing step by step in python.",
    "Let me calculate this with the python tool.",
]
_THINK_MATH_SUBMIT = [
    "The result is {ans}. Submitting.",
    "The answer is {ans}.",
    "python printed {ans}, so the answer is {ans}.",
]
_THINK_MATH_FIX = [
    "There is an error in my code ({err}). Let me fix it.",
    "The code failed with {err}. Fixing the variable names.",
]

_ERRORS = [
    ("IndexError", "list index out of range"),
    ("ValueError", "invalid literal for int() with base 10: ''"),
    ("TypeError", "unsupported operand type(s) for +: 'int' and 'str'"),
    ("NameError", "name 'result' is not defined"),
    ("ZeroDivisionError", "division by zero"),
    ("KeyError", "0"),
]


# --------------------------------------------------------------------------------------------------
# Statement variations and synthetic results
# --------------------------------------------------------------------------------------------------


def vary_statement(statement: str, rng: random.Random) -> str:
    """The statement, sometimes with its section headers re-worded (unseen wording at test time)."""
    roll = rng.random()
    if roll < 0.55:
        return statement
    if roll < 0.7:
        return re.sub(r"-----\s*([A-Za-z][A-Za-z ]*?)\s*-----", r"\1:", statement)
    if roll < 0.85:
        return re.sub(r"-----\s*([A-Za-z][A-Za-z ]*?)\s*-----", r"## \1", statement)
    return rng.choice(["Problem:\n", "Task:\n", "Solve the following problem.\n\n"]) + statement


def _perturb_text(expected: str, rng: random.Random) -> str:
    """A plausible wrong stdout for a program whose right output is ``expected``."""
    text = expected.rstrip("\n")
    numbers = list(re.finditer(r"-?\d+", text))
    roll = rng.random()
    if numbers and roll < 0.6:
        m = rng.choice(numbers)
        value = int(m.group()) + rng.choice([-1, 1, 2, -2, 10])
        return text[: m.start()] + str(value) + text[m.end() :] + "\n"
    if roll < 0.75:
        return ""
    if roll < 0.85 and text:
        return rng.choice(["Answer: ", "Result: ", "ans = "]) + text + "\n"
    lines = text.split("\n")
    if len(lines) > 1:
        return "\n".join(lines[:-1]) + "\n"
    return (text[::-1] if len(text) > 1 and text[::-1] != text else text + " 0") + "\n"


def _perturb_value(expected: Any, rng: random.Random) -> Any:
    if isinstance(expected, bool):
        return not expected
    if isinstance(expected, int):
        return expected + rng.choice([-1, 1, 2])
    if isinstance(expected, float):
        return expected + rng.choice([-1.0, 0.5, 1.0])
    if isinstance(expected, str):
        return expected[::-1] if len(expected) > 1 and expected[::-1] != expected else expected + "x"
    if isinstance(expected, list):
        if not expected:
            return [0]
        return expected[:-1] if rng.random() < 0.5 else [*expected[1:], expected[0]] if len(expected) > 1 else [
            _perturb_value(expected[0], rng)
        ]
    return None


def _shown_input_expected(test: TestCase) -> tuple[str, str]:
    if test.kind == "stdin":
        return str(test.input), str(test.expected)
    return "\n".join(json.dumps(a, ensure_ascii=False) for a in test.input), json.dumps(test.expected, ensure_ascii=False)


def _verdict(index: int, test: TestCase, kind: VerdictKind, message: str, got: str = "", stderr: str = "") -> TestVerdict:
    inp, exp = _shown_input_expected(test)
    n = 2000
    return TestVerdict(
        index=index, kind=kind, public=test.public, input_excerpt=excerpt(inp, n), expected_excerpt=excerpt(exp, n),
        got_excerpt=excerpt(got, n), stderr_excerpt=excerpt(stderr, n, tail=True),
        message=excerpt(" ".join(message.split()), 300),
    )


def _traceback(code: str, functional: bool, rng: random.Random) -> tuple[str, str]:
    """(stderr, one-line error) of a plausible crash of ``code``."""
    lines = [ln for ln in code.splitlines() if ln.strip()] or ["pass"]
    lineno = rng.randrange(len(lines))
    exc, msg = rng.choice(_ERRORS)
    where = "solution.py" if functional else "main.py"
    stderr = (
        "Traceback (most recent call last):\n"
        f'  File "{where}", line {lineno + 1}, in <module>\n'
        f"    {lines[lineno].strip()}\n"
        f"{exc}: {msg}\n"
    )
    return stderr, f"{exc}: {msg}"


@dataclass(frozen=True)
class _Outcome:
    """How a synthesized run of a wrong solution failed (the same for run_code and run_tests)."""

    kind: str  # "wrong" | "crash" | "timeout"


def _wrong_outcome(problem: CodeProblem, code: str) -> _Outcome:
    slow = problem.metadata.get("too_slow_wrong_solutions") or []
    slow_codes = {problem.wrong_solutions[i] for i in slow if 0 <= i < len(problem.wrong_solutions)}
    if code in slow_codes:
        return _Outcome("timeout")
    return _Outcome("crash" if int(_hash(code)[:4], 16) % 4 == 0 else "wrong")


def synth_report(
    env: Any, problem: CodeProblem, code: str, correct: bool, rng: random.Random
) -> tuple[str, dict[str, Any]]:
    """``run_tests`` output text (the env's ``describe_report``) for a synthesized judge run, plus facts
    about the first failure for the next thought."""
    tests = problem.public_tests
    checker = resolve_checker(problem_checker(problem, env.config.judge_mode), env.config.judge_mode)
    outcome = None if correct else _wrong_outcome(problem, code)
    verdicts: list[TestVerdict] = []
    first_fail: dict[str, Any] = {}
    for i, test in enumerate(tests):
        if correct:
            verdicts.append(_verdict(i, test, VerdictKind.PASS, "", got=_shown_input_expected(test)[1]))
            continue
        assert outcome is not None
        if outcome.kind == "timeout":
            v = _verdict(i, test, VerdictKind.TIMEOUT, f"timeout: the test ran longer than {env.config.per_test_seconds:g} s")
        elif outcome.kind == "crash":
            stderr, err = _traceback(code, problem.kind == "functional", rng)
            v = _verdict(i, test, VerdictKind.RUNTIME_ERROR, f"runtime_error: {err}", stderr=stderr)
            first_fail.setdefault("err", err)
        else:
            got: Any
            if test.kind == "stdin":
                got = _perturb_text(str(test.expected), rng)
                got_text = got
            else:
                got = _perturb_value(test.expected, rng)
                got_text = json.dumps(got, ensure_ascii=False)
            cmp = compare(test, got, checker)
            if cmp.matched:  # the perturbation happened to be accepted: fail it plainly
                got_text = ""
                cmp = compare(test, "" if test.kind == "stdin" else None, checker)
            v = _verdict(i, test, VerdictKind.WRONG_ANSWER, cmp.message, got=got_text)
            first_fail.setdefault("got", got_text.strip() or "nothing")
            first_fail.setdefault("exp", _shown_input_expected(test)[1].strip())
        verdicts.append(v)
        first_fail.setdefault("i", i)
        first_fail.setdefault("kind", outcome.kind)
    passed = sum(v.passed for v in verdicts)
    report = JudgeReport(verdicts=verdicts, passed=passed, total=len(verdicts), mode=env.config.judge_mode)
    return env.describe_report(report), first_fail


def synth_run(
    env: Any, problem: CodeProblem, code: str, test: TestCase, correct: bool, rng: random.Random
) -> tuple[str, dict[str, Any]]:
    """``run_code`` output text (the env's ``describe_run``) for a stdin problem's test input."""
    limits = ResourceLimits(wall_seconds=env.config.run_seconds, memory_mb=env.config.memory_mb)
    wall = round(rng.uniform(0.01, 0.09), 2)
    facts: dict[str, Any] = {"exp": str(test.expected).strip()}
    if correct:
        result = ExecutionResult(status=ExecutionStatus.OK, exit_code=0, stdout=str(test.expected), wall_seconds=wall,
                                 backend="local", limits=limits)
        facts["got"] = str(test.expected).strip()
    else:
        outcome = _wrong_outcome(problem, code)
        if outcome.kind == "timeout":
            result = ExecutionResult(status=ExecutionStatus.TIMEOUT, wall_seconds=env.config.run_seconds,
                                     backend="local", limits=limits, signal=9)
            facts["kind"] = "timeout"
        elif outcome.kind == "crash":
            stderr, err = _traceback(code, False, rng)
            result = ExecutionResult(status=ExecutionStatus.RUNTIME_ERROR, exit_code=1, stderr=stderr,
                                     wall_seconds=wall, backend="local", limits=limits)
            facts.update(kind="crash", err=err)
        else:
            got = _perturb_text(str(test.expected), rng)
            result = ExecutionResult(status=ExecutionStatus.OK, exit_code=0, stdout=got, wall_seconds=wall,
                                     backend="local", limits=limits)
            facts.update(kind="wrong", got=got.strip() or "nothing")
    return env.describe_run(result), facts


# --------------------------------------------------------------------------------------------------
# Transcripts
# --------------------------------------------------------------------------------------------------


def _assistant(thought: str, name: str, arguments: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": f"<think>\n{thought}\n</think>",
        "tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


def _tool(name: str, content: str, n: int) -> dict[str, Any]:
    return {"role": "tool", "name": name, "tool_call_id": f"call_{n}", "content": content}


def _system(seed: str, pool: list[str], rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return seed
    picked = rng.sample(pool, rng.randint(1, 4))
    if roll < 0.6:
        picked = [seed, *picked]
    return " ".join(picked)


def _fmt(template: str, facts: dict[str, Any], **extra: Any) -> str:
    values = {"i": 0, "exp": "", "got": "", "err": "an error", "fn": "the function", **facts, **extra}
    for key in ("exp", "got"):
        text = str(values[key]).replace("\n", " ")
        values[key] = text if len(text) <= 40 else text[:37] + "..."
    return template.format(**values)


def _small_tests(problem: CodeProblem, limit: int = 200) -> list[TestCase]:
    """Tests whose input and output are short enough to show in a run_code call (public ones first)."""
    small = [t for t in problem.tests if len(str(t.input)) <= limit and len(str(t.expected)) <= limit]
    return small or problem.public_tests


def code_transcript(env_name: str, problem: CodeProblem, rng: random.Random) -> Transcript:
    env = make_env(env_name, max_turns=rng.choice([3, 4, 5, 6, 8, 10]))
    shown = problem.model_copy(update={"statement": vary_statement(problem.statement, rng)})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _system(env.seed_context, _CODE_SYSTEM_SENTENCES, rng)},
        {"role": "user", "content": env.prompt_for(shown)},
    ]
    correct = rng.choice(problem.solutions)
    wrongs = list(problem.wrong_solutions)
    functional = problem.kind == "functional"
    fn = problem.fn_name or "the function"
    roll = rng.random()
    if not wrongs:
        roll = min(roll, 0.4)
    if functional and 0.35 <= roll < 0.5:
        roll = 0.2  # no run_code scenarios for call-based problems
    if functional and 0.85 <= roll < 0.93:
        roll = 0.6
    n = 0
    first_pool = _THINK_TEST_FUNCTIONAL if functional and rng.random() < 0.5 else _THINK_TEST_FIRST

    def tests_call(code: str, ok: bool, thought: str) -> dict[str, Any]:
        nonlocal n
        messages.append(_assistant(thought, "run_tests", {"code": code}, n))
        text, facts = synth_report(env, problem, code, ok, rng)
        messages.append(_tool("run_tests", text, n))
        n += 1
        return facts

    def submit(code: str, thought: str) -> None:
        messages.append(_assistant(thought, "submit", {"code": code}, n))

    def after_fail(facts: dict[str, Any]) -> str:
        kind = facts.get("kind", "wrong")
        pool = {"crash": _THINK_AFTER_CRASH, "timeout": _THINK_AFTER_TIMEOUT}.get(kind, _THINK_AFTER_WRONG)
        return _fmt(rng.choice(pool), facts)

    if roll < 0.35:
        scenario = "test-pass-submit"
        tests_call(correct, True, _fmt(rng.choice(first_pool), {}, fn=fn))
        submit(correct, rng.choice(_THINK_SUBMIT_PASS))
    elif roll < 0.5:
        scenario = "run-ok-submit"
        test = rng.choice(_small_tests(problem))
        messages.append(_assistant(rng.choice(_THINK_RUN_FIRST), "run_code", {"code": correct, "stdin": str(test.input)}, n))
        text, facts = synth_run(env, problem, correct, test, True, rng)
        messages.append(_tool("run_code", text, n))
        n += 1
        if rng.random() < 0.5:
            tests_call(correct, True, "The output looks right. Let me also run the public tests.")
            submit(correct, rng.choice(_THINK_SUBMIT_PASS))
        else:
            submit(correct, _fmt(rng.choice(_THINK_SUBMIT_RUN_OK), facts))
    elif roll < 0.8:
        scenario = "test-fail-fix-pass-submit"
        wrong = rng.choice(wrongs)
        facts = tests_call(wrong, False, _fmt(rng.choice(first_pool), {}, fn=fn))
        tests_call(correct, True, after_fail(facts))
        submit(correct, rng.choice(_THINK_SUBMIT_PASS))
    elif roll < 0.85:
        scenario = "test-fail-twice"
        first, second = (rng.sample(wrongs, 2) if len(wrongs) >= 2 else (wrongs[0], wrongs[0]))
        facts = tests_call(first, False, _fmt(rng.choice(first_pool), {}, fn=fn))
        facts = tests_call(second, False, after_fail(facts))
        tests_call(correct, True, after_fail(facts))
        submit(correct, rng.choice(_THINK_SUBMIT_PASS))
    elif roll < 0.93:
        scenario = "run-wrong-fix-test-submit"
        wrong = rng.choice(wrongs)
        test = rng.choice(_small_tests(problem))
        messages.append(_assistant(rng.choice(_THINK_RUN_FIRST), "run_code", {"code": wrong, "stdin": str(test.input)}, n))
        text, facts = synth_run(env, problem, wrong, test, False, rng)
        messages.append(_tool("run_code", text, n))
        n += 1
        pool = {"crash": _THINK_AFTER_CRASH, "timeout": _THINK_AFTER_TIMEOUT}.get(facts.get("kind", ""), _THINK_AFTER_RUN_WRONG)
        tests_call(correct, True, _fmt(rng.choice(pool), facts))
        submit(correct, rng.choice(_THINK_SUBMIT_PASS))
    else:
        scenario = "submit-direct"
        submit(correct, rng.choice(_THINK_SUBMIT_DIRECT))
    return Transcript(env_name, problem.id, scenario, messages, tool_schemas(env_name))


# ---- math ----------------------------------------------------------------------------------------

_MATH_TEMPLATES: list[tuple[str, str, Any]] = [
    ("A baker makes {a} trays of rolls with {b} rolls on each tray. She sells {c} rolls. How many rolls are left?",
     "trays = {a}\nper_tray = {b}\nsold = {c}\nprint(trays * per_tray - sold)", lambda a, b, c: a * b - c),
    ("Tom reads {a} pages every day for {b} days. How many pages does he read in total?",
     "pages = {a} * {b}\nprint(pages)", lambda a, b, c: a * b),
    ("A box holds {b} pencils. How many boxes are needed for {d} pencils?",
     "import math\nprint(math.ceil({d} / {b}))", lambda a, b, c, d: -(-d // b)),
    ("What is {a}% of {e}?", "print({a} * {e} / 100)", lambda a, b, c, d, e: _num(a * e / 100)),
    ("Anna has {c} stickers. She gives {a} to each of her {b} friends. How many stickers does she have now?",
     "left = {c} - {a} * {b}\nprint(left)", lambda a, b, c: c - a * b),
    ("A shop sells pens for {a} dollars each and notebooks for {b} dollars each. How much do {c} pens and {b} notebooks cost?",
     "print({c} * {a} + {b} * {b})", lambda a, b, c: c * a + b * b),
    ("What is the sum of all integers from 1 to {d}?", "print(sum(range(1, {d} + 1)))", lambda a, b, c, d: d * (d + 1) // 2),
    ("A car travels {e} km in {b} hours. What is its average speed in km per hour?",
     "print({e} / {b})", lambda a, b, c, d, e: _num(e / b)),
    ("What is the remainder when {e} is divided by {a}?", "print({e} % {a})", lambda a, b, c, d, e: e % a),
    ("Compute {a} * {b} + {c}.", "print({a} * {b} + {c})", lambda a, b, c: a * b + c),
]


def _num(x: float) -> Any:
    return int(x) if float(x).is_integer() else round(x, 6)


def math_transcript(rng: random.Random) -> Transcript:
    env = make_env("math")
    question, code_t, answer_fn = rng.choice(_MATH_TEMPLATES)
    values = {"a": rng.randint(2, 30), "b": rng.randint(2, 12), "c": rng.randint(40, 200), "d": rng.randint(20, 500),
              "e": rng.randint(100, 5000)}
    nargs = answer_fn.__code__.co_argcount
    answer = answer_fn(*[values[k] for k in "abcde"[:nargs]])
    question_text = question.format(**values)
    code = code_t.format(**values)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _system(env.seed_context, _MATH_SYSTEM_SENTENCES, rng)},
        {"role": "user", "content": question_text},
    ]
    n = 0
    scenario = "python-submit"
    if rng.random() < 0.2:
        scenario = "python-error-fix-submit"
        bad = code.replace("print(", "print(result + ", 1) if "print(" in code else code + "\nprint(result)"
        messages.append(_assistant(rng.choice(_THINK_MATH), "python", {"code": bad}, n))
        stderr, err = _traceback(bad, False, rng)
        stderr = stderr.replace("main.py", "calc.py").rsplit("\n", 2)[0] + "\nNameError: name 'result' is not defined\n"
        messages.append(_tool("python", f"status: runtime_error\nstderr:\n{stderr}", n))
        n += 1
        thought = _fmt(rng.choice(_THINK_MATH_FIX), {"err": "NameError"})
    else:
        thought = rng.choice(_THINK_MATH)
    messages.append(_assistant(thought, "python", {"code": code}, n))
    messages.append(_tool("python", f"status: ok\nstdout:\n{answer}\n", n))
    n += 1
    messages.append(_assistant(_fmt(rng.choice(_THINK_MATH_SUBMIT), {}, ans=answer), "submit", {"answer": str(answer)}, n))
    return Transcript("math", f"synthetic-math-{_hash(question_text)[:10]}", scenario, messages, tool_schemas("math"))


def generate_transcripts(count: int, seed: int = 0, math_fraction: float = 0.15) -> list[Transcript]:
    """``count`` transcripts from a fixed seed (the same list every time for the same arguments)."""
    rng = random.Random(seed)
    problems = training_problems()
    out: list[Transcript] = []
    for _ in range(count):
        if rng.random() < math_fraction:
            out.append(math_transcript(rng))
        else:
            env_name, problem = rng.choice(problems)
            out.append(code_transcript(env_name, problem, rng))
    return out
