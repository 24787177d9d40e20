"""Executors run training tasks and hand results back to the driver, which alone writes the store.

* ``LocalExecutor``: one or more worker processes on this machine (a crashed worker marks its run
  failed and a fresh worker takes the next one).
* ``InlineExecutor``: in the driver's own process (debugging, tests).
* ``RayExecutor`` (``scalinglab[ray]``) and ``SubmititExecutor`` (Slurm, ``scalinglab[slurm]``): runs
  on a cluster, results handed back to the driver.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Protocol

from .config import RunConfig
from .run import RunResult, train_run


@dataclasses.dataclass
class Task:
    """One run to execute: its config, where checkpoints go, and the driver's label for it."""

    key: str
    config: dict
    checkpoint_dir: str | None = None
    group: str | None = None        # tasks of one group (the branches of a WSD trunk) run one at a time, in order


class Executor(Protocol):
    def run(self, tasks: list[Task], on_progress: Callable[[str, dict], None],
            on_result: Callable[[Task, RunResult | None, str | None], None],
            claim: Callable[[Task], bool] | None = None) -> None:
        """Run every task; call ``on_progress(key, info)`` while training and
        ``on_result(task, result, error)`` once per task (``result`` None when it crashed).
        With ``claim``, a task is started only if ``claim(task)`` is true just before it would start
        (another driver on the same store may have taken it); unclaimed tasks get no result."""

    def close(self) -> None:
        """Release what the executor keeps between ``run`` calls (the local executor's worker processes);
        the others keep nothing and do nothing here."""


_worker_queue = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose driver died (SIGKILL) stops too, instead of training on unseen; the next
    ``scalinglab ladder`` resumes its run from the checkpoint."""
    import threading
    import time

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def _init_worker(q, threads, parent=None):
    global _worker_queue
    _worker_queue = q
    if parent is not None:
        _exit_with_parent(parent)
    if threads:
        import torch
        torch.set_num_threads(threads)


def _execute(task: Task, threads: int | None = None) -> RunResult:
    if threads:
        import torch
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(task.config)

    def report(info):
        if _worker_queue is not None:
            _worker_queue.put((task.key, info))

    return train_run(cfg, checkpoint_dir=task.checkpoint_dir, progress=report)


class InlineExecutor:
    """Runs tasks one after another in this process."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, tasks, on_progress, on_result, claim=None):
        if self.threads:
            import torch
            torch.set_num_threads(self.threads)
        for task in tasks:
            if claim is not None and not claim(task):
                continue
            cfg = RunConfig.from_dict(task.config)
            try:
                result = train_run(cfg, checkpoint_dir=task.checkpoint_dir, progress=lambda i, k=task.key: on_progress(k, i))
            except Exception as e:  # noqa: BLE001 - report and go on with the ladder
                on_result(task, None, f"{type(e).__name__}: {e}")
                continue
            on_result(task, result, None)

    def close(self):
        """Nothing to release: the runs trained in this process."""


