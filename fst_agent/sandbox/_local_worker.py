"""The sandboxed supervisor of the ``local`` backend (stdlib only; runs under /usr/bin/python3).

This file is *not* imported by fst_agent: :mod:`fst_agent.sandbox.local` starts
``/usr/bin/python3 -I -c <bootstrap>`` inside bubblewrap, as the session's unprivileged uid, and sends
this file (compiled once by the same interpreter, ``marshal``-ed) as the first frame on its stdin; the
bootstrap runs it as ``__main__``. The second frame is the worker's configuration. One worker serves
one session for the session's whole life:

* it reads requests from fd 0 (frames: 4-byte big-endian length + a ``marshal``-ed dict from the
  trusted host, then raw payload bytes) and answers on fd 1 (4-byte length + a JSON header the host
  parses, then raw output bytes). It imports neither ``json`` nor ``signal`` (``re``/``enum`` would
  double its start-up time);
* per ``run`` it forks a child that calls ``setsid``, applies the rlimits, redirects stdio and then
  either ``execve``\\ s the argv or - when argv is ``python3 [flags] prog.py|-c code`` - runs the program
  in the forked, already started interpreter (the *fast path*: no interpreter start-up per run), with
  the observable state of a fresh ``python3`` rebuilt first (argv, ``__main__``, sys.path, stdio,
  environment, a module table with nothing the worker imported);
* it enforces the wall-clock limit, caps and counts output, and when the program's main process ends
  (or is killed) it kills *every other process in the sandbox* (``kill(-1, SIGKILL)``: inside the
  sandbox's pid namespace that is exactly what the program left behind) and reaps them (it is a
  child subreaper), then answers with exit status, rusage and the output.

The worker makes itself non-dumpable so that the program (same uid) cannot ptrace it or read its
memory through /proc; the program *can* kill it (same uid), which the host notices and reports.
"""

import sys

# Modules a fresh `python3 -I` has loaded before running a script; the fast path drops the rest so
# that a program imports (and seeds, e.g. `random`) everything else afresh, as it would in a new process.
_BASELINE_MODULES = frozenset(sys.modules)  # (the bootstrap imported only os, which site already has)
_BASELINE_PATH = list(sys.path)
_BASELINE_IMPORTER_CACHE = set(sys.path_importer_cache)

import _signal as signal  # noqa: E402  (the C module: `signal` would import enum)
import builtins  # noqa: E402
import gc  # noqa: E402
import marshal  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402

try:
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True)
except Exception:  # pragma: no cover - ctypes missing: no subreaper, dumpable stays on
    _LIBC = None

# What the fast path's child calls after the program ran: bound now, so that a program which
# rebinds os._exit (or gc.collect, ...) cannot make its child fall back into the worker's code.
_os_exit = os._exit
_os_kill = os.kill
_signal_signal = signal.signal
_gc_collect = gc.collect
_FLAG_NAMES = tuple(getattr(sys.flags, "__match_args__", ()))


def _make_flags_type():
    """A look-alike of ``sys.flags`` (whose type cannot be instantiated), so that the fast path can
    show a program the flags a fresh ``python3`` with *its* command line would have."""
    ns = {"__slots__": (), "__module__": "sys"}
    for i, name in enumerate(_FLAG_NAMES):
        ns[name] = property(lambda self, i=i: tuple.__getitem__(self, i))

    def __repr__(self):
        return "sys.flags(" + ", ".join(f"{n}={v!r}" for n, v in zip(_FLAG_NAMES, self, strict=True)) + ")"

    ns["__repr__"] = __repr__
    ns["n_fields"] = ns["n_sequence_fields"] = len(_FLAG_NAMES)
    ns["n_unnamed_fields"] = 0
    ns["__match_args__"] = _FLAG_NAMES
    return type("flags", (tuple,), ns)


