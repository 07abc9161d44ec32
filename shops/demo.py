"""The demo data set: two sellers, their logins, and a few hundred orders in every state.

`demo_seed()` builds it and `python manage.py seed_demo` is its thin caller. The data is
deterministic (a fixed random seed per tenant; times are relative to the moment of seeding, so
the dashboard always has orders due soon and overdue) and idempotent: a demo tenant that
already exists is left as it is, so seeding twice changes nothing. `demo_reset()` wipes the
demo tenants and logins so the next seed starts afresh.

Rows are written with `bulk_create`, one transaction per tenant, and the numbers hang together
the way the real flows would leave them: every stock level equals the sum of its movements,
`reserved` is exactly what allocated orders hold, shipped parcels carry tracking numbers with
valid check digits for their carrier, and order money adds up.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import models, transaction
from django.db.models.deletion import ProtectedError
from django.utils import timezone

from inventory.models import (
    Listing,
    MovementKind,
    Sku,
    StockLevel,
    StockMovement,
    Supplier,
    SupplierItem,
    Warehouse,
    WarehouseKind,
)
from logistics.models import (
    Carrier,
    CarrierRule,
    CarrierService,
    Provider,
    ProviderKind,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)
from logistics.tracking_numbers import gs1_check_digit, make_tracking_number
from orders.models import (
    EventSource,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
    OrderTag,
    Tag,
)
from orders.sla import sla_deadlines
from shops.models import Membership, Platform, Role, Shop, Tenant
from tkerp.tenancy import TenantOwnedModel, all_tenants, tenant_context

DEMO_PASSWORD = "demo-pass-123"
DEMO_ADMIN_URL = "http://127.0.0.1:8000/admin/"
ORDERS_PER_TENANT = 300

CENT = Decimal("0.01")
ZERO = Decimal("0")


def money(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


# --- what the demo contains -----------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    """One demo user: its roles per tenant slug, and what it is there to show."""

    username: str
    first_name: str
    last_name: str
    description: str
    roles: dict[str, str] = field(default_factory=dict)
    is_superuser: bool = False


DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin(
        "operator", "Sam", "Operator", "SaaS operator (superuser): sees every tenant",
        is_superuser=True,
    ),
    DemoLogin(
        "sunny-owner", "Dana", "Reyes", "Owner of Sunny Day Beauty",
        roles={"sunny-day-beauty": Role.OWNER},
    ),
    DemoLogin(
        "sunny-packer", "Luis", "Ortega", "Operator at Sunny Day Beauty: orders, parcels, stock",
        roles={"sunny-day-beauty": Role.OPERATOR},
    ),
    DemoLogin(
        "peak-owner", "Jordan", "Blake", "Owner of Peak Outdoor Co.",
        roles={"peak-outdoor": Role.OWNER},
    ),
    DemoLogin(
        "peak-viewer", "Riley", "Chen", "Viewer at Peak Outdoor Co. (read only)",
        roles={"peak-outdoor": Role.VIEWER},
    ),
    DemoLogin(
        "alex", "Alex", "Morgan",
        "Manager at Sunny Day Beauty, viewer at Peak Outdoor Co.: try the tenant switcher",
        roles={"sunny-day-beauty": Role.MANAGER, "peak-outdoor": Role.VIEWER},
    ),
)  # fmt: skip


@dataclass(frozen=True)
class SkuSpec:
    code: str
    name: str
    weight_grams: int
    dimensions_mm: tuple[int, int, int]
    cost: str
    price: str
    hs_code: str


def _catalogue(table: str) -> tuple[SkuSpec, ...]:
    """Parse `code | name | grams | LxWxH mm | cost | price | HS code` rows."""
    specs = []
    for row in table.strip().splitlines():
        code, name, grams, dims, cost, price, hs_code = (cell.strip() for cell in row.split("|"))
        length, width, height = (int(mm) for mm in dims.split("x"))
        specs.append(SkuSpec(code, name, int(grams), (length, width, height), cost, price, hs_code))
    return tuple(specs)


@dataclass(frozen=True)
class TenantSpec:
    """Everything that differs between the demo sellers."""

    slug: str
    name: str
    timezone: str
    code: str  # short prefix for references
    barcode_prefix: str  # 6-digit UPC company prefix
    ups_account: str  # 6-character UPS shipper number inside 1Z tracking numbers
    shops: tuple[tuple[str, str, str, int], ...]  # name, platform, platform shop id, ship-by h
    own_warehouse: tuple[str, str, str, str, str, str]  # code, name, street, city, state, zip
    provider: tuple[str, str, str]  # code, name, contact email
    provider_warehouse: tuple[str, str, str, str, str, str]
    suppliers: tuple[tuple[str, str, str, str, int], ...]  # code, name, contact, country, days
    catalogue: tuple[SkuSpec, ...]
    short_sku: str  # the SKU that is out of stock (orders for it wait on `stock.short`)
    high_value_sku: str  # a few of these make a `high_value` order


SUNNY = TenantSpec(
    slug="sunny-day-beauty",
    name="Sunny Day Beauty",
    timezone="America/Chicago",
    code="SDB",
    barcode_prefix="850023",
    ups_account="4W7R21",
    shops=(
        ("Sunny Day Beauty TikTok Shop", Platform.TIKTOK, "7495540735365777507", 24),
        ("sunnydaybeauty.com", Platform.SHOPIFY, "sunny-day-beauty.myshopify.com", 48),
        ("Sunny Day Beauty on Amazon", Platform.AMAZON, "A2SDB7K1QX9ZLM", 48),
        ("Markets & wholesale (CSV)", Platform.MANUAL, "", 72),
    ),
    own_warehouse=("ATX", "Sunny Day HQ, Austin", "2100 E 5th St", "Austin", "TX", "78702"),
    provider=("EASTLINE", "Eastline Fulfillment", "ops@eastline-3pl.example.com"),
    provider_warehouse=(
        "3PL-NJ", "Eastline Fulfillment, Edison", "75 National Rd", "Edison", "NJ", "08817",
    ),
    suppliers=(
        ("GLOWLAB", "Glow Cosmetics Lab", "Mei Lin", "CN", 28),
        ("PACBOT", "Pacific Botanics", "Erin Walsh", "US", 10),
        ("BELLAPK", "Bella Pack Supply", "Tom Alvarez", "US", 5),
    ),
    catalogue=_catalogue(
        """
