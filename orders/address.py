"""Recipient addresses: cleaning and normalising them, and the checks review runs on them.

Everything here is pure (no database): review and its dry run call the same functions, so what
the dry run predicts is what review does. US street lines are made canonical with
usaddress-scourgify (USPS Publication 28 abbreviations); when it cannot parse a line (PO boxes,
military and rural addresses, free text) the cleaned original is kept, never lost.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import phonenumbers
import usaddress
from scourgify import normalize_address_record
from scourgify.exceptions import AddressNormalizationError
from scourgify.normalize import normalize_state

from orders.zip_table import zip_states_served

logger = logging.getLogger(__name__)

# Everything scourgify (and usaddress under it) is known to raise on an address it cannot handle.
# AddressNormalizationError is the base of UnParseable/Ambiguous/Incomplete/AddressValidation.
SCOURGIFY_ERRORS = (
    AddressNormalizationError,
    usaddress.RepeatedLabelError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
)

MILITARY_CITIES = frozenset({"APO", "FPO", "DPO"})
MILITARY_STATES = frozenset({"AA", "AE", "AP"})
_MILITARY_STATE_NAMES = {
    "ARMED FORCES AMERICAS": "AA",
    "ARMED FORCES EUROPE": "AE",
    "ARMED FORCES PACIFIC": "AP",
}

# Countries whose addresses need a state/province/region line.
COUNTRIES_WITH_STATES = frozenset({"US", "CA", "AU", "MX", "BR", "IN"})

# Postal code formats we know; other countries only need a non-empty code.
POSTAL_FORMATS = {
    "US": re.compile(r"\d{5}(-\d{4})?"),
    "CA": re.compile(r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] \d[ABCEGHJ-NPRSTV-Z]\d"),
    "GB": re.compile(r"(GIR 0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? \d[ABD-HJLNP-UW-Z]{2})"),
    "AU": re.compile(r"\d{4}"),
    "DE": re.compile(r"\d{5}"),
}

# PO boxes, in the spellings buyers use. Matched on a casefolded line whose dots, commas and
# hyphens became spaces; `\bbox\b` never matches Boxwood/Boxer, and a bare "Box" counts only as
# the whole line ("Box 123"), so Box Elder Street and Box Canyon Road pass.
_PO_BOX = re.compile(
    r"\bp\s*o\s*(?:box|bx|b)\b"  # PO Box, P.O. Box, P O Box, POB, PO Bx, P.O.B., POBox
    r"|\bpobox"
    r"|\bpost\s*(?:office\s*)?(?:box|bx|b)\b"  # Post Office Box, Post Box, Post Office B
    r"|\bpostal\s*(?:box|bx)\b"  # Postal Box
    r"|\bp\s*o\s*drawer\b"  # PO Drawer
    r"|^\s*(?:box|bx)\s*(?:no\s*|number\s*)?#?\s*\d+[a-z]?\s*$"  # "Box 123" as the whole line
)
_MILITARY_LINE = re.compile(r"\b(?:apo|fpo|dpo)\s+(?:aa|ae|ap)\b")
_SPACES = re.compile(r"\s+")
_ASCII_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Address:
    """A recipient as review sees it: what is stored in the order's recipient fields."""

    name: str = ""
    phone: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""

    def key(self) -> str:
        """The address a parcel goes to, casefolded: equal keys are the same destination."""
        parts = (self.line1, self.line2, self.city, self.state, self.postal_code, self.country)
        return "|".join(_SPACES.sub(" ", part).strip().casefold() for part in parts)


ORDER_ADDRESS_FIELDS = {
    "name": "recipient_name",
    "phone": "recipient_phone",
    "line1": "address_line1",
    "line2": "address_line2",
    "city": "city",
    "state": "state",
    "postal_code": "postal_code",
    "country": "country",
}


def address_from_order(order) -> Address:
    return Address(
        **{name: getattr(order, field) or "" for name, field in ORDER_ADDRESS_FIELDS.items()}
    )


