"""`python manage.py sandbox spike|live|load|show|faults|tracking --shop ID ...`: drive a
platform sandbox (and, with `tracking`, the carriers' sandbox for one of the shop's parcels).

Works for every platform with a sandbox (through `sandbox_for(shop.platform)`); the logic lives
in `sandbox.actions`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from logistics.models import Shipment
from sandbox.actions import (
    DEFAULT_LIVE_CREATOR,
    FAULT_KINDS,
    SHOW_VIEWS,
    LiveProgress,
    sandbox_live,
    sandbox_load,
    sandbox_set_faults,
    sandbox_show,
    sandbox_spike,
)
from sandbox.base import SandboxInputError
from sandbox.tracking import SCENARIOS as TRACKING_SCENARIOS
from sandbox.tracking import tracking_scenario_set
from shops.models import Shop
from tkerp.tenancy import all_tenants, tenant_context


class Command(BaseCommand):
    help = "Drive a shop's platform sandbox: order spikes, loading orders, showing state, faults."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, text: str) -> CommandParser:
            sub = actions.add_parser(name, help=text, description=text)
            sub.add_argument("--shop", type=int, required=True, help="The shop's database id.")
            return sub

        spike = action("spike", "Land a burst of paid orders on the shop's sandbox store.")
        spike.add_argument("--orders", type=int, required=True)
        spike.add_argument("--seed", type=int, default=None, help="Repeatable orders.")
        spike.add_argument(
            "--cancel-rate",
            type=float,
            default=0.03,
            help="Share of orders whose buyer asks to cancel (default 0.03).",
        )
        spike.add_argument(
            "--webhooks",
            action="store_true",
            help="Also send the platform's order webhooks to the store's webhook URL.",
        )

        live = action(
            "live",
            "Drip a live stream's orders into the shop's sandbox in real time: a burst in the "
            "first minutes, then a decaying tail, and a few buyers asking to cancel.",
        )
        live.add_argument("--orders", type=int, required=True, help="Orders over the window.")
        live.add_argument("--minutes", type=float, required=True, help="How long the stream runs.")
        live.add_argument("--seed", type=int, default=None, help="Repeatable orders and timing.")
        live.add_argument(
            "--cancel-rate",
            type=float,
            default=0.03,
            help="Share of orders whose buyer asks to cancel later on (default 0.03).",
        )
        live.add_argument(
            "--webhooks",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Send the platform's order webhooks for each drop, where it has any (default "
            "on; without them the minute sync picks the orders up).",
        )

        live.add_argument(
            "--creator",
            default=DEFAULT_LIVE_CREATOR,
            help="The creator the platform credits the stream's orders to (TikTok's affiliate "
            f"orders; default {DEFAULT_LIVE_CREATOR!r}, '' for none).",
        )

        load = action("load", "Load orders from a JSON list in the platform's order shape.")
        load.add_argument("file", help="JSON file: a list of orders. All are loaded, or none.")

        show = action("show", "Print the sandbox's state as the platform's JSON.")
        show.add_argument("what", nargs="?", default="orders", choices=SHOW_VIEWS)

        faults = action("faults", "Make a share of the store's API calls fail.")
        faults.add_argument("--rate", type=float, required=True, help="0 to 1; 0 turns off.")
        faults.add_argument(
            "--kinds",
            default=None,
            help=f"Comma-separated, from {','.join(FAULT_KINDS)} (default: keep, else 429,500).",
        )
        faults.add_argument(
            "--slow", type=float, default=None, help="Seconds added to every response."
        )

        tracking = action(
            "tracking",
            "Choose what the carriers' sandbox does with one of the shop's parcels: delivered, "
            "no_scan, stalled, failure or returned (the next tracking poll sees it).",
        )
        tracking.add_argument("--tracking", required=True, help="The parcel's tracking number.")
        tracking.add_argument("--scenario", required=True, choices=TRACKING_SCENARIOS)
        tracking.add_argument(
            "--hours-ago",
            type=float,
            default=None,
            help="Start the journey this many hours ago (default: when the label was made).",
        )

    def handle(self, *args, **options) -> None:
        # Operator tool: the shop is named by id across tenants, then work is scoped to it.
        with all_tenants():
            shop = Shop.objects.filter(pk=options["shop"]).first()
        if shop is None:
            raise CommandError(f"shop {options['shop']} does not exist")
        try:
            with tenant_context(shop.tenant):
                getattr(self, f"do_{options['action']}")(shop, options)
        except SandboxInputError as exc:
            raise CommandError(str(exc)) from None

    def do_spike(self, shop: Shop, options: dict) -> None:
        started = time.perf_counter()
        result = sandbox_spike(
            shop=shop,
            orders=options["orders"],
            seed=options["seed"],
            cancel_rate=options["cancel_rate"],
            webhooks=options["webhooks"],
        )
        elapsed = time.perf_counter() - started
        line = (
            f"{result.orders} orders ({result.first_order_id} .. {result.last_order_id}), "
            f"{result.cancellations} cancellation requests on {shop} in {elapsed:.1f}s"
        )
        if options["webhooks"]:
            line += f"; webhooks: {result.webhooks_sent} delivered, {result.webhooks_failed} not"
        self.stdout.write(line)

    def do_live(self, shop: Shop, options: dict) -> None:
        orders, minutes = options["orders"], options["minutes"]
        self.stdout.write(
            f"Live stream on {shop}: {orders} orders over {minutes:g} min, most in the first "
            f"quarter; webhooks {'on' if options['webhooks'] else 'off'}. Ctrl-C stops it."
        )

        def report(state: LiveProgress) -> None:
            self.stdout.write(
                f"[{_clock(state.elapsed)}] {state.orders} / {state.target} orders, "
                f"{state.per_minute:.0f}/min, {state.cancellations} cancellation requests"
            )

        # Every webhook and queued task logs a line; the progress lines are the output here.
        logging.disable(logging.INFO)
        try:
            result = sandbox_live(
                shop=shop,
                orders=orders,
                minutes=minutes,
                seed=options["seed"],
                cancel_rate=options["cancel_rate"],
                webhooks=options["webhooks"],
                progress=report,
                creator=options["creator"],
            )
        finally:
            logging.disable(logging.NOTSET)
        verb = "Stopped" if result.interrupted else "Done"
        line = (
            f"{verb} after {_clock(result.elapsed)}: {result.orders} of {result.target} orders "
            f"and {result.cancellations} cancellation requests landed on {shop}"
        )
        if options["webhooks"]:
            if result.webhooks_sent or result.webhooks_failed:
                line += (
                    f"; webhooks: {result.webhooks_sent} delivered, {result.webhooks_failed} not"
                )
            else:
                line += f"; no webhooks ({shop.get_platform_display()} sends none here: the "
                line += "minute sync picks the orders up)"
        self.stdout.write(line)

    def do_load(self, shop: Shop, options: dict) -> None:
        count = sandbox_load(shop=shop, path=options["file"])
        self.stdout.write(f"{count} orders loaded into {shop}'s sandbox")

    def do_show(self, shop: Shop, options: dict) -> None:
        data = sandbox_show(shop=shop, what=options["what"])
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))

    def do_faults(self, shop: Shop, options: dict) -> None:
        kinds = None
        if options["kinds"] is not None:
            kinds = [kind.strip() for kind in options["kinds"].split(",") if kind.strip()]
        store = sandbox_set_faults(
            shop=shop, rate=options["rate"], kinds=kinds, slow_seconds=options["slow"]
        )
        self.stdout.write(
            f"{shop}: fault rate {store.fault_rate:g}, kinds {','.join(store.fault_kinds) or '-'},"
            f" slow {store.slow_seconds:g}s"
        )

    def do_tracking(self, shop: Shop, options: dict) -> None:
        number = options["tracking"].strip()
        parcel = Shipment.objects.filter(order__shop=shop, tracking_number=number).first()
        if parcel is None:
            raise CommandError(f"{shop} has no parcel with tracking number {number}")
        hours = options["hours_ago"]
        started = timezone.now() - timedelta(hours=hours) if hours is not None else None
        tracking_scenario_set(
            tracking_code=number, scenario=options["scenario"], started_at=started
        )
        since = f", journey started {hours:g} h ago" if hours is not None else ""
        self.stdout.write(f"parcel {parcel.reference} ({number}): {options['scenario']}{since}")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:02d}:{seconds:02d}"
