"""The US ZIP -> state table review's ZIP/state check reads, shipped with the code.

The zipcodes package is the source, but asking it costs a cold process about 0.6 s of CPU
(its compiled extension loads 42,789 records on first use, and indexing them by ZIP builds as
many Python objects) inside the first page a worker reviews: a tenth of a 2,800-order spike's
CPU. What the check needs is two facts per ZIP (does it exist, which states does it serve), so
the package's answers are kept here in compact form (`orders/zip_table_data.py`, about 10 kB:
one bit per five-digit number, and the runs of consecutive ZIPs that serve the same states);
loading it costs a millisecond.

`tests/orders/test_zip_table.py` compares every five-digit number against the package, so an
upgrade of zipcodes that changes its data fails the tests until the table is written again:

    .venv/bin/python -c "from orders.zip_table import zip_table_write; zip_table_write()"
"""

from __future__ import annotations

import base64
import zlib
from bisect import bisect_right
from functools import cache
from pathlib import Path

ZIP_COUNT = 100_000

DATA_PATH = Path(__file__).with_name("zip_table_data.py")


@cache
def _table() -> tuple[bytes, list[int], list[str]]:
    from orders import zip_table_data

    known = zlib.decompress(base64.b64decode(zip_table_data.KNOWN))
    starts = [start for start, _ in zip_table_data.RUNS]
    states = [served for _, served in zip_table_data.RUNS]
    return known, starts, states


def zip_states_served(zip_code: str) -> str | None:
    """The states a five-digit US ZIP serves (sorted, space-separated), or None when no such
    ZIP exists."""
    number = int(zip_code)
    known, starts, states = _table()
    if not 0 <= number < ZIP_COUNT or not known[number >> 3] >> (number & 7) & 1:
        return None
    return states[bisect_right(starts, number) - 1]


def zip_states_from_package() -> dict[str, str]:
    """ZIP -> the states it serves (sorted, space-separated), as the zipcodes package says."""
    import zipcodes

    index: dict[str, set[str]] = {}
    for row in zipcodes.filter_by():
        index.setdefault(row["zip_code"], set()).add(row["state"])
    return {zip_code: " ".join(sorted(states)) for zip_code, states in index.items()}


def zip_table_write(path: Path = DATA_PATH) -> None:
    """Write the compact table (`orders/zip_table_data.py`) from the zipcodes package."""
    import zipcodes

    served = zip_states_from_package()
    known = bytearray(ZIP_COUNT // 8)
    runs: list[tuple[int, str]] = []
    for zip_code in sorted(served):
        number = int(zip_code)
        known[number >> 3] |= 1 << (number & 7)
        if not runs or runs[-1][1] != served[zip_code]:
            runs.append((number, served[zip_code]))
    encoded = base64.b64encode(zlib.compress(bytes(known), 9)).decode()
    chunks = "\n".join(f'    "{encoded[i : i + 88]}"' for i in range(0, len(encoded), 88))
    rows = "\n".join(f'    ({start}, "{states}"),' for start, states in runs)
    path.write_text(
        f'"""US ZIP -> state table, written by `orders.zip_table.zip_table_write` from zipcodes '
        f"{zipcodes.__version__}\n"
        f'({len(served)} ZIPs). Do not edit: write it again (see `orders/zip_table.py`)."""\n\n'
        "# Bit n (byte n // 8, bit n % 8) set: the five-digit number n is a ZIP. zlib, base64.\n"
        f"KNOWN = (\n{chunks}\n)\n\n"
        "# (first ZIP of a run, the states every ZIP from it to the next run's serves)\n"
        f"RUNS = (\n{rows}\n)\n"
    )