_Flags = _make_flags_type()
_EXTRA_MODULES = ()
_MAX_FD = max(256, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 20))
_RUN_STATE = {"forked": False}  # whether the current run's program was started (retry safety)
_EXTRA_MODULES_SEEN = -1

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_MiB = 1024 * 1024
_READ_CHUNK = 1 << 16


def _read_exact(fd, n):
    chunks = []
    while n > 0:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _read_frame():
    return marshal.loads(_read_exact(0, int.from_bytes(_read_exact(0, 4), "big")))


_CONFIG = _read_frame()
WORKSPACE = _CONFIG["workspace"]
ISOLATED = bool(_CONFIG["isolated"])  # inside bwrap's own pid namespace: kill(-1) is safe and complete
NPROC_BASE = int(_CONFIG["nproc_base"])  # processes of our uid counted before the program's own
AS_HEADROOM = int(_CONFIG["as_headroom_mb"]) * _MiB
SELF_EXE = os.path.realpath(sys.executable)
_STDIO = {
    "encoding": sys.__stdout__.encoding if sys.__stdout__ else "utf-8",
    "in_errors": sys.__stdin__.errors if sys.__stdin__ else "strict",
    "out_errors": sys.__stdout__.errors if sys.__stdout__ else "strict",
}
_LOCALE_ENV = {k: os.environ.get(k) for k in ("LANG", "LC_ALL", "LC_CTYPE")}
_FAST_FLAGS = set("IEsuBPq")  # python3 options the fast path reproduces; anything else is exec'd
_PY_ENV_OK = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


# --------------------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------------------


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _json_str(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:  # a surrogate pair
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
    out.append('"')
    return "".join(out)


def _json(obj):
    """JSON for the host, without importing json: flat dicts of None/bool/int/float/str."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, (int, float)):
        return repr(obj) if obj == obj and obj not in (float("inf"), float("-inf")) else "null"
    if isinstance(obj, str):
        return _json_str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(_json_str(str(k)) + ":" + _json(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_json(v) for v in obj) + "]"
    return _json_str(str(obj))


def _reply(header, *payloads):
    body = _json(header).encode()
    _write_all(1, len(body).to_bytes(4, "big") + body + b"".join(payloads))


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------


def _prctl(option, value):
    if _LIBC is not None:
        _LIBC.prctl(option, value, 0, 0, 0)


def _proc_stat(pid):
    """(ppid, sid) of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[1]), int(fields[3])


def _kill_rest(sid):
    """Kill everything the run left behind (never the worker itself)."""
    if ISOLATED:
        # Inside the sandbox's pid namespace the only processes we may signal are the run's own
        # (pid 1, bwrap's init, is exempt from kill(-1) and we are exempt ourselves).
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return
    # Unisolated (no pid namespace): the run's session, and whatever was reparented to us.
    me = os.getpid()
    for _ in range(3):
        victims = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == me:
                continue
            st = _proc_stat(pid)
            if st is not None and (st[1] == sid or st[0] == me):
                victims.append(pid)
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _reap_all(timeout):
    """Reap every child (the run's orphans come to us: we are a subreaper). Returns (cpu, maxrss_kb)."""
    cpu = 0.0
    maxrss = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu, maxrss
        if pid == 0:
            if time.monotonic() > deadline:
                return cpu, maxrss
            _kill_rest(0)
            time.sleep(0.001)
            continue
        cpu += ru.ru_utime + ru.ru_stime
        maxrss = max(maxrss, ru.ru_maxrss)


def _count_uid_processes():
    uid = os.getuid()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _which(cmd, path):
    """argv[0] as execvp would find it; ``python3`` is always the sandbox's own interpreter."""
    if cmd == "python3":
        return sys.executable
    if "/" in cmd:
        return cmd
    for d in (path or "").split(":"):
        cand = os.path.join(d or ".", cmd)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


# --------------------------------------------------------------------------------------------------
# the python3 fast path
# --------------------------------------------------------------------------------------------------


