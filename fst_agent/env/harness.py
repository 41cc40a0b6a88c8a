"""The in-sandbox test harness: runs every test of one or more programs in ONE sandbox run (stdlib only).

This file is not imported to judge: :mod:`fst_agent.env.judge` reads its source, writes it into the
session and runs ``python3 -I <harness>`` with the spec (JSON) on standard input. It is importable, too,
so the host's tests can reach its pure parts (:func:`plan_program`, :func:`encode_value`).

What it does, the way the APPS and LiveCodeBench harnesses run programs, but with failure isolation:

* start once: the LiveCodeBench prelude (``from typing import *``, ``collections``, ``heapq``, ``math``,
  ``itertools``, ``bisect``, ``functools``, ``string``, ``re``, ... and ``sys.setrecursionlimit(50000)``)
  is imported here, in the parent, before anything forks; every child finds it loaded.
* per program (a spec holds one, or a batch: ``programs``), compile once: standard-input programs are
  wrapped in a function (so a top-level ``return`` works; imports stay at module level; names that
  nested functions declare ``global`` are declared ``global`` in the wrapper too), with
  ``__name__ == "__main__"`` (the guard runs). ``wrap`` decides the order: ``wrap_first`` falls back to
  the plain program when the wrapped one does not compile (``from x import *`` inside a block, ...);
  ``plain_first`` wraps only programs that do not compile as they are (top-level ``return``/``nonlocal``);
  ``never`` never wraps. A program that compiles neither way is a compile error for every test.
* the tests run in forked children of this process: own process group, ``RLIMIT_AS``, a CPU limit per
  test, real ``sys.stdin`` (a memfd holding the test's input: ``readline``/``readlines``/``read``/
  ``open(0)`` behave like a judge's ``< in.txt``), stdout/stderr into pipes the parent reads while it
  waits, the program re-executed from the top in a fresh module namespace for every test (a fresh
  ``Solution()`` per functional test), its module torn down afterwards (so buffered writers flush, as
  at interpreter exit). ``isolation`` picks how many tests one child runs:

  - ``program``: one child runs the program's tests one after another, streaming each
    test's result to the parent when it completes; the parent gives every test its own deadline and
    output limit. When a test crashes the child, ends it (``os._exit``, a signal), overruns its deadline
    or output limit, the parent records that test's verdict and forks a fresh child that starts at the
    next test. A child is also replaced (after reporting) when a test left a trace a fresh process would
    not have: a thread or child process still alive, a changed signal handler, pending alarm or
    itimer, a changed name in any pre-loaded module (monkeypatching, builtins included), changed
    rlimits, tracing hooks, gc settings, thread stack size or environment, a MemoryError, address
    space grown by more than 64 MiB, or a harness descriptor closed or replaced. Between tests that
    stay in one child the parent resets the working directory, recursion and int-digit limits, the
    ``decimal`` context, ``random``'s seed, ``sys.argv``/``sys.path``, and drops the modules the test
    imported (the next test imports them afresh).
  - ``test`` (the default): a fresh child per test (the strict mode: nothing a test does to its
    process can be seen by the next; ~1.5-2 ms more per test). A program that deliberately introspects
    the harness (it shares the child's memory and descriptors) can, in ``program`` mode, make its tests
    share one process, e.g. pool their time budgets; in ``test`` mode it cannot.

* batches (``programs`` with more than one entry): programs run one after another, each with its own
  children, limits and deadlines; between programs the parent kills everything the program left
  running (it is a child subreaper: double-forked and ``setsid`` processes come back to it) and removes
  what the program created in the session directory (and, inside a user namespace, in ``/tmp`` and
  ``/dev/shm``), so one program's crash, hang, memory hog or files never reach another's verdicts.
  A program that kills or stops this process ends the batch; the host then re-runs the programs that
  did not finish (see :meth:`fst_agent.env.judge.Judge.judge_many`).
* report one JSON line per test on stdout (``<nonce> {...}``): program ``p``, test ``index``, status,
  stdout (capped), stderr excerpt, the return value (tagged JSON that keeps tuples, sets and
  non-string dict keys), wall/CPU seconds, whether the test started a fresh child (``fork``).
  Comparison happens on the host (:mod:`fst_agent.env.compare`), never here: expected outputs never
  enter the sandbox.
"""

import time

_T0 = time.perf_counter()

import _ast  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
    "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
    "import json\n"
)
RECURSION_LIMIT = 50000
WRAPPER_NAME = "<module>"  # not an identifier: no program can collide with it; tracebacks read as usual
FILENAME = "solution.py"
_MiB = 1024 * 1024
_CHUNK = 1 << 16
_WRAP_POLICIES = ("wrap_first", "plain_first", "never")


# --------------------------------------------------------------------------------------------------
# compiling: wrap the program in a function the way both reference harnesses do
# --------------------------------------------------------------------------------------------------


def _walk(node):
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, _ast.AST))
            elif isinstance(value, _ast.AST):
                stack.append(value)


def _node(cls, **fields):
    node = cls(**fields)
    for attr in ("lineno", "end_lineno"):
        setattr(node, attr, 1)
    for attr in ("col_offset", "end_col_offset"):
        setattr(node, attr, 0)
    return node


