"""The demo data set: two sellers, their logins, and a few hundred orders in every state.

`demo_seed()` builds it and `python manage.py seed_demo` is its thin caller. The data is
deterministic (a fixed random seed per tenant; times are relative to the moment of seeding, so
the dashboard always has orders due soon and overdue) and idempotent: a demo tenant that
already exists is left as it is, so seeding twice changes nothing. `demo_reset()` wipes the
demo tenants, their sandbox stores and the logins so the next seed starts afresh.

Orders arrive the way production's do. Each platform shop's orders are created in its
platform's sandbox store (buyers, lines, statuses, buyer cancellation requests, shipments with
their tracking numbers, all at the times the plan wants), then the shop's first sync imports
them through the connector: ingest, reservation and review put them on hold or make them ready
by themselves, and answering a demo cancellation request or shipping a demo order talks to a
platform that knows the order. The CSV shop's orders are stored as the import stores them and
go through the same pipeline. What has no door yet (allocating parcels to carriers, the shipped
history's parcels and stock) is written on top, consistent with what the platforms hold: every
stock level equals the sum of its movements, `reserved` is exactly what open reservations hold,
shipped parcels carry tracking numbers with valid check digits for their carrier, and order
money adds up the way every platform reports it (subtotal net of line discounts).
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.files.base import ContentFile
from django.db import connection, models, transaction
from django.db.models.deletion import ProtectedError
from django.utils import timezone
from django.utils.text import get_valid_filename

from inventory.models import (
    Listing,
    MovementKind,
    Reservation,
    ReservationState,
    ShopWarehouse,
    Sku,
    StockLevel,
    StockMovement,
    Supplier,
    SupplierItem,
    Warehouse,
    WarehouseKind,
)
from logistics.labels.manual import ManualLabelSource
from logistics.models import (
    Carrier,
    CarrierRule,
    CarrierService,
    LabelAccount,
    Provider,
    ProviderKind,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)
from logistics.routing import orders_split_ready
from logistics.rules import Parcel, rules_compile, rules_pick
from logistics.tracking_numbers import gs1_check_digit, make_tracking_number
from orders.address import is_po_box
from orders.holds import HOLDABLE_STATUSES, HoldReason, order_hold, order_release
from orders.models import (
    EventSource,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
    OrderTag,
    Tag,
    TenantOrderPolicy,
)
from orders.pipeline import orders_after_ingest
from orders.sla import sla_deadlines
from sandbox.actions import sandbox_credit_creator, sandbox_store_drafts
from sandbox.base import DraftAddress, DraftLine, OrderDraft, sandbox_for
from sandbox.connect import sandbox_connect
from sandbox.labelapi import sandbox_label_account_connect
from sandbox.models import SandboxLabelAccount, SandboxProduct, SandboxStore
from shops.models import Membership, Platform, Role, Shop, ShopCredentials, SyncRunStatus, Tenant
from shops.sync import shop_sync
from tkerp.tenancy import TenantOwnedModel, all_tenants, tenant_context

DEMO_PASSWORD = "demo-pass-123"
#: The demo's label service: its pace (the sandbox's and the account's), and how long a
#: purchase takes (the carrier's label call), so a batch's progress can be watched.
DEMO_LABEL_API_RATE = 20.0
DEMO_LABEL_LATENCY_MS = 200
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
    # Sunny lets tkerp approve buyers' cancellation requests by itself; Peak answers by hand,
    # so its inbox keeps requests waiting in a running demo.
    cancel_auto_approve: bool


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
    cancel_auto_approve=True,
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
    cancel_auto_approve=False,
)  # fmt: skip

DEMO_TENANTS: tuple[TenantSpec, ...] = (SUNNY, PEAK)

# Carriers, their services and the rules that pick one. The rules read top to bottom (lowest
# priority first, first match wins); `_service_for` asks the real rule engine (logistics.rules)
# which service the demo's parcels went out with.
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
# TikTok Shop's shipping-provider ids for these carriers (the TikTok sandbox accepts the same).
TIKTOK_PROVIDER_IDS = {
    "usps": "7117858858072016686",
    "ups": "7117859084333745966",
    "fedex": "7129736201337620226",
}


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
    max_total: Decimal | None = None


# The issue's own example (ranges include both ends): California first, then heavy parcels, then
# the price bands, and a catch-all so no demo parcel waits on carrier.no_rule. A PO box in
# California skips UPS Ground (no PO boxes) and falls through to a USPS rule.
CARRIER_RULES = (
    RuleSpec(10, "California: UPS Ground", ("ups", "ground"), states="CA"),
    RuleSpec(20, "Over 2 kg: FedEx Home Delivery", ("fedex", "home_delivery"),
             min_weight_grams=2001),
    RuleSpec(30, "Under $10: USPS Ground Advantage", ("usps", "ground_advantage"),
             max_total=Decimal("9.99")),
    RuleSpec(40, "Over $30: USPS Priority Mail", ("usps", "priority"),
             min_total=Decimal("30.01")),
    RuleSpec(100, "Everything else: USPS Ground Advantage", ("usps", "ground_advantage")),
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
# Why held orders wait, in rotation (some orders carry two reasons). The plan only makes the
# order so (a PO box, a note, a short SKU...): review and reservation find the reasons
# themselves, except "manual", which the owner sets by hand.
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
MANUAL_HOLD_MESSAGE = "Held by hand: confirm the shade with the buyer before packing."
BUYER_NOTES = (
    "Please gift wrap, it's a birthday present!",
    "Can you ship before Friday? Leaving for a trip.",
    "Leave at the back door please, the dog barks.",
    "Ordered the wrong one, can I swap for the other colour?",
    "Please don't put the price in the box, it's a gift.",
)

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

    Logins are (re)set every time, so the documented password always works. Each tenant is
    built in one transaction: a failure (`DemoSeedError`) leaves nothing of it behind.
    """
    if reset:
        demo_reset()
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    missing = [
        spec.slug for spec in DEMO_TENANTS if not Tenant.objects.filter(slug=spec.slug).exists()
    ]
    if missing and not settings.TKERP_SANDBOX_ENABLED:
        raise DemoSeedError(
            "the demo's platform orders live in the platform sandboxes, which are off: set "
            "TKERP_SANDBOX_ENABLED=1 (DEBUG turns it on) and seed again"
        )
    users = _ensure_logins()
    results = []
    for spec in DEMO_TENANTS:
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=spec.slug).first()
            created = tenant is None
            if created:
                _sandbox_stores(spec).delete()  # left by a demo tenant deleted some other way
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
    """Point every platform shop of the tenant at its local sandbox, and its label account at
    the label sandbox, answering each purchase in the time a carrier takes (idempotent)."""
    with tenant_context(tenant):
        for shop in Shop.objects.exclude(platform=Platform.MANUAL).order_by("pk"):
            sandbox_connect(shop=shop)
        for account in LabelAccount.objects.order_by("pk"):
            sandbox_label_account_connect(
                account=account,
                rate_per_second=DEMO_LABEL_API_RATE,
                purchase_latency_ms=DEMO_LABEL_LATENCY_MS,
            )


