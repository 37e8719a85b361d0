"""Many captures at once: a process pool on this machine (`--jobs`) or a Dask cluster (`--dask`).

Each capture is one task. A task is a plain function of a path and a `Job` (everything a worker
needs, picklable: the rule options rather than the compiled rules, which hold closures), so the
same task runs in a `concurrent.futures` process pool and on a Dask worker. The results come back
in the order the captures were given, so the report is the one a serial run writes, byte for byte.

concurrent.futures and dask.distributed rather than a scheduler of our own: both already handle
worker start-up, pickling, and a worker that dies.

Failures stay with their capture: a capture whose task raises, whose worker dies, or that runs
past `--timeout` gets a result with `error` set (the CLI exits 2 at the end), and the others
complete.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

from analyzer.errors import UsageError
from analyzer.model import CaptureResult, CaptureWarning, Conversation

if TYPE_CHECKING:
    import concurrent.futures as cf

    from analyzer.pipeline import Keep
    from analyzer.report.stream import ConversationStream

# the cluster extra, installed as wsadiag was: from a package index, or from the checkout
CLUSTER_HINT = "pip install 'wsadiag[cluster]', or in a checkout pip install '.[cluster]' (dask, distributed, fsspec)"


@dataclass(frozen=True)
class Job:
    """How to analyse each capture: what a worker process needs besides the path."""

    keep: Keep
    rules: bool = True  # False: no rules at all (the conversations listing)
    rule_dirs: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    filter: str | None = None
    max_conversations: int | None = None
    max_live_bytes: int | None = None
    timeout: float | None = None  # seconds per capture; None: no limit
    listing: bool = False  # also return every conversation in the order it ended (for the stream)


Outcome = tuple[CaptureResult, list[Conversation]]
Task = Callable[[str, Job], Outcome]


class CaptureTimeout(Exception):
    """A capture ran past --timeout."""


@functools.lru_cache(maxsize=4)
def _ruleset(rule_dirs: tuple[str, ...], select: tuple[str, ...], ignore: tuple[str, ...]):
    """Rules compiled once per worker process (a worker analyses many captures)."""
    from analyzer.rules import load_rules

    return load_rules(extra_dirs=list(rule_dirs), select=list(select), ignore=list(ignore))


def analyze_task(path: str, job: Job) -> Outcome:
    """One capture analysed as `job` says: the task each worker runs."""
    from analyzer.filter import compile_filter
    from analyzer.pipeline import analyze_capture

    rules = _ruleset(job.rule_dirs, job.select, job.ignore) if job.rules else None
    conv_filter = compile_filter(job.filter) if job.filter else None
    extra: dict = {}
    if job.max_conversations is not None:
        extra["max_conversations"] = job.max_conversations
    if job.max_live_bytes is not None:
        extra["max_live_bytes"] = job.max_live_bytes
    ended: list[Conversation] = []
    if job.listing:
        extra["listen"] = ended.append  # built brief (no packets, no payload bytes): they travel back small
    deadline = None if job.timeout is None else time.monotonic() + job.timeout

    def check(frames: int) -> None:
        # called by the packet loop every 65,536 frames: a timeout that works in any thread
        if deadline is not None and time.monotonic() > deadline:
            raise CaptureTimeout(frames)

    source = _open_url(path) if "://" in path else path
    result = analyze_capture(source, rules, conv_filter, keep=job.keep, progress=check, **extra)
    result.path = path
    return result, ended


def _open_url(url: str):
    """An fsspec URL (s3://, gs://, https://, file://) opened for reading; needs the cluster extra."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: reading a URL needs fsspec", hint=CLUSTER_HINT) from None
    try:
        return fsspec.open(url, "rb").open()
    except (ImportError, ValueError) as exc:  # no backend for the scheme (s3fs, gcsfs ...)
        raise UsageError(f"{url}: {exc}") from None


def guarded(task: Task, path: str, job: Job) -> Outcome:
    """Run `task`; whatever goes wrong becomes this capture's error instead of the run's."""
    limit = job.timeout
    alarm = limit is not None and threading.current_thread() is threading.main_thread()
    if alarm and limit is not None:  # in a pool process: also stops a task stuck outside the packet loop
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return interruptible(task, path, job)
    except CaptureTimeout:
        return failed(path, f"{path}: timed out after {job.timeout:g} s (--timeout)"), []
    except UsageError as exc:
        return failed(path, str(exc)), []
    except Exception as exc:  # a bug of ours on this capture: reported for it, the others go on
        return failed(path, f"{path}: internal error: {type(exc).__name__}: {exc}"), []
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)


_T = TypeVar("_T")


