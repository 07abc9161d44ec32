"""Carrier check digits against published sample numbers (valid and invalid), and the numbers
tkerp makes up for its sandboxes and demo pass them."""

import json
from pathlib import Path

import pytest

from logistics.tracking_numbers import (
    fedex_check_digit,
    fedex_ground_tracking_number,
    gs1_check_digit,
    make_tracking_number,
    tracking_number_problem,
    tracking_number_valid,
    ups_check_digit,
    usps_impb_barcode,
)

# Sample numbers as published with carriers' format descriptions (tracking-number test suites).
VALID = {
    "usps": [
        "9400 1112 0108 0805 4830 16",
        "9361 2898 7870 0317 6337 95",
        "9405803699300124287899",
        "9505 5110 6960 5048 6006 24",
        "92748931507708513018050063",  # 26 digits
        "0307 1790 0005 2348 3741",  # 20 digits
        "7196 9010 7560 0307 7385",  # 20 digits, an IMpb number without its 91
        "420 22153 9101026837331000039521",  # barcode: 420 + ZIP + number
        "4201002334249200190132607600833457",  # barcode: 420 + ZIP+4 + number
    ],
    "ups": ["1Z5R89390357567127", "1Z879E930346834440", "1Z410E7W0392751591"],
    "fedex": [
        "986578788855",  # 12-digit Express
        "477179081230",
        "0414 4176 0228 964",  # 15-digit Ground
        "5682 8361 0012 734",
        "61299998820821171811",  # 20-digit SmartPost
        "9611020987654312345672",  # 22-digit "96" Ground
        "1001921334250001000300779017972697",  # 34-digit Express barcode
    ],
}
INVALID = {
    "usps": [
        "9400 1112 0108 0805 4830 17",
        "0307 1790 0005 2348 3742",
        "4201028200009261290113185417468511",
        "1Z5R89390357567127",
    ],
    "ups": ["1Z5R89390357567128", "2Z5R89390357567127", "1A5R89390357567127", "1Z1111111111111111"],
    "fedex": [
        "996578788855",
        "5682 8361 0012 732",
        "9600000000000000000001",
        "1001901781990001000300617767839438",
        "98657878885",
    ],
}


@pytest.mark.parametrize(
    ("carrier", "number"), [(c, n) for c, numbers in VALID.items() for n in numbers]
)
def test_published_valid_numbers_pass(carrier, number):
    assert tracking_number_valid(carrier=carrier, number=number)


@pytest.mark.parametrize(
    ("carrier", "number"), [(c, n) for c, numbers in INVALID.items() for n in numbers]
)
def test_published_invalid_numbers_fail(carrier, number):
    assert not tracking_number_valid(carrier=carrier, number=number)


def test_check_digits_agree_with_published_examples():
    assert gs1_check_digit("03600029145") == "2"  # UPC-A 036000291452
    assert ups_check_digit("5R8939035756712") == "7"  # 1Z5R89390357567127
    assert fedex_check_digit("98657878885") == "5"  # 986578788855


def test_unknown_carriers_are_never_valid():
    assert not tracking_number_valid(carrier="ontrac", number="986578788855")


@pytest.mark.parametrize("serial", [1, 42, 987654, 10**9 + 7])
def test_made_up_numbers_pass_their_check_digit(serial):
    usps = make_tracking_number(carrier="usps", service="", account="", serial=serial)
    ups = make_tracking_number(carrier="ups", service="2ndDayAir", account="A1B2C3", serial=serial)
    fedex = make_tracking_number(carrier="fedex", service="2day", account="", serial=serial)
    ground = fedex_ground_tracking_number(serial=serial)
    assert tracking_number_valid(carrier="usps", number=usps) and len(usps) == 22
    assert tracking_number_valid(carrier="ups", number=ups) and ups[8:10] == "02"
    assert tracking_number_valid(carrier="fedex", number=fedex) and len(fedex) == 12
    assert tracking_number_valid(carrier="fedex", number=ground) and len(ground) == 15
    barcode = usps_impb_barcode(tracking_number=usps, postal_code="94105-1234")
    assert barcode == f"42094105{usps}"
    assert tracking_number_valid(carrier="usps", number=barcode)


# --- the tracking_number_data definitions' own samples -------------------------------------------

SAMPLES_FILE = Path(__file__).parent / "data" / "tracking_number_data_samples.json"
SAMPLES = json.loads(SAMPLES_FILE.read_text())
DEFINITION_CASES = [
    (carrier, name, number, kind == "valid")
    for carrier, definitions in SAMPLES.items()
    if not carrier.startswith("_")
    for name, samples in definitions.items()
    for kind in ("valid", "invalid")
    for number in samples[kind]
]


@pytest.mark.parametrize(("carrier", "definition", "number", "valid"), DEFINITION_CASES)
def test_tracking_number_data_samples(carrier, definition, number, valid):
    assert tracking_number_valid(carrier=carrier, number=number) is valid, (definition, number)


@pytest.mark.parametrize(
    ("carrier", "number", "says"),
    [
        ("ups", "1Z5R89390357567128", "check digit is wrong"),
        ("ups", "9400111899223817321050", "is not a UPS tracking number"),
        ("usps", "1Z5R89390357567127", "is not a USPS tracking number"),
        ("pigeon", "1Z5R89390357567127", "knows no tracking-number format"),
        ("fedex", "", "empty"),
    ],
)
def test_problems_say_which(carrier, number, says):
    assert says in tracking_number_problem(carrier=carrier, number=number)


@pytest.mark.parametrize(
    ("carrier", "number"),
    [
        ("4px", "4PX3000876543210CN"),
        ("yanwen", "UG123456789YP"),
        ("cainiao", "LP00123456789012"),
        ("cainiao", "RB123456785CN"),
    ],
)
def test_china_to_us_carriers(carrier, number):
    assert tracking_number_valid(carrier=carrier, number=number)
    assert not tracking_number_valid(carrier=carrier, number=number[:-3])
