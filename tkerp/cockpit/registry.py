"""The cockpit's registries: widgets (counts that link to filtered lists) and charts (SVG)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db import models
from django.urls import reverse
from django.utils.safestring import SafeString


@dataclass(frozen=True, slots=True)
class Figure:
    """One count on a widget, linked to the admin list that shows exactly those rows.

    `tone` colours it when it is not zero: "bad" (act now), "warn" (soon), "" (neutral).
    `note` is a short text under the number, e.g. the nearest deadline.
    """

    label: str
    value: int
    url: str = ""
    tone: str = ""
    note: str = ""

    @property
    def alarming(self) -> bool:
        return bool(self.value) and bool(self.tone)


@dataclass(frozen=True, slots=True)
class Panel:
    """What a widget shows: its figures (big numbers), optionally a breakdown (smaller linked
    counts, e.g. holds per reason) and a short list of rows (`rows`, each a dict the widget's
    template reads) for widgets that name things (failing shops, running batches)."""

    figures: list[Figure] = field(default_factory=list)
    breakdown: list[Figure] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    empty_text: str = ""
    # A last line linking to more than the widget names: (text, url).
    more: tuple[str, str] | None = None

    @property
    def is_empty(self) -> bool:
        """Nothing to count and nothing named: the widget shows `empty_text`."""
        return not self.rows and not any(f.value for f in (*self.figures, *self.breakdown))


@dataclass(frozen=True, slots=True)
class Widget:
    key: str
    title: str
    order: int
    compute: Callable[..., Panel]
    permission: str = ""
    template: str = "admin/cockpit/widget.html"  # DEFAULT_WIDGET_TEMPLATE
    help_text: str = ""

    def allowed(self, user) -> bool:
        return not self.permission or user.has_perm(self.permission)


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    order: int
    render: Callable[..., SafeString]
    permission: str = ""
    help_text: str = ""
    # Offer a shop picker (the chart's function then takes `shop`, None for every shop).
    per_shop: bool = False

    def allowed(self, user) -> bool:
        return not self.permission or user.has_perm(self.permission)


DEFAULT_WIDGET_TEMPLATE = "admin/cockpit/widget.html"
WIDGETS: dict[str, Widget] = {}
CHARTS: dict[str, Chart] = {}


def cockpit_widget(
    *,
    key: str,
    title: str,
    order: int,
    permission: str = "",
    template: str = "",
    help_text: str = "",
):
    """Register `func(*, now) -> Panel` as the cockpit widget `key` (shown by `order`)."""

    def register(func: Callable[..., Panel]) -> Callable[..., Panel]:
        WIDGETS[key] = Widget(
            key=key,
            title=title,
            order=order,
            compute=func,
            permission=permission,
            template=template or DEFAULT_WIDGET_TEMPLATE,
            help_text=help_text,
        )
        return func

    return register


def cockpit_chart(
    *,
    key: str,
    title: str,
    order: int,
    permission: str = "",
    help_text: str = "",
    per_shop: bool = False,
):
    """Register `func(*, now[, shop]) -> SafeString` (an SVG) as the cockpit chart `key`."""

    def register(func: Callable[..., SafeString]) -> Callable[..., SafeString]:
        CHARTS[key] = Chart(
            key=key,
            title=title,
            order=order,
            render=func,
            permission=permission,
            help_text=help_text,
            per_shop=per_shop,
        )
        return func

    return register


def widgets_for(user) -> list[Widget]:
    return sorted((w for w in WIDGETS.values() if w.allowed(user)), key=lambda w: w.order)


def charts_for(user) -> list[Chart]:
    return sorted((c for c in CHARTS.values() if c.allowed(user)), key=lambda c: c.order)


def changelist_url(model: type[models.Model], **params: Any) -> str:
    """The admin list of `model` filtered by `params` (list-filter parameters)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def local_time(value: datetime | None, *, now: datetime) -> str:
    """A deadline as the seller reads it, in the current (tenant's) timezone: "14:05" today,
    "Tue 09:30" within a week, else "12 Mar 09:30"."""
    from django.utils import timezone

    if value is None:
        return ""
    local, today = timezone.localtime(value), timezone.localtime(now)
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if abs((local - today).days) < 6:
        return local.strftime("%a %H:%M")
    return local.strftime("%d %b %H:%M")
