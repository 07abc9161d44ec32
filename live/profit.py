"""Profit per order, rolled up per SKU, shop, live session and day, in one SQL statement.

Per order line (order-level money is split over lines by their share of the order's line totals):

    sales       = what the buyer paid - tax + the platform-funded discount (the platform pays the
                  seller that part), for live lines of an order that is not cancelled
    refund      = units of the line on a return request (unless rejected or withdrawn) x the
                  line's net unit price, at most the line's sales
    fees        = (referral % + transaction %) x (sales - refund)
                  + referral % x refund x refund-admin % (what the platform keeps on refunds)
                  + the fixed fee per order (not for a cancelled order)
    commission  = the creator's commission the platform reported x (sales - refund) / sales
    label       = the order's parcels' label cost (`Shipment.shipping_cost`), even if cancelled
    packaging   = packaging per parcel x parcels (not cancelled; one expected while none exists)
    cogs        = units that left or will leave x unit cost, less units returned and received
                  back; the unit cost is the reservation's stock level's (`StockLevel.unit_cost`)
                  where set, else the SKU's. A cancelled order that never shipped costs no goods.
    profit      = sales - refund - fees - commission - label - packaging - cogs

Fee rates come from `live.fees.shops_fee_rates` (platform defaults, overridable per shop). Every
query is scoped to one tenant by id and to a set of orders given as a queryset.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from live.fees import shops_fee_rates
from tkerp.resources import neutralise_formula

CENT = Decimal("0.01")

MONEY_COLUMNS = ("sales", "refund", "fees", "commission", "label", "packaging", "cogs", "profit")

ROLLUPS = ("order", "sku", "shop", "day", "session")

_LINE_SQL = """
WITH {SO} base AS (
    SELECT l.id AS line_id, l.order_id, o.shop_id, l.sku_id, l.seller_sku, l.quantity, l.total,
           COALESCE(o.placed_at, o.created_at) AS placed,
           o.status = 'cancelled' AS cancelled,
           o.total - o.tax + o.platform_discount AS order_sales, o.creator_commission,
           l.is_cancelled OR o.status = 'cancelled' AS dead
    FROM orders_order o
    JOIN orders_orderline l ON l.order_id = o.id AND l.tenant_id = {T}
    WHERE o.tenant_id = {T} AND o.id IN ({ORDERS})
),
shared AS (
    SELECT base.*,
           SUM(total) FILTER (WHERE NOT dead) OVER w AS live_total,
           COUNT(*) FILTER (WHERE NOT dead) OVER w AS live_count,
           SUM(total) OVER w AS all_total,
           COUNT(*) OVER w AS all_count
    FROM base WINDOW w AS (PARTITION BY order_id)
),
fee (shop_id, referral, txn, fixed, refund_admin, packaging) AS (
    VALUES {FEES}
),
line AS (
    SELECT s.line_id, s.order_id, s.shop_id, s.sku_id, s.seller_sku,
           (s.placed AT TIME ZONE {TZ})::date AS day,
           CASE WHEN s.dead THEN 0 ELSE s.quantity END AS units,
           s.order_sales * sh.sales_share AS sales,
           LEAST(
               s.order_sales * sh.sales_share,
               CASE WHEN s.dead OR s.quantity = 0 THEN 0
                    ELSE LEAST(COALESCE(ret.qty, 0), s.quantity) * s.total / s.quantity END
           ) AS refund,
           s.creator_commission * sh.sales_share AS commission_full,
           COALESCE(ship.label, 0) * sh.cost_share AS label,
           fee.packaging * sh.cost_share * CASE
               WHEN COALESCE(ship.parcels, 0) > 0 THEN ship.parcels
               WHEN s.cancelled THEN 0 ELSE 1 END AS packaging,
           CASE WHEN s.cancelled THEN 0 ELSE fee.fixed * sh.cost_share END AS fixed_fee,
           fee.referral, fee.txn, fee.refund_admin,
           GREATEST(
               CASE WHEN res.state = 'committed' THEN res.quantity
                    WHEN s.dead THEN 0 ELSE s.quantity END
               - COALESCE(ret.received, 0), 0
           ) * COALESCE(level.unit_cost, sku.cost, 0) AS cogs
    FROM shared s
    JOIN fee ON fee.shop_id = s.shop_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.dead THEN 0
                    WHEN s.live_total > 0 THEN s.total / s.live_total
                    WHEN s.live_count > 0 THEN 1.0 / s.live_count
                    ELSE 0 END AS sales_share,
               CASE WHEN s.all_total > 0 THEN s.total / s.all_total
                    ELSE 1.0 / s.all_count END AS cost_share
    ) sh
    LEFT JOIN LATERAL (
        SELECT SUM(e.qty) AS qty,
               SUM(e.qty) FILTER (WHERE r.received_at IS NOT NULL) AS received
        FROM orders_returnrequest r
        CROSS JOIN LATERAL (
            SELECT line, CASE WHEN line->>'quantity' ~ '^[0-9]{1,6}$'
                              THEN (line->>'quantity')::int ELSE 0 END AS qty
            FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(r.lines) = 'array' THEN r.lines ELSE '[]'::jsonb END
            ) AS line
        ) e
        WHERE r.order_id = s.order_id AND r.tenant_id = {T}
          AND e.line->>'seller_sku' = s.seller_sku
          AND r.status NOT ILIKE '%%reject%%' AND r.status NOT ILIKE '%%cancel%%'
    ) ret ON true
    LEFT JOIN LATERAL (
        SELECT SUM(p.shipping_cost) AS label,
               COUNT(*) FILTER (WHERE p.status <> 'cancelled') AS parcels
        FROM logistics_shipment p
        WHERE p.order_id = s.order_id AND p.tenant_id = {T}
    ) ship ON true
    LEFT JOIN inventory_reservation res ON res.order_line_id = s.line_id
    LEFT JOIN inventory_stocklevel level ON level.id = res.stock_level_id
    LEFT JOIN inventory_sku sku ON sku.id = s.sku_id
),
money AS (
    SELECT line.*,
           (referral + txn) / 100 * (sales - refund)
               + referral / 100 * refund * refund_admin / 100 + fixed_fee AS fees,
           CASE WHEN sales > 0 THEN commission_full * (sales - refund) / sales ELSE 0 END
               AS commission
    FROM line
)
SELECT {KEY} AS key, COUNT(DISTINCT money.order_id) AS orders, SUM(units) AS units,
       ROUND(SUM(sales), 2), ROUND(SUM(refund), 2), ROUND(SUM(fees), 2),
       ROUND(SUM(commission), 2), ROUND(SUM(label), 2), ROUND(SUM(packaging), 2),
       ROUND(SUM(cogs), 2),
       ROUND(SUM(sales - refund - fees - commission - label - packaging - cogs), 2)
