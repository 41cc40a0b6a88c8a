"""Regenerate the offline task sets ``apps_style.jsonl`` and ``lcb_style.jsonl`` (written by this project,
not copied from any dataset):

    python -m fst_agent.env.data.offline.generate

Each problem is written here once: statement, test inputs, which tests are public, one correct solution
and a few wrong ones (off by one, wrong output format, too slow, crashing). Expected outputs are computed
by running the correct solution on the inputs (plain ``python3`` subprocesses: this is our own code), and
every example output written into a statement is checked against them. The tests in
``tests/environments/test_offline_sets.py`` judge every solution in the real sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _src(code: str) -> str:
    return textwrap.dedent(code).strip("\n") + "\n"


def run_stdin(code: str, stdin: str) -> str:
    out = subprocess.run([sys.executable, "-I", "-c", code], input=stdin, capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise RuntimeError(f"reference solution failed on {stdin!r}: {out.stderr}")
    return out.stdout


def run_call(code: str, fn_name: str, args: list[Any]) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile("from typing import *\n" + code, "<solution>", "exec"), namespace)  # noqa: S102 - our own code
    if "Solution" in namespace:
        fn = getattr(namespace["Solution"](), fn_name)
    else:
        fn = namespace[fn_name]
    result = fn(*json.loads(json.dumps(args)))
    return json.loads(json.dumps(result))  # tuples → lists, as the judges compare


# --------------------------------------------------------------------------------------------------
# APPS style: stdin programs (mostly) and a few call-based functions, one of them a `class Solution`
# --------------------------------------------------------------------------------------------------

APPS: list[dict[str, Any]] = [
    dict(
        slug="sum-of-numbers",
        difficulty="introductory",
        question="""
            You are given $n$ integers. Print their sum.

            -----Input-----

            The first line contains one integer $n$ ($1 \\le n \\le 100$). The second line contains $n$ integers $a_1, \\dots, a_n$ ($-1000 \\le a_i \\le 1000$).

            -----Output-----

            Print one integer: $a_1 + \\dots + a_n$.

            -----Examples-----
            Input
            3
            1 2 3

            Output
            6
            """,
        inputs=["3\n1 2 3\n", "1\n-5\n", "5\n10 -10 10 -10 7\n", "4\n1000 1000 1000 1000\n"],
        public=[0],
        solution="""
            n = int(input())
            print(sum(map(int, input().split())))
            """,
        wrong=[
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(sum(a[1:]))
            """,
            """
            n = int(input())
            print("Sum:", sum(map(int, input().split())))
            """,
        ],
    ),
    dict(
        slug="max-of-list",
        difficulty="introductory",
        question="""
            Find the largest of $n$ integers.

            -----Input-----

            The first line contains $n$ ($1 \\le n \\le 100$), the second line $n$ integers between $-10^9$ and $10^9$.

            -----Output-----

            Print the largest of them.

            -----Examples-----
            Input
            4
            3 9 2 9

            Output
            9
            """,
        inputs=["4\n3 9 2 9\n", "3\n-7 -2 -9\n", "1\n42\n", "5\n1 2 3 4 5\n"],
        public=[0],
        solution="""
            n = int(input())
            print(max(map(int, input().split())))
            """,
        wrong=[
            """
            n = int(input())
            best = 0
            for x in map(int, input().split()):
                best = max(best, x)
            print(best)
            """,
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(max(a[:-1]))
            """,
        ],
    ),
    dict(
        slug="reverse-string",
        difficulty="introductory",
        question="""
            Print the given string backwards.

            -----Input-----

            One line with a string $s$ of lowercase letters ($1 \\le |s| \\le 100$).

            -----Output-----

            Print $s$ reversed.

            -----Examples-----
            Input
            hello

            Output
            olleh
            """,
        inputs=["hello\n", "a\n", "abcdef\n", "racecar\n", "ab\n"],
        public=[0],
        solution="""
            print(input().strip()[::-1])
            """,
        wrong=[
            """
            s = input().strip()
            print(s[-2::-1])
            """,
            """
            s = input().strip()
            print(" ".join(reversed(s)))
            """,
        ],
    ),
    dict(
        slug="count-vowels",
        difficulty="introductory",
        question="""
            Count the vowels (a, e, i, o, u, in either case) in a line of text.

            -----Input-----

            One line of at most 200 characters: letters and spaces.

            -----Output-----

            Print the number of vowels.

            -----Examples-----
            Input
            Hello World

            Output
            3
            """,
        inputs=["Hello World\n", "xyz\n", "AEIOU aeiou\n", "Programming is fun\n"],
        public=[0],
        solution="""
            print(sum(1 for c in input().lower() if c in "aeiou"))
            """,
        wrong=[
            """
            print(sum(1 for c in input() if c in "aeiou"))
            """,
            """
            s = input()
            print(len([c for c in s if c.lower() in "aeiou"]) + 1)
            """,
        ],
    ),
    dict(
        slug="fizzbuzz",
        difficulty="introductory",
        question="""
            For every integer $i$ from 1 to $n$ print one line: "FizzBuzz" if $i$ is divisible by 15, "Fizz" if by 3, "Buzz" if by 5, else $i$ itself.

            -----Input-----

            One integer $n$ ($1 \\le n \\le 100$).

            -----Output-----

            $n$ lines as described.

            -----Examples-----
            Input
            5

            Output
            1
            2
            Fizz
            4
            Buzz
            """,
        inputs=["5\n", "1\n", "15\n", "16\n"],
        public=[0],
        solution="""
            n = int(input())
            for i in range(1, n + 1):
                if i % 15 == 0:
                    print("FizzBuzz")
                elif i % 3 == 0:
                    print("Fizz")
                elif i % 5 == 0:
                    print("Buzz")
                else:
                    print(i)
            """,
        wrong=[
            """
            n = int(input())
            for i in range(1, n):
                print("FizzBuzz" if i % 15 == 0 else "Fizz" if i % 3 == 0 else "Buzz" if i % 5 == 0 else i)
            """,
            """
            n = int(input())
            for i in range(1, n + 1):
                print("Fizz" if i % 3 == 0 else "Buzz" if i % 5 == 0 else "FizzBuzz" if i % 15 == 0 else i)
            """,
        ],
    ),
    dict(
        slug="count-evens",
        difficulty="introductory",
        question="""
            How many of the given integers are even?

            -----Input-----

            The first line contains $n$ ($1 \\le n \\le 100$), the second $n$ integers ($0 \\le a_i \\le 1000$).

            -----Output-----

            Print the number of even integers.

            -----Examples-----
            Input
            5
            1 2 3 4 6

            Output
            3
            """,
        inputs=["5\n1 2 3 4 6\n", "3\n1 3 5\n", "4\n0 0 0 1\n", "1\n8\n"],
        public=[0],
        solution="""
            n = int(input())
            print(sum(1 for x in map(int, input().split()) if x % 2 == 0))
            """,
        wrong=[
            """
            n = int(input())
            print(sum(1 for x in map(int, input().split()) if x % 2 == 1))
            """,
            """
            n = int(input())
            print(sum(1 for x in map(int, input().split()) if x % 2 == 0 and x > 0))
            """,
        ],
    ),
    dict(
        slug="min-and-max",
        difficulty="introductory",
        question="""
            Print the smallest and the largest of $n$ integers.

            -----Input-----

            The first line contains $n$ ($1 \\le n \\le 100$), the second $n$ integers ($|a_i| \\le 10^6$).

            -----Output-----

            Print the minimum and the maximum on one line, separated by a space.

            -----Examples-----
            Input
            4
            5 1 9 3

            Output
            1 9
            """,
        inputs=["4\n5 1 9 3\n", "1\n7\n", "3\n-1 -1 -1\n", "5\n100 -100 0 50 -50\n"],
        public=[0],
        solution="""
            n = int(input())
            a = list(map(int, input().split()))
            print(min(a), max(a))
            """,
        wrong=[
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(min(a))
            print(max(a))
            """,
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(a[0], a[-1])
            """,
        ],
    ),
    dict(
        slug="factorial",
        difficulty="introductory",
        question="""
            Print $n!$, the product $1 \\cdot 2 \\cdot \\ldots \\cdot n$ (and $0! = 1$).

            -----Input-----

            One integer $n$ ($0 \\le n \\le 20$).

            -----Output-----

            Print $n!$.

            -----Examples-----
            Input
            4

            Output
            24
            """,
        inputs=["4\n", "0\n", "1\n", "10\n", "20\n"],
        public=[0],
        solution="""
            n = int(input())
            r = 1
            for i in range(2, n + 1):
                r *= i
            print(r)
            """,
        wrong=[
            """
            n = int(input())
            r = 1
            for i in range(2, n):
                r *= i
            print(r)
            """,
            """
            def f(n):
                return n * f(n - 1) if n != 1 else 1
            print(f(int(input())))
            """,
        ],
    ),
    dict(
        slug="palindrome",
        difficulty="introductory",
        question="""
            Is the word a palindrome (the same read backwards)?

            -----Input-----

            One word of lowercase letters, length 1 to 100.

            -----Output-----

            Print "YES" if it is a palindrome, otherwise "NO".

            -----Examples-----
            Input
            level

            Output
            YES
            """,
        inputs=["level\n", "abca\n", "a\n", "abba\n", "ab\n"],
        public=[0],
        solution="""
            s = input().strip()
            print("YES" if s == s[::-1] else "NO")
            """,
        wrong=[
            """
            s = input().strip()
            print("yes" if s == s[::-1] else "no")
            """,
            """
            s = input().strip()
            print("YES" if s[0] == s[-1] else "NO")
            """,
        ],
    ),
    dict(
        slug="word-count",
        difficulty="introductory",
        question="""
            Count the words of a line. Words are separated by one or more spaces.

            -----Input-----

            One line of at most 200 characters with at least one word.

            -----Output-----

            Print the number of words.

            -----Examples-----
            Input
            the quick brown fox

            Output
            4
            """,
        inputs=["the quick brown fox\n", "hello\n", "a  b   c\n", "  leading and trailing  \n"],
        public=[0],
        solution="""
            print(len(input().split()))
            """,
        wrong=[
            """
            print(input().count(" ") + 1)
            """,
            """
            print(len(input().split()) - 1)
            """,
        ],
    ),
    dict(
        slug="products-of-pairs",
        difficulty="introductory",
        question="""
            Answer $q$ queries: for each pair $a$, $b$ print $a \\cdot b$.

            -----Input-----

            The first line contains $q$ ($1 \\le q \\le 100$). Each of the next $q$ lines holds two integers $a$, $b$ ($|a|, |b| \\le 10^9$).

            -----Output-----

            Print $q$ lines, the products in order.

            -----Examples-----
            Input
            2
            2 3
            -4 5

            Output
            6
            -20
            """,
        inputs=["2\n2 3\n-4 5\n", "1\n0 7\n", "3\n1000000000 1000000000\n1 1\n-1 -1\n"],
        public=[0],
        solution="""
            q = int(input())
            for _ in range(q):
                a, b = map(int, input().split())
                print(a * b)
            """,
        wrong=[
            """
            q = int(input())
            print(" ".join(str(a * b) for a, b in (map(int, input().split()) for _ in range(q))))
            """,
            """
            q = int(input())
            for _ in range(q - 1):
                a, b = map(int, input().split())
                print(a * b)
            """,
        ],
    ),
    dict(
        slug="triangular-number",
        difficulty="interview",
        question="""
            Print $1 + 2 + \\dots + n$.

            -----Input-----

            One integer $n$ ($1 \\le n \\le 10^{12}$).

            -----Output-----

            Print the sum.

            -----Examples-----
            Input
            4

            Output
            10
            """,
        inputs=["4\n", "1\n", "100\n", "1000000000000\n"],
        public=[0],
        solution="""
            n = int(input())
            print(n * (n + 1) // 2)
            """,
        wrong=[
            """
            n = int(input())
            total = 0
            for i in range(1, n + 1):
                total += i
            print(total)
            """,
            """
            n = int(input())
            print(n * (n - 1) // 2)
            """,
        ],
        too_slow=[0],
    ),
    dict(
        slug="second-largest",
        difficulty="interview",
        question="""
            Print the second largest distinct value among $n$ integers, or -1 if all values are equal.

            -----Input-----

            The first line contains $n$ ($1 \\le n \\le 100$), the second $n$ integers ($0 \\le a_i \\le 1000$).

            -----Output-----

            Print the answer.

            -----Examples-----
            Input
            5
            4 1 4 3 2

            Output
            3
            """,
        inputs=["5\n4 1 4 3 2\n", "3\n7 7 7\n", "2\n1 2\n", "4\n9 9 8 8\n"],
        public=[0],
        solution="""
            n = int(input())
            values = sorted(set(map(int, input().split())))
            print(values[-2] if len(values) > 1 else -1)
            """,
        wrong=[
            """
            n = int(input())
            values = sorted(map(int, input().split()))
            print(values[-2] if len(values) > 1 else -1)
            """,
            """
            n = int(input())
            values = sorted(set(map(int, input().split())))
            print(values[-2])
            """,
        ],
    ),
    dict(
        slug="count-hashes",
        difficulty="introductory",
        question="""
            A grid has $r$ rows of $c$ characters, each "#" or ".". Count the "#" cells.

            -----Input-----

            The first line contains $r$ and $c$ ($1 \\le r, c \\le 20$). Then $r$ lines of $c$ characters follow.

            -----Output-----

            Print the number of "#" cells.

            -----Examples-----
            Input
            2 3
            #.#
            .#.

            Output
            3
            """,
        inputs=["2 3\n#.#\n.#.\n", "1 1\n.\n", "3 2\n##\n##\n#.\n"],
        public=[0],
        solution="""
            r, c = map(int, input().split())
            print(sum(input().count("#") for _ in range(r)))
            """,
        wrong=[
            """
            r, c = map(int, input().split())
            print(sum(input().count("#") for _ in range(r - 1)))
            """,
            """
            r, c = map(int, input().split())
            rows = [input() for _ in range(r)]
            print(sum(row.count("#") for row in rows[1:]) + rows[0].index("#"))
            """,
        ],
    ),
    dict(
        slug="gcd",
        difficulty="introductory",
        question="""
            Print the greatest common divisor of $a$ and $b$.

            -----Input-----

            Two integers $a$ and $b$ ($1 \\le a, b \\le 10^{18}$) on one line.

            -----Output-----

            Print $\\gcd(a, b)$.

            -----Examples-----
            Input
            12 18

            Output
            6
            """,
        inputs=["12 18\n", "7 13\n", "100 100\n", "1000000000000000000 999999999999999999\n"],
        public=[0],
        solution="""
            import math
            a, b = map(int, input().split())
            print(math.gcd(a, b))
            """,
        wrong=[
            """
            a, b = map(int, input().split())
            print(min(a, b))
            """,
            """
            a, b = map(int, input().split())
            d = min(a, b)
            while a % d or b % d:
                d -= 1
            print(d)
            """,
        ],
        too_slow=[1],
    ),
    dict(
        slug="digit-sum",
        difficulty="introductory",
        question="""
            Print the sum of the decimal digits of $n$.

            -----Input-----

            One integer $n$ ($0 \\le n \\le 10^{100}$).

            -----Output-----

            Print the digit sum.

            -----Examples-----
            Input
            1234

            Output
            10
            """,
        inputs=["1234\n", "0\n", "99999\n", "1000000000000000000000000000000000000001\n"],
        public=[0],
        solution="""
            print(sum(int(c) for c in input().strip()))
            """,
        wrong=[
            """
            n = int(input())
            print(n % 9)
            """,
            """
            s = input().strip()
            print(sum(int(c) for c in s[1:]))
            """,
        ],
    ),
    dict(
        slug="prefix-sums",
        difficulty="introductory",
        question="""
            Print the running totals of $n$ integers: $a_1$, $a_1 + a_2$, ..., $a_1 + \\dots + a_n$.

            -----Input-----

            The first line contains $n$ ($1 \\le n \\le 100$), the second $n$ integers ($|a_i| \\le 1000$).

            -----Output-----

            Print the $n$ running totals on one line, separated by spaces.

            -----Examples-----
            Input
            4
            1 2 3 4

            Output
            1 3 6 10
            """,
        inputs=["4\n1 2 3 4\n", "1\n5\n", "3\n-1 1 -1\n"],
        public=[0],
        solution="""
            n = int(input())
            total, out = 0, []
            for x in map(int, input().split()):
                total += x
                out.append(total)
            print(*out)
            """,
        wrong=[
            """
            from itertools import accumulate
            n = int(input())
            print(list(accumulate(map(int, input().split()))))
            """,
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(*[sum(a[:i]) for i in range(1, n)])
            """,
        ],
    ),
    # ---- call-based ----
    dict(
        slug="add-two-numbers",
        difficulty="introductory",
        question="""
            Write a function `add(a, b)` that returns the sum of the integers `a` and `b`.

            Example: `add(2, 3)` returns `5`.
            """,
        starter_code="def add(a, b):\n    ",
        fn_name="add",
        inputs=[[2, 3], [-1, 1], [0, 0], [123456789, 987654321]],
        public=[0],
        solution="""
            def add(a, b):
                return a + b
            """,
        wrong=[
            """
            def add(a, b):
                return a - b
            """,
            """
            def add(a, b):
                print(a + b)
            """,
        ],
    ),
    dict(
        slug="is-anagram",
        difficulty="introductory",
        question="""
            Write a function `is_anagram(s, t)` that returns `True` when the strings `s` and `t` contain the same letters
            the same number of times, else `False`.

            Example: `is_anagram("listen", "silent")` returns `True`.
            """,
        starter_code="def is_anagram(s, t):\n    ",
        fn_name="is_anagram",
        inputs=[["listen", "silent"], ["aab", "abb"], ["", ""], ["abc", "ab"]],
        public=[0],
        solution="""
            def is_anagram(s, t):
                return sorted(s) == sorted(t)
            """,
        wrong=[
            """
            def is_anagram(s, t):
                return set(s) == set(t)
            """,
            """
            def is_anagram(s, t):
                return sorted(s) == sorted(t) and s[0] != ""
            """,
        ],
    ),
    dict(
        slug="max-profit",
        difficulty="interview",
        question="""
            `prices[i]` is a stock's price on day `i`. Choose one day to buy and a later day to sell; return the largest
            profit you can make, or 0 if no profit is possible.

            Example 1: prices = [7, 1, 5, 3, 6, 4] → 5 (buy at 1, sell at 6).
            Example 2: prices = [7, 6, 4, 3, 1] → 0.
            """,
        starter_code="class Solution:\n    def maxProfit(self, prices: List[int]) -> int:\n        ",
        fn_name="maxProfit",
        inputs=[[[7, 1, 5, 3, 6, 4]], [[7, 6, 4, 3, 1]], [[1]], [[2, 4, 1, 10]], [[3, 3, 5, 0, 0, 3, 1, 4]]],
        public=[0, 1],
        solution="""
            class Solution:
                def maxProfit(self, prices: List[int]) -> int:
                    best, low = 0, float("inf")
                    for p in prices:
                        low = min(low, p)
                        best = max(best, p - low)
                    return best
            """,
        wrong=[
            """
            class Solution:
                def maxProfit(self, prices: List[int]) -> int:
                    return max(prices) - min(prices)
            """,
            """
            class Solution:
                def maxProfit(self, prices: List[int]) -> int:
                    return max(prices[i + 1] - prices[i] for i in range(len(prices) - 1))
            """,
        ],
    ),
    dict(
        slug="count-words-function",
        difficulty="introductory",
        question="""
            Write a function `count_words(s)` returning how many words the string `s` holds (words are separated by
            whitespace).

            Example: `count_words("a b  c")` returns `3`.
            """,
        starter_code="def count_words(s):\n    ",
        fn_name="count_words",
        inputs=[["a b  c"], [""], ["one"], ["  two words  "]],
        public=[0],
        solution="""
            def count_words(s):
                return len(s.split())
            """,
        wrong=[
            """
            def count_words(s):
                return len(s.split(" "))
            """,
            """
            def count_words(s):
                return str(len(s.split()))
            """,
        ],
    ),
]


# --------------------------------------------------------------------------------------------------
# LiveCodeBench style: AtCoder/Codeforces stdin problems and LeetCode `class Solution` problems
# --------------------------------------------------------------------------------------------------

LCB: list[dict[str, Any]] = [
    dict(
        slug="a-plus-b",
        platform="atcoder",
        difficulty="easy",
        title="A+B",
        question="""
            You are given two integers A and B. Print A+B.

            Input

            The input is given from Standard Input in the following format:
            A B

            Output

            Print the answer.

            Constraints

            - -10^9 \\leq A, B \\leq 10^9

            Sample Input 1

            3 5

            Sample Output 1

            8
            """,
        inputs=["3 5\n", "-3 3\n", "1000000000 1000000000\n", "0 -7\n"],
        public=[0],
        solution="""
            a, b = map(int, input().split())
            print(a + b)
            """,
        wrong=[
            """
            a, b = map(int, input().split())
            print(f"{a} + {b} = {a + b}")
            """,
            """
            a, b = input().split()
            print(a + b)
            """,
        ],
    ),
    dict(
        slug="repeat-string",
        platform="atcoder",
        difficulty="easy",
        title="Repeat It",
        question="""
            You are given a positive integer N and a string S. Print S repeated N times, without separators.

            Input

            N
            S

            Output

            Print the answer.

            Constraints

            - 1 \\leq N \\leq 10
            - S is a string of 1 to 10 lowercase letters.

            Sample Input 1

            3
            ab

            Sample Output 1

            ababab
            """,
        inputs=["3\nab\n", "1\nz\n", "10\nxy\n"],
        public=[0],
        solution="""
            n = int(input())
            s = input().strip()
            print(s * n)
            """,
        wrong=[
            """
            n = int(input())
            s = input().strip()
            print(" ".join([s] * n))
            """,
            """
            n = int(input())
            s = input().strip()
            print(s * (n - 1))
            """,
        ],
    ),
    dict(
        slug="longest-run",
        platform="codeforces",
        difficulty="easy",
        title="Longest Run",
        question="""
            Given a string s, find the length of its longest block of equal consecutive characters.

            Input

            The first line contains t (1 ≤ t ≤ 10), the number of test cases. Each of the next t lines contains a
            string s of 1 to 100 lowercase letters.

            Output

            For each test case print the answer on its own line.

            Example

            Input

            2
            aabbbc
            z

            Output

            3
            1
            """,
        inputs=["2\naabbbc\nz\n", "1\nabc\n", "3\naaaa\nabba\nbbbab\n"],
        public=[0],
        solution="""
            t = int(input())
            for _ in range(t):
                s = input().strip()
                best = run = 1
                for i in range(1, len(s)):
                    run = run + 1 if s[i] == s[i - 1] else 1
                    best = max(best, run)
                print(best)
            """,
        wrong=[
            """
            t = int(input())
            for _ in range(t):
                s = input().strip()
                best = run = 1
                for i in range(1, len(s)):
                    if s[i] == s[i - 1]:
                        run += 1
                    else:
                        best = max(best, run)
                        run = 1
                print(best)
            """,
            """
            t = int(input())
            for _ in range(t):
                s = input().strip()
                print(max(s.count(c) for c in set(s)))
            """,
        ],
    ),
    dict(
        slug="count-occurrences",
        platform="atcoder",
        difficulty="easy",
        title="Count X",
        question="""
            You are given N integers A_1, ..., A_N and an integer X. How many i satisfy A_i = X?

            Input

            N X
            A_1 A_2 ... A_N

            Output

            Print the answer.

            Constraints

            - 1 \\leq N \\leq 100
            - 1 \\leq A_i, X \\leq 100

            Sample Input 1

            5 2
            1 2 2 3 2

            Sample Output 1

            3
            """,
        inputs=["5 2\n1 2 2 3 2\n", "3 9\n1 2 3\n", "4 7\n7 7 7 7\n", "3 1\n1 11 21\n"],
        public=[0],
        solution="""
            n, x = map(int, input().split())
            print(list(map(int, input().split())).count(x))
            """,
        wrong=[
            """
            n, x = map(int, input().split())
            print(input().count(str(x)))
            """,
            """
            n, x = map(int, input().split())
            a = list(map(int, input().split()))
            print(a.index(x))
            """,
        ],
    ),
    dict(
        slug="is-sorted",
        platform="atcoder",
        difficulty="easy",
        title="Sorted?",
        question="""
            Is the sequence A_1, ..., A_N non-decreasing? Print Yes or No.

            Input

            N
            A_1 A_2 ... A_N

            Output

            Print Yes if A_1 \\leq A_2 \\leq ... \\leq A_N, and No otherwise.

            Sample Input 1

            4
            1 2 2 5

            Sample Output 1

            Yes
            """,
        inputs=["4\n1 2 2 5\n", "3\n3 2 1\n", "1\n5\n", "5\n1 2 3 5 4\n"],
        public=[0],
        solution="""
            n = int(input())
            a = list(map(int, input().split()))
            print("Yes" if all(a[i] <= a[i + 1] for i in range(n - 1)) else "No")
            """,
        wrong=[
            """
            n = int(input())
            a = list(map(int, input().split()))
            print("Yes" if all(a[i] <= a[i + 1] for i in range(n - 2)) else "No")
            """,
            """
            n = int(input())
            a = list(map(int, input().split()))
            print(a == sorted(a))
            """,
        ],
    ),
    dict(
        slug="middle-character",
        platform="atcoder",
        difficulty="easy",
        title="Middle Letter",
        question="""
            You are given a string S of odd length. Print its middle character.

            Input

            S

            Output

            Print the answer.

            Constraints

            - S has odd length between 1 and 99 and consists of lowercase letters.

            Sample Input 1

            atcoder

            Sample Output 1

            c
            """,
        inputs=["atcoder\n", "x\n", "abc\n", "abcdefghi\n"],
        public=[0],
        solution="""
            s = input().strip()
            print(s[len(s) // 2])
            """,
        wrong=[
            """
            s = input().strip()
            print(s[len(s) // 2 - 1])
            """,
            """
            s = input().strip()
            print(s[len(s) // 2 + 1])
            """,
        ],
    ),
    dict(
        slug="capitalize-words",
        platform="codeforces",
        difficulty="easy",
        title="Capitals",
        question="""
            Capitalize the first letter of every word of a line (words are separated by single spaces; all letters are
            lowercase).

            Input

            One line with 1 to 100 characters.

            Output

            Print the line with every word capitalized.

            Example

            Input

            hello big world

            Output

            Hello Big World
            """,
        inputs=["hello big world\n", "a\n", "x y z\n"],
        public=[0],
        solution="""
            print(" ".join(w[:1].upper() + w[1:] for w in input().split(" ")))
            """,
        wrong=[
            """
            print(input().upper())
            """,
            """
            words = input().split(" ")
            print(" ".join([words[0].capitalize()] + words[1:]))
            """,
        ],
    ),
    dict(
        slug="average-floor",
        platform="atcoder",
        difficulty="easy",
        title="Average",
        question="""
            Print the average of N non-negative integers, rounded down to an integer.

            Input

            N
            A_1 ... A_N

            Output

            Print the answer.

            Sample Input 1

            3
            1 2 4

            Sample Output 1

            2
            """,
        inputs=["3\n1 2 4\n", "1\n0\n", "4\n5 5 5 6\n", "2\n1000000000 999999999\n"],
        public=[0],
        solution="""
            n = int(input())
            print(sum(map(int, input().split())) // n)
            """,
        wrong=[
            """
            n = int(input())
            print(sum(map(int, input().split())) / n)
            """,
            """
            n = int(input())
            print(round(sum(map(int, input().split())) / n))
            """,
        ],
    ),
    dict(
        slug="pairs-with-sum",
        platform="atcoder",
        difficulty="medium",
        title="Pair Sum",
        question="""
            Count the pairs (i, j) with 1 \\leq i < j \\leq N and A_i + A_j = K.

            Input

            N K
            A_1 ... A_N

            Output

            Print the answer.

            Constraints

            - 2 \\leq N \\leq 2 \\times 10^5
            - 1 \\leq A_i, K \\leq 10^9

            Sample Input 1

            4 5
            1 4 2 3

            Sample Output 1

            2
            """,
        inputs=["4 5\n1 4 2 3\n", "3 2\n1 1 1\n", "2 10\n1 2\n", "__BIG_PAIRS__"],
        public=[0],
        solution="""
            from collections import Counter
            n, k = map(int, input().split())
            seen = Counter()
            count = 0
            for x in map(int, input().split()):
                count += seen[k - x]
                seen[x] += 1
            print(count)
            """,
        wrong=[
            """
            n, k = map(int, input().split())
            a = list(map(int, input().split()))
            print(sum(1 for i in range(n) for j in range(i + 1, n) if a[i] + a[j] == k))
            """,
            """
            n, k = map(int, input().split())
            a = set(map(int, input().split()))
            print(sum(1 for x in a if k - x in a) // 2)
            """,
        ],
        too_slow=[0],
    ),
    dict(
        slug="sum-of-digits-queries",
        platform="codeforces",
        difficulty="easy",
        title="Digit Sums",
        question="""
            For each of t integers print the sum of its digits.

            Input

            The first line contains t (1 ≤ t ≤ 100). Each of the next t lines contains an integer n (1 ≤ n ≤ 10^9).

            Output

            Print t lines.

            Example

            Input

            2
            12
            909

            Output

            3
            18
            """,
        inputs=["2\n12\n909\n", "1\n1\n", "3\n1000000000\n999999999\n55\n"],
        public=[0],
        solution="""
            t = int(input())
            for _ in range(t):
                print(sum(map(int, input().strip())))
            """,
        wrong=[
            """
            t = int(input())
            for _ in range(t):
                n = int(input())
                print(n % 10 + n // 10 % 10)
            """,
            """
            t = int(input())
            for _ in range(t):
                print(sum(map(int, input())), end=" ")
            """,
        ],
    ),
    # ---- LeetCode-style functional problems ----
    dict(
        slug="sum-of-array",
        platform="leetcode",
        difficulty="easy",
        title="sum-of-array",
        question="""
            You are given an integer array nums. Return the sum of its elements.

            Example 1:

            Input: nums = [1,2,3]
            Output: 6

            Constraints:

            1 <= nums.length <= 100
            -100 <= nums[i] <= 100
            """,
        fn_name="sumArray",
        starter_code="class Solution:\n    def sumArray(self, nums: List[int]) -> int:\n        ",
        inputs=[[[1, 2, 3]], [[-5]], [[100, -100, 7]], [[0, 0, 0, 1]]],
        public=[0],
        solution="""
            class Solution:
                def sumArray(self, nums: List[int]) -> int:
                    return sum(nums)
            """,
        wrong=[
            """
            class Solution:
                def sumArray(self, nums: List[int]) -> int:
                    return sum(nums[:-1])
            """,
            """
            class Solution:
                def sumArray(self, nums: List[int]) -> int:
                    return str(sum(nums))
            """,
        ],
    ),
    dict(
        slug="maximum-element",
        platform="leetcode",
        difficulty="easy",
        title="maximum-element",
        question="""
            Return the largest element of the integer array nums.

            Example 1:

            Input: nums = [3,7,2]
            Output: 7

            Constraints:

            1 <= nums.length <= 100
            -1000 <= nums[i] <= 1000
            """,
        fn_name="maxElement",
        starter_code="class Solution:\n    def maxElement(self, nums: List[int]) -> int:\n        ",
        inputs=[[[3, 7, 2]], [[-4, -2, -9]], [[5]]],
        public=[0],
        solution="""
            class Solution:
                def maxElement(self, nums: List[int]) -> int:
                    return max(nums)
            """,
        wrong=[
            """
            class Solution:
                def maxElement(self, nums: List[int]) -> int:
                    best = 0
                    for x in nums:
                        best = max(best, x)
                    return best
            """,
            """
            class Solution:
                def maxElement(self, nums: List[int]) -> int:
                    return sorted(nums)[1]
            """,
        ],
    ),
    dict(
        slug="reverse-words",
        platform="leetcode",
        difficulty="easy",
        title="reverse-words",
        question="""
            Given a string s of words separated by single spaces, return the words in reverse order, joined by single
            spaces.

            Example 1:

            Input: s = "the sky is blue"
            Output: "blue is sky the"

            Constraints:

            1 <= s.length <= 100
            """,
        fn_name="reverseWords",
        starter_code="class Solution:\n    def reverseWords(self, s: str) -> str:\n        ",
        inputs=[["the sky is blue"], ["hello"], ["a b"]],
        public=[0],
        solution="""
            class Solution:
                def reverseWords(self, s: str) -> str:
                    return " ".join(reversed(s.split(" ")))
            """,
        wrong=[
            """
            class Solution:
                def reverseWords(self, s: str) -> str:
                    return s[::-1]
            """,
            """
            class Solution:
                def reverseWords(self, s: str) -> str:
                    return list(reversed(s.split(" ")))
            """,
        ],
    ),
    dict(
        slug="count-vowels-leetcode",
        platform="leetcode",
        difficulty="easy",
        title="count-vowels",
        question="""
            Return the number of vowels ('a', 'e', 'i', 'o', 'u') in the lowercase string word.

            Example 1:

            Input: word = "leetcode"
            Output: 4

            Constraints:

            1 <= word.length <= 100
            """,
        fn_name="countVowels",
        starter_code="class Solution:\n    def countVowels(self, word: str) -> int:\n        ",
        inputs=[["leetcode"], ["xyz"], ["aeiou"], ["banana"]],
        public=[0],
        solution="""
            class Solution:
                def countVowels(self, word: str) -> int:
                    return sum(c in "aeiou" for c in word)
            """,
        wrong=[
            """
            class Solution:
                def countVowels(self, word: str) -> int:
                    return len(set(c for c in word if c in "aeiou"))
            """,
            """
            class Solution:
                def countVowels(self, word: str) -> int:
                    return sum(c in "aeiou" for c in word[1:])
            """,
        ],
    ),
    dict(
        slug="fizz-buzz-list",
        platform="leetcode",
        difficulty="easy",
        title="fizz-buzz",
        question="""
            Return a list answer of length n where answer[i - 1] is "FizzBuzz" if i is divisible by 3 and 5, "Fizz" if
            divisible by 3, "Buzz" if divisible by 5, and str(i) otherwise.

            Example 1:

            Input: n = 3
            Output: ["1","2","Fizz"]

            Constraints:

            1 <= n <= 100
            """,
        fn_name="fizzBuzz",
        starter_code="class Solution:\n    def fizzBuzz(self, n: int) -> List[str]:\n        ",
        inputs=[[3], [1], [15], [5]],
        public=[0],
        solution="""
            class Solution:
                def fizzBuzz(self, n: int) -> List[str]:
                    out = []
                    for i in range(1, n + 1):
                        s = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
                        out.append(s or str(i))
                    return out
            """,
        wrong=[
            """
            class Solution:
                def fizzBuzz(self, n: int) -> List[str]:
                    out = []
                    for i in range(1, n + 1):
                        s = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
                        out.append(s or i)
                    return out
            """,
            """
            class Solution:
                def fizzBuzz(self, n: int) -> List[str]:
                    return [("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "") or str(i) for i in range(n)]
            """,
        ],
    ),
    dict(
        slug="palindrome-number",
        platform="leetcode",
        difficulty="easy",
        title="palindrome-number",
        question="""
            Given an integer x, return true if x reads the same backwards as forwards, else false. Negative numbers are
            never palindromes.

            Example 1:

            Input: x = 121
            Output: true

            Example 2:

            Input: x = -121
            Output: false

            Constraints:

            -2^31 <= x <= 2^31 - 1
            """,
        fn_name="isPalindrome",
        starter_code="class Solution:\n    def isPalindrome(self, x: int) -> bool:\n        ",
        inputs=[[121], [-121], [10], [0], [1234321], [1231]],
        public=[0, 1],
        solution="""
            class Solution:
                def isPalindrome(self, x: int) -> bool:
                    return str(x) == str(x)[::-1]
            """,
        wrong=[
            """
            class Solution:
                def isPalindrome(self, x: int) -> bool:
                    return str(abs(x)) == str(abs(x))[::-1]
            """,
            """
            class Solution:
                def isPalindrome(self, x: int) -> bool:
                    s = str(x)
                    return s[0] == s[-1]
            """,
        ],
    ),
    dict(
        slug="missing-number",
        platform="leetcode",
        difficulty="easy",
        title="missing-number",
        question="""
            nums holds n distinct numbers from the range [0, n]. Return the only number of the range missing from nums.

            Example 1:

            Input: nums = [3,0,1]
            Output: 2

            Constraints:

            1 <= n <= 1000
            """,
        fn_name="missingNumber",
        starter_code="class Solution:\n    def missingNumber(self, nums: List[int]) -> int:\n        ",
        inputs=[[[3, 0, 1]], [[0, 1]], [[1]], [[9, 6, 4, 2, 3, 5, 7, 0, 1]]],
        public=[0],
        solution="""
            class Solution:
                def missingNumber(self, nums: List[int]) -> int:
                    n = len(nums)
                    return n * (n + 1) // 2 - sum(nums)
            """,
        wrong=[
            """
            class Solution:
                def missingNumber(self, nums: List[int]) -> int:
                    n = len(nums)
                    return n * (n - 1) // 2 - sum(nums)
            """,
            """
            class Solution:
                def missingNumber(self, nums: List[int]) -> int:
                    s = sorted(nums)
                    for i in range(len(s)):
                        if s[i] != i:
                            return i
            """,
        ],
    ),
    dict(
        slug="running-sum",
        platform="leetcode",
        difficulty="easy",
        title="running-sum-of-1d-array",
        question="""
            Return the running sum of nums: runningSum[i] = sum(nums[0]...nums[i]).

            Example 1:

            Input: nums = [1,2,3,4]
            Output: [1,3,6,10]

            Constraints:

            1 <= nums.length <= 1000
            """,
        fn_name="runningSum",
        starter_code="class Solution:\n    def runningSum(self, nums: List[int]) -> List[int]:\n        ",
        inputs=[[[1, 2, 3, 4]], [[5]], [[3, -1, 0, 2]]],
        public=[0],
        solution="""
            class Solution:
                def runningSum(self, nums: List[int]) -> List[int]:
                    out, total = [], 0
                    for x in nums:
                        total += x
                        out.append(total)
                    return out
            """,
        wrong=[
            """
            class Solution:
                def runningSum(self, nums: List[int]) -> List[int]:
                    return [sum(nums[:i]) for i in range(len(nums))]
            """,
            """
            class Solution:
                def runningSum(self, nums: List[int]) -> List[int]:
                    for i in range(1, len(nums)):
                        nums[i] += nums[i - 1]
                    return " ".join(map(str, nums))
            """,
        ],
    ),
    dict(
        slug="majority-element",
        platform="leetcode",
        difficulty="medium",
        title="majority-element",
        question="""
            Return the element of nums that appears more than len(nums) / 2 times (it always exists).

            Example 1:

            Input: nums = [3,2,3]
            Output: 3

            Constraints:

            1 <= nums.length <= 1000
            """,
        fn_name="majorityElement",
        starter_code="class Solution:\n    def majorityElement(self, nums: List[int]) -> int:\n        ",
        inputs=[[[3, 2, 3]], [[2, 2, 1, 1, 1, 2, 2]], [[7]], [[1, 5, 5]]],
        public=[0],
        solution="""
            class Solution:
                def majorityElement(self, nums: List[int]) -> int:
                    return max(set(nums), key=nums.count)
            """,
        wrong=[
            """
            class Solution:
                def majorityElement(self, nums: List[int]) -> int:
                    return nums[0]
            """,
            """
            class Solution:
                def majorityElement(self, nums: List[int]) -> int:
                    return sorted(nums)[len(nums) // 2 + 1]
            """,
        ],
    ),
    dict(
        slug="climbing-stairs",
        platform="leetcode",
        difficulty="medium",
        title="climbing-stairs",
        question="""
            You climb a staircase of n steps, 1 or 2 steps at a time. In how many distinct ways can you reach the top?

            Example 1:

            Input: n = 2
            Output: 2

            Example 2:

            Input: n = 3
            Output: 3

            Constraints:

            1 <= n <= 90
            """,
        fn_name="climbStairs",
        starter_code="class Solution:\n    def climbStairs(self, n: int) -> int:\n        ",
        inputs=[[2], [3], [1], [10], [90]],
        public=[0, 1],
        solution="""
            class Solution:
                def climbStairs(self, n: int) -> int:
                    a, b = 1, 1
                    for _ in range(n):
                        a, b = b, a + b
                    return a
            """,
        wrong=[
            """
            class Solution:
                def climbStairs(self, n: int) -> int:
                    if n <= 1:
                        return 1
                    return self.climbStairs(n - 1) + self.climbStairs(n - 2)
            """,
            """
            class Solution:
                def climbStairs(self, n: int) -> int:
                    a, b = 1, 1
                    for _ in range(n - 1):
                        a, b = b, a + b
                    return a
            """,
        ],
        too_slow=[0],
    ),
]

# large enough that the quadratic wrong solution runs for minutes while the linear one takes milliseconds
_BIG_PAIRS = "30000 1000\n" + " ".join(str(1 + (i * 7919) % 999) for i in range(30000)) + "\n"


def build_apps() -> list[dict[str, Any]]:
    rows = []
    for p in APPS:
        fn_name = p.get("fn_name")
        solution = _src(p["solution"])
        question = textwrap.dedent(p["question"]).strip() + "\n"
        if fn_name:
            outputs = [run_call(solution, fn_name, args) for args in p["inputs"]]
        else:
            outputs = [run_stdin(solution, inp) for inp in p["inputs"]]
            for i in p["public"]:  # the example in the statement is the public test, verbatim
                assert p["inputs"][i].strip() in question and outputs[i].strip() in question, p["slug"]
        rows.append(
            {
                "id": f"offline-apps-{p['slug']}",
                "question": question,
                "starter_code": p.get("starter_code", ""),
                "fn_name": fn_name,
                "difficulty": p["difficulty"],
                "inputs": p["inputs"],
                "outputs": outputs,
                "public_tests": p["public"],
                "solutions": [solution],
                "wrong_solutions": [_src(w) for w in p["wrong"]],
                "too_slow_wrong_solutions": p.get("too_slow", []),
            }
        )
    return rows


def build_lcb() -> list[dict[str, Any]]:
    rows = []
    for n, p in enumerate(LCB):
        fn_name = p.get("fn_name")
        solution = _src(p["solution"])
        question = textwrap.dedent(p["question"]).strip() + "\n"
        tests = []
        for i, inp in enumerate(p["inputs"]):
            public = i in p["public"]
            if fn_name:
                out = run_call(solution, fn_name, inp)
                tests.append({"input": "\n".join(json.dumps(a) for a in inp), "output": json.dumps(out),
                              "testtype": "functional", "public": public})
            else:
                inp = _BIG_PAIRS if inp == "__BIG_PAIRS__" else inp
                out = run_stdin(solution, inp)
                if public:
                    assert inp.strip() in question and out.strip() in question, p["slug"]
                tests.append({"input": inp, "output": out, "testtype": "stdin", "public": public})
        rows.append(
            {
                "id": f"offline-lcb-{p['platform']}-{p['slug']}",
                "question_title": p["title"],
                "question": question,
                "platform": p["platform"],
                "difficulty": p["difficulty"],
                "contest_date": f"2024-{1 + n % 12:02d}-{1 + n:02d}T00:00:00",
                "starter_code": p.get("starter_code", ""),
                "fn_name": fn_name,
                "tests": tests,
                "solutions": [solution],
                "wrong_solutions": [_src(w) for w in p["wrong"]],
                "too_slow_wrong_solutions": p.get("too_slow", []),
            }
        )
    return rows


def main() -> None:
    for name, rows in (("apps_style.jsonl", build_apps()), ("lcb_style.jsonl", build_lcb())):
        with (HERE / name).open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} problems to {HERE / name}")


if __name__ == "__main__":
    main()
