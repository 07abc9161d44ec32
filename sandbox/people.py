"""Realistic US buyers for sandbox orders: names, phones, addresses, notes.

Cities carry their real state and a real ZIP, so generated addresses pass review unless a
generator deliberately picks one of the awkward cases (PO boxes, military, long lines, wrong ZIP)
that sellers meet in real spikes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = (
    "Olivia Emma Ava Sophia Isabella Mia Amelia Harper Evelyn Abigail Emily Ella Madison Avery "
    "Liam Noah Oliver Elijah James William Benjamin Lucas Henry Alexander Mason Michael Ethan "
    "Daniel Jacob Logan Jackson Sebastian Aiden Matthew Samuel David Joseph Carter Wyatt Jayden "
    "Maria Camila Valentina Sofia Lucia Mateo Santiago Diego Priya Aisha Mei Hana Jin Minh"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Patel Kim Chen"
).split()
STREET_NAMES = (
    "Main Oak Pine Maple Cedar Elm Washington Lake Hill Park Sunset Lincoln Jackson Franklin "
    "Highland Willow Meadow Ridge Church River Spring Valley Forest Jefferson Madison Adams "
    "Chestnut Walnut Cherry Magnolia Hickory Dogwood Sycamore Birch Laurel Aspen Juniper"
).split()
STREET_SUFFIXES = [
    "St",
    "Street",
    "Ave",
    "Avenue",
    "Rd",
    "Road",
    "Dr",
    "Drive",
    "Ln",
    "Lane",
    "Blvd",
    "Ct",
    "Way",
    "Pl",
    "Ter",
    "Cir",
]
DIRECTIONALS = ["", "", "", "", "N ", "S ", "E ", "W ", "North ", "SW "]
UNITS = ["Apt 2B", "Apt 14", "Unit 305", "Suite 200", "#7", "Apt 1203", "Unit B", "Fl 3"]

# (city, state, ZIP): real combinations.
CITIES = [
    ("New York", "NY", "10001"),
    ("Brooklyn", "NY", "11201"),
    ("Buffalo", "NY", "14201"),
    ("Los Angeles", "CA", "90012"),
    ("San Francisco", "CA", "94103"),
    ("San Diego", "CA", "92101"),
    ("Sacramento", "CA", "95814"),
    ("Fresno", "CA", "93721"),
    ("Chicago", "IL", "60601"),
    ("Springfield", "IL", "62701"),
    ("Houston", "TX", "77002"),
    ("Austin", "TX", "78701"),
    ("Dallas", "TX", "75201"),
    ("San Antonio", "TX", "78205"),
    ("El Paso", "TX", "79901"),
    ("Phoenix", "AZ", "85004"),
    ("Tucson", "AZ", "85701"),
    ("Philadelphia", "PA", "19103"),
    ("Pittsburgh", "PA", "15222"),
    ("Jacksonville", "FL", "32202"),
    ("Miami", "FL", "33130"),
    ("Orlando", "FL", "32801"),
    ("Tampa", "FL", "33602"),
    ("Columbus", "OH", "43215"),
    ("Cleveland", "OH", "44113"),
    ("Cincinnati", "OH", "45202"),
    ("Charlotte", "NC", "28202"),
    ("Raleigh", "NC", "27601"),
    ("Indianapolis", "IN", "46204"),
    ("Seattle", "WA", "98101"),
    ("Spokane", "WA", "99201"),
    ("Denver", "CO", "80202"),
    ("Boulder", "CO", "80302"),
    ("Boston", "MA", "02108"),
    ("Cambridge", "MA", "02139"),
    ("Nashville", "TN", "37203"),
    ("Memphis", "TN", "38103"),
    ("Detroit", "MI", "48226"),
    ("Grand Rapids", "MI", "49503"),
    ("Portland", "OR", "97204"),
    ("Las Vegas", "NV", "89101"),
    ("Reno", "NV", "89501"),
    ("Baltimore", "MD", "21202"),
    ("Milwaukee", "WI", "53202"),
    ("Albuquerque", "NM", "87102"),
    ("Atlanta", "GA", "30303"),
    ("Savannah", "GA", "31401"),
    ("Kansas City", "MO", "64106"),
    ("St. Louis", "MO", "63101"),
    ("Omaha", "NE", "68102"),
    ("Minneapolis", "MN", "55401"),
    ("New Orleans", "LA", "70112"),
    ("Salt Lake City", "UT", "84101"),
    ("Boise", "ID", "83702"),
    ("Honolulu", "HI", "96813"),
    ("Anchorage", "AK", "99501"),
    ("Burlington", "VT", "05401"),
    ("Portland", "ME", "04101"),
    ("Providence", "RI", "02903"),
    ("Hartford", "CT", "06103"),
    ("Newark", "NJ", "07102"),
    ("Richmond", "VA", "23219"),
    ("Louisville", "KY", "40202"),
    ("Birmingham", "AL", "35203"),
    ("Little Rock", "AR", "72201"),
    ("Charleston", "SC", "29401"),
    ("Oklahoma City", "OK", "73102"),
    ("Des Moines", "IA", "50309"),
    ("Wichita", "KS", "67202"),
    ("Fargo", "ND", "58102"),
    ("Sioux Falls", "SD", "57104"),
    ("Billings", "MT", "59101"),
    ("Cheyenne", "WY", "82001"),
    ("Jackson", "MS", "39201"),
    ("Wilmington", "DE", "19801"),
    ("Manchester", "NH", "03101"),
    ("Charleston", "WV", "25301"),
    ("Washington", "DC", "20001"),
]
STATE_NAMES = {
    "NY": "New York",
    "CA": "California",
    "IL": "Illinois",
    "TX": "Texas",
    "AZ": "Arizona",
    "PA": "Pennsylvania",
    "FL": "Florida",
    "OH": "Ohio",
    "NC": "North Carolina",
    "IN": "Indiana",
    "WA": "Washington",
    "CO": "Colorado",
    "MA": "Massachusetts",
    "TN": "Tennessee",
    "MI": "Michigan",
    "OR": "Oregon",
    "NV": "Nevada",
    "MD": "Maryland",
    "WI": "Wisconsin",
    "NM": "New Mexico",
    "GA": "Georgia",
    "MO": "Missouri",
    "NE": "Nebraska",
    "MN": "Minnesota",
    "LA": "Louisiana",
    "UT": "Utah",
    "ID": "Idaho",
    "HI": "Hawaii",
    "AK": "Alaska",
    "VT": "Vermont",
    "ME": "Maine",
    "RI": "Rhode Island",
    "CT": "Connecticut",
    "NJ": "New Jersey",
    "VA": "Virginia",
    "KY": "Kentucky",
    "AL": "Alabama",
    "AR": "Arkansas",
    "SC": "South Carolina",
    "OK": "Oklahoma",
    "IA": "Iowa",
    "KS": "Kansas",
    "ND": "North Dakota",
    "SD": "South Dakota",
    "MT": "Montana",
    "WY": "Wyoming",
    "MS": "Mississippi",
    "DE": "Delaware",
    "NH": "New Hampshire",
    "WV": "West Virginia",
    "DC": "District of Columbia",
}
# Area codes that exist, so phone numbers parse as valid US numbers.
AREA_CODES = [
    "212",
    "213",
    "312",
    "415",
    "512",
    "602",
    "617",
    "702",
    "206",
    "303",
    "305",
    "404",
    "503",
    "615",
    "713",
    "801",
    "919",
    "971",
    "646",
    "510",
]
BUYER_NOTES = [
    "Please leave at the back door.",
    "Gift — please don't include the receipt!",
    "Can you ship before Friday? It's a birthday present.",
    "Ring the bell twice, the first one is broken",
    "Please double-check the color is the pink one from the live",
    "Deliver to the front desk &amp; call me",
    "can u add a free sample?? saw it on the live",
]
CANCEL_REASONS = [
    "Buyer changed mind",
    "Ordered by mistake",
    "Found a better price",
    "Shipping takes too long",
]


@dataclass(frozen=True, slots=True)
class Buyer:
    first_name: str
    last_name: str
    phone: str
    email: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str = "US"

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, self.state)


def fake_buyer(rng: random.Random, *, awkward_rate: float = 0.05) -> Buyer:
    """A random US buyer; `awkward_rate` of them have an address review should hold."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, state, postal_code = rng.choice(CITIES)
    line1 = (
        f"{rng.randint(1, 9899)} {rng.choice(DIRECTIONALS)}{rng.choice(STREET_NAMES)} "
        f"{rng.choice(STREET_SUFFIXES)}"
    )
    line2 = rng.choice(UNITS) if rng.random() < 0.25 else ""
    if rng.random() < awkward_rate:
        kind = rng.choice(["po_box", "military", "zip", "long"])
        if kind == "po_box":
            line1, line2 = (
                rng.choice(["PO Box", "P.O. Box", "Post Office Box"])
                + (f" {rng.randint(10, 9999)}"),
                "",
            )
        elif kind == "military":
            line1, city, state, postal_code = (
                f"Unit {rng.randint(2000, 9999)} Box {rng.randint(1, 999)}",
                "APO",
                "AE",
                "09012",
            )
        elif kind == "zip":
            postal_code = rng.choice([c[2] for c in CITIES if c[1] != state])
        else:
            line1 = line1 + " " + "Building " * 14
    phone = f"+1{rng.choice(AREA_CODES)}555{rng.randint(0, 9999):04d}"
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com"
    return Buyer(first, last, phone, email, line1.strip(), line2, city, state, postal_code)
