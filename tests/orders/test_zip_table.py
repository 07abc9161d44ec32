"""The ZIP -> state table shipped with the code says what the zipcodes package says, for every
five-digit number (an upgrade of the package that changes its data fails here until
`orders.zip_table.zip_table_write` is run again)."""

from __future__ import annotations

from orders.zip_table import ZIP_COUNT, zip_states_from_package, zip_states_served


def test_every_five_digit_number_answers_as_the_package():
    package = zip_states_from_package()
    differ = [
        f"{number:05d}"
        for number in range(ZIP_COUNT)
        if zip_states_served(f"{number:05d}") != package.get(f"{number:05d}")
    ]
    assert differ == []
    assert len(package) > 40_000  # the package's data, not an empty index