def _fast_plan(argv, env):
    """How to run argv in the forked interpreter, or None when only a real exec is faithful."""
    if not argv or os.path.basename(argv[0]) not in ("python3", "python3.11", "python"):
        return None
    exe = _which(argv[0], env.get("PATH"))
    if exe is None or os.path.realpath(exe) != SELF_EXE:
        return None
    flags = set()
    i = 1
    code = None
    script = None
    while i < len(argv):
        a = argv[i]
        if a == "-c":
            if i + 1 >= len(argv):
                return None
            code = argv[i + 1]
            i += 2
            break
        if a.startswith("-") and len(a) > 1 and a != "--":
            letters = a[1:]
            if "c" in letters[:-1] or not set(letters) <= (_FAST_FLAGS | {"c"}):
                return None
            if letters.endswith("c"):
                flags.update(letters[:-1])
                if i + 1 >= len(argv):
                    return None
                code = argv[i + 1]
                i += 2
                break
            flags.update(letters)
            i += 1
            continue
        if a == "--":
            i += 1
            if i >= len(argv):
                return None
            a = argv[i]
        if a == "-":
            return None
        script = a
        i += 1
        break
    if code is None and script is None:
        return None
    ignore_env = "I" in flags or "E" in flags
    if not ignore_env and any(k.startswith("PYTHON") and k not in _PY_ENV_OK for k in env):
        return None
    if any(env.get(k) != v for k, v in _LOCALE_ENV.items()):
        return None
    no_user_site = "I" in flags or "s" in flags or (not ignore_env and env.get("PYTHONNOUSERSITE"))
    if not no_user_site:
        home = env.get("HOME", WORKSPACE)
        if os.path.isdir(os.path.join(home, ".local", "lib")):
            return None  # a user site-packages might exist: only a real interpreter reads it
    isolated = "I" in flags
    return {
        "code": code,
        "script": script,
        "args": argv[i:],
        "unbuffered": "u" in flags or (not ignore_env and bool(env.get("PYTHONUNBUFFERED"))),
        # what sys.flags of a fresh interpreter with this command line and environment would say
        "flags": {
            "isolated": int(isolated),
            "ignore_environment": int(ignore_env),
            "no_user_site": int(isolated or "s" in flags),
            "safe_path": isolated or "P" in flags,
            "dont_write_bytecode": int(
                "B" in flags or (not ignore_env and bool(env.get("PYTHONDONTWRITEBYTECODE")))
            ),
            "quiet": int("q" in flags),
        },
    }


def _make_stdio(fd, write, unbuffered, errors, name):
    import io

    if write and unbuffered:
        buf = io.FileIO(fd, "wb", closefd=False)
        raw = buf
    else:
        buf = open(fd, "wb" if write else "rb", buffering=-1, closefd=False)
        raw = buf.raw
    raw.name = name
    text = io.TextIOWrapper(
        buf,
        encoding=_STDIO["encoding"],
        errors=errors,
        newline="\n",
        line_buffering=bool(write and fd == 2 and not unbuffered),
        write_through=bool(write and unbuffered),
    )
    text.mode = "w" if write else "r"
    return text


def _flush_std():
    status = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            status = 120
    return status


def _fast_exit(code, main=None):
    """What Py_FinalizeEx does that a program can observe, without its page-touching teardown.
    ``main`` is the program's ``__main__`` module (None before it exists)."""
    try:
        th = sys.modules.get("threading")
        if th is not None:
            th._shutdown()
    except BaseException:
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    flush_status = _flush_std()
    try:
        if main is not None:
            main.__dict__.clear()  # unreferenced objects go now: open files are flushed and closed
        for name in [n for n in sys.modules if n not in _BASELINE_MODULES]:
            mod = sys.modules.get(name)
            d = getattr(mod, "__dict__", None)
            if d is not None and getattr(mod, "__file__", "") and str(mod.__file__).startswith(WORKSPACE):
                d.clear()
        _gc_collect()  # the worker's own objects are frozen: this only walks the program's
    except BaseException:
        pass
    flush_status = _flush_std() or flush_status
    if code == 0 and flush_status:
        code = flush_status
    if code < 0:  # an uncaught KeyboardInterrupt: CPython dies of the signal itself
        _signal_signal(-code, signal.SIG_DFL)
        _os_kill(os.getpid(), -code)
        code = 128 - code
    _os_exit(code & 0xFF)