FROM money {JOIN}
GROUP BY 1 ORDER BY 1
"""

_KEYS = {
    "order": ("money.order_id", ""),
    "sku": ("COALESCE(money.sku_id::text, 'code:' || money.seller_sku)", ""),
    "shop": ("money.shop_id", ""),
    "day": ("money.day", ""),
    "session": ("so.session_id", "JOIN so ON so.order_id = money.order_id"),
}


@dataclass(slots=True)
class ProfitRow:
    """One rollup row: the key (order id, SKU id, shop id, day or session id) and its sums."""

    key: object
    orders: int
    units: int
    sales: Decimal
    refund: Decimal
    fees: Decimal
    commission: Decimal
    label: Decimal
    packaging: Decimal
    cogs: Decimal
    profit: Decimal


def _fees_values(*, tenant_id: int, shop_ids: Iterable[int]) -> tuple[str, list]:
    from shops.models import Shop

    shops = dict(
        Shop._base_manager.filter(tenant_id=tenant_id, pk__in=list(shop_ids)).values_list(
            "pk", "platform"
        )
    )
    rates = shops_fee_rates(tenant_id=tenant_id, shops=shops)
    if not rates:  # VALUES needs a row; no shop, no order, nothing joins it
        return "(NULL::bigint, 0::numeric, 0::numeric, 0::numeric, 0::numeric, 0::numeric)", []
    rows, params = [], []
    for shop_id, rate in sorted(rates.items()):
        rows.append("(%s::bigint, %s::numeric, %s::numeric, %s::numeric, %s::numeric, %s::numeric)")
        params += [
            shop_id,
            rate.referral_percent,
            rate.transaction_percent,
            rate.fixed_per_order,
            rate.refund_admin_percent,
            rate.packaging_per_parcel,
        ]
    return ", ".join(rows), params


_TOKEN = re.compile(r"\{(T|TZ|ORDERS|FEES|SO|KEY|JOIN)\}")


def _assemble(template: str, parts: dict[str, tuple[str, list]]) -> tuple[str, list]:
    """Fill the template's {TOKEN}s with SQL pieces, collecting their parameters in textual
    order (psycopg takes positional parameters in the order they appear)."""
    sql: list[str] = []
    params: list = []
    position = 0
    for match in _TOKEN.finditer(template):
        sql.append(template[position : match.start()])
        piece, piece_params = parts[match.group(1)]
        sql.append(piece)
        params += piece_params
        position = match.end()
    sql.append(template[position:])
    return "".join(sql), params


def profit_rollup(
    *,
    tenant_id: int,
    orders: QuerySet,
    by: str = "order",
    sessions: Iterable[int] | None = None,
) -> list[ProfitRow]:
    """Profit of `orders` (a queryset of `orders.Order`) summed per `by`: order, sku, shop, day
    (in the current time zone) or session (the live sessions `sessions`, each with the orders
    `live.sessions.session_orders` attributes to it). One statement whatever the number of
    orders."""
    if by not in ROLLUPS:
        raise ValueError(f"unknown rollup {by!r}; one of {', '.join(ROLLUPS)}")
    orders = orders.filter(tenant_id=tenant_id)
    order_sql, order_params = orders.order_by().values("pk").query.sql_with_params()
    shop_ids = set(orders.order_by().values_list("shop_id", flat=True).distinct())
    key, join = _KEYS[by]
    so = ("", [])
    if by == "session":
        from live.sessions import session_orders_sql

        so_sql, so_params = session_orders_sql(tenant_id=tenant_id, session_ids=sessions or [])
        so = (f"so AS ({so_sql}),", so_params)
    sql, params = _assemble(
        _LINE_SQL,
        {
            "T": ("%s", [tenant_id]),
            "TZ": ("%s", [timezone.get_current_timezone_name()]),
            "ORDERS": (order_sql, list(order_params)),
            "FEES": _fees_values(tenant_id=tenant_id, shop_ids=shop_ids),
            "SO": so,
            "KEY": (key, []),
            "JOIN": (join, []),
        },
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [ProfitRow(*row) for row in rows]


def order_profit(*, order) -> ProfitRow | None:
    """One order's profit (None if it has no lines)."""
    from orders.models import Order

    rows = profit_rollup(
        tenant_id=order.tenant_id, orders=Order._base_manager.filter(pk=order.pk), by="order"
    )
    return rows[0] if rows else None


CSV_HEADER = {
    "order": "order_id",
    "sku": "sku",
    "shop": "shop",
    "day": "day",
    "session": "live_session",
}


def profit_csv_rows(
    *, rows: list[ProfitRow], by: str, labels: dict | None = None
) -> Iterator[list]:
    """The rollup as CSV rows (header first); `labels` maps keys to readable names."""
    labels = labels or {}
    yield [CSV_HEADER[by], "orders", "units", *MONEY_COLUMNS]
    for row in rows:
        label = labels.get(row.key, row.key)
        yield [
            neutralise_formula(str(label)),
            row.orders,
            row.units,
            *(f"{getattr(row, name):.2f}" for name in MONEY_COLUMNS),
        ]


def write_profit_csv(stream, *, rows: list[ProfitRow], by: str, labels: dict | None = None) -> None:
    writer = csv.writer(stream)
    for values in profit_csv_rows(rows=rows, by=by, labels=labels):
        writer.writerow(values)


__all__ = ["ProfitRow", "order_profit", "profit_rollup", "write_profit_csv"]