def wrap_tree(tree):
    """The module ``tree`` with its body moved into ``def <module>():`` (imports stay at the top).

    Names that any nested scope declares ``global`` are declared ``global`` in the wrapper as well, so a
    program whose functions update its top-level variables keeps working. (``_ast``, not ``ast``: the
    harness starts faster without the ``ast`` module.)"""
    head, body = [], []
    for stmt in tree.body:
        (head if isinstance(stmt, (_ast.Import, _ast.ImportFrom)) else body).append(stmt)
    globals_ = sorted({name for node in _walk(tree) if isinstance(node, _ast.Global) for name in node.names})
    if globals_:
        body.insert(0, _node(_ast.Global, names=globals_))
    if not body:
        body = [_node(_ast.Pass)]
    args = _ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
    )
    func = _node(
        _ast.FunctionDef,
        name=WRAPPER_NAME,
        args=args,
        body=body,
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    if "type_params" in _ast.FunctionDef._fields:  # Python >= 3.12
        func.type_params = []
    return _ast.Module(body=head + [func], type_ignores=[])


def _compile_plain(source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings of the program are not the judge's output
        return compile(source, FILENAME, "exec", dont_inherit=True)


def _compile_wrapped(source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = compile(source, FILENAME, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
        return compile(wrap_tree(tree), FILENAME, "exec", dont_inherit=True)


def _describe_compile_error(exc):
    if isinstance(exc, SyntaxError):
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return f"{type(exc).__name__}: {where}{exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def plan_program(source, kind, wrap="wrap_first"):
    """Compile ``source``: returns ``(code, wrapped, None)`` or ``(None, False, error message)``.

    Functional programs are never wrapped (their functions must be module attributes)."""
    if wrap not in _WRAP_POLICIES:
        raise ValueError(f"unknown wrap policy {wrap!r}")
    if kind == "functional" or wrap == "never":
        order = [False]
    elif wrap == "wrap_first":
        order = [True, False]
    else:
        order = [False, True]
    first_error = None
    for wrapped in order:
        try:
            code = _compile_wrapped(source) if wrapped else _compile_plain(source)
            return code, wrapped, None
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, OverflowError) as exc:
            if first_error is None or not wrapped:
                first_error = exc  # the plain program's message reads best
    return None, False, _describe_compile_error(first_error)


# --------------------------------------------------------------------------------------------------
# return values: tagged JSON that keeps what == can tell apart
# --------------------------------------------------------------------------------------------------


def encode_value(value, depth=0):
    """JSON-able tagged form of a return value: JSON scalars and lists as they are; every object is a
    tag: {"t": tuple}, {"s": set}, {"d": [[k, v], ...]}, {"f": "nan"|"inf"|"-inf"}, {"r": repr}."""
    if depth > 200:
        return {"r": "<nested too deeply>"}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value:
            return {"f": "nan"}
        if value in (float("inf"), float("-inf")):
            return {"f": "inf" if value > 0 else "-inf"}
        return float(value)
    if isinstance(value, list):
        return [encode_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"t": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"s": [encode_value(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()]}
    mod = type(value).__module__
    if mod == "numpy" and hasattr(value, "tolist"):  # numpy scalars/arrays: as the Python values they hold
        return encode_value(value.tolist(), depth + 1)
    if mod == "decimal" or mod == "fractions":
        return {"n": [mod, str(value)]}
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001
        text = f"<unprintable {type(value).__name__}: {exc!r}>"
    return {"r": text[:2000]}


# --------------------------------------------------------------------------------------------------
# process state: what a reused child must find as a fresh one would
# --------------------------------------------------------------------------------------------------

_VOLATILE_SYS = frozenset(
    {
        "stdin",
        "stdout",
        "stderr",
        "__stdin__",
        "__stdout__",
        "__stderr__",
        "argv",
        "path",
        "last_type",
        "last_value",
        "last_traceback",
        "ps1",
        "ps2",
    }
)
_CHECKED_LIMITS = tuple(
    getattr(resource, name)
    for name in (
        "RLIMIT_AS",
        "RLIMIT_DATA",
        "RLIMIT_STACK",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_FSIZE",
        "RLIMIT_CORE",
        "RLIMIT_MEMLOCK",
    )
    if hasattr(resource, name)
)
_GROWTH_LIMIT = 64 * _MiB  # a reused child whose address space grew more than this is replaced


class _Baseline:
    """What the parent looked like before it forked, for the children to compare themselves with."""

    def __init__(self):
        self.modules = frozenset(sys.modules)
        self.namespaces = []  # (name, namespace, its snapshot): snapshots are taken in each child
        for name, mod in list(sys.modules.items()):
            d = getattr(mod, "__dict__", None)
            if name in ("__main__", "sys") or not isinstance(d, dict):
                continue
            self.namespaces.append((name, d, None))
        self.sys_items = {k: v for k, v in sys.__dict__.items() if k not in _VOLATILE_SYS}
        self.signals = {}
        for sig in signal.valid_signals():
            try:
                self.signals[sig] = signal.getsignal(sig)
            except (ValueError, OSError):
                pass
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.path = list(sys.path)
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.int_digits = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else None
        self.switch = sys.getswitchinterval()
        self.gc_threshold = _gc.get_threshold()
        umask = os.umask(0o022)
        os.umask(umask)
        self.umask = umask


def _traces(base, limits, fd_ids, vm0, cpu_hard):
    """Why this process (a child after a test) is not as a fresh one would be, or None."""
    try:
        import _thread

        if _thread._count():
            return "threads left running"
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return "child processes left"
        except ChildProcessError:
            pass
        if not _same_fds(fd_ids):
            return "descriptors replaced"
        if any(c != os.getpid() for c in _my_children(os.getppid(), scan=False)):
            return "processes escaped"
        if sys.gettrace() is not None or sys.getprofile() is not None:
            return "trace hooks set"
        if not _gc.isenabled() or _gc.get_threshold() != base.gc_threshold:
            return "gc settings changed"
        if _thread.stack_size() != 0:
            return "thread stack size changed"
        if signal.alarm(0) or any(signal.getitimer(t) != (0.0, 0.0) for t in _ITIMERS):
            return "alarm or timer pending"
        for sig, handler in base.signals.items():
            if signal.getsignal(sig) is not handler:
                return f"signal handler {sig} changed"
        for res, value in limits.items():
            if resource.getrlimit(res) != value:
                return "rlimits changed"
        if resource.getrlimit(resource.RLIMIT_CPU)[1] != cpu_hard:
            return "rlimits changed"
        if sys.getswitchinterval() != base.switch or os.umask(base.umask) != base.umask:
            return "interpreter settings changed"
        if sys.meta_path != base.meta_path or sys.path_hooks != base.path_hooks:
            return "import system changed"
        if os.environ != base.environ:
            return "environment changed"
        for name, d, snap in base.namespaces:
            if d != snap:
                return f"module {name} changed"
        sys_now = sys.__dict__
        for k, v in base.sys_items.items():
            if sys_now.get(k, _MISSING) is not v:
                return f"sys.{k} changed"
        if any(k not in base.sys_items and k not in _VOLATILE_SYS for k in sys_now):
            return "sys changed"
        if _vm_bytes() - vm0 > _GROWTH_LIMIT:
            return "address space grew"
    except BaseException as exc:  # noqa: BLE001 - whatever broke the check broke the process
        return f"state check failed: {type(exc).__name__}"
    return None


_MISSING = object()
_ITIMERS = tuple(
    getattr(signal, n) for n in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF") if hasattr(signal, n)
)


def _vm_bytes():
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _reset_for_next_test(base):
    """Between two tests in one child: what the checks do not cover, set back to a fresh process's."""
    for name in [n for n in sys.modules if n not in base.modules]:
        sys.modules.pop(name, None)
    if sys.modules.get("__main__") is not _HARNESS_MAIN:
        sys.modules["__main__"] = _HARNESS_MAIN
    try:
        os.chdir(base.cwd)
    except OSError:
        pass
    sys.path = list(base.path)
    if base.int_digits is not None:
        sys.set_int_max_str_digits(base.int_digits)
    try:
        import decimal

        decimal.setcontext(decimal.Context())
    except BaseException:  # noqa: BLE001
        pass
    try:
        import random

        random.seed()
    except BaseException:  # noqa: BLE001
        pass


# --------------------------------------------------------------------------------------------------
# the child: a program's tests, one after another
# --------------------------------------------------------------------------------------------------


def _set_limit(which, soft, hard=None):
    hard = soft if hard is None else hard
    try:
        cur_soft, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


def _memfd(name):
    """An anonymous in-memory file (a real, seekable file); an unlinked temporary file without memfd."""
    try:
        return os.memfd_create(name, 0)
    except (AttributeError, OSError):
        pass
    path = os.path.join(_scratch_dir(), f".fst-{name}-{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.unlink(path)
    return fd


def _stdin_fd(test, output_limit):
    """A descriptor holding the test's input at offset 0: a memfd, i.e. what ``< in.txt`` gives."""
    if test["kind"] != "stdin":
        return os.open(os.devnull, os.O_RDONLY)
    data = test["input"].encode("utf-8", "surrogateescape")
    fd = _memfd("stdin")
    big = len(data) > output_limit  # RLIMIT_FSIZE holds the output limit: lift it for this write
    if big:
        _set_limit(resource.RLIMIT_FSIZE, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
    try:
        _write_all(fd, data)
    finally:
        if big:
            _set_limit(resource.RLIMIT_FSIZE, output_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _child(spec, tests, start, stop, code, wrapped, base, parent):
    """Runs in the forked child: tests[start:stop], one after another, without waiting for the parent;
    never returns.

    fd 1/2: memfds the parent shares (emptied before every test; an output limit is RLIMIT_FSIZE);
    fd 3: results, one frame per test (4-byte length, 4-byte header length, JSON header, then the
    test's stdout and stderr as they are)."""
    try:
        os.setpgid(0, 0)
        if _LIBC is not None:
            _LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1: the test's /proc/self is its own again
            # PR_SET_DEATHSIG: die with the harness. A test that kills us would otherwise leave this
            # child running the next test with the sandbox's supervisor as its parent, and a program
            # that signals its parent would then take the whole sandbox down instead of itself.
            _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the harness died before the death signal was armed
            os._exit(70)
        mem = int(spec["memory_mb"]) * _MiB
        _set_limit(resource.RLIMIT_AS, mem)
        per_cpu = int(spec["per_test_seconds"]) + 2
        _set_limit(resource.RLIMIT_CPU, per_cpu, per_cpu * (stop - start) + 1)
        _set_limit(resource.RLIMIT_CORE, 0)
        output_limit = int(spec["output_limit_bytes"])
        biggest = max(
            [len(t["input"]) * 4 for t in tests[start:stop] if t["kind"] == "stdin"] or [0]
        )  # bytes at most
        _set_limit(resource.RLIMIT_FSIZE, output_limit, max(output_limit, biggest))
        reuse = stop - start > 1
        limits = {}
        fd_ids = {}
        vm0 = 0
        cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        for fd in (1, 2, 3):
            st = os.fstat(fd)
            fd_ids[fd] = (st.st_dev, st.st_ino)
        if reuse:
            limits = {res: resource.getrlimit(res) for res in _CHECKED_LIMITS}
            # after the fork: at-fork hooks (threading's, random's) have already rebuilt their state
            base.namespaces = [(name, d, dict(d)) for name, d, _ in base.namespaces]
            vm0 = _vm_bytes()
    except BaseException:  # noqa: BLE001
        os._exit(70)
    for i in range(start, stop):
        if i > start:
            _reset_for_next_test(base)
        more = i + 1 < stop
        t0 = time.monotonic()
        record = _one_test(
            spec, tests[i], code, wrapped, first=(i == start), more=more, output_limit=output_limit
        )
        t_end = time.monotonic()
        dirty = record.get("dirty")
        out = err = None
        if _same_fds(fd_ids):
            try:
                test = tests[i]
                out, out_total = _read_memfd(1, int(test.get("stdout_cap") or spec["stdout_cap"]))
                err, err_total = _read_memfd(2, int(spec["stderr_cap"]))
                record["stdout_bytes"], record["stderr_bytes"] = out_total, err_total
            except OSError:
                out = err = None
        if out is None:
            dirty = dirty or "descriptors replaced"
            out = err = b""
            record["output"] = "parent"  # the parent reads the memfds itself (the child stops here)
        if more and dirty is None:
            dirty = _traces(base, limits, fd_ids, vm0, cpu_hard)
        record["dirty"] = dirty
        record["i"] = i
        record["t0"] = t0
        record["t_end"] = t_end  # the test's own end; t1: when the next test starts its clock
        record["t1"] = time.monotonic()
        try:
            value_json = record.pop("value_json", None)
            record["out_len"] = len(out)
            header = json.dumps(record)
            if value_json is not None:  # spliced in, not decoded and encoded again
                header = header[:-1] + ', "value": ' + value_json + "}"
            header = header.encode()
            body = len(header).to_bytes(4, "big") + header + out + err
            _write_all(3, len(body).to_bytes(4, "big") + body)
        except BaseException:  # noqa: BLE001
            break
        if dirty:
            break
    os._exit(0)


def _same_fds(fd_ids):
    try:
        for fd, ident in fd_ids.items():
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident:
                return False
    except OSError:
        return False
    return True


def _read_memfd(fd, cap):
    total = os.fstat(fd).st_size
    return os.pread(fd, min(cap, total), 0), total


class _ValueTooLarge(Exception):
    pass


def _one_test(spec, test, code, wrapped, first, more, output_limit):
    """One test in this (child) process: the program from the top in a fresh module, then its teardown.
    Returns the record for the parent (status, error, value, cpu, dirty)."""
    status = "runtime_error"
    error = None
    dirty = None
    value_json = None
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    try:
        for fd in (1, 2):  # this test's output starts empty
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        fd_in = _stdin_fd(test, output_limit)
        os.dup2(fd_in, 0)
        os.close(fd_in)
        if not first:  # a fresh CPU allowance for this test
            per_cpu = int(spec["per_test_seconds"]) + 2
            hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
            soft = int(cpu0) + 1 + per_cpu
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        sys.setrecursionlimit(RECURSION_LIMIT)
        sys.argv = [FILENAME]
        real_in = _stdio(0, "r", errors="surrogateescape", name="<stdin>")
        real_out = _stdio(1, "w", errors="surrogateescape", name="<stdout>", buffering=_CHUNK)
        real_err = _stdio(2, "w", errors="backslashreplace", name="<stderr>", line_buffering=True)
        sys.stdin = sys.__stdin__ = real_in
        sys.stdout = sys.__stdout__ = real_out
        sys.stderr = sys.__stderr__ = real_err
        functional = test["kind"] == "functional"
        # The first test uses the module the parent prepared (prelude imported, names bound) as it is:
        # this process's own copy, leaving the parent's objects (and their pages) alone. Later tests in
        # the same child get a fresh module holding a copy of the pristine namespace.
        if first:
            module = _PROGRAM_MAIN
        else:
            module = type(sys)("__main__")
            module.__dict__.update(_PRISTINE)
        g = module.__dict__
        g["__name__"] = "solution" if functional else "__main__"
        g["stdin"], g["stdout"], g["stderr"] = real_in, real_out, real_err  # `from sys import *`
        sys.modules[g["__name__"]] = module
        try:
            exec(code, g)
            if functional:
                fn_name = test["fn_name"]
                target = None
                if "Solution" in g and isinstance(g["Solution"], type):
                    target = getattr(g["Solution"](), fn_name, None)
                if target is None:
                    target = g.get(fn_name)
                if target is None or not callable(target):
                    raise NameError(f"no function {fn_name!r} defined (nor a Solution method of that name)")
                args = test["input"]
                if spec.get("apps_dict_keys") and args and isinstance(args[0], dict):
                    try:
                        args = [{int(k): v for k, v in args[0].items()}, *args[1:]]
                    except (ValueError, TypeError):
                        pass
                result = target(*args)
                target = args = None
                value_json = json.dumps(encode_value(result), allow_nan=False)
                result = None
                if len(value_json) > output_limit:
                    value_json = None
                    raise _ValueTooLarge
            elif wrapped:
                g[WRAPPER_NAME]()
            status = "ok"
        except SystemExit:
            status = "ok"  # both reference harnesses treat exit() as the end of the program
        except _ValueTooLarge:
            status, error = "output_limit", "return value too large"
        except MemoryError:
            status = "memory_limit"
            error = "MemoryError"
            dirty = "MemoryError"
            _print_exception(test.get("_source"))
        except BaseException as exc:  # noqa: BLE001 - the program's own exception
            status = "runtime_error"
            error = f"{type(exc).__name__}: {exc}"[:500]
            _print_exception(test.get("_source"))
        if _finish_threads():
            dirty = dirty or "threads left running"
        _flush(real_out, real_err)
        # the module's teardown, as at interpreter exit: unreferenced objects go now (their buffered
        # writers flush, files close); what they print still belongs to this test
        g.clear()
        module = g = None
        if more:
            _gc.collect()
        _flush(real_out, real_err)
    except MemoryError:
        status, error, dirty = "memory_limit", "MemoryError", "MemoryError"
    except BaseException as exc:  # noqa: BLE001
        status, error = "runtime_error", f"{type(exc).__name__}: {exc}"[:500]
        dirty = dirty or "harness error in the child"
    ru = resource.getrusage(resource.RUSAGE_SELF)
    record = {
        "status": status,
        "error": error,
        "cpu": round(ru.ru_utime + ru.ru_stime - cpu0, 6),
        "cpu_total": ru.ru_utime + ru.ru_stime,
        "maxrss_kb": ru.ru_maxrss,
        "dirty": dirty,
    }
    if value_json is not None:
        record["value_json"] = value_json
    return record


def _flush(*streams):
    for stream in (sys.stdout, sys.stderr, *streams):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a closed or full stdout
            pass


def _stdio(fd, mode, errors, name, buffering=-1, line_buffering=False):
    """A standard stream on ``fd`` as the interpreter builds one (``mode``, ``name``, ``buffer``)."""
    stream = open(
        fd,
        mode,
        buffering=buffering,
        encoding="utf-8",
        errors=errors,
        newline=None if mode == "r" else "\n",
        closefd=False,
    )
    try:
        stream.buffer.raw.name = name
    except (AttributeError, TypeError):
        pass
    if line_buffering:
        stream.reconfigure(line_buffering=True)
    return stream


def _print_exception(source=None):
    try:
        import linecache
        import traceback

        if source is not None:  # so the traceback shows the program's lines
            linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)

        etype, exc, tb = sys.exc_info()
        # drop the harness's own frames: start at the first frame of the program
        while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
            tb = tb.tb_next
        sys.stderr.write("".join(traceback.format_exception(etype, exc, tb)))
    except BaseException:  # noqa: BLE001
        pass


def _finish_threads():
    """What the interpreter does at exit: wait for non-daemon threads, run atexit hooks. Returns True
    when threads were left running (``threading``'s shutdown leaves that module unusable for a later
    test in this process)."""
    threads = False
    try:
        import _thread

        th = sys.modules.get("threading")
        if th is not None and (_thread._count() or len(getattr(th, "_active", ())) > 1):
            threads = True
            th._shutdown()
        elif _thread._count():
            threads = True
    except BaseException:  # noqa: BLE001
        threads = True
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass
    return threads


# --------------------------------------------------------------------------------------------------
# the parent: fork, watch, reap
# --------------------------------------------------------------------------------------------------


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _my_children(pid=None, scan=True):
    """The children of ``pid`` (default: this process); without /proc/PID/task/PID/children, by a scan
    of /proc (unless not ``scan``)."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        if not scan:
            return []
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                if int(data[data.rfind(b")") + 2 :].split()[1]) == pid:
                    found.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _reap_strays():
    """Kill and reap every process left under us (we are a subreaper: orphans come to us)."""
    for _ in range(200):
        try:
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG) is not None:
                continue  # reaped one; look again
        except ChildProcessError:
            return
        for pid in _my_children():
            _kill_group(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.001)


class _Frames:
    """The child's result frames, each bounded by ``limit`` bytes."""

    __slots__ = ("buf", "limit", "too_big", "back")

    def __init__(self, limit):
        self.buf = bytearray()
        self.limit = limit
        self.too_big = False
        self.back = None

    def add(self, chunk):
        self.buf += chunk
        if len(self.buf) >= 4 and int.from_bytes(self.buf[:4], "big") > self.limit:
            self.too_big = True

    def push_back(self, item):
        self.back = item

    def pop(self):
        """The next complete frame as (header, stdout bytes, stderr bytes), or None."""
        if self.back is not None:
            item, self.back = self.back, None
            return item
        if self.too_big or len(self.buf) < 8:
            return None
        n = int.from_bytes(self.buf[:4], "big")
        if len(self.buf) < 4 + n:
            return None
        frame = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        h = int.from_bytes(frame[:4], "big")
        try:
            record = json.loads(frame[4 : 4 + h].decode("utf-8", "replace"))
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            return {"status": "runtime_error", "error": "unreadable result"}, b"", b""
        payload = frame[4 + h :]
        n_out = int(record.get("out_len") or 0)
        return record, payload[:n_out], payload[n_out:]


def _fork():
    for attempt in range(3):
        try:
            return os.fork()
        except BlockingIOError:
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise BlockingIOError


def _drain(fd, frames):
    """Read what ``fd`` holds now; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return False
        except InterruptedError:
            continue
        except OSError:
            return True
        if not chunk:
            return True
        frames.add(chunk)


def _run_child(spec, k, tests, start, stop, code, wrapped, emit):
    """Fork one child for tests[start:stop]; emit a report for every test it ran (or that ended it).
    Returns the index of the first test it did not get to."""
    per_test = float(spec["per_test_seconds"])
    output_limit = int(spec["output_limit_bytes"])
    res_r = res_w = out_fd = err_fd = None
    parent = os.getpid()
    try:
        out_fd, err_fd = _memfd("stdout"), _memfd("stderr")
        res_r, res_w = os.pipe()
        pid = _fork()
    except OSError as exc:
        for fd in (out_fd, err_fd, res_r, res_w):
            if fd is not None:
                os.close(fd)
        emit(k, start, {"status": "sandbox_error", "error": f"fork failed: {exc}", "fork": True})
        return start + 1
    t_fork = time.monotonic()
    if pid == 0:
        try:
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.dup2(res_w, 3)
            os.closerange(4, _MAX_FD)
        except BaseException:  # noqa: BLE001
            os._exit(70)
        _child(spec, tests, start, stop, code, wrapped, _BASE, parent)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    os.close(res_w)
    os.set_blocking(res_r, False)
    poller = select.poll()
    poller.register(res_r, select.POLLIN | select.POLLHUP | select.POLLERR)
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
    except (AttributeError, OSError):
        pidfd = None
    frames = _Frames(output_limit + int(spec["stdout_cap"]) + int(spec["stderr_cap"]) + (1 << 20))
    res_open = True
    i = start
    t_start = t_fork  # when test i started (the child's clock once it reported the test before)
    fresh = True
    wait_status = rusage = None
    cpu_seen = 0.0
    ending = None  # why the child is done: "exited", "timeout", "frame", "finished"

    def take(item):
        nonlocal i, t_start, fresh, cpu_seen
        record, out, err = item
        if record.get("output") == "parent":
            out, err = _read_parent_memfds(spec, tests[i], out_fd, err_fd)
        cpu_seen = float(record.get("cpu_total") or 0.0)
        t1 = float(record.get("t1") or time.monotonic())
        wall = float(record.get("t_end") or t1) - float(record.get("t0") or t_start)
        emit(k, i, _report_from_record(spec, record, out, err, wall, fresh))
        i += 1
        fresh = False
        t_start = t1
        return not record.get("dirty") and i < stop

    while ending is None:
        now = time.monotonic()
        deadline = t_start + per_test
        if now >= deadline:
            # late (a busy machine): a report already written in time still counts
            if res_open and _drain(res_r, frames):
                poller.unregister(res_r)
                res_open = False
            item = frames.pop()
            if item is not None and float(item[0].get("t_end") or now) <= deadline:
                if not take(item):
                    ending = "finished"
                continue
            if item is not None:
                frames.push_back(item)
            ending = "timeout"
            break
        wait_ms = (deadline - now) * 1000.0
        if pidfd is None:
            wait_ms = min(wait_ms, 2.0)
        try:
            events = poller.poll(wait_ms)
        except InterruptedError:
            continue
        exited = False
        for fd, _ev in events:
            if fd == pidfd:
                exited = True
            elif fd == res_r and res_open and _drain(res_r, frames):
                poller.unregister(res_r)
                res_open = False
        while ending is None:
            item = frames.pop()
            if item is None:
                break
            if not take(item):
                ending = "finished"
        if ending is None and frames.too_big:
            ending = "frame"
        if ending is None and pidfd is None:
            got, st, ru = os.wait4(pid, os.WNOHANG)
            if got == pid:
                wait_status, rusage = st, ru
                exited = True
        if ending is None and exited:
            ending = "exited"
    _kill_group(pid)  # a finished child is ending by itself; this is for what its tests left behind
    if wait_status is None:
        _, wait_status, rusage = os.wait4(pid, 0)
    if pidfd is not None:
        os.close(pidfd)
    if res_open:
        _drain(res_r, frames)
    os.close(res_r)
    if ending == "exited":  # reports it wrote just before it ended
        while i < stop:
            item = frames.pop()
            if item is None:
                break
            if not take(item):
                ending = "finished"
                break
    if ending != "finished" and i < stop:
        wall = time.monotonic() - t_start
        cpu = None
        if rusage is not None:
            cpu = max(0.0, rusage.ru_utime + rusage.ru_stime - cpu_seen)
        out, err = _read_parent_memfds(spec, tests[i], out_fd, err_fd)
        emit(k, i, _report_from_exit(spec, tests[i], ending, out, err, wait_status, rusage, cpu, wall, fresh))
        i += 1
    os.close(out_fd)
    os.close(err_fd)
    _reap_strays()
    return i


def _read_parent_memfds(spec, test, out_fd, err_fd):
    """The output of the test a child was running when it ended: what the memfds hold."""
    result = []
    for fd, cap in (
        (out_fd, int(test.get("stdout_cap") or spec["stdout_cap"])),
        (err_fd, int(spec["stderr_cap"])),
    ):
        try:
            data, total = _read_memfd(fd, cap)
        except OSError:
            data, total = b"", 0
        result.append((data, total))
    return result


def _base_report(out, err, wall, fresh):
    out_data, out_total = out
    err_data, err_total = err
    return {
        "status": "runtime_error",
        "stdout": out_data.decode("utf-8", "replace"),
        "stdout_bytes": out_total,
        "stdout_truncated": out_total > len(out_data),
        "stderr": err_data.decode("utf-8", "replace"),
        "stderr_truncated": err_total > len(err_data),
        "wall": round(wall, 6),
        "cpu": None,
        "maxrss_kb": None,
        "exit_code": None,
        "signal": None,
        "error": None,
        "fork": fresh,
    }


def _report_from_record(spec, record, out, err, wall, fresh):
    if isinstance(out, (bytes, bytearray)):
        out = (out, int(record.get("stdout_bytes", len(out))))
        err = (err, int(record.get("stderr_bytes", len(err))))
    report = _base_report(out, err, wall, fresh)
    report["status"] = record.get("status", "runtime_error")
    report["error"] = record.get("error")
    report["cpu"] = record.get("cpu")
    report["maxrss_kb"] = record.get("maxrss_kb")
    if record.get("dirty"):
        report["dirty"] = record["dirty"]  # why the child ended after this test
    if "value" in record:
        report["value"] = record["value"]
    return report


def _report_from_exit(spec, test, ending, out, err, wait_status, rusage, cpu, wall, fresh):
    """A test that did not report: it ended the child, or overran its deadline."""
    report = _base_report(out, err, wall, fresh)
    report["cpu"] = round(cpu, 6) if cpu is not None else None
    report["maxrss_kb"] = rusage.ru_maxrss if rusage is not None else None
    if wait_status is not None:
        if os.WIFEXITED(wait_status):
            report["exit_code"] = os.WEXITSTATUS(wait_status)
        elif os.WIFSIGNALED(wait_status):
            report["signal"] = os.WTERMSIG(wait_status)
    if ending == "timeout":
        report["status"] = "timeout"
        report["error"] = f"killed after {float(spec['per_test_seconds']):g} s"
        return report
    if ending == "frame":
        report["status"], report["error"] = "output_limit", "return value too large"
        return report
    sig = report["signal"]
    if sig is not None:
        if sig == signal.SIGXCPU:
            report["status"], report["error"] = "timeout", "CPU time limit exceeded"
        elif sig == signal.SIGXFSZ:
            report["status"] = "output_limit"
            report["error"] = f"wrote more than {int(spec['output_limit_bytes'])} bytes"
        elif sig == signal.SIGKILL:
            report["status"], report["error"] = "memory_limit", "killed (SIGKILL: out of memory)"
        else:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            report["status"], report["error"] = "runtime_error", f"killed by signal {name}"
        if "MemoryError" in report["stderr"][-2000:]:
            report["status"], report["error"] = "memory_limit", "MemoryError"
        return report
    code = report["exit_code"]
    if "MemoryError" in report["stderr"][-2000:]:
        report["status"], report["error"] = "memory_limit", "MemoryError"
    elif code == 0 and test["kind"] == "stdin":
        report["status"] = "ok"  # os._exit(0): the program ended itself
    else:
        report["error"] = f"exited with status {code} before the harness could report"
    return report


# --------------------------------------------------------------------------------------------------
# batches: what a program leaves in the session's writable places
# --------------------------------------------------------------------------------------------------


def _scratch_roots():
    """The writable places a program may leave files in: the session directory always; ``/tmp`` and
    ``/dev/shm`` only inside a user namespace of our own (the local backend's private tmpfs mounts; on
    a shared machine they would be everyone's)."""
    roots = [os.getcwd()]
    try:
        with open("/proc/self/uid_map") as f:
            own_userns = f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        own_userns = False
    if own_userns:
        roots += [p for p in ("/tmp", "/dev/shm") if os.path.isdir(p)]
    return roots


def _listing(roots):
    out = {}
    for root in roots:
        try:
            out[root] = sorted(os.listdir(root))
        except OSError:
            out[root] = []
    return out


def _rmtree(path):
    try:
        st = os.lstat(path)
    except OSError:
        return
    import stat as _stat

    if _stat.S_ISDIR(st.st_mode):
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        try:
            names = os.listdir(path)
        except OSError:
            names = []
        for name in names:
            _rmtree(os.path.join(path, name))
        try:
            os.rmdir(path)
        except OSError:
            pass
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _clean_scratch(baseline, own):
    """Remove what is new in the writable places since ``baseline``; keep our own files (``own``)."""
    for root, names in baseline.items():
        try:
            os.chmod(root, os.stat(root).st_mode | 0o700)
        except OSError:
            pass
        keep = set(names)
        try:
            now = os.listdir(root)
        except OSError:
            continue
        for name in now:
            if name not in keep:
                _rmtree(os.path.join(root, name))
    for path, allowed in own:
        try:
            if os.path.islink(path):
                os.unlink(path)
            os.chmod(path, 0o755)
            for name in os.listdir(path):
                if name not in allowed:
                    _rmtree(os.path.join(path, name))
        except OSError:
            pass


_SCRATCH = None


def _scratch_dir():
    global _SCRATCH
    if _SCRATCH is None:
        for base in (os.environ.get("TMPDIR"), "/tmp", os.getcwd()):
            if base and os.access(base, os.W_OK):
                _SCRATCH = base
                break
        else:
            _SCRATCH = os.getcwd()
    return _SCRATCH


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


_PROGRAM_MAIN = None  # the module the first test in each child runs in (its namespace: the prelude)
_PRISTINE = None  # a copy of that namespace, for later tests in the same child
_HARNESS_MAIN = sys.modules.get("__main__")
_BASE = None
_LIBC = None
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MAX_FD = 1 << 16
import gc as _gc  # noqa: E402


def _program_globals():
    """The module namespace a program starts with: its dunders and the LiveCodeBench prelude."""
    import builtins

    g = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "__file__": FILENAME,
        "__doc__": None,
        "__spec__": None,
        "__package__": None,
        "__loader__": None,
    }
    exec(compile(PRELUDE, "<prelude>", "exec"), g)
    g.setdefault("exit", sys.exit)  # `from sys import *` binds it; without site, builtins has none
    g.setdefault("quit", sys.exit)
    return g


def _emit_line(nonce, obj):
    line = nonce + " " + json.dumps(obj, ensure_ascii=False) + "\n"
    _write_all(1, line.encode("utf-8", "replace"))


def _programs(spec):
    if "programs" in spec:
        return spec["programs"]
    return [{"code": spec["code"], "tests": spec["tests"]}]


def main():
    global _PROGRAM_MAIN, _PRISTINE, _BASE, _LIBC, _HARNESS_MAIN
    spec = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogateescape"))
    nonce = spec["nonce"]
    batch = "programs" in spec

    def emit(obj):
        if not batch:
            obj.pop("p", None)
        _emit_line(nonce, obj)

    def emit_test(k, index, report):
        report["index"] = index
        report["p"] = k
        emit(report)

    try:
        import ctypes

        _LIBC = ctypes.CDLL(None)
        _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: a test cannot reach our fds through /proc
        _LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: what a test orphans comes back to us
    except Exception:  # noqa: BLE001
        _LIBC = None
    programs = _programs(spec)
    isolation = spec.get("isolation", "test")
    sys.argv = [FILENAME]
    _HARNESS_MAIN = sys.modules.get("__main__")
    prelude = _program_globals()  # the prelude imported once, here: every forked child finds it ready
    _PROGRAM_MAIN = type(sys)("__main__")
    _PROGRAM_MAIN.__dict__.update(prelude)
    _PRISTINE = prelude
    import _thread  # noqa: F401
    import atexit  # noqa: F401 - imported before forking: the tests find these loaded
    import linecache  # noqa: F401 - imported before forking: a failing test's traceback is cheap
    import stat  # noqa: F401
    import traceback  # noqa: F401

    sys.setrecursionlimit(RECURSION_LIMIT)
    # a test that writes past its output limit (RLIMIT_FSIZE on its stdout memfd) is killed by SIGXFSZ
    # rather than getting EFBIG (CPython ignores the signal by default)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    clean = batch and bool(spec.get("clean"))
    roots = _scratch_roots() if clean else []
    listing = _listing(roots)
    if clean and spec.get("baseline"):
        # a re-run after a batch ended early: go back to the first run's state
        listing = {r: spec["baseline"].get(r, []) for r in roots}
        _clean_scratch(listing, ())
    own = []
    harness_dir = os.path.dirname(os.path.abspath(_HARNESS_FILE))
    if (
        clean
        and os.path.basename(harness_dir) == ".fst_judge"
        and os.path.dirname(harness_dir) == os.getcwd()
    ):
        own = [(harness_dir, {_HARNESS_NAME})]  # the judge's own directory holds the harness, nothing else
    _BASE = _Baseline()
    _gc.freeze()  # the children's collections skip what we hold: fewer copy-on-write page faults
    t_ready = time.perf_counter()
    emit({"event": "batch", "n": len(programs), "baseline": listing} if batch else {"event": "harness"})
    for k, prog in enumerate(programs):
        tests = prog["tests"]
        kind = tests[0]["kind"] if tests else "stdin"
        code, wrapped, error = plan_program(prog["code"], kind, spec.get("wrap", "wrap_first"))
        if code is None:
            emit({"event": "compile_error", "p": k, "error": error})
        else:
            emit({"event": "start", "p": k, "wrapped": wrapped, "n": len(tests)})
            for t in tests:
                t["_source"] = prog["code"]
            per_child = 1 if isolation == "test" else len(tests)
            i = 0
            while i < len(tests):
                i = _run_child(spec, k, tests, i, min(len(tests), i + per_child), code, wrapped, emit_test)
        _reap_strays()
        if clean:
            _clean_scratch(listing, own)
        emit({"event": "program_end", "p": k})
    emit(
        {
            "event": "end",
            "setup_seconds": round(t_ready - _T0, 6),
            "tests_seconds": round(time.perf_counter() - t_ready, 6),
        }
    )


_HARNESS_FILE = globals().get("__file__") or "harness.py"
_HARNESS_NAME = os.path.basename(_HARNESS_FILE)


if __name__ == "__main__":
    main()
