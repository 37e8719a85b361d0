"""Captures as tasks on a Dask cluster (`--dask local` or `--dask tcp://host:8786`).

dask.distributed schedules the tasks, moves them to workers and notices a worker that dies; the
task is the one the process pool runs (analyzer.scale.analyze_task, guarded), so the report is
the serial one. dask, distributed and fsspec are an optional extra: `pip install 'wsadiag[cluster]'`.
Workers need wsadiag installed (the task is sent by reference to its module, not as code).
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from analyzer.errors import UsageError
from analyzer.scale import CLUSTER_HINT, Job, Outcome, Task, analyze_task, failed, guarded


def dask_client(address: str, workers: int, processes: bool = True):
    """A dask.distributed Client: a LocalCluster for "local", else the scheduler at `address`."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--dask needs dask and distributed", hint=CLUSTER_HINT) from None
    if address == "local":
        cluster = LocalCluster(
            n_workers=max(1, workers), threads_per_worker=1, processes=processes, dashboard_address=":0"
        )
        return Client(cluster)
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--dask {address}: cannot reach the scheduler: {exc}") from None
    try:
        _same_records(client, address)
    except BaseException:
        client.close()
        raise
    return client


# This installation's records_layout(), worked out once (a test sets it to stand for another build).
LAYOUT: str | None = None


def records_layout() -> str:
    """A fingerprint of the records a task's result is pickled as: the version, and each record
    class's fields and whether pickle restores it through __setstate__. Results pickled by a
    worker whose records differ are misread here, or not read at all (a frozen dataclass's state
    is its fields in order; a plain slotted one's, a dictionary of its slots)."""
    import dataclasses
    import hashlib

    from analyzer import __version__, model, scale, split

    classes = [c for c in vars(model).values() if isinstance(c, type) and c.__module__ == model.__name__]
    parts = [__version__]
    for cls in [*classes, scale.Job, split.ShareOutcome]:
        if dataclasses.is_dataclass(cls):
            names = [f.name for f in dataclasses.fields(cls)]
        else:
            names = list(getattr(cls, "_fields", ()))  # a NamedTuple pickles as its fields in order
        parts.append(f"{cls.__name__}({','.join(names)}){'__setstate__' in vars(cls)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _same_records(client, address: str) -> None:
    """Refuse a cluster whose workers run a wsadiag that pickles its results otherwise (a worker
    upgraded before this client, or after), in one line rather than a traceback or a wrong report."""
    global LAYOUT
    if LAYOUT is None:
        LAYOUT = records_layout()
    # worker address -> its fingerprint, or the error it raised (an ImportError or AttributeError:
    # no wsadiag, or one without this function); a worker that went away meanwhile (its connection
    # closed: OSError) is left to the scheduler, as it is for any task
    theirs: dict[str, object] = client.run(records_layout, on_error="return")
    other = sorted(w for w, layout in theirs.items() if layout != LAYOUT and not isinstance(layout, OSError))
    if other:
        raise UsageError(
            f"--dask {address}: {len(other)} of {len(theirs)} workers ({other[0]}{', ...' if len(other) > 1 else ''}) "
            "run a wsadiag whose results this one cannot read, or none",
            hint="install the same wsadiag on the workers and here",
        )


def close_client(client, address: str) -> None:
    """Close a client, and the LocalCluster it started (a scheduler given by address stays up)."""
    cluster = client.cluster if address == "local" else None
    client.close()
    if cluster is not None:
        cluster.close()


def run_dask(
    captures: Sequence[str], job: Job, client, task: Task = analyze_task, done: Callable[[int], None] | None = None
) -> Iterator[Outcome]:
    """Each capture's outcome, in the order given, each capture a task on the cluster.

    A task whose worker died is retried by the scheduler (its `allowed-failures`) and then fails:
    that capture is reported as failed, the others complete.
    """
    from dask.distributed import as_completed

    futures = [
        client.submit(guarded, task, path, job, key=f"wsadiag-{i}-{path}", pure=False)
        for i, path in enumerate(captures)
    ]
    index = {fut.key: i for i, fut in enumerate(futures)}
    outcomes: dict[int, Outcome] = {}
    nxt = 0
    for finished, fut in enumerate(as_completed(futures), 1):
        i = index[fut.key]
        try:
            outcomes[i] = fut.result()
        except Exception as exc:  # KilledWorker and the like: this capture only
            outcomes[i] = failed(captures[i], f"{captures[i]}: the Dask task failed: {type(exc).__name__}: {exc}"), []
        if done is not None:
            done(finished)
        while nxt in outcomes:
            yield outcomes.pop(nxt)
            nxt += 1


def share_tasks(client) -> Callable[[str, Job, int], list]:
    """How analyze_split runs its shares on the cluster: one task per share, gathered in share order."""

    def run(path: str, job: Job, shares: int) -> list:
        from analyzer.split import analyze_share

        futures = [
            client.submit(analyze_share, path, k, shares, job, key=f"wsadiag-share-{k}-of-{shares}-{path}", pure=False)
            for k in range(shares)
        ]
        return client.gather(futures)

    return run
