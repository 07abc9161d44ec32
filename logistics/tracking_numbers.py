"""Carrier tracking-number formats: check digits, making valid numbers, and checking them.

A platform accepts only tracking numbers its carrier can look up, and a made-up one is fined, so
every number tkerp makes up (demo data, the sandboxes) passes its carrier's check digit, and
every number a label source hands back can be checked the same way.

Formats (the published algorithms; samples in tests/logistics/test_tracking_numbers.py):
- USPS IMpb: 22 digits `9[1-5]...` (or 20/26), GS1 mod 10 over the digits before the check
  digit. The label's barcode carries `420` + destination ZIP + the 22 digits.
- UPS: `1Z` + 6-character shipper number + 2-character service + 7 digits + check digit; mod 10
  with letters valued (ord - 63) % 10 and every second value doubled.
- FedEx: 12 digits (Express, and Ground since 2020): mod 11 with weights 1, 3, 7 from the right;
  15 digits (Ground): GS1 mod 10; 20 digits (SmartPost, a USPS IMpb with its `92` left off);
  22 digits (`96` Ground): GS1 mod 10 over the last 14 digits before the check digit;
  34 digits (Express 1D barcode): the trailing 14 digits checked like a 12-digit number.
"""

from __future__ import annotations

import re

# UPS service types as they appear inside 1Z numbers, by service name with case, spaces,
# underscores and dashes ignored (our codes "2nd_day_air" and EasyPost's "2ndDayAir" alike).
UPS_SERVICE_TYPES = {
    "nextdayair": "01",
    "2nddayair": "02",
    "ground": "03",
    "3dayselect": "12",
    "nextdayairsaver": "13",
    "nextdayairearly": "15",
}


def service_key(service: str) -> str:
    """A service name folded for lookups: "2nd_day_air", "2ndDayAir" -> "2nddayair"."""
    return re.sub(r"[\s_\-]", "", service).lower()


# --- check digits -----------------------------------------------------------------------------


def gs1_check_digit(digits: str) -> str:
    """GS1 mod-10 (UPC/EAN barcodes, USPS IMpb): weights 3,1,... from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def ups_check_digit(serial: str) -> str:
    """Check digit of the 15 characters after `1Z` (letters count as (ord - 63) % 10)."""
    values = [int(c) if c.isdigit() else (ord(c) - 63) % 10 for c in serial]
    total = sum(v if i % 2 == 0 else 2 * v for i, v in enumerate(values))
    return str((10 - total % 10) % 10)


def fedex_check_digit(digits: str) -> str:
    """FedEx Express 12-digit numbers: weights 1,3,7,... from the right, mod 11, 10 -> 0."""
    weights = (1, 3, 7)
    total = sum(int(d) * weights[i % 3] for i, d in enumerate(reversed(digits)))
    return str(total % 11 % 10)


# --- making numbers (demo data and sandboxes) ---------------------------------------------------


def make_tracking_number(*, carrier: str, service: str, account: str, serial: int) -> str:
    """A tracking number in the carrier's format with a valid check digit.

    usps: a 22-digit IMpb number; ups: `1Z` + `account` (the 6-character shipper number) + the
    service's type code + the serial; fedex: a 12-digit number.
    """
    if carrier == "usps":
        body = f"9400111{serial % 10**14:014d}"
        return body + gs1_check_digit(body)
    if carrier == "ups":
        body = f"{account}{UPS_SERVICE_TYPES[service_key(service)]}{serial % 10**7:07d}"
        return f"1Z{body}{ups_check_digit(body)}"
    if carrier == "fedex":
        body = f"7{serial % 10**10:010d}"
        return body + fedex_check_digit(body)
    raise ValueError(f"no tracking format for carrier {carrier!r}")


def fedex_ground_tracking_number(*, serial: int) -> str:
    """A 15-digit FedEx Ground number (GS1 mod 10)."""
    body = f"0{serial % 10**13:013d}"
    return body + gs1_check_digit(body)


def usps_impb_barcode(*, tracking_number: str, postal_code: str) -> str:
    """What a USPS label's GS1-128 barcode carries: `420` + the 5-digit destination ZIP + the
    tracking number (the routing part lets the sorting machines read the ZIP)."""
    zip5 = re.sub(r"\D", "", postal_code)[:5]
    return f"420{zip5}{tracking_number}" if len(zip5) == 5 else tracking_number


# --- checking numbers ---------------------------------------------------------------------------


def _usps_valid(number: str) -> bool:
    if re.fullmatch(r"420\d{5}(\d{4})?\d{20,26}", number):
        # An IMpb barcode read whole: drop the routing prefix (ZIP or ZIP+4).
        rest = number[8:]
        if len(rest) in (26, 30) and not rest.startswith("9"):
            rest = rest[4:]
        number = rest
    if re.fullmatch(r"9[1-5]\d{20}|9[1-5]\d{24}", number):
        return gs1_check_digit(number[:-1]) == number[-1]
    if re.fullmatch(r"\d{20}", number):
        # Older 20-digit numbers: checked as they are, or as an IMpb number without its "91".
        body = number[:-1]
        return number[-1] in (gs1_check_digit(body), gs1_check_digit("91" + body))
    return False


def _ups_valid(number: str) -> bool:
    return bool(re.fullmatch(r"1Z[0-9A-Z]{15}\d", number)) and (
        ups_check_digit(number[2:-1]) == number[-1]
    )


def _fedex_valid(number: str) -> bool:
    if not number.isdigit():
        return False
    if len(number) == 12:
        return fedex_check_digit(number[:-1]) == number[-1]
    if len(number) == 15:
        return gs1_check_digit(number[:-1]) == number[-1]
    if len(number) == 20:
        # SmartPost: a USPS IMpb number sent without its leading "92".
        return gs1_check_digit("92" + number[:-1]) == number[-1]
    if len(number) == 22 and number.startswith("96"):
        return gs1_check_digit(number[7:-1]) == number[-1]
    if len(number) == 34:
        return fedex_check_digit(number[20:-1]) == number[-1]
    return False


_VALIDATORS = {"usps": _usps_valid, "ups": _ups_valid, "fedex": _fedex_valid}


def tracking_number_valid(*, carrier: str, number: str) -> bool:
    """True when `number` has `carrier`'s format and check digit (spaces are ignored, as they are
    on printed labels). Carriers without a known format are never valid here."""
    validator = _VALIDATORS.get(carrier.lower())
    if validator is None:
        return False
    return validator(re.sub(r"\s", "", number).upper())
