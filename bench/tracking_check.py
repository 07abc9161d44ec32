"""Benchmark: checking a live stream's tracking numbers (format and check digit) before they go out.

    .venv/bin/python bench/tracking_check.py [--numbers 2800]

Checks `--numbers` valid numbers per carrier (USPS IMpb, UPS 1Z, FedEx 12-digit, as the label
sources make them) and as many with a wrong check digit through
`logistics.tracking_numbers.tracking_number_problem` (the `tracking-numbers` package's
definitions, tried in turn), next to a baseline measured in the same run: one compiled regex per
carrier that checks the shape only. The difference is what the check digit and the library's
definitions cost per number; a platform call costs tens of milliseconds. No database needed.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logistics.tracking_numbers import (
    make_tracking_number,
    tracking_number_problem,
)

SHAPES = {
    "usps": re.compile(r"9[1-5]\d{20}"),
    "ups": re.compile(r"1Z[0-9A-Z]{15}\d"),
    "fedex": re.compile(r"\d{12}"),
}


def numbers(count: int) -> list[tuple[str, str]]:
    made = []
    for serial in range(1, count + 1):
        for carrier, service, account in (
            ("usps", "", ""),
            ("ups", "ground", "A1B2C3"),
            ("fedex", "2day", ""),
        ):
            good = make_tracking_number(
                carrier=carrier, service=service, account=account, serial=serial
            )
            bad = good[:-1] + str((int(good[-1]) + 1) % 10)
            made += [(carrier, good), (carrier, bad)]
    return made


def run(label: str, check, work: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    accepted = sum(1 for carrier, number in work if check(carrier, number))
    seconds = time.perf_counter() - start
    print(
        f"{label:<34} {len(work):>6} numbers  {seconds * 1000:8.1f} ms  "
        f"{seconds / len(work) * 1e6:7.1f} us/number  ({accepted} accepted)"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=2800, help="Valid numbers per carrier.")
    args = parser.parse_args()
    work = numbers(args.numbers)
    baseline = run("baseline: shape regex only", lambda c, n: SHAPES[c].fullmatch(n), work)
    checked = run(
        "tracking_number_problem (library)",
        lambda c, n: tracking_number_problem(carrier=c, number=n) is None,
        work,
    )
    print(f"check digit + definitions cost {checked / baseline:.1f}x the shape-only baseline")


if __name__ == "__main__":
    main()
