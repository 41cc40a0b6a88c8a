"""The rule library of the ``fst-rules`` task family: string transforms of a few letters.

Plain Python with no imports beyond the standard library: the environment ships this very file into the
sandbox, where the checker applies the hidden rule to the task's input and compares it with the answer.
Letters are written space-separated ("c a t"), so each letter is its own token for a small BPE tokenizer.
"""

from __future__ import annotations

import string

ALPHABET = string.ascii_lowercase


def _shift(letters, k):
    return [ALPHABET[(ALPHABET.index(c) + k) % 26] for c in letters]


def _swap_pairs(letters):
    out = list(letters)
    for i in range(0, len(out) - 1, 2):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


#: rule id -> (the statement a context carries, the transform of a list of lowercase letters)
RULES = {
    "shift:1": ("Shift every letter 1 place forward in the alphabet (z wraps to a).", lambda s: _shift(s, 1)),
    "shift:2": ("Shift every letter 2 places forward in the alphabet (z wraps to a).", lambda s: _shift(s, 2)),
    "shift:3": ("Shift every letter 3 places forward in the alphabet (z wraps to a).", lambda s: _shift(s, 3)),
    "back:1": ("Shift every letter 1 place back in the alphabet (a wraps to z).", lambda s: _shift(s, -1)),
    "reverse": ("Write the letters in reverse order.", lambda s: list(reversed(s))),
    "swap": ("Swap each pair of neighbouring letters (first with second, third with fourth, ...).", _swap_pairs),
    "rotate:1": ("Move the first letter to the end.", lambda s: list(s[1:]) + list(s[:1])),
    "rotate:2": ("Move the first 2 letters to the end.", lambda s: list(s[2:]) + list(s[:2])),
    "upper": ("Write every letter in uppercase.", lambda s: [c.upper() for c in s]),
    "double": ("Write every letter twice.", lambda s: [c + c for c in s]),
    "mirror": ("Replace each letter by its mirror in the alphabet (a and z, b and y, ...).",
               lambda s: [ALPHABET[25 - ALPHABET.index(c)] for c in s]),
}


def apply_rule(rule_id, text):
    """The expected answer of ``rule_id`` for the space-separated letters ``text``."""
    return " ".join(RULES[rule_id][1](text.split()))


def answer_letters(answer):
    """The submitted answer as a list of letters: space-separated, or one run of letters written together."""
    parts = answer.strip().split()
    if len(parts) == 1 and len(parts[0]) > 1 and parts[0].isalpha() and parts[0].islower():
        return list(parts[0])
    return parts


def score(expected, answer):
    """The share of positions where the answer has the expected letter (0..1; 1 only for an exact answer)."""
    exp, got = expected.split(), answer_letters(answer)
    width = max(len(exp), len(got), 1)
    return sum(a == b for a, b in zip(exp, got, strict=False)) / width


if __name__ == "__main__":  # the sandbox checker: {"rule", "input", "answer"} on stdin -> a verdict on stdout
    import json
    import sys

    task = json.load(sys.stdin)
    expected = apply_rule(task["rule"], task["input"])
    print(json.dumps({"expected": expected, "got": task["answer"], "score": score(expected, task["answer"])}))
