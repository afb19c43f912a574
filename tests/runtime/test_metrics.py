"""nbops.runtime.metrics: what the service counts, and the exposition prometheus_client writes from it,
read back with prometheus_client's own parser (the live server, promtool and a real Prometheus are in
tests/deploy/test_prometheus.py)."""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from nbops.runtime.metrics import LATENCY_BUCKETS, SCORE_BUCKETS, Metrics
from nbops.runtime.model import ScoringModel
from nbops.runtime.serve import create_app
from tests.support import TinyModel

# What Prometheus sends (2.42) when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text-format exposition, parsed by prometheus_client: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_the_exposition_counts_requests_latencies_scores_and_rejections() -> None:
    m = Metrics("v0007")
    latencies = [0.0003, 0.0005, 0.0015, 0.3, 2.0]  # 0.0005 lies on a bound: Prometheus buckets are `le`
    m.observe("/predict", 200, latencies[0], [0.05, 0.42, 0.99], 0)
    m.observe("/predict", 422, latencies[1], [], 3)
    m.observe("/predict", 200, latencies[2], [0.7], 0)
    m.observe("other", 404, latencies[3])
    m.observe("/health", 200, latencies[4])
    body, content_type = m.exposition(None)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    got = samples(body.decode())

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert value("nbops_requests_total", path="/predict", status="200", model_version="v0007") == 2
    assert value("nbops_requests_total", path="/predict", status="422", model_version="v0007") == 1
    assert value("nbops_requests_total", path="other", status="404", model_version="v0007") == 1
    assert value("nbops_request_errors_total") == 2
    assert value("nbops_records_rejected_total") == 3
    for bound in LATENCY_BUCKETS:
        expected = sum(x <= bound for x in latencies)
        assert value("nbops_request_latency_seconds_bucket", le=str(float(bound))) == expected, bound
    assert value("nbops_request_latency_seconds_bucket", le="+Inf") == value("nbops_request_latency_seconds_count") == 5
    assert value("nbops_request_latency_seconds_sum") == pytest.approx(sum(latencies))
    scores = [0.05, 0.42, 0.99, 0.7]
    for bound in SCORE_BUCKETS:
        assert value("nbops_prediction_score_bucket", le=str(float(bound))) == sum(s <= bound for s in scores), bound
    assert value("nbops_prediction_score_count") == 4
    assert value("nbops_prediction_score_sum") == pytest.approx(sum(scores))
    assert value("nbops_model_info", model_version="v0007") == 1
    assert value("process_resident_memory_bytes") > 0 and value("process_cpu_seconds_total") > 0


def test_a_label_value_is_escaped_by_prometheus_client() -> None:
    version = 'v1 "quoted" back\\slash\nnew line'
    m = Metrics(version, process=False)
    m.observe("/predict", 200, 0.001, [0.5])
    text = m.exposition(None)[0].decode()
    assert samples(text)[("nbops_model_info", frozenset({("model_version", version)}))] == 1
    assert "\nnew line" not in text


def test_prometheus_gets_openmetrics_when_it_asks_for_it() -> None:
    m = Metrics("v0001", process=False)
    m.observe("/predict", 200, 0.001, [0.5])
    body, content_type = m.exposition(PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0"), content_type
    text = body.decode()
    assert text.endswith("# EOF\n"), text[-200:]
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["nbops_requests"].type == "counter" and families["nbops_model"].type == "info"
    assert [s.value for s in families["nbops_requests"].samples] == [1]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_each_app_has_its_own_registry(tiny_model: TinyModel) -> None:
    """Two apps in one process count apart, and neither writes to prometheus_client's global registry."""
    from fastapi.testclient import TestClient
    from prometheus_client import REGISTRY

    model = ScoringModel.from_folder(tiny_model.version.path)
    first, second = create_app(model, token="", log_dir=None), create_app(model, token="", log_dir=None)
    assert first.metrics.registry is not second.metrics.registry is not REGISTRY
    with TestClient(first) as a, TestClient(second) as b:
        for _ in range(3):
            assert a.get("/health").status_code == 200
        scrape_a, scrape_b = a.get("/metrics"), b.get("/metrics")
        openmetrics = b.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert scrape_a.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    key = ("nbops_requests_total", frozenset({("path", "/health"), ("status", "200"), ("model_version", "v0001")}))
    assert samples(scrape_a.text)[key] == 3
    assert key not in samples(scrape_b.text), "the second app counted the first one's requests"
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text"), openmetrics.headers
    assert not [m for m in REGISTRY.collect() if m.name.startswith("nbops_")]