def interruptible(task: Callable[..., _T], *args: object) -> _T:
    """task(*args), which Ctrl-C stops once: a pool worker gets it from the terminal and from
    run_pool both, and ignores it between tasks (_idle_worker), as before this one. Outside the
    main thread (a Dask worker's task) signals cannot be caught: the task just runs."""
    if threading.current_thread() is not threading.main_thread():
        return task(*args)
    idle = signal.signal(signal.SIGINT, _interrupt_once())
    try:
        return task(*args)
    finally:
        signal.signal(signal.SIGINT, idle)


def _idle_worker() -> None:
    """A pool process ignores Ctrl-C while it waits for a task: the terminal sends it to every
    process, and one that stops in concurrent.futures' own loop prints a traceback. interruptible()
    takes it during a task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_once() -> Callable[[int, object], None]:
    """A SIGINT handler that raises KeyboardInterrupt the first time only, for one task."""
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    return handler


def _on_alarm(signum: int, frame: object) -> None:
    raise CaptureTimeout(-1)


def failed(path: str, error: str) -> CaptureResult:
    return CaptureResult(path=path, error=error)


# -- a process pool on this machine -------------------------------------------------------------


def run_pool(
    captures: Sequence[str], job: Job, jobs: int, task: Task = analyze_task, done: Callable[[int], None] | None = None
) -> Iterator[Outcome]:
    """Each capture's outcome, in the order given, from a pool of `jobs` processes.

    done(n) is called as captures finish (n finished so far), in whatever order they finish.
    A capture whose worker died is run again alone in a fresh process, so one capture that kills
    its worker cannot take the captures that shared its pool with it; if it dies again, it is
    reported as such. Ctrl-C: the workers are interrupted too (a terminal sends it to them as
    well, `kill -INT` only to this process), the captures up to the first unfinished one are
    given, that one with what it read, and KeyboardInterrupt is raised again.
    """
    import concurrent.futures as cf  # here, not at import: a one-capture run never starts a pool

    state = _PoolRun(captures, job, task)
    pool = cf.ProcessPoolExecutor(max_workers=max(1, jobs), initializer=_idle_worker)
    try:
        state.futures = {pool.submit(guarded, task, captures[i], job): i for i in _biggest_first(captures)}
        pending = set(state.futures)
        while state.nxt < len(captures):
            with _ctrl_c_held() as held:  # the caller writes its part of the report meanwhile
                yield from state.ready_in_order()
            if held:  # as if it had come while the pool was waited on
                if state.interrupted:
                    raise KeyboardInterrupt
                state.interrupted = True
                _interrupt(pool)
            if state.nxt >= len(captures):
                break
            if not pending:
                raise KeyboardInterrupt  # interrupted: the next capture will not be finished
            try:
                ready, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            except KeyboardInterrupt:
                if state.interrupted:
                    raise
                state.interrupted = True
                _interrupt(pool)
                continue
            for fut in ready:
                state.take(fut)
                if done is not None:
                    done(state.finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[list[int]]:
    """Ctrl-C noted, not raised, while the caller holds the pool's results: the report it writes
    meanwhile is not cut, and the workers are interrupted as when the pool is waited on. Only the
    main thread can catch signals; elsewhere Ctrl-C is raised where it lands."""
    hit: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    except ValueError:  # not the main thread
        yield hit
        return
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def _biggest_first(captures: Sequence[str]) -> list[int]:
    """The captures' indexes, the biggest file first: started last, a big capture would keep one
    process busy after the others ran out of work. Its report still comes in the order given."""

    def size(i: int) -> int:
        try:
            return 0 if "://" in captures[i] else os.path.getsize(captures[i])
        except OSError:  # reported by its task, as ever
            return 0

    return sorted(range(len(captures)), key=lambda i: -size(i))


class _PoolRun:
    """What run_pool knows of its captures as their outcomes come back."""

    def __init__(self, captures: Sequence[str], job: Job, task: Task) -> None:
        self.captures, self.job, self.task = captures, job, task
        self.futures: dict[cf.Future, int] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.retry: set[int] = set()
        self.finished = 0
        self.nxt = 0
        self.interrupted = False

    def take(self, fut: cf.Future) -> None:
        from concurrent.futures.process import BrokenProcessPool

        i = self.futures[fut]
        self.finished += 1
        if fut.cancelled():
            return
        try:
            self.outcomes[i] = fut.result()
        except BrokenProcessPool:
            if not self.interrupted:  # after Ctrl-C a worker stopped by it is no failure of the capture
                self.retry.add(i)
        except KeyboardInterrupt:  # the worker was interrupted outside its packet loop
            note = CaptureWarning("interrupted", "interrupted before this capture was read to its end")
            self.outcomes[i] = CaptureResult(path=self.captures[i], warnings=[note]), []

    def ready_in_order(self) -> Iterator[Outcome]:
        while self.nxt < len(self.captures) and (self.nxt in self.outcomes or self.nxt in self.retry):
            if self.nxt in self.retry:
                self.outcomes[self.nxt] = _alone(self.captures[self.nxt], self.job, self.task)
                self.retry.discard(self.nxt)
            yield self.outcomes.pop(self.nxt)
            self.nxt += 1


def _interrupt(pool: cf.ProcessPoolExecutor) -> None:
    """Pass Ctrl-C on to the pool's workers, whose packet loops turn it into an `interrupted` result.

    concurrent.futures has no call for it; its `_processes` (pid -> process) is the only list.
    """
    for pid in list(getattr(pool, "_processes", None) or {}):
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:  # already gone
            pass


def _alone(path: str, job: Job, task: Task) -> Outcome:
    """A capture whose worker died, once more in a process of its own."""
    import concurrent.futures as cf

    try:
        with cf.ProcessPoolExecutor(max_workers=1, initializer=_idle_worker) as pool:
            return pool.submit(guarded, task, path, job).result()
    except cf.process.BrokenProcessPool:
        return failed(path, f"{path}: the worker process analysing this capture died"), []


# -- what the command line runs (analyzer/cli.py parses the options, analyzer/placement.py decides) --------


def run_split(path: str, job: Job, jobs: int, dask: str | None = None) -> CaptureResult:
    """One capture on `jobs` cores (or Dask tasks), each following a share of its conversations
    (analyzer/split.py); an error is also said on standard error, as for any capture."""
    from analyzer.report.common import clean
    from analyzer.split import analyze_split

    if dask:  # each share a task on the cluster
        from analyzer.cluster import close_client, dask_client, share_tasks

        client = dask_client(dask, jobs)
        try:
            result = analyze_split(path, job, jobs, run=share_tasks(client))
        finally:
            close_client(client, dask)
    else:
        result = analyze_split(path, job, jobs)
    if result.error:
        print(f"error: {clean(result.error)}", file=sys.stderr)
    return result


class ManyRun:
    """The captures' results from a process pool or Dask, in the order given, as they come.

    A report can be written while the later captures are still analysed (its JSON capture by
    capture: analyzer.report.AS_THEY_COME); after the iteration, `interrupted` says whether Ctrl-C
    stopped the run (the results then cover the captures before it, as serially).

    progress: the progress bar across all captures (None: on a terminal only). stream: a
    ConversationStream that takes each capture's conversations (`job.listing`).
    """

    def __init__(
        self,
        captures: Sequence[str],
        job: Job,
        jobs: int,
        dask: str | None,
        progress: bool | None,
        stream: ConversationStream | None = None,
    ) -> None:
        self.captures, self.job, self.jobs, self.dask = captures, job, jobs, dask
        self.progress, self.stream = progress, stream
        self.interrupted = False

    def __iter__(self) -> Iterator[CaptureResult]:
        from analyzer.report.common import clean
        from analyzer.report.progress import CaptureProgress

        captures, stream = self.captures, self.stream
        given = 0
        client = None
        if self.dask:
            from analyzer.cluster import dask_client

            client = dask_client(self.dask, self.jobs)
        try:
            with CaptureProgress(
                f"{len(captures)} captures", total=len(captures), enabled=self.progress, unit="captures"
            ) as bar:
                if client is not None:
                    from analyzer.cluster import run_dask

                    outcomes = run_dask(captures, self.job, client, done=bar.update)
                else:
                    outcomes = run_pool(captures, self.job, self.jobs, done=bar.update)
                for result, ended in outcomes:
                    if result.error:
                        print(f"error: {clean(result.error)}", file=sys.stderr)
                    if stream is not None:
                        stream.capture_start(result.path)
                        for conv in ended:
                            stream.conversation(conv)
                        stream.capture_end(result)
                    given += 1
                    yield result
                    if any(w.code == "interrupted" for w in result.warnings):
                        raise KeyboardInterrupt
        except KeyboardInterrupt:  # the workers got Ctrl-C too: report the captures before it, as a serial run
            print(
                f"error: interrupted: the report covers {given} of {len(captures)} capture(s), "
                "the last one only up to where it stopped",
                file=sys.stderr,
            )
            self.interrupted = True
        finally:
            if client is not None and self.dask:
                from analyzer.cluster import close_client

                close_client(client, self.dask)