def demo_reset() -> None:
    """Delete the demo tenants (and everything they own), their shops' sandbox stores and the
    demo logins."""
    tenants = list(Tenant.objects.filter(slug__in=[spec.slug for spec in DEMO_TENANTS]))
    with transaction.atomic(), all_tenants():
        for spec in DEMO_TENANTS:
            _sandbox_stores(spec).delete()
        accounts = LabelAccount.objects.filter(tenant__in=tenants)
        SandboxLabelAccount.objects.filter(
            api_key__in=[account.api_key for account in accounts if account.api_key]
        ).delete()

        for tenant in tenants:
            _delete_tenant_rows(tenant)
            tenant.delete()
        get_user_model().objects.filter(
            username__in=[login.username for login in DEMO_LOGINS]
        ).delete()


def _sandbox_stores(spec: TenantSpec):
    """The sandbox stores of the demo tenant's platform shops (keyed by their shop ids)."""
    from django.db.models import Q

    keys = Q(pk__in=[])
    for _, platform, shop_key, _ in spec.shops:
        if platform != Platform.MANUAL:
            keys |= Q(platform=platform, shop_key=shop_key)
    return SandboxStore.objects.filter(keys)


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
    # Deleting audited rows wrote their last audit events (tkerp.audit): the trail goes last.
    from tkerp.models import AuditEvent

    for model in _tenant_owned_models():
        if issubclass(model, AuditEvent):
            model._base_manager.filter(tenant=tenant).delete()


def _tenant_owned_models() -> list[type[TenantOwnedModel]]:
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.proxy
    ]


# --- building one tenant --------------------------------------------------------------------

SHIPPED_STATUSES = (OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED)
# Orders that reserve stock on arrival: paid and still open (see inventory.reservations).
RESERVING_STATUSES = (OrderStatus.ON_HOLD, OrderStatus.READY, OrderStatus.ALLOCATED)
# The demo shops started syncing this long ago: the first pass imports the whole history.
HISTORY = timedelta(days=40)
# Amazon's real usage plan enriches half an order a second; the history import runs on a raised
# plan (as a seller's can be) and the shop goes back to Amazon's figures afterwards.
IMPORT_RATE_SCALE = 1000


class DemoSeedError(Exception):
    """The demo could not be built; says why. Nothing of the tenant is left half-written."""


@dataclass
class _PlannedLine:
    sku: Sku
    quantity: int
    unit_price: Decimal
    discount: Decimal = ZERO  # the seller's promotion, for the whole line
    tax: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity - self.discount


