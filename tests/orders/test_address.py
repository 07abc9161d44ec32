"""Address cleaning, normalisation and the address checks review runs (pure, no database)."""

import pytest
import usaddress
from scourgify import exceptions as scourgify_exceptions

from orders import address as address_module
from orders.address import (
    Address,
    address_normalise,
    incomplete_problem,
    is_military,
    is_po_box,
    phone_normalise,
    postal_code_normalise,
    text_clean,
    too_long_problem,
    zip_state_problem,
)

PO_BOXES = [
    "PO Box 123",
    "P.O. Box 123",
    "p.o. box 123",
    "P O Box 44",
    "POB 12",
    "P.O.B. 12",
    "Post Office Box 9",
    "PO Bx 4",
    "POBox 77",
    "PO-Box 5",
    "Box 123",
    "BOX #12",
    "Postal Box 7",
    "Post Box 3",
    "PO Drawer 20",
    "Apt 4, PO Box 88",
]
NOT_PO_BOXES = [
    "12 Box Elder Street",
    "Box Elder Street",
    "100 Post Road",
    "12 Boxwood Lane",
    "5 Boxer Ave",
    "1 Box Canyon Rd",
    "88 Pobst Rd",
    "12 Post Oak Blvd",
    "740 Poplar Ave",
    "3 Boxford Way",
]


@pytest.mark.parametrize("line", PO_BOXES)
def test_every_po_box_spelling_is_a_po_box(line):
    assert is_po_box(line)


@pytest.mark.parametrize("line", NOT_PO_BOXES)
def test_streets_that_only_contain_the_words_are_not_po_boxes(line):
    assert not is_po_box(line)


@pytest.mark.parametrize(
    "address",
    [
        Address(line1="Unit 2050 Box 4190", city="APO", state="AE", postal_code="09012"),
        Address(line1="PSC 455 Box 11", city="FPO", state="AP", postal_code="96540"),
        Address(line1="USS Ship", city="DPO", state="AA", postal_code="34001"),
        Address(line1="Unit 1 Box 2", city="Anywhere", state="AE", postal_code="09012"),
        Address(line1="Unit 5, APO AE 09012", city="", state="", postal_code=""),
    ],
)
def test_military_addresses(address):
    assert is_military(address)


@pytest.mark.parametrize(
    "address",
    [
        Address(line1="1 Apollo Way", city="Houston", state="TX", country="US"),
        Address(line1="1 Main St", city="Aptos", state="CA", country="US"),
        Address(line1="1 Main St", city="Fpo Heights", state="NY", country="US"),
    ],
)
def test_not_military(address):
    assert not is_military(address)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Deliver &amp; call", "Deliver & call"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),
        ("  12   Main\tSt \n", "12 Main St"),
        ("\uff2d\uff41\uff49\uff4e", "Main"),  # full-width forms folded
        ("a\u0000b", "a b"),
        ("a\x7fb\x1fc,", "a b c"),  # ASCII controls, on the ASCII-only path
        ("Caf\u00e9\u200b 1\u0085", "Caf\u00e9 1"),  # format and C1 controls, on the other
        ("\uff11 Main &amp;\x00 Co", "1 Main & Co"),
        (None, ""),
    ],
)
def test_text_clean(raw, clean):
    assert text_clean(raw) == clean


@pytest.mark.parametrize(
    ("code", "country", "normalised"),
    [
        ("123456789", "US", "12345-6789"),
        ("12345 6789", "US", "12345-6789"),
        ("12345-6789", "US", "12345-6789"),
        (" 94105 ", "US", "94105"),
        ("m5v2t6", "CA", "M5V 2T6"),
        ("sw1a1aa", "GB", "SW1A 1AA"),
        ("2000", "AU", "2000"),
    ],
)
def test_postal_code_normalise(code, country, normalised):
    assert postal_code_normalise(code, country) == normalised


def test_us_address_is_made_canonical_and_zip4_formatted():
    address = address_normalise(
        Address(
            name="Jo &amp; Bo",
            phone="(+1)212-555-1234",
            line1="123  north main street",
            line2="apartment 2b",
            city="new york",
            state="New York",
            postal_code="100011234",
            country="us",
        )
    )
    assert address == Address(
        name="Jo & Bo",
        phone="+12125551234",
        line1="123 N MAIN ST",
        line2="APT 2B",
        city="NEW YORK",
        state="NY",
        postal_code="10001-1234",
        country="US",
    )
    assert address_normalise(address) == address  # idempotent


@pytest.mark.parametrize(
    "line1",
    ["PO Box 123", "Unit 2050 Box 4190", "c/o the neighbour, ring twice", "###", "1 2 3 4 5 6"],
)
def test_lines_scourgify_cannot_parse_keep_the_cleaned_original(line1):
    address = address_normalise(
        Address(line1=f" {line1}  ", city="Ogden", state="utah", postal_code="84401", country="US")
    )
    assert address.line1 == line1
    assert address.state == "UT"


def test_non_us_addresses_are_cleaned_not_rewritten():
    address = address_normalise(
        Address(line1="10  Downing Street", city="London", postal_code="sw1a2aa", country="GB")
    )
    assert (address.line1, address.postal_code) == ("10 Downing Street", "SW1A 2AA")