SDB-SER-VC30   | Vitamin C Brightening Serum 30 ml     |   95 |  40x40x110 |  4.20 | 24.99 | 3304.99
SDB-SER-HA30   | Hyaluronic Acid Serum 30 ml           |   95 |  40x40x110 |  3.80 | 21.99 | 3304.99
SDB-SER-NIA30  | Niacinamide 10% Serum 30 ml           |   95 |  40x40x110 |  3.65 | 19.99 | 3304.99
SDB-LIP-PCH    | Glow Lip Oil, Peach                   |   25 |   20x20x95 |  1.35 | 12.99 | 3304.10
SDB-LIP-BRY    | Glow Lip Oil, Berry                   |   25 |   20x20x95 |  1.35 | 12.99 | 3304.10
SDB-CRM-BAR50  | Barrier Repair Moisturizer 50 ml      |  140 |   60x60x70 |  5.10 | 28.00 | 3304.99
SDB-CLN-GEL150 | Gentle Gel Cleanser 150 ml            |  190 |  50x35x160 |  2.90 | 16.50 | 3401.30
SDB-SPF-50     | Daily Mineral Sunscreen SPF 50, 50 ml |  110 |  45x30x140 |  4.75 | 26.00 | 3304.99
SDB-LIP-CLR    | Glow Lip Oil, Clear                   |   25 |   20x20x95 |  1.35 | 12.99 | 3304.10
SDB-MSK-CLAY   | Pink Clay Purifying Mask 100 g        |  150 |   70x70x60 |  3.10 | 18.00 | 3304.99
SDB-MSK-SHT5   | Hydrogel Sheet Mask, 5 pack           |  120 | 120x180x15 |  2.40 | 15.00 | 3304.99
SDB-EYE-PAT    | Caffeine Eye Patches, 30 pairs        |  110 |   80x80x30 |  2.85 | 17.50 | 3304.99
SDB-TNR-ROSE   | Rose Water Toner 200 ml               |  260 |  50x50x170 |  2.60 | 14.99 | 3304.99
SDB-BLM-CLN    | Melting Cleansing Balm 100 ml         |  160 |   75x75x50 |  3.95 | 22.00 | 3401.30
SDB-GUA-SHA    | Rose Quartz Gua Sha                   |   90 |   90x60x15 |  2.20 | 19.99 | 6802.99
SDB-RLR-JADE   | Jade Face Roller                      |  180 |  150x60x40 |  3.10 | 21.99 | 6802.99
SDB-SET-GLOW   | Glow Routine Gift Set, 4 pieces       |  520 | 220x160x70 | 14.80 | 64.00 | 3304.99
SDB-BRS-KIT10  | Vegan Makeup Brush Kit, 10 pieces     |  340 | 250x100x50 |  6.30 | 34.99 | 9603.29
SDB-MIR-LED    | LED Vanity Mirror, 3 light modes      | 1150 | 300x220x80 | 13.40 | 49.99 | 7009.92
SDB-SCR-SILK3  | Mulberry Silk Scrunchies, 3 pack      |   45 |  120x90x20 |  1.90 | 14.00 | 6117.80
SDB-SPR-DEW    | Dewy Setting Spray 100 ml             |  130 |  40x40x150 |  2.75 | 18.50 | 3304.99
SDB-HND-TRIO   | Shea Hand Cream Trio                  |  210 | 160x110x35 |  4.40 | 22.50 | 3304.99
"""
    ),
    short_sku="SDB-MIR-LED",
    high_value_sku="SDB-SET-GLOW",
)  # fmt: skip

PEAK = TenantSpec(
    slug="peak-outdoor",
    name="Peak Outdoor Co.",
    timezone="America/Denver",
    code="POC",
    barcode_prefix="850047",
    ups_account="9Y2E84",
    shops=(
        ("Peak Outdoor TikTok Shop", Platform.TIKTOK, "7495612278930244611", 24),
        ("peakoutdoor.co", Platform.SHOPIFY, "peak-outdoor-co.myshopify.com", 48),
        ("Peak Outdoor on eBay", Platform.EBAY, "peak_outdoor_co", 48),
        ("Trade orders (CSV)", Platform.MANUAL, "", 72),
    ),
    own_warehouse=("DEN", "Peak HQ, Denver", "3300 Walnut St", "Denver", "CO", "80205"),
    provider=("CASCADE", "Cascade 3PL", "support@cascade3pl.example.com"),
    provider_warehouse=(
        "3PL-RNO", "Cascade 3PL, Reno", "1150 Trademark Dr", "Reno", "NV", "89521",
    ),
    suppliers=(
        ("RIDGEMFG", "Ridgeline Manufacturing", "Kevin Zhou", "CN", 35),
        ("TRAILTEX", "TrailWorks Textiles", "Hannah Price", "US", 7),
        ("SUMMITWS", "Summit Gear Wholesale", "Marcus Bell", "US", 5),
    ),
    catalogue=_catalogue(
        """