@dataclass
class _PlannedOrder:
    """One order of the plan: what the buyer bought and what became of it, before anything is
    written. A platform shop's order becomes an `OrderDraft` in its sandbox store; a CSV order
    becomes rows here. `status` is where the plan steers it; review has the last word."""

    number: int
    shop: Shop
    status: str
    platform_order_id: str
    placed_at: datetime
    paid_at: datetime | None
    created_at: datetime
    buyer_name: str
    buyer_email: str
    buyer_user_id: str
    address: DraftAddress
    typed_address: DraftAddress  # as the buyer typed it (lower-case street, state name)
    lines: list[_PlannedLine]
    shipping_fee: Decimal
    platform_discount: Decimal
    note: str
    presale: bool
    tags: set[str]
    holds: tuple[str, ...] = ()  # why the plan wants it held (review finds most by itself)
    note_released_at: datetime | None = None  # the owner read the buyer's note and let it go
    cancel_requested_at: datetime | None = None
    cancelled_at: datetime | None = None
    # Shipped history: the parcel that left, and when things happened to it.
    warehouse: Warehouse | None = None
    service: CarrierService | None = None
    parcel_status: str = ""
    tracking_number: str = ""
    allocated_at: datetime | None = None
    shipped_at: datetime | None = None
    in_transit_at: datetime | None = None
    delivered_at: datetime | None = None
    order: Order | None = None

    @property
    def subtotal(self) -> Decimal:
        return sum((line.total for line in self.lines), ZERO)

    @property
    def tax(self) -> Decimal:
        return sum((line.tax for line in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        return self.subtotal - self.platform_discount + self.shipping_fee + self.tax

    @property
    def weight(self) -> int:
        return 60 + sum(line.sku.weight_grams * line.quantity for line in self.lines)

    @property
    def shipped(self) -> bool:
        return self.status in SHIPPED_STATUSES

    @property
    def reserves(self) -> bool:
        """Takes stock on arrival: paid, open, and not waiting for the out-of-stock SKU."""
        return (
            self.paid_at is not None
            and self.status in RESERVING_STATUSES
            and "stock.short" not in self.holds
        )


class _TenantBuilder:
    """Builds one demo tenant. Runs inside `tenant_context(tenant)` and a transaction.

    Master data (shops, catalogue, warehouses, carriers, listings, opening stock) is written
    directly. Orders are planned first (deterministic: one seeded random generator per tenant),
    then arrive as they would in production: platform orders are created in their shop's
    sandbox store and imported by the real sync (`shops.sync.shop_sync`), whose ingest,
    reservation and review decide which are ready and which wait on hold; CSV orders are stored
    as the import stores them and go through the same pipeline. What people and doors not
    built yet did afterwards (reading notes, holding by hand, allocating parcels, the shipped
    history) is applied on top, and the rows are dated as it would have happened.
    """

    def __init__(self, *, spec: TenantSpec, tenant: Tenant, users: dict, now: datetime):
        self.spec = spec
        self.tenant = tenant
        self.now = now
        self.started = timezone.now()  # rows written from here on are dated back at the end
        self.owner = next(
            users[login.username]
            for login in DEMO_LOGINS
            if login.roles.get(spec.slug) == Role.OWNER
        )
        self.staff = [users[login.username] for login in DEMO_LOGINS if spec.slug in login.roles]
        # A string seed is hashed deterministically (unlike hash()), so runs repeat exactly.
        self.rng = random.Random(f"tkerp-demo-{spec.slug}")
        self.used_ids: set[str] = set()
        self.events: list[tuple[OrderEvent, datetime]] = []
        self.products: dict[tuple[int, str], SandboxProduct] = {}  # (shop, SKU code)

    def build(self, *, orders: int) -> None:
        self._shops()
        self._catalogue()
        self._warehouses()
        self._suppliers()
        self._carriers()
        self._label_account()
        self._listings()
        plans = self._plan(orders)
        self._stock(plans)
        self._csv_orders(plans)
        self._platform_orders(plans)
        self._fetch_orders(plans)
        self._people(plans)
        self._allocate(plans)
        self._shipped_history(plans)
        self._label_files(plans)
        self._tag_orders(plans)
        self._date_rows(plans)
        self._live_sessions(plans)

    # -- master data --

    def _shops(self) -> None:
        TenantOrderPolicy.objects.create(
            tenant=self.tenant, cancel_auto_approve=self.spec.cancel_auto_approve
        )
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
        # The marketplace shop (Amazon or eBay) is fulfilled by the 3PL first, the seller's own
        # warehouse second: its orders reserve there, and split when the 3PL lacks a SKU.
        self.three_pl_first = {
            shop.pk for shop in self.shops if shop.platform in (Platform.AMAZON, Platform.EBAY)
        }
        ShopWarehouse.objects.bulk_create(
            ShopWarehouse(tenant=self.tenant, shop_id=shop_id, warehouse=warehouse, priority=rank)
            for shop_id in sorted(self.three_pl_first)
            for rank, warehouse in ((10, self.three_pl), (20, self.own))
        )

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
                # TikTok's shipping-provider ids for US carriers (the sandbox knows the same).
                platform_provider_ids={"tiktok": TIKTOK_PROVIDER_IDS[code]},
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
        rules = CarrierRule.objects.bulk_create(
            CarrierRule(
                tenant=self.tenant,
                name=rule.name,
                priority=rule.priority,
                tag=rule.tag,
                states=rule.states,
                min_weight_grams=rule.min_weight_grams,
                max_weight_grams=rule.max_weight_grams,
                min_total=rule.min_total,
                max_total=rule.max_total,
                service=self.services[rule.service],
            )
            for rule in CARRIER_RULES
        )
        self.rules = rules_compile(rules)
        self.service_by_pk = {service.pk: service for service in services}

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

    def _orders(self, count: int) -> list[_PlannedOrder]:
        rng = self.rng
        statuses = _spread(STATUS_MIX, count)
        rng.shuffle(statuses)

    # -- the plan --

    def _plan(self, count: int) -> list[_PlannedOrder]:
        rng = self.rng
        statuses = _spread(STATUS_MIX, count)
        rng.shuffle(statuses)
        shop_weights = [
            {Platform.TIKTOK: 50, Platform.SHOPIFY: 20, Platform.MANUAL: 8}.get(s.platform, 22)
            for s in self.shops
        ]
        with_notes = [shop for shop in self.shops if shop.platform != Platform.AMAZON]
        plans = []
        hold_turn = 0
        last_ready = None
        ready_seen: Counter = Counter()
        for number, status in enumerate(statuses, start=1):
            shop = rng.choices(self.shops, shop_weights)[0]
            holds: tuple[str, ...] = ()
            if status == OrderStatus.ON_HOLD:
                holds = HOLD_MIX[hold_turn % len(HOLD_MIX)]
                hold_turn += 1
                if "buyer_note" in holds and shop.platform == Platform.AMAZON:
                    shop = rng.choice(with_notes)  # Amazon orders carry no buyer notes
            # Every shop's 2nd, 6th, 10th... ready order carries a buyer's cancellation request
            # waiting for an answer. Amazon reports such requests with no time, so they never
            # reach the inbox: none there.
            cancel_request = False
            if status == OrderStatus.READY:
                ready_seen[shop.pk] += 1
                cancel_request = ready_seen[shop.pk] % 4 == 2 and shop.platform != Platform.AMAZON
            plan = self._plan_order(number, shop, status, holds, last_ready, cancel_request)
            if status == OrderStatus.READY and plan.paid_at and not plan.cancel_requested_at:
                last_ready = plan
            plans.append(plan)
        self._plan_fulfilment(plans)
        return plans

    def _plan_order(
        self, number, shop, status, holds, duplicate_of, cancel_request
    ) -> _PlannedOrder:
        rng = self.rng
        now = self.now
        platform = shop.platform
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
        if "duplicate_address" in holds and duplicate_of is not None:
            # Placed soon after the order it duplicates: review compares within a window.
            paid_at = min(
                duplicate_of.paid_at + timedelta(minutes=rng.randint(10, 120)),
                now - timedelta(minutes=10),
            )
        placed_at = paid_at - timedelta(minutes=rng.randint(0, 12))
        if platform == Platform.AMAZON:
            placed_at = paid_at  # Amazon charges at purchase
        created_at = paid_at + timedelta(minutes=rng.randint(1, 3))
        tags: set[str] = set()
        is_presale = (
            status in (OrderStatus.NEW, OrderStatus.READY)
            and platform in (Platform.TIKTOK, Platform.AMAZON, Platform.MANUAL)
            and rng.random() < 0.08
        )
        if is_presale:
            tags.add("presale")
        if platform == Platform.TIKTOK and rng.random() < 0.4:
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
        note = ""
        if "address.po_box" in holds:
            line1 = line1_raw = f"PO Box {rng.randint(100, 9999)}"
            line2 = ""
        if "address.military" in holds:
            line1 = line1_raw = f"Unit {rng.randint(2000, 9000)} Box {rng.randint(100, 999)}"
            city, state, postal, line2 = "APO", "AE", f"09{rng.randint(100, 999)}", ""
        if "phone.invalid" in holds:
            phone = f"555-{rng.randint(100, 199):04d}"
        if "buyer_note" in holds or (status != OrderStatus.ON_HOLD and rng.random() < 0.04):
            note = rng.choice(BUYER_NOTES)
        if platform == Platform.AMAZON:
            note = ""
        if "duplicate_address" in holds and duplicate_of is not None:
            address = duplicate_of.address
            line1 = line1_raw = address.line1
            line2, city, state, postal = (
                address.line2,
                address.city,
                address.state,
                address.postal_code,
            )

        lines = self._plan_lines(holds)
        # eBay reports a discount against a subtotal before it, the others after: keep eBay
        # orders without promotions so every platform's subtotal is its lines' net total.
        if platform != Platform.EBAY and rng.random() < 0.15:
            for line in lines:
                line.discount = money(line.unit_price * line.quantity * Decimal("0.10"))
        rate = Decimal(SALES_TAX.get(state, DEFAULT_SALES_TAX))
        for line in lines:
            line.tax = money(line.total * rate)
        subtotal = sum((line.total for line in lines), ZERO)
        platform_discount = (
            money(rng.choice(("2.00", "3.00", "5.00")))
            if platform == Platform.TIKTOK and rng.random() < 0.3
            else ZERO
        )
        cancel_requested_at = None
        if cancel_request:
            cancel_requested_at = min(
                created_at + timedelta(minutes=rng.randint(10, 120)), now - timedelta(minutes=5)
            )
        unpaid = status == OrderStatus.NEW and platform != Platform.MANUAL
        plan = _PlannedOrder(
            number=number,
            shop=shop,
            status=status,
            platform_order_id=self._platform_order_id(shop, number),
            placed_at=placed_at,
            # New platform orders are the ones not paid yet: a paid one is reviewed on arrival.
            paid_at=None if unpaid else paid_at,
            created_at=(placed_at if unpaid else paid_at) + (created_at - paid_at),
            buyer_name=buyer,
            buyer_email=f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
            buyer_user_id=(
                f"{rng.randrange(10**17, 10**18)}" if platform == Platform.TIKTOK else ""
            ),
            address=DraftAddress(recipient, phone, line1, line2, city, state, postal),
            typed_address=DraftAddress(
                recipient, phone, line1_raw, line2, city, STATE_NAMES.get(state, state), postal
            ),
            lines=lines,
            shipping_fee=ZERO if subtotal >= FREE_SHIPPING_FROM else STANDARD_SHIPPING_FEE,
            platform_discount=platform_discount,
            note=note,
            presale=is_presale,
            tags=tags,
            holds=holds,
            cancel_requested_at=cancel_requested_at,
        )
        if status in (OrderStatus.READY, OrderStatus.ALLOCATED) and note:
            # Held for the note when it came in, released by the owner after reading it.
            plan.note_released_at = min(
                plan.created_at + timedelta(minutes=rng.randint(5, 50)),
                now - timedelta(minutes=2),
            )
        if status == OrderStatus.CANCELLED:
            plan.cancelled_at = paid_at + timedelta(minutes=rng.randint(20, 600))
        return plan

    def _plan_lines(self, holds: tuple[str, ...]) -> list[_PlannedLine]:
        rng = self.rng
        if "stock.short" in holds:
            picks = [(self.sku_by_code[self.spec.short_sku], 3)]
        elif "high_value" in holds:
            sku = self.sku_by_code[self.spec.high_value_sku]
            # Over review's default high-value threshold ($500).
            picks = [(sku, int(Decimal("520") / self.prices[sku.code]) + 1)]
        else:
            count = rng.choices((1, 2, 3), (60, 28, 12))[0]
            skus: list[Sku] = []
            while len(skus) < count:
                sku = rng.choices(self.sellable, self.sell_weights)[0]
                if sku not in skus:
                    skus.append(sku)
            picks = [(sku, rng.choices((1, 2, 3), (80, 15, 5))[0]) for sku in skus]
            if sum(self.prices[sku.code] * quantity for sku, quantity in picks) >= 450:
                picks = [(sku, 1) for sku, _ in picks]  # only planned ones are high value
        return [_PlannedLine(sku, quantity, self.prices[sku.code]) for sku, quantity in picks]

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

    def _plan_fulfilment(self, plans: list[_PlannedOrder]) -> None:
        """Where shipped orders left from, with which service and tracking number, and when
        they were allocated, shipped, picked up and delivered."""
        rng = self.rng
        self.serial = rng.randrange(10**12, 9 * 10**12)
        for plan in plans:
            if not plan.shipped:
                continue
            codes = {line.sku.code for line in plan.lines}
            via_3pl = codes <= self.three_pl_codes and rng.random() < 0.35
            plan.warehouse = self.three_pl if via_3pl else self.own
            plan.service = self._service_for(
                plan.total,
                plan.weight,
                plan.address.state,
                plan.tags,
                street=f"{plan.address.line1} {plan.address.line2}",
            )
            plan.tracking_number = self._tracking_number(plan.service)
            plan.allocated_at = plan.created_at + timedelta(minutes=rng.randint(10, 90))
            plan.shipped_at = min(
                plan.allocated_at + timedelta(minutes=rng.randint(120, 1200)),
                self.now - timedelta(minutes=30),
            )
            if plan.status == OrderStatus.SHIPPED:
                plan.parcel_status = ShipmentStatus.SHIPPED
                continue
            if plan.status == OrderStatus.DELIVERED:
                plan.delivered_at = min(
                    plan.shipped_at + timedelta(hours=rng.randint(40, 110)),
                    self.now - timedelta(hours=1),
                )
            # The carrier's first scan, part way to delivery (or to now).
            plan.in_transit_at = (
                plan.shipped_at + ((plan.delivered_at or self.now) - plan.shipped_at) / 4
            )
            plan.in_transit_at = plan.in_transit_at.replace(second=0, microsecond=0)
            plan.parcel_status = (
                ShipmentStatus.DELIVERED if plan.delivered_at else ShipmentStatus.IN_TRANSIT
            )

    def _label_account(self) -> None:
        """The seller's label-service account (EasyPost-shaped), covering the demo's carriers:
        "Print everything ready" buys its labels there. Connected to the label sandbox with the
        tenant's platform shops (`_connect_sandboxes`)."""
        LabelAccount.objects.create(
            tenant=self.tenant,
            name="EasyPost (sandbox)",
            carriers=",".join(code for code, *_ in CARRIERS),
            requests_per_second=DEMO_LABEL_API_RATE,
        )

    def _label_files(self, plans: list[_PlannedOrder]) -> None:
        """Every parcel the demo has as labelled or gone from the seller's own warehouse has its
        label file, drawn for its tracking number as the manual source draws one (the history
        was not bought here, and the platform already knows those tracking numbers). Parcels a
        3PL shipped have none: the provider printed their labels."""
        allocated_at = {plan.order.pk: plan.allocated_at for plan in plans if plan.allocated_at}
        parcels = list(
            Shipment.objects.filter(provider__isnull=True)
            .exclude(tracking_number="")
            .select_related("order", "warehouse", "service__carrier")
            .order_by("pk")
        )
        source = ManualLabelSource()
        for shipment in parcels:
            label = source.buy(shipment=shipment)
            shipment.label_file.save(
                get_valid_filename(f"{shipment.reference}.pdf"),
                ContentFile(label.label_bytes),
                save=False,
            )
            shipment.label_format = label.label_format
            shipment.label_source = source.name
            allocated = allocated_at.get(shipment.order_id, self.now - timedelta(minutes=20))
            shipment.labelled_at = allocated + timedelta(minutes=20)
        Shipment.objects.bulk_update(
            parcels, ["label_file", "label_format", "label_source", "labelled_at"], batch_size=500
        )

    def _service_for(
        self, total: Decimal, weight: int, state: str, tags: set[str], *, street: str = ""
    ):
        """The service the tenant's carrier rules pick, by the real engine (`logistics.rules`).
        A PO box skips services that take none (UPS Ground), as it does for real parcels."""
        parcel = Parcel(
            weight_grams=weight,
            total=total,
            state=state,
            tags=frozenset(tags),
            po_box=is_po_box(street),
        )
        decision = rules_pick(rules=self.rules, parcel=parcel)
        if decision.rule is None:
            raise ValueError(f"no demo carrier rule fits {parcel}")
        return self.service_by_pk[decision.service_id]

    def _tracking_number(self, service: CarrierService, rng: random.Random | None = None) -> str:
        self.serial += (rng or self.rng).randint(1, 40)
        return make_tracking_number(
            carrier=service.carrier.code,
            service=service.code,
            account=self.spec.ups_account,
            serial=self.serial,
        )

    def _landing(self, shop: Shop, sku: Sku) -> Warehouse:
        """The warehouse that reserves `sku` for an order of `shop`, by the shop's priority list
        (`inventory.reservations.shop_warehouses`) when every warehouse has stock."""
        if shop.pk in self.three_pl_first and sku.code in self.three_pl_codes:
            return self.three_pl
        return self.own

    # -- stock --

    def _stock(self, plans: list[_PlannedOrder]) -> None:
        """Opening stock: one receipt per SKU and warehouse, sized for the shipped history, what
        open orders will reserve on arrival and the free stock the plan wants left, and the
        levels as they stood before the orders came in (the shipped units already gone)."""
        rng = self.rng
        shipped: Counter = Counter()
        reserving: Counter = Counter()
        for plan in plans:
            for line in plan.lines:
                if plan.shipped:
                    shipped[(line.sku.code, plan.warehouse.code)] += line.quantity
                elif plan.reserves:
                    reserving[(line.sku.code, self._landing(plan.shop, line.sku).code)] += (
                        line.quantity
                    )
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
                received = shipped[key] + reserving[key] + free
                levels.append(
                    StockLevel(
                        tenant=self.tenant,
                        sku=sku,
                        warehouse=warehouse,
                        on_hand=received - shipped[key],
                        reserved=0,
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
                        on_hand=received,
                        reference=f"PO-{self.spec.code}-{1040 + index}"
                        if warehouse == self.own
                        else f"ASN-{self.provider.code}-{2200 + index}",
                    )
                )  # fmt: skip
        self.levels = {
            (level.sku_id, level.warehouse_id): level
            for level in StockLevel.objects.bulk_create(levels)
        }
        StockMovement.objects.bulk_create([movement for movement, _ in receipts])
        self._backdate(StockMovement, receipts)

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

    # -- orders arriving --

    def _csv_orders(self, plans: list[_PlannedOrder]) -> None:
        """The CSV shop's orders, stored as the import stores them, then reserved and reviewed
        by the pipeline every door shares. New ones were imported minutes ago and wait for the
        next pass; shipped and cancelled ones are history."""
        csv = [plan for plan in plans if plan.shop.platform == Platform.MANUAL]
        if not csv:
            return
        shop = csv[0].shop
        for plan in csv:
            history = plan.shipped or plan.status == OrderStatus.CANCELLED
            address = plan.address if history else plan.typed_address
            deadlines = sla_deadlines(
                paid_at=plan.paid_at,
                placed_at=plan.placed_at,
                is_presale=plan.presale,
                ship_by_hours=shop.ship_by_hours,
                presale_ship_by_hours=shop.presale_ship_by_hours,
                tracking_upload_hours=shop.tracking_upload_hours,
            )
            plan.order = Order(
                tenant=self.tenant,
                shop=shop,
                platform_order_id=plan.platform_order_id,
                status=plan.status if history else OrderStatus.NEW,
                buyer_name=plan.buyer_name,
                buyer_email=plan.buyer_email,
                buyer_note=plan.note,
                recipient_name=address.name,
                recipient_phone=address.phone,
                address_line1=address.line1,
                address_line2=address.line2,
                city=address.city,
                state=address.state,
                postal_code=address.postal_code,
                country=address.country,
                subtotal=plan.subtotal,
                shipping_fee=plan.shipping_fee,
                seller_discount=sum((line.discount for line in plan.lines), ZERO),
                tax=plan.tax,
                total=plan.total,
                is_presale=plan.presale,
                placed_at=plan.placed_at,
                paid_at=plan.paid_at,
                ship_by=deadlines.ship_by,
                tracking_by=deadlines.tracking_by,
                cancelled_at=plan.cancelled_at,
                raw={"source": "csv import", "row": plan.number},
            )
        Order.objects.bulk_create([plan.order for plan in csv])
        OrderLine.objects.bulk_create(
            OrderLine(
                tenant=self.tenant,
                order=plan.order,
                platform_line_id=f"{plan.number}-{index}",
                platform_line_ids=[f"{plan.number}-{index}"],
                sku=line.sku,
                seller_sku=line.sku.code,
                product_name=line.sku.name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                discount=line.discount,
                tax=line.tax,
                total=line.total,
            )
            for plan in csv
            for index, line in enumerate(plan.lines, start=1)
        )
        for plan in csv:
            self._event(plan, "order.imported", plan.created_at, "Imported from CSV",
                        EventSource.USER, self.owner)  # fmt: skip
        orders_after_ingest(
            shop=shop,
            created_ids=[
                plan.order.pk
                for plan in csv
                if plan.order.status == OrderStatus.NEW and plan.status != OrderStatus.NEW
            ],
            updated_ids=[],
        )

    def _platform_orders(self, plans: list[_PlannedOrder]) -> None:
        """Each platform shop's orders go into its sandbox store as the platform would hold
        them today (unpaid, open, with a buyer's cancellation request, shipped with their
        tracking numbers, in transit, delivered, cancelled), then the shop's first sync
        imports them: ingest, reservation and review decide the rest."""
        for shop in self.shops:
            if shop.platform == Platform.MANUAL:
                continue
            store = sandbox_connect(shop=shop)
            for product in store.products.all():
                self.products[(shop.pk, product.seller_sku)] = product
            shop_plans = [plan for plan in plans if plan.shop == shop]
            rows = sandbox_store_drafts(shop=shop, drafts=[self._draft(p) for p in shop_plans])
            sandbox = sandbox_for(shop.platform)
            for plan in shop_plans:
                row = rows[plan.platform_order_id]
                if plan.cancel_requested_at:
                    sandbox.request_cancellation(
                        store=store, order=row, at=plan.cancel_requested_at
                    )
                if plan.shipped:
                    sandbox.ship_order(
                        store=store,
                        order=row,
                        tracking_number=plan.tracking_number,
                        carrier=plan.service.carrier.code,
                        at=plan.shipped_at,
                    )
                    if plan.in_transit_at and not plan.delivered_at:
                        sandbox.advance_order(
                            store=store, order=row, status="in_transit", at=plan.in_transit_at
                        )
                    if plan.delivered_at:
                        sandbox.advance_order(
                            store=store, order=row, status="delivered", at=plan.delivered_at
                        )
                if plan.cancelled_at:
                    sandbox.cancel_order(store=store, order=row, at=plan.cancelled_at)
            Shop.objects.filter(pk=shop.pk).update(sync_watermark=self.now - HISTORY)
            with _history_import_limits(shop=shop, store=store):
                run = shop_sync(shop=shop, trigger="demo")
            if run.status != SyncRunStatus.SUCCESS or run.rejected:
                raise DemoSeedError(
                    f"importing {shop}'s orders from its sandbox failed: {run.error or run.rejects}"
                )

    def _draft(self, plan: _PlannedOrder) -> OrderDraft:
        """The plan's order as its platform holds it: on TikTok the street as the buyer typed
        it (review normalises it), elsewhere as the checkout form gives it; the platform's
        ship-by where it sets one, from the shop's policy."""
        shop = plan.shop
        ship_by = None
        if plan.paid_at and shop.platform != Platform.SHOPIFY:
            hours = shop.presale_ship_by_hours if plan.presale else shop.ship_by_hours
            ship_by = plan.paid_at + timedelta(hours=hours)
        address = plan.address
        if shop.platform == Platform.TIKTOK:
            address = dataclasses.replace(plan.typed_address, state=plan.address.state)
        return OrderDraft(
            order_id=plan.platform_order_id,
            number=plan.number,
            placed_at=plan.placed_at,
            paid_at=plan.paid_at,
            buyer_name=plan.buyer_name,
            buyer_email=plan.buyer_email,
            buyer_user_id=plan.buyer_user_id,
            address=address,
            lines=tuple(
                DraftLine(
                    product=self.products[(shop.pk, line.sku.code)],
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    discount=line.discount,
                    tax=line.tax,
                )
                for line in plan.lines
            ),
            shipping_fee=plan.shipping_fee,
            platform_discount=plan.platform_discount,
            note=plan.note,
            ship_by=ship_by,
            presale=plan.presale,
        )

    def _fetch_orders(self, plans: list[_PlannedOrder]) -> None:
        by_key = {
            (order.shop_id, order.platform_order_id): order
            for order in Order.objects.select_related("shop")
        }
        for plan in plans:
            plan.order = by_key[(plan.shop.pk, plan.platform_order_id)]

    # -- what people did --

    def _people(self, plans: list[_PlannedOrder]) -> None:
        """The owner read the notes of orders the plan lets go, and held some by hand."""
        for plan in plans:
            if plan.note_released_at and plan.order.status == OrderStatus.ON_HOLD:
                order_release(order=plan.order, user=self.owner, codes=[HoldReason.BUYER_NOTE])
            if "manual" in plan.holds and plan.order.status in HOLDABLE_STATUSES:
                order_hold(
                    order=plan.order,
                    code=HoldReason.MANUAL,
                    message=MANUAL_HOLD_MESSAGE,
                    user=self.owner,
                )
        self._fetch_orders(plans)

    def _allocate(self, plans: list[_PlannedOrder]) -> None:
        """Ready orders the plan allocated get their parcels from routing (one per warehouse
        holding their stock); the carrier service, label or provider hand-over and the
        `allocated` status are recorded as the label and provider doors will record them."""
        wanted = {
            plan.order.pk: plan
            for plan in plans
            if plan.status == OrderStatus.ALLOCATED and plan.order.status == OrderStatus.READY
        }
        if not wanted:
            return
        orders_split_ready(tenant=self.tenant, order_ids=list(wanted))
        shipments = list(
            Shipment.objects.filter(order_id__in=list(wanted))
            .select_related("warehouse")
            .prefetch_related("lines__order_line__sku")
            .order_by("order_id", "pk")
        )
        allocated = set()
        for shipment in shipments:
            plan = wanted[shipment.order_id]
            order = plan.order
            # Each parcel's choices come from its own generator: the same parcel, the same pick.
            rng = random.Random(f"{plan.platform_order_id}-{shipment.warehouse.code}")
            plan.allocated_at = min(
                plan.created_at + timedelta(minutes=rng.randint(10, 90)),
                self.now - timedelta(minutes=5),
            )
            weight = 60 + sum(
                line.order_line.sku.weight_grams * line.quantity for line in shipment.lines.all()
            )
            shipment.service = self._service_for(
                order.total,
                weight,
                order.state,
                plan.tags,
                street=f"{order.address_line1} {order.address_line2}",
            )
            shipment.weight_grams = weight
            shipment.shipping_cost = money(Decimal("4.10") + Decimal(weight) * Decimal("0.0042"))
            if shipment.warehouse.kind == WarehouseKind.THREE_PL:
                shipment.provider = self.provider
                shipment.status = rng.choice(
                    (ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED)
                )
                # The provider's clocks run from these (acknowledge within 30 min of dispatch).
                shipment.dispatched_at = plan.allocated_at
                if shipment.status == ShipmentStatus.CONFIRMED:
                    shipment.acknowledged_at = min(
                        plan.allocated_at + timedelta(minutes=rng.randint(3, 25)), self.now
                    )
            else:
                shipment.status = rng.choice((ShipmentStatus.PENDING, ShipmentStatus.LABELLED))
            if shipment.status == ShipmentStatus.LABELLED:
                shipment.tracking_number = self._tracking_number(shipment.service, rng)
            allocated.add(order.pk)
            self._parcel_events(plan, shipment)
        Shipment.objects.bulk_update(
            shipments,
            [
                "service",
                "weight_grams",
                "shipping_cost",
                "provider",
                "status",
                "tracking_number",
                "dispatched_at",
                "acknowledged_at",
            ],
        )
        self._backdate(Shipment, [(s, wanted[s.order_id].allocated_at) for s in shipments])
        Order.objects.filter(pk__in=allocated).update(status=OrderStatus.ALLOCATED)

    def _shipped_history(self, plans: list[_PlannedOrder]) -> None:
        """The parcels of orders that already left: shipment, lines, the stock they reserved
        and took (committed reservations, reserve and ship movements), and the dates. Amazon
        and eBay report no delivery states: the carrier's word is recorded on the order."""
        shipped = [plan for plan in plans if plan.shipped]
        lines_by_order: dict[int, list[OrderLine]] = {}
        for line in OrderLine.objects.filter(order__in=[p.order for p in shipped]).order_by("pk"):
            lines_by_order.setdefault(line.order_id, []).append(line)
        shipments, shipment_lines, reservations, movements = [], [], [], []
        for plan in shipped:
            order = plan.order
            shipment = Shipment(
                tenant=self.tenant,
                order=order,
                reference=f"{self.spec.code}-P{plan.number:05d}",
                warehouse=plan.warehouse,
                service=plan.service,
                provider=self.provider if plan.warehouse == self.three_pl else None,
                status=plan.parcel_status,
                tracking_number=plan.tracking_number,
                weight_grams=plan.weight,
                shipping_cost=money(Decimal("4.10") + Decimal(plan.weight) * Decimal("0.0042")),
                shipped_at=plan.shipped_at,
                delivered_at=plan.delivered_at,
            )
            shipments.append((shipment, plan.allocated_at))
            for line in lines_by_order[order.pk]:
                level = self.levels[(line.sku_id, plan.warehouse.pk)]
                shipment_lines.append(
                    ShipmentLine(
                        tenant=self.tenant,
                        shipment=shipment,
                        order_line=line,
                        quantity=line.quantity,
                    )
                )
                reservations.append(
                    (
                        Reservation(
                            tenant=self.tenant,
                            order=order,
                            order_line=line,
                            stock_level=level,
                            sku_id=line.sku_id,
                            warehouse=plan.warehouse,
                            quantity=line.quantity,
                            state=ReservationState.COMMITTED,
                        ),
                        plan.allocated_at,
                    )
                )
                sku = line.sku
                movements.append(
                    self._movement(
                        sku, plan.warehouse, MovementKind.RESERVE, plan.allocated_at,
                        reserved=line.quantity, order=order,
                    )
                )  # fmt: skip
                movements.append(
                    self._movement(
                        sku, plan.warehouse, MovementKind.SHIP, plan.shipped_at,
                        on_hand=-line.quantity, reserved=-line.quantity, order=order,
                        reference=shipment.reference,
                    )
                )  # fmt: skip
            order.shipped_at = plan.shipped_at
            order.delivered_at = plan.delivered_at
            order.status = plan.status
            self._parcel_events(plan, shipment)
        Shipment.objects.bulk_create([shipment for shipment, _ in shipments])
        self._backdate(Shipment, shipments)
        ShipmentLine.objects.bulk_create(shipment_lines)
        Reservation.objects.bulk_create([reservation for reservation, _ in reservations])
        self._backdate(Reservation, reservations)
        StockMovement.objects.bulk_create([movement for movement, _ in movements])
        self._backdate(StockMovement, movements)
        Order.objects.bulk_update(
            [plan.order for plan in shipped], ["shipped_at", "delivered_at", "status"]
        )

    def _tag_orders(self, plans: list[_PlannedOrder]) -> None:
        tags = {
            name: tag
            for name, tag in zip(
                TAGS,
                Tag.objects.bulk_create(Tag(tenant=self.tenant, name=name) for name in TAGS),
                strict=True,
            )
        }
        OrderTag.objects.bulk_create(
            OrderTag(tenant=self.tenant, order=plan.order, tag=tags[name])
            for plan in plans
            for name in sorted(plan.tags)
        )

    # -- the audit trail and its dates --

    def _event(self, plan, kind, at, message, source=EventSource.SYSTEM, user=None, **data):
        event = OrderEvent(
            tenant=self.tenant,
            order=plan.order,
            kind=kind,
            message=message,
            source=source,
            user=user,
            data=data,
        )
        self.events.append((event, at))

    def _parcel_events(self, plan: _PlannedOrder, shipment: Shipment) -> None:
        """What the label, provider and tracking doors will record for a parcel."""
        channel = plan.shop.get_platform_display()
        self._event(plan, "order.allocated", plan.allocated_at,
                    f"Reserved in {shipment.warehouse.code}, {shipment.service}",
                    shipment=shipment.reference)  # fmt: skip
        if shipment.provider_id:
            self._event(plan, "shipment.sent_to_provider",
                        plan.allocated_at + timedelta(minutes=1),
                        f"Sent to {self.provider.name}")  # fmt: skip
        elif shipment.tracking_number:
            self._event(plan, "shipment.label_printed", plan.allocated_at + timedelta(minutes=20),
                        f"Label {shipment.tracking_number}", EventSource.USER,
                        self.rng.choice(self.staff))  # fmt: skip
        if shipment.shipped_at:
            source = EventSource.PROVIDER if shipment.provider_id else EventSource.USER
            self._event(plan, "order.shipped", shipment.shipped_at,
                        f"Shipped with {shipment.service}: {shipment.tracking_number}", source,
                        tracking_number=shipment.tracking_number)  # fmt: skip
            if plan.shop.platform != Platform.MANUAL:
                self._event(plan, "tracking.pushed", shipment.shipped_at + timedelta(minutes=2),
                            f"Tracking uploaded to {channel}")  # fmt: skip
        if shipment.delivered_at:
            self._event(plan, "order.delivered", shipment.delivered_at, "Delivered",
                        EventSource.PLATFORM)  # fmt: skip

    def _date_rows(self, plans: list[_PlannedOrder]) -> None:
        """Write the events recorded above, and date what the pipeline wrote during the seed
        (orders, holds, reservations, movements, events) as it would have happened: on arrival,
        a minute later for review and stock, when the owner acted for their holds."""
        OrderEvent.objects.bulk_create([event for event, _ in self.events], batch_size=1000)
        self._backdate(OrderEvent, self.events)
        by_id = {plan.order.pk: plan for plan in plans}
        self._backdate(Order, [(plan.order, plan.created_at) for plan in plans])

        def by_hand(plan: _PlannedOrder) -> datetime:
            return min(plan.created_at + timedelta(minutes=25), self.now - timedelta(minutes=1))

        def arrival(plan: _PlannedOrder) -> datetime:
            return plan.created_at + timedelta(minutes=1)

        events = []
        for event in OrderEvent.objects.filter(created_at__gte=self.started).exclude(
            pk__in=[event.pk for event, _ in self.events]
        ):
            plan = by_id[event.order_id]
            if event.kind == "ingested":
                at = plan.created_at
            elif event.kind == "cancel_requested":
                at = plan.cancel_requested_at or arrival(plan)
            elif event.kind == "hold.released" and plan.note_released_at:
                at = plan.note_released_at
            elif event.user_id is not None:
                at = by_hand(plan)
            else:
                at = arrival(plan)
            events.append((event, at))
        self._backdate(OrderEvent, events)

        holds = list(OrderHold.objects.filter(created_at__gte=self.started))
        for hold in holds:
            plan = by_id[hold.order_id]
            hold.created_at = by_hand(plan) if hold.created_by_id else arrival(plan)
            if hold.released_at and plan.note_released_at:
                hold.released_at = plan.note_released_at
        OrderHold.objects.bulk_update(holds, ["created_at", "released_at"], batch_size=500)
        for model in (Reservation, StockMovement):
            rows = model.objects.filter(created_at__gte=self.started, order__isnull=False)
            self._backdate(model, [(row, arrival(by_id[row.order_id])) for row in rows])

    # -- live sessions (live app) --

    def _live_sessions(self, plans: list[_PlannedOrder]) -> None:
        """The TikTok shop's busiest two hours become a past live session whose orders the
        platform credits to the tenant's creator (read back through its affiliate API, so the
        orders carry the creator and commission), and a session running now keeps a stock pool
        of the bestseller, so the list, a session's curve, its profit and the pool show from the
        first login. The shop pays a packaging cost per parcel on top of TikTok's default fees."""
        from live.creators import creators_sync
        from live.models import LivePool, LiveSession, ShopFees

        shop = next(s for s in self.shops if s.platform == Platform.TIKTOK)
        creator = f"{self.spec.slug}.live"
        ShopFees.objects.create(tenant=self.tenant, shop=shop, packaging_per_parcel=money("0.45"))
        for level in StockLevel.objects.filter(
            warehouse__kind=WarehouseKind.THREE_PL
        ).select_related("sku"):
            # The 3PL buys in bulk: its units cost a little less than the list cost.
            level.unit_cost = (level.sku.cost * Decimal("0.9")).quantize(Decimal("0.01"))
            level.save(update_fields=["unit_cost"])
        mine = sorted(
            (plan for plan in plans if plan.shop.pk == shop.pk and plan.placed_at < self.now),
            key=lambda plan: plan.placed_at,
        )
        span = timedelta(hours=2)
        best, best_count, end = 0, 0, 0
        for start in range(len(mine)):
            while end < len(mine) and mine[end].placed_at < mine[start].placed_at + span:
                end += 1
            if end - start > best_count:
                best, best_count = start, end - start
        if mine:
            starts_at = mine[best].placed_at.replace(second=0) - timedelta(minutes=5)
            past = LiveSession.objects.create(
                tenant=self.tenant,
                shop=shop,
                title="Weekend glow-up live" if self.spec.slug == "sunny" else "Trail gear live",
                creator_username=creator,
                starts_at=starts_at,
                ends_at=starts_at + span,
            )
            store = SandboxStore.objects.get(platform=shop.platform, shop_key=shop.platform_shop_id)
            window = [
                plan.platform_order_id
                for plan in mine[best : best + best_count]
                if plan.placed_at < past.ends_at
            ]
            sandbox_credit_creator(
                store=store,
                order_pks=list(
                    store.orders.filter(order_id__in=window).values_list("pk", flat=True)
                ),
                creator=creator,
                content_id=f"{past.pk:08d}",
            )
            creators_sync(shop=shop, since=past.starts_at, until=past.ends_at)
        now_session = LiveSession.objects.create(
            tenant=self.tenant,
            shop=shop,
            title="Tonight's live (running)",
            creator_username=creator,
            starts_at=self.now - timedelta(minutes=20),
            ends_at=self.now + timedelta(minutes=100),
            notes="Run `manage.py sandbox live --shop N` to stream its orders in.",
        )
        bestseller = self.sellable[0]
        LivePool.objects.create(
            tenant=self.tenant, session=now_session, sku=bestseller, quantity=24
        )

    def _backdate(self, model, rows: list[tuple[models.Model, datetime]]) -> None:
        """Give rows their historical `created_at` (`auto_now_add` stamped them with now): one
        UPDATE ... FROM (VALUES ...) per thousand rows, where `bulk_update`'s CASE per row
        would cost more than the rest of the seed."""
        table = connection.ops.quote_name(model._meta.db_table)
        with connection.cursor() as cursor:
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                values = ", ".join(["(%s, %s::timestamptz)"] * len(chunk))
                cursor.execute(
                    f"UPDATE {table} SET created_at = v.at FROM (VALUES {values}) AS v(id, at) "
                    f"WHERE {table}.id = v.id",
                    [item for row, at in chunk for item in (row.pk, at)],
                )
        for row, at in rows:
            row.created_at = at


@contextmanager
def _history_import_limits(*, shop: Shop, store) -> Iterator[None]:
    """Amazon's real usage plan enriches half an order a second: the history import runs on a
    raised plan (sandbox and connector alike), then the shop goes back to Amazon's figures."""
    if shop.platform != Platform.AMAZON:
        yield
        return
    credentials = ShopCredentials._base_manager.get(shop=shop)
    extra, rate = dict(credentials.extra or {}), store.rate_per_second
    ShopCredentials._base_manager.filter(pk=credentials.pk).update(
        extra={**extra, "rate_scale": IMPORT_RATE_SCALE}
    )
    SandboxStore.objects.filter(pk=store.pk).update(rate_per_second=rate * IMPORT_RATE_SCALE)
    try:
        yield
    finally:
        ShopCredentials._base_manager.filter(pk=credentials.pk).update(extra=extra)
        SandboxStore.objects.filter(pk=store.pk).update(rate_per_second=rate)


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
    "DemoSeedError",
    "DemoSeedResult",
    "demo_counts",
    "demo_reset",
    "demo_seed",
]