class LocalExecutor:
    """Worker processes on this machine (spawned, so CUDA and threads start clean).

    The workers outlive one ``run`` call and serve the next (a ladder calls it for the LR sweep, the
    grid and the verification: each fresh worker would import torch again); ``close`` stops them, and
    they stop with the driver in any case. A pool that broke (a worker died) or was left by an
    exception is shut down and the next ``run`` starts a fresh one.

    With several workers, tasks of one ``group`` (the branches of a WSD trunk, which resume from the
    trunk's checkpoints) run one after another, never two at once; and when fewer groups are left than
    workers (the verification run alone, the last trunk of a grid), a task starts with the idle workers'
    threads too (``workers * threads`` over the groups left), so no core waits.

    Args:
        workers: runs at a time. Small CPU models use a second thread poorly (on 2 cores two
            single-thread workers train 1.5x the tokens/s of one two-thread worker); ``scalinglab ladder``
            on a CPU runs one single-thread worker per core by default.
        threads: torch threads per worker (default: torch's choice).
    """

    def __init__(self, workers: int = 1, threads: int | None = None):
        self.workers = workers
        self.threads = threads
        self._pool = None
        self._queue = None

    def _started(self):
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._stop_pool()         # its worker died while idle between two calls: start afresh
        if self._pool is None:
            ctx = mp.get_context("spawn")
            if self._queue is None:   # inherited by the workers at start; no manager process to outlive the driver
                self._queue = ctx.Queue()
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self._queue, self.threads, os.getpid()))
        return self._pool

    def _stop_pool(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, tasks, on_progress, on_result, claim=None):
        pending = list(tasks)
        while pending:
            pool = self._started()
            q = self._queue
            futures = {}
            broken, clean = False, False
            try:
                while (pending or futures) and not broken:
                    while len(futures) < self.workers:
                        busy = {t.group for t in futures.values() if t.group is not None}
                        i = next((i for i, t in enumerate(pending) if t.group is None or t.group not in busy), None)
                        if i is None:
                            break
                        t = pending.pop(i)
                        if claim is None or claim(t):
                            futures[pool.submit(_execute, t, self._threads_for(t, pending, futures))] = t
                    done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
                    _drain(q, on_progress)
                    for fut in done:
                        task = futures.pop(fut)
                        try:
                            on_result(task, fut.result(), None)
                        except BrokenProcessPool:
                            on_result(task, None, "worker process died (killed or crashed)")
                            broken = True
                        except Exception as e:  # noqa: BLE001
                            on_result(task, None, f"{type(e).__name__}: {e}")
                if broken:  # the others in flight died with the pool: run them again
                    pending = list(futures.values()) + pending
                clean = not broken
            finally:
                if not clean:
                    self._stop_pool()
                _drain(q, on_progress)

    def _threads_for(self, task, pending, running) -> int | None:
        """Torch threads for a task about to start: the worker's own, or with fewer groups of work left
        than workers, a share of the idle workers' threads as well."""
        if not self.threads or self.workers == 1:
            return self.threads
        left = {t.group or t.key for t in [task, *pending, *running.values()]}
        return max(self.threads, self.threads * self.workers // max(1, min(self.workers, len(left))))

    def close(self):
        """Stop the workers and close the progress queue."""
        self._stop_pool()
        if self._queue is not None:
            self._queue.close()
            self._queue.join_thread()
            self._queue = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drain(q, on_progress):
    while True:
        try:
            key, info = q.get_nowait()
        except (queue_mod.Empty, EOFError, OSError):
            return
        on_progress(key, info)


class _Chains:
    """Tasks released so that the tasks of one ``group`` (the branches of a WSD trunk) run in turn: a task
    becomes ready when the one before it in its group has finished (for executors that start every ready
    task at once)."""

    def __init__(self, tasks):
        self.ready, self.after = [], {}
        for t in tasks:
            if t.group is None:
                self.ready.append(t)
            elif t.group in self.after:
                self.after[t.group].append(t)
            else:
                self.after[t.group] = []
                self.ready.append(t)

    def take(self) -> list:
        out, self.ready = self.ready, []
        return out

    def finished(self, task) -> None:
        nxt = self.after.get(task.group)
        if nxt:
            self.ready.append(nxt.pop(0))


def _execute_on_ray(task: Task, queue, threads: int | None) -> RunResult:
    if threads:
        import torch
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(task.config)

    def report(info):
        try:
            queue.put_nowait((task.key, info))
        except Exception:  # noqa: BLE001 - progress is best effort; a full queue must not stop training
            pass

    return train_run(cfg, checkpoint_dir=task.checkpoint_dir, progress=report)


def thread_budget(executor) -> int | None:
    """The CPU threads an executor trains with on this machine, all workers together: the denominator of a
    ladder's core-time accounting (:func:`scalinglab.experiments.ladder.ladder_efficiency`). None for
    executors whose runs train elsewhere (Ray, Slurm)."""
    import torch
    if isinstance(executor, InlineExecutor):
        return executor.threads or torch.get_num_threads()
    if isinstance(executor, LocalExecutor):
        return executor.workers * (executor.threads or torch.get_num_threads())
    return None


class RayExecutor:
    """Each run is a Ray task with its own CPU/GPU resources (the branches of a WSD trunk one after
    another, each resuming from the trunk's checkpoint); crashed workers are retried (the run
    resumes from its checkpoint, which must live on a path every worker can reach); results come
    back to the driver, which alone writes the store.

    Args:
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"HOST:PORT"`` joins a cluster.
        cpus_per_run, gpus_per_run: resources each run asks Ray for.
        max_retries: times Ray re-runs a task whose worker died.
        init_kwargs: passed to ``ray.init`` (e.g. ``num_cpus=2`` for a local test instance).
    """

    def __init__(self, address: str | None = None, *, cpus_per_run: float = 1, gpus_per_run: float = 0,
                 max_retries: int = 2, threads: int | None = None, init_kwargs: dict | None = None):
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.max_retries = max_retries
        self.threads = threads
        self.init_kwargs = init_kwargs or {}

    def run(self, tasks, on_progress, on_result, claim=None):
        tasks = [t for t in tasks if claim is None or claim(t)]     # the cluster schedules them: claim all now
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:  # pragma: no cover - depends on the install
            raise RuntimeError("the Ray executor needs Ray: pip install 'scalinglab[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **self.init_kwargs)
        queue = Queue(maxsize=10_000)
        remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                            max_retries=self.max_retries)(_execute_on_ray)
        chains = _Chains(tasks)
        pending = {remote.remote(t, queue, self.threads): t for t in chains.take()}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                while not queue.empty():
                    key, info = queue.get_nowait()
                    on_progress(key, info)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        on_result(task, ray.get(ref), None)
                    except Exception as e:  # noqa: BLE001 - a failed run is recorded, the ladder goes on
                        on_result(task, None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
                    chains.finished(task)
                pending.update({remote.remote(t, queue, self.threads): t for t in chains.take()})
        finally:
            queue.shutdown()

    def close(self):
        """Nothing to release: each ``run`` has its own queue, and a Ray instance started here stays up for
        the next (it stops with this process)."""


def _execute_quietly(task: Task) -> RunResult:
    return train_run(RunConfig.from_dict(task.config), checkpoint_dir=task.checkpoint_dir)


class SubmititExecutor:
    """Slurm through ``submitit``: each run is a job with its own resources (the branches of a WSD trunk one
    after another); a failed or preempted
    job is resubmitted (it resumes from its checkpoint, in a directory every node can reach); the
    driver polls the jobs and alone writes the store. Progress is not streamed from the nodes.

    Args:
        cluster: ``"slurm"``, ``"local"`` (processes on this machine, for testing) or None (auto).
    """

    def __init__(self, folder: str = "scalinglab-out/submitit", *, cluster: str | None = None,
                 partition: str | None = None, cpus_per_run: int = 1, gpus_per_run: int = 0, timeout_min: int = 60,
                 max_retries: int = 2, poll_s: float = 1.0):
        self.folder = folder
        self.cluster = cluster
        self.partition = partition
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.timeout_min = timeout_min
        self.max_retries = max_retries
        self.poll_s = poll_s

    def run(self, tasks, on_progress, on_result, claim=None):
        import time

        tasks = [t for t in tasks if claim is None or claim(t)]
        try:
            import submitit
        except ImportError:  # pragma: no cover - depends on the install
            raise RuntimeError("the Slurm executor needs submitit: pip install 'scalinglab[slurm]'") from None
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params = {"timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_run}
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.partition:
            params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        chains = _Chains(tasks)
        jobs = {ex.submit(_execute_quietly, t): (t, 0) for t in chains.take()}
        while jobs:
            time.sleep(self.poll_s)
            for job in [j for j in jobs if j.done()]:
                task, tries = jobs.pop(job)
                try:
                    result = job.result()
                except Exception as e:  # noqa: BLE001 - resubmit, then record the failure
                    if tries < self.max_retries:
                        jobs[ex.submit(_execute_quietly, task)] = (task, tries + 1)
                        continue
                    on_result(task, None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
                else:
                    on_result(task, result, None)
                chains.finished(task)
            jobs.update({ex.submit(_execute_quietly, t): (t, 0) for t in chains.take()})

    def close(self):
        """Nothing to release: the jobs of each ``run`` have finished when it returns."""


def make_executor(name: str, *, workers: int = 1, threads: int | None = None, address: str | None = None,
                  gpus_per_run: float = 0, **kwargs) -> Executor:
    """``local`` (processes), ``inline`` (this process) or ``ray`` (a Ray cluster, optional extra)."""
    if name == "local":
        return LocalExecutor(workers=workers, threads=threads)
    if name == "inline":
        return InlineExecutor(threads=threads)
    if name == "ray":
        return RayExecutor(address, gpus_per_run=gpus_per_run, threads=threads, **kwargs)
    if name == "slurm":
        return SubmititExecutor(cluster="slurm", gpus_per_run=int(gpus_per_run), **kwargs)
    raise ValueError(f"unknown executor {name!r}; choose local, inline, ray or slurm")