@pytest.mark.parametrize(
    ("phone", "country", "stored", "valid"),
    [
        ("(415) 555-0123", "US", "+14155550123", True),
        ("+1 212 555 1234", "US", "+12125551234", True),
        ("020 7946 0018", "GB", "+442079460018", True),
        ("12345", "US", "12345", False),
        ("call me", "US", "call me", False),
        ("+44 20 7946 0018", "US", "+442079460018", False),  # another country's number
        ("", "US", "", False),
    ],
)
def test_phone_normalise(phone, country, stored, valid):
    assert phone_normalise(phone, country) == (stored, valid)
    # Review checks the number it stored: the same answer (remembered, not parsed again).
    assert phone_normalise(stored, country) == (stored, valid)


def test_a_remembered_phone_answer_is_for_its_country_only():
    assert phone_normalise("020 7946 0019", "GB") == ("+442079460019", True)
    assert phone_normalise("+442079460019", "US") == ("+442079460019", False)
    assert phone_normalise("+442079460019", "GB") == ("+442079460019", True)


US = {"line1": "1 Market St", "city": "San Francisco", "state": "CA", "country": "US"}


@pytest.mark.parametrize(
    ("postal_code", "state", "problem"),
    [
        ("10001", "CA", "belongs to NY"),
        ("00000", "CA", "does not exist"),
        ("M5V 2T6", "CA", "not a US ZIP"),
        ("SW1A 1AA", "CA", "not a US ZIP"),
    ],
)
def test_zip_state_mismatch(postal_code, state, problem):
    assert problem in zip_state_problem(Address(**{**US, "state": state}, postal_code=postal_code))


@pytest.mark.parametrize(
    "address",
    [
        Address(**US, postal_code="94105"),
        Address(**US, postal_code="94105-1234"),
        Address(**{**US, "state": "NY"}, postal_code="10001"),
        Address(line1="Unit 1 Box 2", city="APO", state="AE", postal_code="09012", country="US"),
        Address(
            line1="1 Queen St", city="Toronto", state="ON", postal_code="M5V 2T6", country="CA"
        ),
    ],
)
def test_zip_state_fits(address):
    assert zip_state_problem(address) == ""


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        (Address(city="X", state="CA", postal_code="94105", country="US"), "street"),
        (Address(line1="1 A St", state="CA", postal_code="94105", country="US"), "city"),
        (Address(line1="1 A St", city="X", postal_code="94105", country="US"), "state"),
        (Address(line1="1 A St", city="X", state="CA", country="US"), "postal code"),
        (Address(line1="1 A St", city="X", state="CA", postal_code="94105"), "country"),
        (
            Address(line1="1 A St", city="Toronto", state="ON", postal_code="12345", country="CA"),
            "CA format",
        ),
        (Address(line1="1 A St", city="London", postal_code="12345", country="GB"), "GB format"),
        (
            Address(line1="1 A St", city="Sydney", state="NSW", postal_code="20000", country="AU"),
            "AU format",
        ),
        (Address(line1="1 A St", city="Berlin", postal_code="1011", country="DE"), "DE format"),
    ],
)
def test_incomplete(address, problem):
    assert problem in incomplete_problem(address)


@pytest.mark.parametrize(
    "address",
    [
        Address(**US, postal_code="94105"),
        Address(line1="1 A St", city="London", postal_code="SW1A 1AA", country="GB"),
        Address(line1="1 A St", city="Berlin", postal_code="10115", country="DE"),
        Address(line1="1 A St", city="Sydney", state="NSW", postal_code="2000", country="AU"),
        Address(line1="1 A St", city="Toronto", state="ON", postal_code="M5V 2T6", country="CA"),
        Address(line1="1 A St", city="Paris", postal_code="75001", country="FR"),  # no state
    ],
)
def test_complete(address):
    assert incomplete_problem(address) == ""


def test_too_long():
    assert too_long_problem(Address(line1="x" * 121), max_length=120)
    assert "line 2" in too_long_problem(Address(line2="x" * 41), max_length=40)
    assert too_long_problem(Address(line1="x" * 120), max_length=120) == ""


@pytest.mark.parametrize(
    "error",
    [
        scourgify_exceptions.UnParseableAddressError(None, None, "x"),
        scourgify_exceptions.AmbiguousAddressError(None, "x", "x"),
        scourgify_exceptions.IncompleteAddressError("x"),
        scourgify_exceptions.AddressValidationError("x", None, "x"),
        scourgify_exceptions.AddressNormalizationError("x"),
        usaddress.RepeatedLabelError("1 Main St", [("1", "AddressNumber")], "AddressNumber"),
        TypeError("x"),
        ValueError("x"),
        KeyError("x"),
        RuntimeError("anything else"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_scourgify_failure_keeps_the_cleaned_original(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(address_module, "normalize_address_record", fail)
    address = address_normalise(
        Address(
            line1="12  Main  Street", city="Ogden", state="Utah", postal_code="84401", country="US"
        )
    )
    assert (address.line1, address.state) == ("12 Main Street", "UT")
