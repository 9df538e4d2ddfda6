"""Prometheus metrics at ``/metrics`` (``--metrics-port``), read from what the coordinator
counts anyway: nothing is done per step for them.

Counters are the plain integers of ``Stats``; histograms are observed once per batch
(its size and its commit time, weighted by the items it acknowledged) or once per claim;
gauges are read at scrape time, from memory (workers, executions) or with one indexed
query each (ready workflows, timers due). The HTTP server is prometheus-client's, in its
own thread; a scrape asks the event loop for the database gauges and waits at most 2 s.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from coordinator.engine import Engine

log = logging.getLogger(__name__)

# Seconds: from a tenth of a millisecond to ten seconds.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Histogram:
    """Bucket counts and a sum, observed on the event loop only (no lock needed)."""

    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.total += value * times

    def samples(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum."""
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative, self.total


class CoordinatorCollector(Collector):
    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop

    def collect(self) -> Iterator[Any]:
        e, s = self._engine, self._engine.stats
        yield _counter("stepline_workflows_started", "Workflows recorded by starts.", s.workflows_started)
        finished = CounterMetricFamily(
            "stepline_workflows_finished",
            "Workflows that reached a final status (or PAUSED).",
            labels=["status"],
        )
        for status, count in sorted(s.workflows_finished.items()):
            finished.add_metric([status], count)
        yield finished
        yield _counter(
            "stepline_stale_writes_refused",
            "Writes refused for a stale epoch or owner.",
            s.stale_writes_rejected,
        )
        yield _counter(
            "stepline_lease_expiries", "Sessions ended because a worker fell silent.", s.leases_expired
        )
        yield _counter("stepline_recoveries", "Claims of workflows whose worker was lost.", s.recoveries)
        yield _counter("stepline_poisoned", "Workflows given up after too many recoveries.", s.poisoned)
        yield _counter("stepline_timers_fired", "Timers fired (sleeps, timeouts, deadlines).", e.timers.fired)
        yield GaugeMetricFamily(
            "stepline_connected_workers", "Worker sessions on this coordinator.", len(e.sessions)
        )
        yield GaugeMetricFamily(
            "stepline_executions", "Executions held by workers on this coordinator.", e.ownership.held_count()
        )
        for name, batches in sorted(s.batches.items()):
            yield _histogram(
                f"stepline_{name}_batch_size", f"Items per {name} batch written.", batches.size, unit=""
            )
            yield _histogram(
                f"stepline_{name}_commit_seconds",
                f"From a {name} batch's start to its commit, per item it carried.",
                batches.commit,
            )
        yield _histogram(
            "stepline_dispatch_lag_seconds",
            "From a workflow becoming ready to its claim by a worker.",
            s.dispatch_lag,
        )
        ready, due = self._from_database()
        yield GaugeMetricFamily("stepline_queue_depth", "Workflows ready and waiting for a worker.", ready)
        yield GaugeMetricFamily("stepline_timers_due", "Timers whose time has come, not yet fired.", due)

    def _from_database(self) -> tuple[float, float]:
        future = asyncio.run_coroutine_threadsafe(self._engine.backlog(), self._loop)
        try:
            return future.result(timeout=2.0)
        except Exception as exc:  # the scrape still answers, without these two
            log.info("metrics: no queue depth or timers due: %s", exc)
            future.cancel()
            return float("nan"), float("nan")


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, h: Histogram, unit: str = "seconds") -> HistogramMetricFamily:
    buckets, total = h.samples()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total, unit=unit)


class MetricsServer:
    """The /metrics endpoint of one coordinator."""

    def __init__(self, engine: Engine, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CoordinatorCollector(engine, asyncio.get_running_loop()))
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
