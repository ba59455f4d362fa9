"""The staff-page benchmark still runs (on a small data set: the numbers are in bench/)."""

from __future__ import annotations

from bench import staff_pages


def test_the_staff_pages_benchmark_runs_end_to_end() -> None:
    results = staff_pages.main(["--conversations", "300", "--repeat", "1"])
    names = [name for name, _, _ in results]
    assert "search: phone, national format" in names and "conversation" in names
    assert names[-1] == "CSV export, 90 days (peak MB)"
    assert all(median > 0 for _, median, _ in results)
