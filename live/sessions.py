"""Which orders a live session sold, and its figures: orders, units, GMV, cancellations,
holds, late shipments, profit, and its order curve.

Attribution: an order belongs to a session when it is an order of the session's shop placed in
`[starts_at, ends_at)`, the platform credits it to the session's creator or to nobody (an order
the platform credits to another creator is that creator's), and, when the session has a product
list, it contains one of those SKUs. The same rule exists twice, as a queryset
(`session_orders`, for lists and counts) and as SQL (`session_orders_sql`, for set-based
rollups of many sessions at once); `tests/live/test_sessions.py` holds them to each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from live.models import LiveSession, LiveSessionProduct
from orders.models import Order, OrderLine, OrderStatus


def session_orders(session: LiveSession) -> QuerySet[Order]:
    """The orders `session` sold (see the module docstring), through the tenant scope."""
    orders = Order.objects.filter(
        shop_id=session.shop_id,
        placed_at__gte=session.starts_at,
        placed_at__lt=session.ends_at,
    )
    if session.creator_username:
        orders = orders.filter(
            Q(creator_username="") | Q(creator_username__iexact=session.creator_username)
        )
    products = LiveSessionProduct.objects.filter(session=session).values("sku_id")
    if products.exists():
        orders = orders.filter(
            Exists(OrderLine.objects.filter(order=OuterRef("pk"), sku_id__in=products))
        )
    return orders


def session_orders_sql(*, tenant_id: int, session_ids: Iterable[int]) -> tuple[str, list]:
    """SELECT session_id, order_id for every order of each session (one statement)."""
    ids = sorted({int(pk) for pk in session_ids}) or [0]
    sql = """
        SELECT s.id AS session_id, o.id AS order_id
        FROM live_livesession s
        JOIN orders_order o
          ON o.tenant_id = s.tenant_id AND o.shop_id = s.shop_id
         AND o.placed_at >= s.starts_at AND o.placed_at < s.ends_at
        WHERE s.tenant_id = %s AND s.id = ANY(%s)
          AND (s.creator_username = '' OR o.creator_username = ''
               OR lower(o.creator_username) = lower(s.creator_username))
          AND (NOT EXISTS (SELECT 1 FROM live_livesessionproduct p WHERE p.session_id = s.id)
               OR EXISTS (SELECT 1 FROM orders_orderline l
                          JOIN live_livesessionproduct p
                            ON p.sku_id = l.sku_id AND p.session_id = s.id
                          WHERE l.order_id = o.id))
    """
    return sql, [tenant_id, ids]


@dataclass(slots=True)
class SessionFigures:
    """What a live session sold and what it earned."""

    orders: int = 0
    units: int = 0
    gmv: Decimal = Decimal("0")
    cancelled: int = 0
    on_hold: int = 0
    late: int = 0
    profit: Decimal = Decimal("0")
    sales: Decimal = Decimal("0")
    fees: Decimal = Decimal("0")
    commission: Decimal = Decimal("0")
    cogs: Decimal = Decimal("0")
    holds_by_code: dict[str, int] = field(default_factory=dict)


def sessions_figures(
    *, tenant_id: int, sessions: list[LiveSession], now: datetime | None = None
) -> dict[int, SessionFigures]:
    """session id -> its figures, in a fixed number of queries whatever the number of sessions.

    GMV is what buyers paid for orders not cancelled; late counts orders shipped after their
    ship-by, or still unshipped past it.
    """
    from django.db import connection

    from live.profit import profit_rollup

    now = now or timezone.now()
    figures = {session.pk: SessionFigures() for session in sessions}
    if not sessions:
        return figures
    so_sql, so_params = session_orders_sql(tenant_id=tenant_id, session_ids=figures)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH so AS ({so_sql})
            SELECT so.session_id,
                   COUNT(*),
                   COALESCE(SUM(o.total) FILTER (WHERE o.status <> 'cancelled'), 0),
                   COUNT(*) FILTER (WHERE o.status = 'cancelled'),
                   COUNT(*) FILTER (WHERE o.status = 'on_hold'),
                   COUNT(*) FILTER (WHERE o.status <> 'cancelled' AND o.ship_by IS NOT NULL
                                    AND COALESCE(o.shipped_at, %s) > o.ship_by),
                   COALESCE(SUM((SELECT SUM(l.quantity) FROM orders_orderline l
                                 WHERE l.order_id = o.id AND NOT l.is_cancelled))
                            FILTER (WHERE o.status <> 'cancelled'), 0)
            FROM so JOIN orders_order o ON o.id = so.order_id
            GROUP BY so.session_id
            """,
            [*so_params, now],
        )
        for session_id, orders, gmv, cancelled, on_hold, late, units in cursor.fetchall():
            entry = figures[session_id]
            entry.orders, entry.gmv, entry.cancelled = orders, gmv, cancelled
            entry.on_hold, entry.late, entry.units = on_hold, late, int(units)
        cursor.execute(
            f"""
            WITH so AS ({so_sql})
            SELECT so.session_id, h.code, COUNT(DISTINCT h.order_id)
            FROM so JOIN orders_orderhold h ON h.order_id = so.order_id
            WHERE h.released_at IS NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            so_params,
        )
        for session_id, code, count in cursor.fetchall():
            figures[session_id].holds_by_code[code] = count
    shop_ids = {session.shop_id for session in sessions}
    rows = profit_rollup(
        tenant_id=tenant_id,
        orders=Order._base_manager.filter(tenant_id=tenant_id, shop_id__in=shop_ids),
        by="session",
        sessions=list(figures),
    )
    for row in rows:
        entry = figures[row.key]
        entry.profit, entry.sales, entry.fees = row.profit, row.sales - row.refund, row.fees
        entry.commission, entry.cogs = row.commission, row.cogs
    return figures


def session_curve(
    *, session: LiveSession, bucket_minutes: int | None = None
) -> list[tuple[datetime, int]]:
    """Orders per bucket over the session's window (buckets with none included), oldest first.

    The bucket is a sixtieth of the window rounded to whole minutes (at least one minute)."""
    span = session.ends_at - session.starts_at
    if bucket_minutes is None:
        bucket_minutes = max(1, round(span.total_seconds() / 60 / 60))
    bucket = timedelta(minutes=bucket_minutes)
    counts: dict[int, int] = defaultdict(int)
    for placed_at in session_orders(session).values_list("placed_at", flat=True):
        counts[int((placed_at - session.starts_at) / bucket)] += 1
    buckets = max(1, -(-int(span.total_seconds()) // int(bucket.total_seconds())))
    return [(session.starts_at + index * bucket, counts.get(index, 0)) for index in range(buckets)]


def session_top_skus(*, session: LiveSession, limit: int = 10) -> list[dict]:
    """The session's best-selling SKUs: code, units, orders."""
    return list(
        OrderLine.objects.filter(order__in=session_orders(session), is_cancelled=False)
        .exclude(order__status=OrderStatus.CANCELLED)
        .values(code=F("seller_sku"))
        .annotate(units=Sum("quantity"), orders=Count("order", distinct=True))
        .order_by("-units", "code")[:limit]
    )