POC-BTL-750  | Insulated Bottle 750 ml, Glacier  |  380 |   80x80x270 |  6.10 |  29.99 | 9617.00
POC-HDL-250  | Rechargeable Headlamp, 250 lumens |   95 |    70x50x45 |  5.40 |  27.99 | 8513.10
POC-SCK-M    | Merino Hiking Socks, M            |   90 |  220x100x20 |  4.10 |  18.00 | 6115.94
POC-MUG-TI   | Titanium Camp Mug 450 ml          |   85 |   90x90x100 |  5.10 |  24.99 | 7326.90
POC-FLT-SQZ  | Squeeze Water Filter              |   85 |   160x60x60 |  7.30 |  34.00 | 8421.21
POC-BTL-1000 | Insulated Bottle 1 L, Basalt      |  470 |   90x90x300 |  7.05 |  34.99 | 9617.00
POC-LNT-CMP  | Collapsible Camp Lantern          |  310 |  110x110x60 |  6.80 |  32.00 | 9405.40
POC-HMK-UL   | Ultralight Camping Hammock        |  520 |  180x120x90 | 11.20 |  49.00 | 6306.90
POC-HMK-STR  | Hammock Tree Straps, pair         |  280 |   130x90x60 |  3.90 |  19.99 | 5607.21
POC-TNT-2P   | Trailhead 2-Person Tent           | 1850 | 480x160x160 | 47.50 | 189.00 | 6306.22
POC-BAG-20F  | Down Sleeping Bag, 20 F           | 1150 | 380x220x220 | 41.00 | 169.00 | 9404.30
POC-PAD-INF  | Inflatable Sleeping Pad           |  520 | 230x110x110 | 12.60 |  59.00 | 6306.40
POC-STV-MINI | Mini Backpacking Stove            |   95 |    80x60x60 |  6.20 |  29.00 | 7321.11
POC-POL-CF   | Carbon Trekking Poles, pair       |  460 |   680x90x90 | 18.40 |  79.00 | 6602.00
POC-DAY-22   | Ridge 22 L Daypack                |  640 |  450x290x80 | 14.90 |  64.00 | 4202.92
POC-CHR-UL   | Ultralight Camp Chair             |  900 | 360x140x120 | 15.50 |  69.00 | 9401.71
POC-MLT-14   | 14-in-1 Multi-tool                |  240 |   110x50x30 |  6.40 |  29.99 | 8205.70
POC-FAK-TRL  | Trail First Aid Kit               |  300 |  180x130x60 |  5.80 |  26.00 | 3006.50
POC-SCK-L    | Merino Hiking Socks, L            |   95 |  220x100x20 |  4.10 |  18.00 | 6115.94
POC-BNE-KNT  | Merino Knit Beanie                |   80 |  200x180x20 |  4.60 |  22.00 | 6505.00
POC-DRY-10   | Roll-top Dry Bag 10 L             |  140 |  200x120x30 |  3.70 |  17.99 | 4202.92
POC-CRB-4    | Locking Carabiners, 4 pack        |  120 |   120x80x30 |  3.20 |  15.99 | 7326.90
"""
    ),
    short_sku="POC-BAG-20F",
    high_value_sku="POC-TNT-2P",
)  # fmt: skip

DEMO_TENANTS: tuple[TenantSpec, ...] = (SUNNY, PEAK)

# Carriers, their services and the rules that pick one. The rules read top to bottom (lowest
# priority first, first match wins); `_service_for` applies the same conditions when the demo
# decides which service its parcels went out with.
CARRIERS = (
    (
        "usps",
        "USPS",
        "https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking_number}",
        (
            ("ground_advantage", "Ground Advantage", 31_750, True),
            ("priority", "Priority Mail", 31_750, True),
            ("priority_express", "Priority Mail Express", 31_750, True),
        ),
    ),
    (
        "ups",
        "UPS",
        "https://www.ups.com/track?tracknum={tracking_number}",
        (
            ("ground", "Ground", 68_000, False),
            ("2nd_day_air", "2nd Day Air", 68_000, False),
            ("next_day_air", "Next Day Air", 68_000, False),
        ),
    ),
    (
        "fedex",
        "FedEx",
        "https://www.fedex.com/fedextrack/?trknbr={tracking_number}",
        (
            ("home_delivery", "Home Delivery", 68_000, False),
            ("2day", "2Day", 68_000, False),
        ),
    ),
)


@dataclass(frozen=True)
class RuleSpec:
    priority: int
    name: str
    service: tuple[str, str]  # carrier code, service code
    tag: str = ""
    states: str = ""
    min_weight_grams: int | None = None
    max_weight_grams: int | None = None
    min_total: Decimal | None = None

    def matches(self, *, total: Decimal, weight: int, state: str, tags: set[str]) -> bool:
        return (
            (not self.tag or self.tag in tags)
            and (not self.states or state in self.states.split(","))
            and (self.min_weight_grams is None or weight >= self.min_weight_grams)
            and (self.max_weight_grams is None or weight <= self.max_weight_grams)
            and (self.min_total is None or total >= self.min_total)
        )


CARRIER_RULES = (
    RuleSpec(10, "VIP orders: UPS 2nd Day Air", ("ups", "2nd_day_air"), tag="vip"),
    RuleSpec(20, "Alaska and Hawaii: Priority Mail", ("usps", "priority"), states="AK,HI"),
    RuleSpec(30, "Heavy parcels: FedEx Home Delivery", ("fedex", "home_delivery"),
             min_weight_grams=2000),
    RuleSpec(40, "High value: UPS Ground", ("ups", "ground"), min_total=Decimal("150")),
    RuleSpec(50, "Light parcels: USPS Ground Advantage", ("usps", "ground_advantage"),
             max_weight_grams=450),
    RuleSpec(100, "Everything else: UPS Ground", ("ups", "ground")),
)  # fmt: skip

TAGS = ("live-stream", "vip", "gift", "repeat-buyer", "presale")

# How a tenant's orders spread over the states of an order's life (shares of the total).
STATUS_MIX = (
    (OrderStatus.NEW, 10),
    (OrderStatus.ON_HOLD, 12),
    (OrderStatus.READY, 12),
    (OrderStatus.ALLOCATED, 15),
    (OrderStatus.SHIPPED, 10),
    (OrderStatus.IN_TRANSIT, 8),
    (OrderStatus.DELIVERED, 28),
    (OrderStatus.CANCELLED, 5),
)
# Why held orders wait, in rotation (some orders carry two reasons).
HOLD_MIX = (
    ("buyer_note",),
    ("address.po_box",),
    ("high_value",),
    ("buyer_note", "high_value"),
    ("address.military",),
    ("phone.invalid",),
    ("stock.short",),
    ("manual",),
    ("duplicate_address",),
    ("buyer_note",),
    ("address.po_box",),
    ("high_value",),
)
HOLD_MESSAGES = {
    "buyer_note": "The buyer left a note; read it before shipping.",
    "address.po_box": "Ships to a PO box; most carriers refuse them.",
    "address.military": "APO/FPO/DPO address; needs a USPS service.",
    "phone.invalid": "The phone number is not a valid E.164 number.",
    "high_value": "Order total is above the high-value review threshold.",
    "stock.short": "Not enough free stock to reserve every line.",
    "manual": "Held by hand: confirm the shade with the buyer before packing.",
    "duplicate_address": "Another open order ships to the same address.",
}
BUYER_NOTES = (
    "Please gift wrap, it's a birthday present!",
    "Can you ship before Friday? Leaving for a trip.",
    "Leave at the back door please, the dog barks.",
    "Ordered the wrong one, can I swap for the other colour?",
    "Please don't put the price in the box, it's a gift.",
)

PLATFORM_STATUS = {
    Platform.TIKTOK: {
        "open": "AWAITING_SHIPMENT",
        OrderStatus.SHIPPED: "AWAITING_COLLECTION",
        OrderStatus.IN_TRANSIT: "IN_TRANSIT",
        OrderStatus.DELIVERED: "DELIVERED",
        OrderStatus.CANCELLED: "CANCELLED",
    },
    Platform.SHOPIFY: {"open": "unfulfilled", "done": "fulfilled", "cancelled": "cancelled"},
    Platform.AMAZON: {"open": "Unshipped", "done": "Shipped", "cancelled": "Canceled"},
    Platform.EBAY: {"open": "NOT_STARTED", "done": "FULFILLED", "cancelled": "CANCELLED"},
    Platform.MANUAL: {},
}

FIRST_NAMES = (
    "Emma", "Olivia", "Ava", "Sophia", "Mia", "Isabella", "Harper", "Amelia", "Evelyn", "Abigail",
    "Liam", "Noah", "Ethan", "Mason", "Lucas", "Logan", "James", "Aiden", "Carter", "Wyatt",
    "Chloe", "Zoe", "Nora", "Layla", "Aaliyah", "Priya", "Mariana", "Keisha", "Hana", "Camila",
    "Diego", "Mateo", "Darnell", "Kenji", "Omar", "Tyler", "Brandon", "Jasmine", "Madison", "Grace",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Nguyen", "Patel", "Kim",
    "Washington", "Okafor", "Rossi", "Cohen", "Murphy",
)  # fmt: skip
STREETS = (
    ("Maple Ave", "maple avenue"), ("Oak St", "oak street"), ("Cedar Ln", "cedar lane"),
    ("Elm St", "elm street"), ("Park Ave", "park avenue"), ("Hillcrest Rd", "hillcrest road"),
    ("Willow Way", "willow way"), ("River Rd", "river road"), ("Highland Ave", "highland avenue"),
    ("Main St", "main street"), ("Church St", "church street"), ("Meadow Ln", "meadow lane"),
    ("Sunset Dr", "sunset drive"), ("Magnolia Ave", "magnolia avenue"),
    ("Walnut St", "walnut street"), ("Lakeview Dr", "lakeview drive"),
)  # fmt: skip
# (city, state, ZIP, area code) — real ZIPs so zip/state checks pass.
CITIES = (
    ("Austin", "TX", "78704", "512"), ("Houston", "TX", "77006", "713"),
    ("Dallas", "TX", "75204", "214"), ("Brooklyn", "NY", "11215", "718"),
    ("Portland", "OR", "97214", "503"), ("Denver", "CO", "80205", "303"),
    ("Chicago", "IL", "60614", "312"), ("Seattle", "WA", "98103", "206"),
    ("Atlanta", "GA", "30307", "404"), ("Phoenix", "AZ", "85016", "602"),
    ("San Diego", "CA", "92104", "619"), ("Los Angeles", "CA", "90026", "213"),
    ("Sacramento", "CA", "95816", "916"), ("Nashville", "TN", "37206", "615"),
    ("Minneapolis", "MN", "55408", "612"), ("Boston", "MA", "02130", "617"),
    ("Philadelphia", "PA", "19147", "215"), ("Pittsburgh", "PA", "15213", "412"),
    ("Columbus", "OH", "43215", "614"), ("Charlotte", "NC", "28203", "704"),
    ("Raleigh", "NC", "27608", "919"), ("Miami", "FL", "33137", "305"),
    ("Tampa", "FL", "33606", "813"), ("Salt Lake City", "UT", "84105", "801"),
    ("Boise", "ID", "83702", "208"), ("Madison", "WI", "53703", "608"),
    ("Richmond", "VA", "23220", "804"), ("Kansas City", "MO", "64111", "816"),
    ("Omaha", "NE", "68131", "402"), ("Albuquerque", "NM", "87106", "505"),
    ("Las Vegas", "NV", "89104", "702"), ("Louisville", "KY", "40204", "502"),
    ("New Orleans", "LA", "70115", "504"), ("Detroit", "MI", "48201", "313"),
    ("Baltimore", "MD", "21230", "410"), ("Providence", "RI", "02906", "401"),
    ("Burlington", "VT", "05401", "802"), ("Honolulu", "HI", "96814", "808"),
    ("Anchorage", "AK", "99503", "907"),
)  # fmt: skip
STATE_NAMES = {
    "TX": "Texas", "NY": "New York", "OR": "Oregon", "CO": "Colorado", "IL": "Illinois",
    "WA": "Washington", "GA": "Georgia", "AZ": "Arizona", "CA": "California", "TN": "Tennessee",
    "MN": "Minnesota", "MA": "Massachusetts", "PA": "Pennsylvania", "OH": "Ohio",
    "NC": "North Carolina", "FL": "Florida", "UT": "Utah", "ID": "Idaho", "WI": "Wisconsin",
    "VA": "Virginia", "MO": "Missouri", "NE": "Nebraska", "NM": "New Mexico", "NV": "Nevada",
    "KY": "Kentucky", "LA": "Louisiana", "MI": "Michigan", "MD": "Maryland",
    "RI": "Rhode Island", "VT": "Vermont", "HI": "Hawaii", "AK": "Alaska",
}  # fmt: skip
SALES_TAX = {"TX": "0.0825", "CA": "0.0725", "NY": "0.08875", "WA": "0.101", "IL": "0.1025"}
DEFAULT_SALES_TAX = "0.065"
FREE_SHIPPING_FROM = Decimal("35.00")
STANDARD_SHIPPING_FEE = Decimal("4.99")


# --- the public functions -------------------------------------------------------------------


@dataclass
class DemoTenantResult:
    name: str
    slug: str
    created: bool
    counts: dict[str, int]


@dataclass
class DemoSeedResult:
    tenants: list[DemoTenantResult]
    logins: tuple[DemoLogin, ...] = DEMO_LOGINS
    password: str = DEMO_PASSWORD
    admin_url: str = DEMO_ADMIN_URL


def demo_seed(
    *, reset: bool = False, orders_per_tenant: int = ORDERS_PER_TENANT, now: datetime | None = None
) -> DemoSeedResult:
    """Create the demo tenants, logins and data; a tenant already there is left untouched.

    Logins are (re)set every time, so the documented password always works.
    """
    if reset:
        demo_reset()
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    users = _ensure_logins()
    results = []
    for spec in DEMO_TENANTS:
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=spec.slug).first()
            created = tenant is None
            if created:
                tenant = Tenant.objects.create(
                    name=spec.name,
                    slug=spec.slug,
                    timezone=spec.timezone,
                    alert_email=f"alerts@{spec.slug}.example.com",
                )
                with tenant_context(tenant):
                    _TenantBuilder(spec=spec, tenant=tenant, users=users, now=now).build(
                        orders=orders_per_tenant
                    )
            _ensure_memberships(tenant=tenant, spec=spec, users=users)
            if settings.TKERP_SANDBOX_ENABLED:
                _connect_sandboxes(tenant)
        results.append(
            DemoTenantResult(
                name=tenant.name, slug=tenant.slug, created=created, counts=demo_counts(tenant)
            )
        )
    return DemoSeedResult(tenants=results)


def _connect_sandboxes(tenant: Tenant) -> None:
    """Point every platform shop of the tenant at its local sandbox (idempotent)."""
    from sandbox.connect import sandbox_connect

    with tenant_context(tenant):
        for shop in Shop.objects.exclude(platform=Platform.MANUAL).order_by("pk"):
            sandbox_connect(shop=shop)


def demo_reset() -> None:
    """Delete the demo tenants (and everything they own) and the demo logins."""
    tenants = list(Tenant.objects.filter(slug__in=[spec.slug for spec in DEMO_TENANTS]))
    with transaction.atomic(), all_tenants():
        for tenant in tenants:
            _delete_tenant_rows(tenant)
            tenant.delete()
        get_user_model().objects.filter(
            username__in=[login.username for login in DEMO_LOGINS]
        ).delete()


def demo_counts(tenant: Tenant) -> dict[str, int]:
    """Row counts of the headline models for one tenant (for the command's summary)."""
    with tenant_context(tenant):
        return {
            "shops": Shop.objects.count(),
            "skus": Sku.objects.count(),
            "orders": Order.objects.count(),
            "shipments": Shipment.objects.count(),
        }


# --- logins ---------------------------------------------------------------------------------


def _ensure_logins() -> dict[str, models.Model]:
    user_model = get_user_model()
    # One hash for every login: hashing is deliberately slow and the password is the same.
    password_hash = make_password(DEMO_PASSWORD)
    users = {}
    for login in DEMO_LOGINS:
        user, _ = user_model.objects.update_or_create(
            username=login.username,
            defaults={
                "first_name": login.first_name,
                "last_name": login.last_name,
                "email": f"{login.username}@example.com",
                "is_staff": True,
                "is_active": True,
                "is_superuser": login.is_superuser,
                "password": password_hash,
            },
        )
        users[login.username] = user
    return users


def _ensure_memberships(*, tenant: Tenant, spec: TenantSpec, users: dict) -> None:
    with tenant_context(tenant):
        for login in DEMO_LOGINS:
            role = login.roles.get(spec.slug)
            if role is None:
                continue
            Membership.objects.update_or_create(
                tenant=tenant, user=users[login.username], defaults={"role": role}
            )


def _delete_tenant_rows(tenant: Tenant) -> None:
    """Delete every tenant-owned row of `tenant`, children before what they protect.

    PROTECT foreign keys (an order's shop, a movement's SKU...) refuse a one-shot cascade from
    the tenant, so models are deleted one by one, retrying those still protected until nothing
    is left. This keeps working as models are added, without a hand-kept order.
    """
    remaining = [model for model in _tenant_owned_models()]
    while remaining:
        blocked = []
        for model in remaining:
            try:
                model._base_manager.filter(tenant=tenant).delete()
            except ProtectedError:
                blocked.append(model)
        if len(blocked) == len(remaining):
            raise RuntimeError(f"cannot delete {tenant}: {blocked} stay protected")
        remaining = blocked


def _tenant_owned_models() -> list[type[TenantOwnedModel]]:
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.proxy
    ]