def address_to_order(order, address: Address) -> list[str]:
    """Set `address` on the order's recipient fields (cut to the columns); returns the fields
    that changed."""
    changed = []
    for name, field in ORDER_ADDRESS_FIELDS.items():
        value = getattr(address, name)
        max_length = order._meta.get_field(field).max_length
        value = value[:max_length] if max_length else value
        if getattr(order, field) != value:
            setattr(order, field, value)
            changed.append(field)
    return changed


# --- cleaning and normalising ---------------------------------------------------------------


def text_clean(value: str | None) -> str:
    """HTML entities decoded (platforms send `&amp;`, sometimes twice-escaped), Unicode
    compatibility forms folded, control characters dropped, whitespace folded."""
    text = "" if value is None else str(value)
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if text.isascii():
        # The common case, answered without a per-character loop: NFKC leaves ASCII as it is
        # and ASCII's only category-C characters are its controls.
        text = _ASCII_CONTROLS.sub(" ", text)
    else:
        text = unicodedata.normalize("NFKC", text)
        text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return _SPACES.sub(" ", text).strip(" ,")


def postal_code_normalise(postal_code: str, country: str) -> str:
    code = text_clean(postal_code).upper()
    if country == "US":
        digits = re.sub(r"[\s-]", "", code)
        if re.fullmatch(r"\d{9}", digits):
            return f"{digits[:5]}-{digits[5:]}"  # ZIP+4
        if re.fullmatch(r"\d{5}", digits):
            return digits
        return code
    if country in ("CA", "GB"):
        compact = code.replace(" ", "")
        if len(compact) > 3:
            return f"{compact[:-3]} {compact[-3:]}"
    return code


def state_normalise(state: str, country: str) -> str:
    state = text_clean(state)
    if country == "US" and state:
        upper = state.upper().replace(".", "")
        return _MILITARY_STATE_NAMES.get(upper) or normalize_state(upper) or state
    if len(state) <= 3:
        return state.upper()
    return state


#: Normalising is pure (the same input gives the same output): a process keeps the last few
#: thousand answers, so review's second look at a phone (the phone check) and a re-review of
#: an unchanged recipient (a platform update, a repeat buyer) cost a dictionary lookup.
NORMALISE_CACHE_SIZE = 8192


#: (E.164 number, country) -> what `phone_normalise` answers for it, for the numbers it formatted
#: lately: review normalises a phone, then checks the normalised one (the phone rule), and
#: parsing an E.164 number again gives the same number, so the second parse is skipped.
_E164_ANSWERS: dict[tuple[str, str], tuple[str, bool]] = {}


@lru_cache(maxsize=NORMALISE_CACHE_SIZE)
def phone_normalise(phone: str, country: str) -> tuple[str, bool]:
    """(E.164 when the number is valid for `country`, else the cleaned input; valid?)"""
    cleaned = text_clean(phone)
    if not cleaned:
        return "", False
    known = _E164_ANSWERS.get((cleaned, country))
    if known is not None:
        return known
    answer = _phone_parse(cleaned, country)
    if answer[0].startswith("+") and answer[0] != cleaned:
        if len(_E164_ANSWERS) >= NORMALISE_CACHE_SIZE:
            _E164_ANSWERS.clear()
        _E164_ANSWERS[(answer[0], country)] = answer
    return answer


def _phone_parse(cleaned: str, country: str) -> tuple[str, bool]:
    try:
        number = phonenumbers.parse(cleaned, country or "US")
    except phonenumbers.NumberParseException:
        return cleaned, False
    # `is_valid_number` is exactly this, but it finds the region itself (for a +1 number a scan
    # of every NANP region), and the region is needed again below: found once.
    region = phonenumbers.region_code_for_number(number)
    if not phonenumbers.is_valid_number_for_region(number, region):
        return cleaned, False
    if country and region not in (country, None):
        # A valid number of another country (a +44 number on a US parcel): the carrier will
        # refuse it all the same, but keep it in E.164 for the person who calls the buyer.
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), False
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), True


