"""The scoring service's Prometheus metrics: counted in process, written out by ``prometheus_client``.

Each app has its own :class:`Metrics` and its own ``CollectorRegistry`` (never the library's global
default one): several apps in one process, as in the tests, count apart. What /metrics exports:

- ``nbops_requests_total{path, status, model_version}``: requests by path (the service's own paths;
  anything else is ``other``) and status code;
- ``nbops_request_errors_total``: requests answered with a 4xx or 5xx;
- ``nbops_records_rejected_total``: records refused by validation (or beyond the per-request cap);
- ``nbops_request_latency_seconds``: histogram of the time a request took to handle (:data:`LATENCY_BUCKETS`);
- ``nbops_prediction_score``: histogram of the scores returned, one per record (:data:`SCORE_BUCKETS`;
  a multiclass record counts its most likely class's probability);
- ``nbops_model_info{model_version}``: 1, naming the model version served;
- ``process_*``: CPU seconds, resident memory, open file descriptors and start time of the server
  process (``prometheus_client``'s process collector, on Linux).

The hot path stays cheap: a request adds to plain integers under a lock (about 1 µs, against 5-7 µs
for ``prometheus_client``'s own Counter and Histogram objects, measured on the scoring path), and the
counts become metric families only when Prometheus scrapes, through a custom collector.
``prometheus_client`` writes the exposition, label escaping included: the text format by default,
OpenMetrics when the scraper asks for it in its Accept header (Prometheus does).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

try:
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
        Metric,
    )
except ImportError as exc:  # the wheel's batch scoring never imports this module
    raise ImportError(
        "the API's /metrics needs the 'prometheus-client' package, which is not installed: install the "
        "wheel with its serve extra (pip install '<wheel>[serve]')"
    ) from exc

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)

__all__ = ["LATENCY_BUCKETS", "SCORE_BUCKETS", "Metrics"]


class Metrics:
    """The counters and histograms of one app, and the registry that exports them.

    :meth:`observe` is called once per answered request; :meth:`exposition` renders what a scrape
    reads. Both may run on any thread.
    """

    def __init__(self, version: str, *, process: bool = True) -> None:
        self.version = version
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.scores = [0] * (len(SCORE_BUCKETS) + 1)
        self.scores_sum = 0.0
        self.records_rejected = 0
        self.registry = CollectorRegistry()
        self.registry.register(self)
        if process:
            ProcessCollector(registry=self.registry)

    def observe(self, path: str, status: int, seconds: float, scores: Iterable[float] = (), rejected: int = 0) -> None:
        """Count one request: its path and status, how long it took, the scores it returned and the
        records it refused."""
        key = (path, status)
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            if rejected:
                self.records_rejected += rejected
            for s in scores:
                self.scores[bisect_left(SCORE_BUCKETS, s)] += 1
                self.scores_sum += s

    def collect(self) -> Iterator[Metric]:
        """The metric families, from a consistent snapshot of the counts (prometheus_client's
        custom-collector interface: the registry calls it on every scrape)."""
        with self.lock:
            requests = sorted(self.requests.items())
            latency, latency_sum = list(self.latency), self.latency_sum
            scores, scores_sum = list(self.scores), self.scores_sum
            rejected = self.records_rejected
        by_request = CounterMetricFamily(
            "nbops_requests", "Requests by path and status code.", labels=["path", "status", "model_version"]
        )
        for (path, status), n in requests:
            by_request.add_metric([path, str(status), self.version], n)
        yield by_request
        errors = sum(n for (_, status), n in requests if status >= 400)
        yield CounterMetricFamily("nbops_request_errors", "Requests answered with a 4xx or 5xx.", value=errors)
        yield CounterMetricFamily("nbops_records_rejected", "Records refused by validation.", value=rejected)
        yield _histogram(
            "nbops_request_latency_seconds", "Request handling time.", LATENCY_BUCKETS, latency, latency_sum
        )
        yield _histogram(
            "nbops_prediction_score", "Distribution of predicted scores.", SCORE_BUCKETS, scores, scores_sum
        )
        yield InfoMetricFamily("nbops_model", "The model version served.", value={"model_version": self.version})

    def describe(self) -> Iterator[Metric]:
        """The families :meth:`collect` yields (the registry reads their names when registering)."""
        return self.collect()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and content type of a scrape that sent the Accept header ``accept``: Prometheus'
        text format unless OpenMetrics is asked for."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _histogram(name: str, help_text: str, bounds: Sequence[float], counts: list[int], total: float) -> Metric:
    """A histogram family from per-bucket counts (the last one beyond every bound): cumulative buckets."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(bounds, counts, strict=False):
        running += n
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", running + counts[-1]))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=total)