def _exit_code_of(exc):
    """The exit status CPython gives an uncaught SystemExit (printing non-int codes to stderr)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _run_fast(plan, argv, env):
    """In the forked child: rebuild a fresh interpreter's visible state and run the program."""
    _prctl(_PR_SET_DUMPABLE, 1)  # a normal process again: /proc/self/fd etc. belong to it
    modules = sys.modules
    for name in (
        _EXTRA_MODULES
        if len(modules) == _EXTRA_MODULES_SEEN
        else [n for n in modules if n not in _BASELINE_MODULES]
    ):
        modules.pop(name, None)
    for key in [k for k in sys.path_importer_cache if k not in _BASELINE_IMPORTER_CACHE]:
        del sys.path_importer_cache[key]
    os.environ.clear()
    os.environ.update(env)
    fl = plan["flags"]
    sys.flags = _Flags(fl.get(n, getattr(sys.flags, n)) for n in _FLAG_NAMES) if _FLAG_NAMES else sys.flags
    sys.dont_write_bytecode = bool(fl["dont_write_bytecode"])
    site = sys.modules.get("site")
    if site is not None:  # what site.main() would have found with this command line and HOME
        site.ENABLE_USER_SITE = not fl["no_user_site"]
        site.USER_BASE = site.USER_SITE = None
        site.getusersitepackages()  # site.main() computes these even when the user site is off
    sys.stdin = sys.__stdin__ = _make_stdio(0, False, False, _STDIO["in_errors"], "<stdin>")
    sys.stdout = sys.__stdout__ = _make_stdio(1, True, plan["unbuffered"], _STDIO["out_errors"], "<stdout>")
    sys.stderr = sys.__stderr__ = _make_stdio(2, True, plan["unbuffered"], "backslashreplace", "<stderr>")
    sys.orig_argv = list(argv)
    path = list(_BASELINE_PATH)
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = builtins
    if plan["code"] is not None:
        sys.argv = ["-c", *plan["args"]]
        if not fl["safe_path"]:
            path.insert(0, "")
        filename = "<string>"
        source = plan["code"]
        main.__dict__["__loader__"] = sys.modules["_frozen_importlib"].BuiltinImporter
    else:
        script = plan["script"]
        sys.argv = [script, *plan["args"]]
        filename = os.path.join(os.getcwd(), script)
        try:
            with open(filename, "rb") as f:
                source = f.read()
        except OSError as e:
            sys.stderr.write(f"{argv[0]}: can't open file {filename!r}: [Errno {e.errno}] {e.strerror}\n")
            _fast_exit(2)
        if not fl["safe_path"]:
            path.insert(0, os.path.dirname(os.path.realpath(filename)))
        main.__dict__["__file__"] = filename
        main.__dict__["__cached__"] = None
        loader_cls = sys.modules["_frozen_importlib_external"].SourceFileLoader
        main.__dict__["__loader__"] = loader_cls("__main__", filename)
    main.__dict__["__spec__"] = None
    main.__dict__["__package__"] = None
    sys.path[:] = path
    sys.modules["__main__"] = main
    gc.enable()
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        del source
        exec(code, main.__dict__)
    except SystemExit as e:
        _fast_exit(_exit_code_of(e), main)
    except BaseException as e:  # noqa: BLE001 - the program's uncaught exception, as CPython reports it
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        e.__traceback__ = tb  # the program's frames only, as if it had been the main script
        try:
            sys.excepthook(type(e), e, tb)
        except BaseException:
            pass
        _fast_exit(-signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1, main)
    _fast_exit(0, main)


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------