def _us_lines(line1: str, line2: str, city: str, state: str, postal_code: str):
    """Street lines and city in USPS form, or None when scourgify cannot parse them."""
    try:
        result = normalize_address_record(
            {
                "address_line_1": line1,
                "address_line_2": line2 or None,
                "city": city or None,
                "state": state or None,
                "postal_code": postal_code or None,
            },
            strict=False,
        )
    except SCOURGIFY_ERRORS as e:
        logger.debug("scourgify could not parse %r: %s", line1, type(e).__name__)
        return None
    except Exception:  # a third-party parser must never lose an order
        logger.warning("scourgify failed unexpectedly on an address", exc_info=True)
        return None
    return (
        result.get("address_line_1") or "",
        result.get("address_line_2") or "",
        result.get("city") or city,
    )


@lru_cache(maxsize=NORMALISE_CACHE_SIZE)
def address_normalise(address: Address) -> Address:
    """The canonical form of `address` (idempotent: normalising twice changes nothing more)."""
    country = text_clean(address.country).upper()
    cleaned = Address(**{f.name: text_clean(getattr(address, f.name)) for f in fields(Address)})
    state = state_normalise(cleaned.state, country)
    postal_code = postal_code_normalise(cleaned.postal_code, country)
    line1, line2, city = cleaned.line1, cleaned.line2, cleaned.city
    if country == "US" and line1 and not is_po_box(line1) and not is_military_line(line1):
        parsed = _us_lines(line1, line2, city, state, postal_code)
        if parsed is not None:
            line1, line2, city = parsed
    phone, _ = phone_normalise(cleaned.phone, country)
    return replace(
        cleaned,
        phone=phone or cleaned.phone,
        line1=line1,
        line2=line2,
        city=city,
        state=state,
        postal_code=postal_code,
        country=country,
    )


# --- checks -----------------------------------------------------------------------------------


def _box_text(line: str) -> str:
    return _SPACES.sub(" ", re.sub(r"[.,\-/]", " ", line.casefold())).strip()


def is_po_box(line: str) -> bool:
    return bool(line) and _PO_BOX.search(_box_text(line)) is not None


def is_military_line(line: str) -> bool:
    return bool(line) and _MILITARY_LINE.search(_box_text(line)) is not None


def is_military(address: Address) -> bool:
    return (
        address.city.upper() in MILITARY_CITIES
        or (address.country in ("US", "") and address.state.upper() in MILITARY_STATES)
        or is_military_line(address.line1)
        or is_military_line(address.line2)
    )


def postal_code_valid(postal_code: str, country: str) -> bool:
    pattern = POSTAL_FORMATS.get(country)
    if pattern is None:
        return bool(postal_code)
    return pattern.fullmatch(postal_code) is not None


def zip_state_problem(address: Address) -> str:
    """Why a US address's ZIP does not fit its state ("" when it does, or does not apply)."""
    if address.country != "US" or not address.postal_code:
        return ""
    if not POSTAL_FORMATS["US"].fullmatch(address.postal_code):
        return f"Postal code {address.postal_code} is not a US ZIP code."
    if not address.state or is_military(address):
        return ""
    served = zip_states_served(address.postal_code[:5])
    if served is None:
        return f"ZIP {address.postal_code[:5]} does not exist."
    states = served.split()
    if address.state.upper() not in states:
        return f"ZIP {address.postal_code[:5]} belongs to {', '.join(states)}, not {address.state}."
    return ""


def incomplete_problem(address: Address) -> str:
    missing = []
    if not address.line1 and not address.line2:
        missing.append("street")
    if not address.city:
        missing.append("city")
    if address.country in COUNTRIES_WITH_STATES and not address.state:
        missing.append("state")
    if not address.postal_code:
        missing.append("postal code")
    if not address.country:
        missing.append("country")
    if missing:
        return "Missing " + ", ".join(missing) + "."
    if address.country != "US" and not postal_code_valid(address.postal_code, address.country):
        return f"Postal code {address.postal_code} is not in the {address.country} format."
    return ""


def too_long_problem(address: Address, *, max_length: int) -> str:
    long = [
        label
        for label, value in (
            ("name", address.name),
            ("line 1", address.line1),
            ("line 2", address.line2),
            ("city", address.city),
        )
        if len(value) > max_length
    ]
    if not long:
        return ""
    return f"Longer than {max_length} characters: " + ", ".join(long) + "."
