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
  15 digits (Ground): GS1 mod 10.

Making numbers is ours (the library only checks); checking them is the `tracking-numbers`
package's, extended below for the carriers it lacks (`tracking_number_problem`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracking_numbers import DEFINITIONS as LIBRARY_DEFINITIONS
from tracking_numbers.definition import TrackingNumberDefinition

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
#
# Checking is the `tracking-numbers` package's work: it is generated from the public
# tracking_number_data definitions (format regexes, check-digit algorithms, service-type and
# S10 country lookups), which carriers' own format documents feed and which many projects keep
# up to date. What it lacks is added here, each with its source: the China-to-US carriers
# sellers use (YunExpress from tracking_number_data's newer definitions; 4PX, Yanwen and Cainiao
# as their tracking pages publish them, without a check digit, as none is published), DHL
# eCommerce, and UPU S10 numbers for the postal carriers (USPS international ends in "US").
# tests/logistics/test_tracking_numbers.py runs the definitions' own valid and invalid samples.


@dataclass(frozen=True, slots=True)
class TrackingFormat:
    """One number format of a carrier: a library definition, or a regex of ours (no check
    digit). `s10_countries` limits an S10 definition to the postal operators a carrier is."""

    name: str
    definition: TrackingNumberDefinition | None = None
    pattern: re.Pattern | None = None
    s10_countries: tuple[str, ...] = ()

    def test(self, number: str) -> bool | None:
        """True valid, False the format matched but its check digit (or lookup) failed, None
        the number does not have this format at all."""
        if self.definition is not None:
            found = self.definition.test(number)
            if found is None:
                return None
            if self.s10_countries and number[-2:] not in self.s10_countries:
                return None
            return found.valid
        return True if self.pattern.fullmatch(number) else None


def _library(*names: str, s10_countries: tuple[str, ...] = ()) -> list[TrackingFormat]:
    by_name = {definition.product.name: definition for definition in LIBRARY_DEFINITIONS}
    return [
        TrackingFormat(name=name, definition=by_name[name], s10_countries=s10_countries)
        for name in names
    ]


def _ours(name: str, pattern: str) -> TrackingFormat:
    return TrackingFormat(name=name, pattern=re.compile(pattern))


#: Our carrier codes (`Carrier.code`) -> the formats a number of theirs may have.
CARRIER_FORMATS: dict[str, list[TrackingFormat]] = {
    "usps": [
        *_library("USPS 91", "USPS 34v2", "USPS 20"),
        # International mail: the UPU S10 number, ending in the operator's country, US.
        *_library("S10", s10_countries=("US",)),
    ],
    "ups": _library("UPS"),  # 1Z: check digit; Mail Innovations numbers carry none
    "fedex": _library(
        "FedEx Express (12)",
        "FedEx Express (34)",
        "FedEx Ground",
        "FedEx Ground (SSCC-18)",
        "FedEx Ground 96 (22)",
        "FedEx Ground GSN",
        "FedEx SmartPost",
    ),
    "dhl": [
        *_library("DHL Express", "DHL Express Air"),
        # DHL eCommerce (tracking_number_data's newer definition): a prefix and 10-39 digits.
        _ours("DHL eCommerce", r"(GM|LX|RX|UV|CN|SG|TH|IN|HK|MY)\d{10,39}"),
    ],
    "ontrac": _library("OnTrac"),
    "amazon": _library("Amazon Logistics"),
    # tracking_number_data's YunExpress definition (newer than the package): YT + 16 digits.
    "yunexpress": [_ours("YunExpress", r"YT\d{16}")],
    # 4PX: its own 4PX...CN numbers; postal legs carry S10 numbers of any operator.
    "4px": [_ours("4PX", r"4PX\d{10,16}CN"), *_library("S10")],
    # Yanwen: two letters, 9 digits, YP (its UPU-style own series); postal legs S10.
    "yanwen": [_ours("Yanwen", r"[A-Z]{2}\d{9}YP"), *_library("S10")],
    # Cainiao: LP + 14 digits (the logistics order number buyers track), and China Post S10.
    "cainiao": [_ours("Cainiao", r"LP\d{14}"), *_library("S10", s10_countries=("CN",))],
}


def tracking_number_normalize(number: str) -> str:
    """The number as stored and sent: spaces and dashes (as printed on labels) dropped, upper
    case."""
    return re.sub(r"[\s\-]", "", str(number or "")).upper()


def tracking_number_problem(*, carrier: str, number: str) -> str | None:
    """None when `number` is a valid tracking number of `carrier`, else why not, in words a
    seller can act on: not the carrier's format, or a wrong check digit."""
    number = tracking_number_normalize(number)
    formats = CARRIER_FORMATS.get(carrier.lower())
    if formats is None:
        known = ", ".join(sorted(CARRIER_FORMATS))
        return f"tkerp knows no tracking-number format for carrier “{carrier}” (known: {known})"
    if not number:
        return "the tracking number is empty"
    matched_but_failed = []
    for fmt in formats:
        result = fmt.test(number)
        if result:
            return None
        if result is False:
            matched_but_failed.append(fmt.name)
    if matched_but_failed:
        return (
            f"{number} has the {matched_but_failed[0]} format but its check digit is wrong "
            "(a mistyped or made-up number)"
        )
    return (
        f"{number} is not a {carrier.upper()} tracking number (no {carrier.upper()} format matches)"
    )


def tracking_number_valid(*, carrier: str, number: str) -> bool:
    """True when `number` has `carrier`'s format and check digit (spaces are ignored, as they are
    on printed labels). Carriers without a known format are never valid here."""
    return tracking_number_problem(carrier=carrier, number=number) is None
