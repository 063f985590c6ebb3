"""Dynamic batching for ``serve``: one worker thread owns the model, requests share its batches.

Concurrent requests queue their addresses; the worker waits up to ``--batch-wait-ms`` after the first queued
job for more, up to ``--max-batch-size`` addresses, decodes them together and hands each request its slice.
No HTTP here: the app (api.py) submits, :func:`completer_function` adapts a ``generate.Completer``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..runtime import logger

CompleteFunction = Callable[[list[str]], list[Any]]  # addresses -> generate.Completion per address


@dataclass
class _Job:
    addresses: list[str]
    future: Future


class BatchingWorker:
    """One thread owns the model; requests queue their addresses and wait for their slice of a batch."""

    def __init__(self, complete: CompleteFunction, *, max_batch_size: int = 16, batch_wait_ms: float = 10.0):
        self._complete = complete
        self._max_batch_size = max_batch_size
        self._wait_seconds = batch_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="batching-worker", daemon=True)
        self.batches_run = 0
        self.most_requests_in_a_batch = 0

    def start(self) -> "BatchingWorker":
        self._thread.start()
        return self

    def submit(self, addresses: Sequence[str]) -> list[Any]:
        """Completions for ``addresses`` (blocks until their batch ran; re-raises the batch's error)."""
        return self._enqueue(addresses).result() if addresses else []

    async def submit_async(self, addresses: Sequence[str]) -> list[Any]:
        """:meth:`submit` for an event loop: awaits the batch without blocking the loop."""
        return await asyncio.wrap_future(self._enqueue(addresses)) if addresses else []

    def _enqueue(self, addresses: Sequence[str]) -> Future:
        if not self._thread.is_alive():
            raise RuntimeError("the batching worker is not running")
        job = _Job(list(addresses), Future())
        self._queue.put(job)
        logger.debug("queued %d address(es) for the next batch", len(job.addresses))
        return job.future

    def stop(self, *, discard: bool = False) -> None:
        """Finish every queued job (``discard``: cancel those not started; nobody waits for them any more), then
        end the thread."""
        if discard:
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.future.cancel()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            self._run(jobs)
            if stopping:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus whatever arrives within the wait window, up to the batch size."""
        jobs, count = [first], len(first.addresses)
        deadline = time.monotonic() + self._wait_seconds
        while count < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.addresses)
        return jobs, False

    def _run(self, jobs: list[_Job]) -> None:
        # A job whose request was cut (shutdown, client gone) is cancelled: skip it. The others are marked
        # running, so no cancel can come between here and their result (set_result on a cancelled future raises).
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        addresses = [address for job in jobs for address in job.addresses]
        try:
            completions = self._complete(addresses)
        except BaseException as error:  # every waiting request must hear about it
            for job in jobs:
                job.future.set_exception(error)
            return
        self.batches_run += 1
        self.most_requests_in_a_batch = max(self.most_requests_in_a_batch, len(jobs))
        start = 0
        for job in jobs:
            job.future.set_result(completions[start:start + len(job.addresses)])
            start += len(job.addresses)


@dataclass(frozen=True)
class AddressRequest:
    """One address queued with the request's own ``detail`` setting (None: the server's --detail)."""

    address: str
    detail: str | None = None


def with_detail(addresses: Sequence[str], detail: str | None) -> list[Any]:
    """The worker's items for a request: plain addresses, or :class:`AddressRequest` when it names a detail."""
    return list(addresses) if detail is None else [AddressRequest(address, detail) for address in addresses]


def completer_function(completer: Any, batch_size: int) -> CompleteFunction:
    """Adapt a generate.Completer to the worker: detailed completions, decoded ``batch_size`` at a time; an
    :class:`AddressRequest` item carries its request's detail setting into the shared batch."""
    def complete(items: list[Any]) -> list[Any]:
        addresses = [item.address if isinstance(item, AddressRequest) else item for item in items]
        details = [item.detail if isinstance(item, AddressRequest) else None for item in items]
        return completer.complete_detailed(addresses, batch_size=batch_size,
                                           details=details if any(details) else None)

    return complete
