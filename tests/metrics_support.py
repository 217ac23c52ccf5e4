"""Reading GET /metrics back in tests: samples by name and labels, and deltas between scrapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    samples: Mapping[SampleKey, float]
    families: frozenset[str]  # the metric families' names (a counter's without _total)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for a labelled series not yet written (nothing counted)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def labelled(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}


def parse(text: str) -> Scrape:
    samples: dict[SampleKey, float] = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return Scrape(samples, frozenset(families))


def scrape(client) -> Scrape:
    """GET /metrics with a Django test client allowed to read it."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=")  # the text exposition format
    return parse(response.content.decode())


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)