def _child(req, plan, stdin_fd, out_w, err_w):
    """In the forked child: isolate, bound, and become the program. Never returns."""
    try:
        os.setsid()
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, _MAX_FD)  # close_range(2) where the kernel has it
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")  # the kernel's OOM killer takes the program, never its supervisor
            os.close(fd)
        except OSError:
            pass
        lim = req["limits"]
        # RLIMIT_NPROC counts every process of our uid (per user namespace on Linux >= 5.14):
        # the sandbox's init and this worker come first; without a uid of our own, all of them.
        base = NPROC_BASE if NPROC_BASE >= 0 else _count_uid_processes()
        nproc = int(lim["pids"]) + base
        cpu = int(lim["cpu_seconds"])
        for res, value in (
            (resource.RLIMIT_AS, lim["memory_mb"] * _MiB + AS_HEADROOM),
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_FSIZE, lim["file_size_mb"] * _MiB),
            (resource.RLIMIT_NOFILE, lim["open_files"]),
            (resource.RLIMIT_CORE, 0),
        ):
            pair = value if isinstance(value, tuple) else (value, value)
            resource.setrlimit(res, pair)
        os.chdir(WORKSPACE)
        env = req["env"]
        argv = req["argv"]
        if plan is not None:
            _run_fast(plan, argv, env)
            _os_exit(1)  # unreachable: _run_fast ends in _fast_exit
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        exe = _which(argv[0], env.get("PATH"))
        try:
            if exe is None:
                raise FileNotFoundError
            os.execve(exe, argv, env)
        except FileNotFoundError:
            os.write(2, f"{argv[0]}: command not found\n".encode(errors="replace"))
            os._exit(127)
        except OSError as e:
            os.write(2, f"{argv[0]}: cannot execute: {e.strerror}\n".encode(errors="replace"))
            os._exit(126)
    except BaseException as e:  # pragma: no cover - set-up failed inside the child
        try:
            os.write(2, f"sandbox: could not start the program: {e!r}\n".encode(errors="replace"))
        finally:
            os._exit(126)
    os._exit(126)


def _do_run(req, stdin_data):
    lim = req["limits"]
    cap = int(lim["output_bytes"])
    flood = max(4 * cap, cap + _MiB)  # past this, stop listening and kill the program
    plan = _fast_plan(req["argv"], req["env"])

    mfd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    try:
        if stdin_data:
            _write_all(mfd, stdin_data)
        stdin_fd = os.open(f"/proc/self/fd/{mfd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(mfd)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)

    gc.freeze()  # the child then never walks (and copies) the worker's objects
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        return ("child", (req, plan, stdin_fd, out_w, err_w))
    started = True
    _RUN_STATE["forked"] = True
    os.close(stdin_fd)
    os.close(out_w)
    os.close(err_w)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None

    keep = {out_r: bytearray(), err_r: bytearray()}
    total = {out_r: 0, err_r: 0}
    poller = select.poll()
    for fd in (out_r, err_r):
        poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    deadline = t0 + float(lim["wall_seconds"])
    timed_out = False
    flooded = False
    exited = False
    open_fds = {out_r, err_r}

    def drain(fd):
        data = os.read(fd, _READ_CHUNK)
        if not data:
            poller.unregister(fd)
            open_fds.discard(fd)
            return False
        total[fd] += len(data)
        room = cap + 1 - len(keep[fd])
        if room > 0:
            keep[fd] += data[:room]
        return True

    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        wait_ms = remaining * 1000
        if pidfd is None:
            wait_ms = min(wait_ms, 5)
        for fd, _ev in poller.poll(wait_ms):
            if fd == pidfd:
                exited = True
            elif fd in open_fds:
                drain(fd)
                if total[fd] > flood:
                    flooded = True
        if flooded:
            break
        if pidfd is None:  # kernels before 5.3: poll for the exit without reaping
            try:
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                exited = True
    wall = time.monotonic() - t0

    if timed_out or flooded:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _, status, ru = os.wait4(pid, 0)
    cpu = ru.ru_utime + ru.ru_stime
    maxrss = ru.ru_maxrss
    _kill_rest(pid)
    more_cpu, more_rss = _reap_all(5.0)
    cpu += more_cpu
    maxrss = max(maxrss, more_rss)
    # every writer is gone now: drain what is left in the pipes, without blocking
    for fd in list(open_fds):
        os.set_blocking(fd, False)
        try:
            while fd in open_fds and drain(fd):
                if total[fd] > flood:
                    flooded = True
                    break
        except BlockingIOError:
            pass
    for fd in (out_r, err_r):
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)

    if os.WIFSIGNALED(status):
        exit_code, sig = None, os.WTERMSIG(status)
    else:
        exit_code, sig = os.WEXITSTATUS(status), None
    out = bytes(keep[out_r])
    err = bytes(keep[err_r])
    return (
        "parent",
        (
            {
                "ok": True,
                "started": started,
                "exit_code": exit_code,
                "signal": sig,
                "timed_out": timed_out,
                "output_exceeded": flooded,
                "wall": wall,
                "cpu": cpu,
                "maxrss_kb": maxrss,
                "out_total": total[out_r],
                "err_total": total[err_r],
                "out_len": len(out),
                "err_len": len(err),
                "fast_path": plan is not None,
            },
            out,
            err,
        ),
    )