# --- building one tenant --------------------------------------------------------------------


@dataclass
class _PlannedOrder:
    """An order being planned, before any row is written."""

    order: Order
    lines: list[OrderLine]
    status: str
    paid_at: datetime
    created_at: datetime
    tags: set[str] = field(default_factory=set)
    holds: list[tuple[str, datetime | None]] = field(default_factory=list)  # code, released
    warehouse: Warehouse | None = None
    shipment: Shipment | None = None
    allocated_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    events: list[OrderEvent] = field(default_factory=list)


class _TenantBuilder:
    """Builds one demo tenant's rows. Runs inside `tenant_context(tenant)` and a transaction."""

    def __init__(self, *, spec: TenantSpec, tenant: Tenant, users: dict, now: datetime):
        self.spec = spec
        self.tenant = tenant
        self.now = now
        self.owner = next(
            users[login.username]
            for login in DEMO_LOGINS
            if login.roles.get(spec.slug) == Role.OWNER
        )
        self.staff = [users[login.username] for login in DEMO_LOGINS if spec.slug in login.roles]
        # A string seed is hashed deterministically (unlike hash()), so runs repeat exactly.
        self.rng = random.Random(f"tkerp-demo-{spec.slug}")
        self.used_ids: set[str] = set()

    def build(self, *, orders: int) -> None:
        self._shops()
        self._catalogue()
        self._warehouses()
        self._suppliers()
        self._carriers()
        self._listings()
        planned = self._orders(orders)
        self._shipments(planned)
        self._stock(planned)
        self._events(planned)

    # -- master data --

    def _shops(self) -> None:
        self.shops = Shop.objects.bulk_create(
            Shop(
                tenant=self.tenant,
                name=name,
                platform=platform,
                platform_shop_id=platform_shop_id,
                ship_by_hours=ship_by_hours,
                presale_ship_by_hours=settings.TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS,
                sync_interval_seconds=0 if platform == Platform.MANUAL else 60,
            )
            for name, platform, platform_shop_id, ship_by_hours in self.spec.shops
        )

    def _catalogue(self) -> None:
        skus = []
        self.prices: dict[str, Decimal] = {}
        for index, item in enumerate(self.spec.catalogue):
            upc = f"{self.spec.barcode_prefix}{10010 + 7 * index:05d}"
            length, width, height = item.dimensions_mm
            skus.append(
                Sku(
                    tenant=self.tenant,
                    code=item.code,
                    name=item.name,
                    barcode=upc + gs1_check_digit(upc),
                    weight_grams=item.weight_grams,
                    length_mm=length,
                    width_mm=width,
                    height_mm=height,
                    cost=Decimal(item.cost),
                    hs_code=item.hs_code,
                )
            )
            self.prices[item.code] = Decimal(item.price)
        self.skus = Sku.objects.bulk_create(skus)
        self.sku_by_code = {sku.code: sku for sku in self.skus}
        # Orders favour the first few SKUs (the bestsellers) the way real sales do.
        self.sellable = [sku for sku in self.skus if sku.code != self.spec.short_sku]
        self.sell_weights = [max(1, 12 - index) for index in range(len(self.sellable))]

    def _warehouses(self) -> None:
        code, name, contact_email = self.spec.provider
        self.provider = Provider.objects.create(
            tenant=self.tenant,
            code=code,
            name=name,
            kind=ProviderKind.THREE_PL,
            contact_email=contact_email,
        )

        def warehouse(spec, kind, provider):
            code, name, street, city, state, postal = spec
            return Warehouse(
                tenant=self.tenant,
                code=code,
                name=name,
                kind=kind,
                provider=provider,
                address_line1=street,
                city=city,
                state=state,
                postal_code=postal,
            )

        self.own, self.three_pl = Warehouse.objects.bulk_create(
            [
                warehouse(self.spec.own_warehouse, WarehouseKind.OWN, None),
                warehouse(self.spec.provider_warehouse, WarehouseKind.THREE_PL, self.provider),
            ]
        )
        # The 3PL stocks two SKUs in three; orders made only of those may ship from there.
        self.three_pl_codes = {
            sku.code
            for index, sku in enumerate(self.skus)
            if index % 3 != 2 and sku.code != self.spec.short_sku
        }

    def _suppliers(self) -> None:
        suppliers = Supplier.objects.bulk_create(
            Supplier(
                tenant=self.tenant,
                code=code,
                name=name,
                contact_name=contact,
                email=f"orders@{code.lower()}.example.com",
                phone=f"+1303555{150 + index:04d}" if country == "US" else "+862083550123",
                country=country,
                currency="USD",
                lead_time_days=lead_time,
            )
            for index, (code, name, contact, country, lead_time) in enumerate(self.spec.suppliers)
        )
        items = []
        for index, sku in enumerate(self.skus):
            main = suppliers[index % len(suppliers)]
            items.append(self._supplier_item(main, sku, sku.cost, preferred=True))
            if index % 3 == 0:
                backup = suppliers[(index + 1) % len(suppliers)]
                items.append(self._supplier_item(backup, sku, money(sku.cost * Decimal("1.12"))))
        SupplierItem.objects.bulk_create(items)

    def _supplier_item(self, supplier, sku, cost, preferred=False) -> SupplierItem:
        return SupplierItem(
            tenant=self.tenant,
            supplier=supplier,
            sku=sku,
            supplier_item_code=f"{supplier.code[:3]}-{sku.code.split('-', 1)[1]}",
            cost=cost,
            min_order_quantity=50 if supplier.country == "CN" else 12,
            is_preferred=preferred,
        )

    def _carriers(self) -> None:
        carriers = Carrier.objects.bulk_create(
            Carrier(
                tenant=self.tenant,
                code=code,
                name=name,
                tracking_url_template=url,
                # Placeholder TikTok shipping-provider ids (digit strings, as the API uses).
                platform_provider_ids={"tiktok": f"69{index}{'0' * 16}{index}"},
            )
            for index, (code, name, url, _) in enumerate(CARRIERS, start=1)
        )
        services = []
        for carrier, (_, _, _, service_specs) in zip(carriers, CARRIERS, strict=True):
            for code, name, max_weight, po_box in service_specs:
                services.append(
                    CarrierService(
                        tenant=self.tenant,
                        carrier=carrier,
                        code=code,
                        name=name,
                        max_weight_grams=max_weight,
                        accepts_po_box=po_box,
                    )
                )
        CarrierService.objects.bulk_create(services)
        self.services = {(svc.carrier.code, svc.code): svc for svc in services}
        CarrierRule.objects.bulk_create(
            CarrierRule(
                tenant=self.tenant,
                name=rule.name,
                priority=rule.priority,
                tag=rule.tag,
                states=rule.states,
                min_weight_grams=rule.min_weight_grams,
                max_weight_grams=rule.max_weight_grams,
                min_total=rule.min_total,
                service=self.services[rule.service],
            )
            for rule in CARRIER_RULES
        )

    def _listings(self) -> None:
        listings = []
        for shop in self.shops:
            for index, sku in enumerate(self.skus):
                product_id, sku_id = self._listing_ids(shop, sku, index)
                listings.append(
                    Listing(
                        tenant=self.tenant,
                        shop=shop,
                        sku=sku,
                        platform_product_id=product_id,
                        platform_sku_id=sku_id,
                        # Fast channels keep a few units back against oversells.
                        buffer_units=2 if shop.platform == Platform.TIKTOK else 0,
                        buffer_percent=(
                            Decimal("10") if shop.platform == Platform.AMAZON else Decimal("0")
                        ),
                        zero_below=2 if shop.platform == Platform.EBAY else 0,
                    )
                )
        Listing.objects.bulk_create(listings)

    def _listing_ids(self, shop: Shop, sku: Sku, index: int) -> tuple[str, str]:
        rng = self.rng
        if shop.platform == Platform.TIKTOK:
            product = f"1729{rng.randrange(10**14, 10**15)}"
            return product, f"1730{rng.randrange(10**14, 10**15)}"
        if shop.platform == Platform.SHOPIFY:
            return f"{8_100_000_000_000 + index * 1_777}", f"{44_000_000_000_000 + index * 3_111}"
        if shop.platform == Platform.AMAZON:
            asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
            return asin, sku.code
        if shop.platform == Platform.EBAY:
            return f"{rng.randrange(10**11, 10**12)}", sku.code
        return "", ""

    # -- orders --

    def _orders(self, count: int) -> list[_PlannedOrder]:
        rng = self.rng
        statuses = _spread(STATUS_MIX, count)
        rng.shuffle(statuses)
        shop_weights = [
            {Platform.TIKTOK: 50, Platform.SHOPIFY: 20, Platform.MANUAL: 8}.get(s.platform, 22)
            for s in self.shops
        ]
        self.tags = {
            name: tag
            for name, tag in zip(
                TAGS,
                Tag.objects.bulk_create(Tag(tenant=self.tenant, name=name) for name in TAGS),
                strict=True,
            )
        }
        planned = []
        hold_turn = 0
        last_open_address = None
        for number, status in enumerate(statuses, start=1):
            shop = rng.choices(self.shops, shop_weights)[0]
            holds: tuple[str, ...] = ()
            if status == OrderStatus.ON_HOLD:
                holds = HOLD_MIX[hold_turn % len(HOLD_MIX)]
                hold_turn += 1
            plan = self._order(number, shop, status, holds, last_open_address)
            if plan.order.status in (OrderStatus.READY, OrderStatus.ALLOCATED):
                last_open_address = plan.order
            planned.append(plan)

        Order.objects.bulk_create([plan.order for plan in planned])
        for plan in planned:
            for line in plan.lines:
                line.order = plan.order
        OrderLine.objects.bulk_create([line for plan in planned for line in plan.lines])
        self._backdate(Order, [(plan.order, plan.created_at) for plan in planned])

        OrderTag.objects.bulk_create(
            OrderTag(tenant=self.tenant, order=plan.order, tag=self.tags[name])
            for plan in planned
            for name in sorted(plan.tags)
        )
        holds = []
        for plan in planned:
            for code, released_at in plan.holds:
                hold = OrderHold(
                    tenant=self.tenant,
                    order=plan.order,
                    code=code,
                    message=HOLD_MESSAGES[code],
                    released_at=released_at,
                    released_by=self.owner if released_at else None,
                    created_by=self.owner if code == "manual" else None,
                )
                holds.append((hold, plan.created_at + timedelta(minutes=1)))
        OrderHold.objects.bulk_create([hold for hold, _ in holds])
        self._backdate(OrderHold, holds)
        return planned

    def _order(self, number, shop, status, holds, duplicate_of) -> _PlannedOrder:
        rng = self.rng
        now = self.now
        hours_ago = {
            OrderStatus.NEW: (0.1, 3),
            OrderStatus.ON_HOLD: (1, 30),
            OrderStatus.READY: (1, 20),
            OrderStatus.ALLOCATED: (2, 27),
            OrderStatus.SHIPPED: (20, 60),
            OrderStatus.IN_TRANSIT: (50, 120),
            OrderStatus.DELIVERED: (110, 720),
            OrderStatus.CANCELLED: (24, 480),
        }[status]
        paid_at = now - timedelta(minutes=int(rng.uniform(*hours_ago) * 60))
        placed_at = paid_at - timedelta(minutes=rng.randint(0, 12))
        created_at = paid_at + timedelta(minutes=rng.randint(1, 3))
        tags: set[str] = set()
        is_presale = status in (OrderStatus.NEW, OrderStatus.READY) and rng.random() < 0.08
        if is_presale:
            tags.add("presale")
        if shop.platform == Platform.TIKTOK and rng.random() < 0.4:
            tags.add("live-stream")
        for name, share in (("vip", 0.05), ("gift", 0.06), ("repeat-buyer", 0.08)):
            if rng.random() < share:
                tags.add(name)

        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        buyer = f"{first} {last}"
        recipient = buyer if "gift" not in tags else f"{rng.choice(FIRST_NAMES)} {last}"
        city, state, postal, area = rng.choice(CITIES)
        street, street_raw = rng.choice(STREETS)
        house = rng.randint(12, 9850)
        line1, line1_raw = f"{house} {street}", f"{house} {street_raw}"
        line2 = rng.choice(("", "", "", f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}"))
        phone = f"+1{area}555{rng.randint(100, 199):04d}"
        buyer_note = ""
        if "address.po_box" in holds:
            line1 = line1_raw = f"PO Box {rng.randint(100, 9999)}"
            line2 = ""
        if "address.military" in holds:
            line1 = line1_raw = f"Unit {rng.randint(2000, 9000)} Box {rng.randint(100, 999)}"
            city, state, postal, line2 = "APO", "AE", f"09{rng.randint(100, 999)}", ""
        if "phone.invalid" in holds:
            phone = f"555-{rng.randint(100, 199):04d}"
        if "buyer_note" in holds or (status != OrderStatus.ON_HOLD and rng.random() < 0.04):
            buyer_note = rng.choice(BUYER_NOTES)
        if "duplicate_address" in holds and duplicate_of is not None:
            line1 = line1_raw = duplicate_of.address_line1
            line2 = duplicate_of.address_line2
            city, state, postal = duplicate_of.city, duplicate_of.state, duplicate_of.postal_code

        lines = self._lines(number, shop, holds)
        subtotal = sum((line.total for line in lines), ZERO)
        shipping_fee = ZERO if subtotal >= FREE_SHIPPING_FROM else STANDARD_SHIPPING_FEE
        seller_discount = money(subtotal * Decimal("0.10")) if rng.random() < 0.15 else ZERO
        platform_discount = (
            money(rng.choice(("2.00", "3.00", "5.00")))
            if shop.platform == Platform.TIKTOK and rng.random() < 0.3
            else ZERO
        )
        taxable = subtotal - seller_discount - platform_discount
        tax = money(taxable * Decimal(SALES_TAX.get(state, DEFAULT_SALES_TAX)))
        # Some ready orders carry a buyer's cancellation request waiting for an answer.
        cancel_requested_at = (
            created_at + timedelta(minutes=rng.randint(10, 120))
            if status == OrderStatus.READY and rng.random() < 0.15
            else None
        )
        if cancel_requested_at and cancel_requested_at > now:
            cancel_requested_at = now
        deadlines = sla_deadlines(
            paid_at=paid_at,
            placed_at=placed_at,
            is_presale=is_presale,
            ship_by_hours=shop.ship_by_hours,
            presale_ship_by_hours=shop.presale_ship_by_hours,
            cancel_requested_at=cancel_requested_at,
        )
        order = Order(
            tenant=self.tenant,
            shop=shop,
            platform_order_id=self._platform_order_id(shop, number),
            status=status,
            platform_status=self._platform_status(shop, status),
            buyer_name=buyer,
            buyer_email=f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
            buyer_user_id=(
                f"{rng.randrange(10**17, 10**18)}" if shop.platform == Platform.TIKTOK else ""
            ),
            buyer_note=buyer_note,
            recipient_name=recipient,
            recipient_phone=phone,
            address_line1=line1,
            address_line2=line2,
            city=city,
            state=state,
            postal_code=postal,
            country="US",
            original_address={
                "name": recipient.upper() if rng.random() < 0.2 else recipient,
                "phone_number": phone.removeprefix("+1"),
                "address_line1": line1_raw,
                "address_line2": line2,
                "city": city,
                "state": STATE_NAMES.get(state, state),
                "postal_code": postal,
                "region_code": "US",
            },
            subtotal=subtotal,
            shipping_fee=shipping_fee,
            seller_discount=seller_discount,
            platform_discount=platform_discount,
            tax=tax,
            total=taxable + shipping_fee + tax,
            creator_commission=(
                money(subtotal * Decimal("0.15")) if "live-stream" in tags else ZERO
            ),
            is_presale=is_presale,
            placed_at=placed_at,
            paid_at=paid_at,
            platform_updated_at=paid_at,
            ship_by=deadlines.ship_by,
            tracking_by=deadlines.tracking_by,
            cancel_answer_by=deadlines.cancel_answer_by,
            raw={"id": "", "source": "seed_demo"},
        )
        order.raw["id"] = order.platform_order_id
        plan = _PlannedOrder(
            order=order,
            lines=lines,
            status=status,
            paid_at=paid_at,
            created_at=created_at,
            tags=tags,
            holds=[(code, None) for code in holds],
            cancel_requested_at=cancel_requested_at,
        )
        if status in (OrderStatus.READY, OrderStatus.ALLOCATED) and buyer_note:
            # Held for the note when it came in, released by the owner after reading it.
            plan.holds.append(("buyer_note", created_at + timedelta(minutes=rng.randint(5, 50))))
        if status == OrderStatus.CANCELLED:
            order.cancelled_at = paid_at + timedelta(minutes=rng.randint(20, 600))
            order.platform_updated_at = order.cancelled_at
        return plan

    def _lines(self, number: int, shop: Shop, holds: tuple[str, ...]) -> list[OrderLine]:
        rng = self.rng
        if "stock.short" in holds:
            picks = [(self.sku_by_code[self.spec.short_sku], 3)]
        elif "high_value" in holds:
            sku = self.sku_by_code[self.spec.high_value_sku]
            picks = [(sku, int(Decimal("300") / self.prices[sku.code]) + 1)]
        else:
            count = rng.choices((1, 2, 3), (60, 28, 12))[0]
            skus: list[Sku] = []
            while len(skus) < count:
                sku = rng.choices(self.sellable, self.sell_weights)[0]
                if sku not in skus:
                    skus.append(sku)
            picks = [(sku, rng.choices((1, 2, 3), (80, 15, 5))[0]) for sku in skus]
        lines = []
        for index, (sku, quantity) in enumerate(picks, start=1):
            unit_price = self.prices[sku.code]
            line_ids = self._line_ids(shop, number, index, quantity)
            lines.append(
                OrderLine(
                    tenant=self.tenant,
                    platform_line_id=line_ids[0],
                    platform_line_ids=line_ids,
                    sku=sku,
                    seller_sku=sku.code,
                    product_name=sku.name,
                    quantity=quantity,
                    unit_price=unit_price,
                    total=unit_price * quantity,
                )
            )
        return lines

    def _line_ids(self, shop: Shop, number: int, index: int, quantity: int) -> list[str]:
        if shop.platform == Platform.TIKTOK:
            # TikTok sends one line item per unit; the line keeps all of their ids.
            base = 577_000_000_000_000_000 + number * 1_000 + index * 10
            return [str(base + unit) for unit in range(quantity)]
        if shop.platform == Platform.MANUAL:
            return [f"{number}-{index}"]
        return [str(14_000_000_000_000 + number * 100 + index)]

    def _platform_order_id(self, shop: Shop, number: int) -> str:
        rng = self.rng
        while True:
            if shop.platform == Platform.TIKTOK:
                candidate = f"5766{rng.randrange(10**13, 10**14)}"
            elif shop.platform == Platform.SHOPIFY:
                candidate = f"{5_900_000_000_000 + number * 137}"
            elif shop.platform == Platform.AMAZON:
                candidate = (
                    f"{rng.randint(111, 114)}-{rng.randrange(10**7):07d}-{rng.randrange(10**7):07d}"
                )
            elif shop.platform == Platform.EBAY:
                candidate = f"{rng.randint(10, 27)}-{rng.randint(10000, 99999)}-{number:05d}"
            else:
                candidate = f"{self.spec.code}-CSV-{number:05d}"
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    @staticmethod
    def _platform_status(shop: Shop, status: str) -> str:
        mapping = PLATFORM_STATUS[shop.platform]
        if status in mapping:
            return mapping[status]
        if status == OrderStatus.CANCELLED:
            return mapping.get("cancelled", "")
        if status in (OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED):
            return mapping.get("done", "")
        return mapping.get("open", "")

    # -- fulfilment --

    def _shipments(self, planned: list[_PlannedOrder]) -> None:
        rng = self.rng
        fulfilled = (
            OrderStatus.ALLOCATED,
            OrderStatus.SHIPPED,
            OrderStatus.IN_TRANSIT,
            OrderStatus.DELIVERED,
        )
        serial = rng.randrange(10**12, 9 * 10**12)
        for number, plan in enumerate(planned, start=1):
            if plan.status not in fulfilled:
                continue
            order = plan.order
            codes = {line.sku.code for line in plan.lines}
            via_3pl = codes <= self.three_pl_codes and rng.random() < 0.35
            plan.warehouse = self.three_pl if via_3pl else self.own
            weight = 60 + sum(line.sku.weight_grams * line.quantity for line in plan.lines)
            rule = next(
                rule
                for rule in CARRIER_RULES
                if rule.matches(total=order.total, weight=weight, state=order.state, tags=plan.tags)
            )
            service = self.services[rule.service]
            allocated_at = plan.created_at + timedelta(minutes=rng.randint(10, 90))
            status, shipped_at, delivered_at = self._parcel_state(plan, allocated_at)
            tracking = ""
            if status != ShipmentStatus.PENDING and status != ShipmentStatus.SENT_TO_PROVIDER:
                serial += rng.randint(1, 40)
                tracking = make_tracking_number(
                    carrier=service.carrier.code,
                    service=service.code,
                    account=self.spec.ups_account,
                    serial=serial,
                )
            plan.shipment = Shipment(
                tenant=self.tenant,
                order=order,
                reference=f"{self.spec.code}-P{number:05d}",
                warehouse=plan.warehouse,
                service=service,
                provider=self.provider if via_3pl else None,
                status=status,
                tracking_number=tracking,
                weight_grams=weight,
                shipping_cost=money(Decimal("4.10") + Decimal(weight) * Decimal("0.0042")),
                shipped_at=shipped_at,
                delivered_at=delivered_at,
            )
            plan.allocated_at = allocated_at
            order.shipped_at, order.delivered_at = shipped_at, delivered_at
            if shipped_at:
                order.platform_updated_at = delivered_at or shipped_at
        Shipment.objects.bulk_create(
            [plan.shipment for plan in planned if plan.shipment is not None]
        )
        self._backdate(
            Shipment, [(plan.shipment, plan.allocated_at) for plan in planned if plan.shipment]
        )
        ShipmentLine.objects.bulk_create(
            ShipmentLine(
                tenant=self.tenant,
                shipment=plan.shipment,
                order_line=line,
                quantity=line.quantity,
            )
            for plan in planned
            if plan.shipment
            for line in plan.lines
        )
        Order.objects.bulk_update(
            [plan.order for plan in planned if plan.shipment],
            ["shipped_at", "delivered_at", "platform_updated_at"],
            batch_size=500,
        )

    def _parcel_state(self, plan: _PlannedOrder, allocated_at: datetime):
        rng = self.rng
        via_3pl = plan.warehouse == self.three_pl
        if plan.status == OrderStatus.ALLOCATED:
            if via_3pl:
                status = rng.choice((ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED))
            else:
                status = rng.choice((ShipmentStatus.PENDING, ShipmentStatus.LABELLED))
            return status, None, None
        shipped_at = min(
            allocated_at + timedelta(minutes=rng.randint(120, 1200)),
            self.now - timedelta(minutes=30),
        )
        if plan.status == OrderStatus.SHIPPED:
            return ShipmentStatus.SHIPPED, shipped_at, None
        if plan.status == OrderStatus.IN_TRANSIT:
            return ShipmentStatus.IN_TRANSIT, shipped_at, None
        delivered_at = min(
            shipped_at + timedelta(hours=rng.randint(40, 110)), self.now - timedelta(hours=1)
        )
        return ShipmentStatus.DELIVERED, shipped_at, delivered_at

    def _stock(self, planned: list[_PlannedOrder]) -> None:
        """Stock levels, and a ledger of movements that sums exactly to them."""
        rng = self.rng
        reserved: Counter = Counter()
        shipped: Counter = Counter()
        movements = []
        for plan in planned:
            if plan.shipment is None:
                continue
            for line in plan.lines:
                key = (line.sku.code, plan.warehouse.code)
                reserved[key] += line.quantity
                movements.append(
                    self._movement(
                        line.sku, plan.warehouse, MovementKind.RESERVE, plan.allocated_at,
                        reserved=line.quantity, order=plan.order,
                    )
                )  # fmt: skip
                if plan.shipment.shipped_at is None:
                    continue
                reserved[key] -= line.quantity
                shipped[key] += line.quantity
                movements.append(
                    self._movement(
                        line.sku, plan.warehouse, MovementKind.SHIP, plan.shipment.shipped_at,
                        on_hand=-line.quantity, reserved=-line.quantity, order=plan.order,
                        reference=plan.shipment.reference,
                    )
                )  # fmt: skip

        levels = []
        receipts = []
        received_at = self.now - timedelta(days=35)
        for index, sku in enumerate(self.skus):
            for warehouse in (self.own, self.three_pl):
                if warehouse == self.three_pl and sku.code not in self.three_pl_codes:
                    continue
                key = (sku.code, warehouse.code)
                if sku.code == self.spec.short_sku:
                    free = 1  # orders for it need more: they wait on stock.short
                elif index in (5, 11) and warehouse == self.own:
                    free = rng.randint(3, 9)  # running low: under the reorder point
                else:
                    free = rng.randint(30, 260)
                on_hand = reserved[key] + free
                levels.append(
                    StockLevel(
                        tenant=self.tenant,
                        sku=sku,
                        warehouse=warehouse,
                        on_hand=on_hand,
                        reserved=reserved[key],
                        bin_location=(
                            f"{'ABC'[index % 3]}-{index // 3 + 1:02d}-{index % 4 + 1}"
                            if warehouse == self.own
                            else ""
                        ),
                        reorder_point=12 if warehouse == self.own else 0,
                    )
                )
                receipts.append(
                    self._movement(
                        sku, warehouse, MovementKind.RECEIVE,
                        received_at + timedelta(minutes=index),
                        on_hand=on_hand + shipped[key],
                        reference=f"PO-{self.spec.code}-{1040 + index}"
                        if warehouse == self.own
                        else f"ASN-{self.provider.code}-{2200 + index}",
                    )
                )  # fmt: skip
        StockLevel.objects.bulk_create(levels)
        movements = receipts + movements
        StockMovement.objects.bulk_create([movement for movement, _ in movements])
        self._backdate(StockMovement, movements)

    def _movement(
        self, sku, warehouse, kind, at, *, on_hand=0, reserved=0, order=None, reference=""
    ):
        movement = StockMovement(
            tenant=self.tenant,
            sku=sku,
            warehouse=warehouse,
            kind=kind,
            on_hand_delta=on_hand,
            reserved_delta=reserved,
            order=order,
            reference=reference,
            created_by=self.owner if kind == MovementKind.RECEIVE else None,
        )
        return movement, at

    # -- audit trail --

    def _events(self, planned: list[_PlannedOrder]) -> None:
        events = []
        channel = {shop.pk: shop.get_platform_display() for shop in self.shops}

        def event(plan, kind, at, message, source=EventSource.SYSTEM, user=None, **data):
            events.append(
                (
                    OrderEvent(
                        tenant=self.tenant,
                        order=plan.order,
                        kind=kind,
                        message=message,
                        source=source,
                        user=user,
                        data=data,
                    ),
                    at,
                )
            )

        for plan in planned:
            order = plan.order
            at = plan.created_at
            # Kinds as the real doors write them: ingest ("ingested", "cancel_requested"),
            # CSV import ("order.imported"), holds ("hold.added", "hold.released").
            if order.shop.platform == Platform.MANUAL:
                event(plan, "order.imported", at, "Imported from CSV", EventSource.USER,
                      self.owner)  # fmt: skip
            else:
                event(plan, "ingested", at, f"Received from {channel[order.shop_id]}",
                      EventSource.PLATFORM)  # fmt: skip
            if plan.status == OrderStatus.NEW:
                continue
            reviewed = at + timedelta(minutes=1)
            for code, released_at in plan.holds:
                by = self.owner if code == "manual" else None
                source = EventSource.USER if by else EventSource.SYSTEM
                event(plan, "hold.added", reviewed, HOLD_MESSAGES[code], source, by,
                      code=code)  # fmt: skip
                if released_at:
                    event(plan, "hold.released", released_at, f"Released {code}",
                          EventSource.USER, self.owner, code=code)  # fmt: skip
            if not plan.holds:
                event(plan, "review.passed", reviewed, "Passed review")
            if plan.cancel_requested_at:
                event(plan, "cancel_requested", plan.cancel_requested_at,
                      "The buyer asked to cancel", EventSource.PLATFORM,
                      answer_by=order.cancel_answer_by.isoformat())  # fmt: skip
            if plan.status == OrderStatus.CANCELLED:
                event(plan, "order.cancelled", order.cancelled_at, "Cancelled by the buyer",
                      EventSource.PLATFORM)  # fmt: skip
            shipment = plan.shipment
            if shipment is None:
                continue
            event(plan, "order.allocated", plan.allocated_at,
                  f"Reserved in {plan.warehouse.code}, {shipment.service}",
                  shipment=shipment.reference)  # fmt: skip
            if shipment.provider_id:
                event(plan, "shipment.sent_to_provider", plan.allocated_at + timedelta(minutes=1),
                      f"Sent to {self.provider.name}")  # fmt: skip
            elif shipment.tracking_number:
                event(plan, "shipment.label_printed", plan.allocated_at + timedelta(minutes=20),
                      f"Label {shipment.tracking_number}", EventSource.USER,
                      self.rng.choice(self.staff))  # fmt: skip
            if shipment.shipped_at:
                source = EventSource.PROVIDER if shipment.provider_id else EventSource.USER
                event(plan, "order.shipped", shipment.shipped_at,
                      f"Shipped with {shipment.service}: {shipment.tracking_number}", source,
                      tracking_number=shipment.tracking_number)  # fmt: skip
                if order.shop.platform != Platform.MANUAL:
                    event(plan, "tracking.pushed", shipment.shipped_at + timedelta(minutes=2),
                          f"Tracking uploaded to {channel[order.shop_id]}")  # fmt: skip
            if shipment.delivered_at:
                event(plan, "order.delivered", shipment.delivered_at, "Delivered",
                      EventSource.PLATFORM)  # fmt: skip
        OrderEvent.objects.bulk_create([row for row, _ in events], batch_size=1000)
        self._backdate(OrderEvent, events)

    def _backdate(self, model, rows: list[tuple[models.Model, datetime]]) -> None:
        """Give rows their historical `created_at`: `auto_now_add` stamped them with now."""
        for row, at in rows:
            row.created_at = at
        model.objects.bulk_update([row for row, _ in rows], ["created_at"], batch_size=500)


def _spread(mix, total: int) -> list[str]:
    """`total` statuses in the proportions of `mix`; rounding leftovers go to the largest."""
    weight = sum(share for _, share in mix)
    counts = {status: total * share // weight for status, share in mix}
    largest = max(mix, key=lambda item: item[1])[0]
    counts[largest] += total - sum(counts.values())
    return [status for status, count in counts.items() for _ in range(count)]


__all__ = [
    "DEMO_LOGINS",
    "DEMO_PASSWORD",
    "DEMO_TENANTS",
    "DemoSeedResult",
    "demo_counts",
    "demo_reset",
    "demo_seed",
]
