"""The in-sandbox test harness: runs every test of one solution in ONE sandbox run (stdlib only).

This file is not imported to judge: :mod:`fst_agent.env.judge` reads its source, writes it into the
session and runs ``python3 -I <harness> `` with the spec (JSON) on standard input. It is importable, too,
so the host's tests can reach its pure parts (:func:`plan_program`, :func:`encode_value`).

What it does, the way the APPS and LiveCodeBench harnesses run programs, but isolated per test:

* compile once: standard-input programs are wrapped in a function (so a top-level ``return`` works;
  imports stay at module level; names that nested functions declare ``global`` are declared ``global``
  in the wrapper too, so those programs keep working), with ``__name__ == "__main__"`` (the guard
  runs). ``wrap`` decides the order: ``wrap_first`` falls back to the plain program when the wrapped
  one does not compile (``from x import *`` inside a block, ...); ``plain_first`` wraps only programs
  that do not compile as they are (top-level ``return``/``nonlocal``); ``never`` never wraps. A
  program that compiles neither way is a compile error for every test.
* per test, fork a child from the already-started harness: own process group, rlimits (address
  space, CPU), real ``sys.stdin`` (a file holding the test's input: ``readline``/``readlines``/
  ``read``/``open(0)`` all behave like a judge's ``< in.txt``), stdout/stderr into pipes the parent
  reads while it waits, the LiveCodeBench prelude (``from typing import *``, ``collections``, ``heapq``,
  ``math``, ``itertools``, ``bisect``, ``functools``, ``string``, ``re``, ... and
  ``sys.setrecursionlimit(50000)``), a fresh ``Solution()`` per functional test. The parent kills the
  child's process group at the per-test deadline, so a hanging or crashing test never costs another
  test its verdict.
* report one JSON line per test on stdout (``<nonce> {...}``): status, stdout (capped), stderr excerpt,
  the return value (tagged JSON that keeps tuples, sets and non-string dict keys), wall/CPU seconds.
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
# the child: one test
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


def _child(spec, test, code, wrapped, in_path, w_out, w_err, w_res):
    """Runs in the forked child; never returns."""
    status = "runtime_error"
    error = None
    value_json = None
    try:
        os.setpgid(0, 0)
        fd_in = os.open(in_path, os.O_RDONLY) if in_path else os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd_in, 0)
        os.dup2(w_out, 1)
        os.dup2(w_err, 2)
        os.dup2(w_res, 3)
        os.closerange(4, 1 << 16)
        if _LIBC is not None:
            _LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1: the test's /proc/self is its own again
        mem = int(spec["memory_mb"]) * _MiB
        _set_limit(resource.RLIMIT_AS, mem)
        cpu = int(spec["per_test_seconds"]) + 2
        _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        _set_limit(resource.RLIMIT_CORE, 0)
        real_in = _stdio(0, "r", errors="surrogateescape", name="<stdin>")
        real_out = _stdio(1, "w", errors="surrogateescape", name="<stdout>", buffering=_CHUNK)
        real_err = _stdio(2, "w", errors="backslashreplace", name="<stderr>", line_buffering=True)
        sys.stdin = sys.__stdin__ = real_in
        sys.stdout = sys.__stdout__ = real_out
        sys.stderr = sys.__stderr__ = real_err
        functional = test["kind"] == "functional"
        # The namespace the parent prepared (prelude imported, names bound) is this process's own copy:
        # using it as it is, rather than copying it, leaves the parent's objects (and their pages) alone.
        g = _GLOBALS
        g["__name__"] = "solution" if functional else "__main__"
        g["stdin"], g["stdout"], g["stderr"] = real_in, real_out, real_err  # `from sys import *`
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
                value_json = json.dumps(encode_value(result), allow_nan=False)
            elif wrapped:
                g[WRAPPER_NAME]()
            status = "ok"
        except SystemExit:
            status = "ok"  # both reference harnesses treat exit() as the end of the program
        except MemoryError:
            status = "memory_limit"
            error = "MemoryError"
            _print_exception(spec["code"])
        except BaseException as exc:  # noqa: BLE001 - the program's own exception
            status = "runtime_error"
            error = f"{type(exc).__name__}: {exc}"[:500]
            _print_exception(spec["code"])
        _finish_threads()
        for stream in (sys.stdout, sys.stderr, real_out, real_err):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed or full stdout
                pass
    except MemoryError:
        status, error = "memory_limit", "MemoryError"
    except BaseException as exc:  # noqa: BLE001
        status, error = "runtime_error", f"{type(exc).__name__}: {exc}"[:500]
    try:
        payload = {"status": status, "error": error}
        body = json.dumps(payload)
        if value_json is not None:
            body = body[:-1] + ', "value": ' + value_json + "}"
        _write_all(3, body.encode())
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


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
    try:
        th = sys.modules.get("threading")
        if th is not None:
            th._shutdown()  # what the interpreter does at exit: wait for non-daemon threads
    except BaseException:  # noqa: BLE001
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass


# --------------------------------------------------------------------------------------------------
# the parent: fork, watch, reap
# --------------------------------------------------------------------------------------------------


class _Sink:
    __slots__ = ("keep", "data", "total")

    def __init__(self, keep):
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    def add(self, chunk):
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _drain(fd, sink):
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
        sink.add(chunk)


def _run_one(spec, index, test, code, wrapped, workdir):
    in_path = None
    if test["kind"] == "stdin":
        in_path = os.path.join(workdir, f"in{index}.txt")
        with open(in_path, "wb") as f:
            f.write(test["input"].encode("utf-8", "surrogateescape"))
    out_keep = int(test.get("stdout_cap") or spec["stdout_cap"])
    output_limit = int(spec["output_limit_bytes"])
    sinks = {"out": _Sink(out_keep), "err": _Sink(int(spec["stderr_cap"])), "res": _Sink(output_limit)}
    pipes = {name: os.pipe() for name in sinks}
    per_test = float(spec["per_test_seconds"])
    start = time.monotonic()
    for attempt in range(3):
        try:
            pid = os.fork()
            break
        except BlockingIOError:
            if attempt == 2:
                for r, w in pipes.values():
                    os.close(r)
                    os.close(w)
                return {"status": "sandbox_error", "error": "fork failed: too many processes (EAGAIN)"}
            time.sleep(0.05 * (attempt + 1))
    if pid == 0:
        _child(spec, test, code, wrapped, in_path, pipes["out"][1], pipes["err"][1], pipes["res"][1])
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    readers = {}
    for name, (r, w) in pipes.items():
        os.close(w)
        os.set_blocking(r, False)
        readers[r] = sinks[name]
    poller = select.poll()
    for r in readers:
        poller.register(r, select.POLLIN | select.POLLHUP | select.POLLERR)
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
    except (AttributeError, OSError):
        pidfd = None
    deadline = start + per_test
    timed_out = over_output = False
    wait_status = rusage = None
    open_readers = set(readers)
    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        wait_ms = (deadline - now) * 1000.0
        if pidfd is None:
            wait_ms = min(wait_ms, 2.0)
            got, st, ru = os.wait4(pid, os.WNOHANG)
            if got == pid:
                wait_status, rusage = st, ru
                break
        try:
            events = poller.poll(wait_ms)
        except InterruptedError:
            continue
        exited = False
        for fd, _ev in events:
            if fd == pidfd:
                exited = True
            elif fd in open_readers:
                if _drain(fd, readers[fd]):
                    poller.unregister(fd)
                    open_readers.discard(fd)
        if sinks["out"].total > output_limit or sinks["err"].total > output_limit:
            over_output = True
            break
        if exited:
            break
    wall = time.monotonic() - start
    _kill_group(pid)
    if wait_status is None:
        _, wait_status, rusage = os.wait4(pid, 0)
    if pidfd is not None:
        os.close(pidfd)
    for fd in list(open_readers):
        _drain(fd, readers[fd])
    for fd in readers:
        os.close(fd)
    if in_path:
        try:
            os.unlink(in_path)
        except OSError:
            pass
    return _outcome(spec, test, sinks, wait_status, rusage, wall, timed_out, over_output)


def _outcome(spec, test, sinks, wait_status, rusage, wall, timed_out, over_output):
    out, err, res = sinks["out"], sinks["err"], sinks["res"]
    report = {
        "status": "runtime_error",
        "stdout": out.data.decode("utf-8", "replace"),
        "stdout_bytes": out.total,
        "stdout_truncated": out.total > len(out.data),
        "stderr": err.data.decode("utf-8", "replace"),
        "stderr_truncated": err.total > len(err.data),
        "wall": round(wall, 6),
        "cpu": round(rusage.ru_utime + rusage.ru_stime, 6) if rusage is not None else None,
        "maxrss_kb": rusage.ru_maxrss if rusage is not None else None,
        "exit_code": os.WEXITSTATUS(wait_status)
        if wait_status is not None and os.WIFEXITED(wait_status)
        else None,
        "signal": os.WTERMSIG(wait_status)
        if wait_status is not None and os.WIFSIGNALED(wait_status)
        else None,
        "error": None,
    }
    if timed_out:
        report["status"] = "timeout"
        report["error"] = f"killed after {float(spec['per_test_seconds']):g} s"
        return report
    if over_output:
        report["status"] = "output_limit"
        report["error"] = f"wrote more than {int(spec['output_limit_bytes'])} bytes"
        return report
    child = None
    if res.data:
        try:
            child = json.loads(res.data.decode("utf-8", "replace"))
        except ValueError:
            child = None
    sig = report["signal"]
    if sig is not None:
        if sig == signal.SIGXCPU:
            report["status"], report["error"] = "timeout", "CPU time limit exceeded"
        elif sig == signal.SIGXFSZ:
            report["status"], report["error"] = "output_limit", "file size limit exceeded"
        elif sig == signal.SIGKILL:
            report["status"], report["error"] = "memory_limit", "killed (SIGKILL: out of memory)"
        else:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            report["status"], report["error"] = "runtime_error", f"killed by signal {name}"
        if "MemoryError" in report["stderr"][-2000:]:
            report["status"], report["error"] = "memory_limit", "MemoryError"
        return report
    if not isinstance(child, dict):
        code = report["exit_code"]
        if "MemoryError" in report["stderr"][-2000:]:
            report["status"], report["error"] = "memory_limit", "MemoryError"
        elif code == 0 and test["kind"] == "stdin":
            report["status"] = "ok"  # os._exit(0): the program ended itself
        else:
            report["error"] = f"exited with status {code} before the harness could report"
        return report
    report["status"] = child.get("status", "runtime_error")
    report["error"] = child.get("error")
    if "value" in child:
        report["value"] = child["value"]
    if res.total > len(res.data):
        report["status"], report["error"] = "output_limit", "return value too large"
        report.pop("value", None)
    return report


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


_GLOBALS = None
_LIBC = None


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
    }
    exec(compile(PRELUDE, "<prelude>", "exec"), g)
    g.setdefault("exit", sys.exit)  # `from sys import *` binds it; without site, builtins has none
    g.setdefault("quit", sys.exit)
    return g


def _make_workdir(nonce):
    """A private directory for the tests' input files (``tempfile`` costs more to import than this)."""
    for base in (os.environ.get("TMPDIR"), "/tmp", os.getcwd()):
        if not base:
            continue
        path = os.path.join(base, f"fst-judge-{os.getpid()}-{nonce[:12]}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            return path
        except OSError:
            continue
    raise OSError("no writable directory for the tests' input files")


def _emit(nonce, obj):
    line = nonce + " " + json.dumps(obj, ensure_ascii=False) + "\n"
    _write_all(1, line.encode("utf-8", "replace"))


def main():
    global _GLOBALS, _LIBC
    spec = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogateescape"))
    nonce = spec["nonce"]
    try:
        import ctypes

        _LIBC = ctypes.CDLL(None)
        _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: a test cannot reach our fds through /proc
    except Exception:  # noqa: BLE001
        _LIBC = None
    tests = spec["tests"]
    kind = tests[0]["kind"] if tests else "stdin"
    code, wrapped, error = plan_program(spec["code"], kind, spec.get("wrap", "wrap_first"))
    if code is None:
        _emit(nonce, {"event": "compile_error", "error": error})
        _emit(nonce, {"event": "end"})
        return
    _emit(nonce, {"event": "start", "wrapped": wrapped, "n": len(tests)})
    sys.argv = [FILENAME]
    _GLOBALS = _program_globals()  # the prelude imported once, here: every forked test finds it ready
    import atexit  # noqa: F401 - imported before forking: the tests find these loaded
    import linecache  # noqa: F401 - imported before forking: a failing test's traceback is cheap
    import traceback  # noqa: F401

    sys.setrecursionlimit(RECURSION_LIMIT)
    import gc

    gc.freeze()  # the children's collections skip what we hold: fewer copy-on-write page faults
    t_ready = time.perf_counter()
    workdir = _make_workdir(nonce)
    try:
        for index, test in enumerate(tests):
            report = _run_one(spec, index, test, code, wrapped, workdir)
            report["index"] = index
            _emit(nonce, report)
    finally:
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    _emit(
        nonce,
        {
            "event": "end",
            "setup_seconds": round(t_ready - _T0, 6),
            "tests_seconds": round(time.perf_counter() - t_ready, 6),
        },
    )


if __name__ == "__main__":
    main()
