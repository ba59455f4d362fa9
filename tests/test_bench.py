"""The staff-page benchmark still runs (on a small data set: the numbers are in bench/)."""

from __future__ import annotations

from bench import staff_pages


def test_the_staff_pages_benchmark_runs_end_to_end() -> None:
    results = staff_pages.main(["--conversations", "300", "--repeat", "1"])
    names = [name for name, _, _ in results]
    assert "search: phone, national format" in names and "conversation" in names
    assert names[-1] == "CSV export, 90 days (peak MB)"
    assert all(median > 0 for _, median, _ in results)


def test_the_notifier_benchmark_runs_end_to_end() -> None:
    from bench import notify

    results = notify.main(["--watched", "60", "--units", "4", "--burst", "6", "--rate", "50"])
    assert sum(results["poll, waiting lists"]["calls"].values()) == 4
    assert sum(results["poll, every case"]["calls"].values()) == 60
    assert results["poll with a burst of calls"]["queued"] == 6
    assert results["burst"]["sent"] == 6
