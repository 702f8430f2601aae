"""Gather concurrent requests into one model call, off the event loop.

Requests that arrive while the model is busy (or within ``wait_ms`` of each other) and ask for the same
settings (equal options: a :class:`~tformer.generation.GenerationOptions`, or a dict of them) are concatenated
into one call of the served model's batch function (``Translator.translate``, ``Predictor.predict``), which
batches them by length; the results are split back per request. Every model call, /attention's included, runs
in one worker thread, so the model is never used by two threads at once and the event loop keeps answering
(health checks, bad requests) while it works. An input's answer does not depend on the other inputs of its
batch, so batching changes throughput, never results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("tformer.serving")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Counters since the server started (see ``GET /health``)."""

    requests: int = 0
    texts: int = 0
    model_calls: int = 0
    batched_requests: int = 0
    largest_call: int = 0


# The served model's batch function: (inputs, options) -> one result per input, in order (in the model thread).
BatchFunction = Callable[[list[Any], Any], list[Any]]


@dataclass
class _Job:
    texts: list[Any]  # the request's inputs
    options: Any  # equal options may share a call
    future: asyncio.Future = field(repr=False)


class RequestBatcher:
    """Answer requests, merging concurrent ones with equal options into one call of ``decode``.

    Args:
        decode: The served model's batch function, ``decode(inputs, options) -> results`` (one per input).
        max_batch_texts: most inputs per model call (a single larger request still runs, alone).
        wait_ms: how long to wait after the first request of a call for others to join it.
    """

    def __init__(self, decode: BatchFunction, max_batch_texts: int = 256, wait_ms: float = 2.0) -> None:
        self.decode = decode
        self.max_batch_texts = max_batch_texts
        self.wait_s = wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: list[_Job] = []
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the worker thread and the gathering task (call from the running event loop)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tformer-model")
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._gather_forever())

    async def stop(self) -> None:
        """Stop gathering, fail the requests still waiting, and let the model call in progress finish."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[Any], options: Any) -> list[Any]:
        """The results of ``decode`` for ``texts`` under ``options``, computed with other requests' inputs."""
        if self._wakeup is None:
            raise RuntimeError("RequestBatcher.start() was not called")
        job = _Job(list(texts), options, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._wakeup.set()
        return await job.future

    async def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(*args, **kwargs)`` in the model thread, in turn with the batched calls."""
        if self._executor is None:
            raise RuntimeError("RequestBatcher.start() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def _gather_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)  # let the requests sent together arrive together
            self._wakeup.clear()
            while self._queue:
                await self._run(self._take())

    def _take(self) -> list[_Job]:
        """The oldest waiting job and every later one with the same options, up to max_batch_texts."""
        self._queue = [j for j in self._queue if not j.future.done()]  # drop requests whose client left
        if not self._queue:
            return []
        first = self._queue[0]
        taken, kept, n = [first], [], len(first.texts)
        for job in self._queue[1:]:
            if job.options == first.options and n + len(job.texts) <= self.max_batch_texts:
                taken.append(job)
                n += len(job.texts)
            else:
                kept.append(job)
        self._queue = kept
        return taken

    async def _run(self, jobs: list[_Job]) -> None:
        """One model call for ``jobs``; each gets its slice of the results, or the call's exception."""
        if not jobs:
            return
        try:
            texts = [t for job in jobs for t in job.texts]
            results = await self.call(self.decode, texts, jobs[0].options)
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)
        except Exception as e:  # handed to the waiting requests, which answer with it
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        s = self.stats
        s.requests += len(jobs)
        s.texts += len(texts)
        s.model_calls += 1
        s.batched_requests += len(jobs) if len(jobs) > 1 else 0
        s.largest_call = max(s.largest_call, len(jobs))