def _do_write(req, data):
    rel = req["path"]
    if not rel or rel.startswith("/") or "\0" in rel or ".." in rel.split("/"):
        return {"ok": False, "user_error": True, "error": f"invalid path {rel!r}"}
    full = os.path.normpath(os.path.join(WORKSPACE, rel))
    root = os.path.realpath(WORKSPACE)
    parent = os.path.dirname(full)
    try:
        os.makedirs(parent, exist_ok=True)
        real_parent = os.path.realpath(parent)
        if real_parent != root and not real_parent.startswith(root + "/"):
            return {"ok": False, "user_error": True, "error": f"{rel!r} leaves the session directory"}
        target = os.path.join(real_parent, os.path.basename(full))
        if os.path.islink(target):
            os.unlink(target)  # replace a link, never write through it
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o600)
        try:
            _write_all(fd, data)
            os.fchmod(fd, int(req["mode"]))
        finally:
            os.close(fd)
    except OSError as e:
        return {"ok": False, "user_error": True, "error": f"cannot write {rel!r}: {e.strerror}"}
    return {"ok": True}


def _serve():
    """Answer requests until EOF. Returns only inside a forked child (the fast path's program)."""
    while True:
        try:
            req = _read_frame()
            payload = _read_exact(0, int(req.get("payload_len", 0)))
        except EOFError:
            os._exit(0)
        op = req.get("op")
        if op == "run":
            _RUN_STATE["forked"] = False
            try:
                side, value = _do_run(req, payload)
            except Exception as e:  # the worker itself failed; the host decides about retries
                _kill_rest(0)
                _reap_all(2.0)
                _reply({"ok": False, "started": _RUN_STATE["forked"], "error": f"worker: {e!r}"})
                continue
            if side == "child":
                return value
            header, out, err = value
            _reply(header, out, err)
        elif op == "write":
            _reply(_do_write(req, payload))
        elif op == "ping":
            _reply({"ok": True})
        elif op == "exit":
            os._exit(0)
        else:
            _reply({"ok": False, "started": False, "error": f"unknown op {op!r}"})


def _main():
    global _EXTRA_MODULES, _EXTRA_MODULES_SEEN
    _EXTRA_MODULES = tuple(n for n in sys.modules if n not in _BASELINE_MODULES)  # what the worker imported
    _EXTRA_MODULES_SEEN = len(sys.modules)
    _prctl(_PR_SET_DUMPABLE, 0)  # the program (same uid) may not ptrace us or read our memory
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # the run's orphans come to us, to be killed and reaped
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    gc.freeze()
    _reply(
        {
            "ok": True,
            "ready": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "python": sys.version.split()[0],
            "executable": SELF_EXE,
        }
    )
    return _serve()


_child(*_main())
