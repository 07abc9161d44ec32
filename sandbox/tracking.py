"""The carriers' side of tracking, for the sandboxes: a plausible, deterministic event history
per parcel, from its tracking code, a scenario and the time its label was made.

The same history feeds the label service's Trackers (`sandbox/labelapi.py`, EasyPost-shaped
`tracking_details`) and TikTok Shop's order tracking (`sandbox/tiktok.py`, descriptions and
times only). Events appear as the clock passes them, so a parcel polled every hour moves on by
itself; a test picks a scenario and moves `started_at` back to see the whole journey at once.

Scenarios (`SCENARIOS`): delivered; no_scan (label made, the carrier never scans it); stalled
(scanned, then silence); failure (a delivery attempt fails, final); returned (failed, then
returned to sender). Codes without a chosen scenario get one from a hash of the code: mostly
delivered, a few of each exception, so the demo shows every kind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from sandbox.models import SandboxTrackingScenario

DELIVERED, NO_SCAN, STALLED, FAILURE, RETURNED = (
    "delivered",
    "no_scan",
    "stalled",
    "failure",
    "returned",
)
SCENARIOS = (DELIVERED, NO_SCAN, STALLED, FAILURE, RETURNED)

# Places a parcel passes through: origin hub, regional hub, destination hub, destination.
ROUTES = (
    (("Reno", "NV", "89502"), ("Sacramento", "CA", "95813"), ("Oakland", "CA", "94615")),
    (("Reno", "NV", "89502"), ("Salt Lake City", "UT", "84199"), ("Denver", "CO", "80266")),
    (("Reno", "NV", "89502"), ("Phoenix", "AZ", "85026"), ("Dallas", "TX", "75260")),
    (("Reno", "NV", "89502"), ("Kansas City", "MO", "64121"), ("Chicago", "IL", "60607")),
)
DESTINATIONS = (
    ("San Francisco", "CA", "94105"),
    ("Boulder", "CO", "80302"),
    ("Austin", "TX", "78701"),
    ("Evanston", "IL", "60201"),
)


@dataclass(frozen=True, slots=True)
class CarrierEvent:
    """One scan: EasyPost's status vocabulary, the carrier's words, where and when."""

    status: str  # pre_transit, in_transit, out_for_delivery, delivered, failure, return_to_sender
    status_detail: str
    message: str
    at: datetime
    city: str = ""
    state: str = ""
    zip: str = ""


def _digest(code: str) -> int:
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16)


def scenario_for(tracking_code: str) -> tuple[str, datetime | None]:
    """The parcel's scenario (a chosen one, else from its code) and a chosen start, if any."""
    chosen = SandboxTrackingScenario.objects.filter(tracking_code=tracking_code).first()
    if chosen is not None:
        return chosen.scenario, chosen.started_at
    roll = _digest(tracking_code) % 100
    if roll < 80:
        return DELIVERED, None
    if roll < 86:
        return STALLED, None
    if roll < 91:
        return FAILURE, None
    if roll < 95:
        return RETURNED, None
    return NO_SCAN, None


def tracking_scenario_set(
    *, tracking_code: str, scenario: str, started_at: datetime | None = None
) -> SandboxTrackingScenario:
    """Choose what happens to a parcel (tests, the demo: `manage.py sandbox tracking`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    row, _ = SandboxTrackingScenario.objects.update_or_create(
        tracking_code=tracking_code, defaults={"scenario": scenario, "started_at": started_at}
    )
    return row


def tracking_history(
    *, tracking_code: str, carrier: str, started_at: datetime, now: datetime | None = None
) -> list[CarrierEvent]:
    """The parcel's events up to `now`, oldest first. The same inputs give the same events."""
    now = now or timezone.now()
    scenario, chosen_start = scenario_for(tracking_code)
    start = chosen_start or started_at
    digest = _digest(tracking_code)
    origin, hub, last_hub = ROUTES[digest % len(ROUTES)]
    destination = DESTINATIONS[digest % len(DESTINATIONS)]
    # A few minutes of jitter per code, so parcels labelled together do not scan in lockstep.
    jitter = timedelta(minutes=digest % 47)

    def at(hours: float) -> datetime:
        return start + jitter + timedelta(hours=hours)

    events = [
        CarrierEvent(
            "pre_transit",
            "label_created",
            f"Shipping Label Created, {carrier} Awaiting Item",
            start,
            *origin,
        )
    ]
    if scenario != NO_SCAN:
        events += [
            CarrierEvent(
                "in_transit", "arrived_at_facility", "Accepted at Origin Facility", at(6), *origin
            ),
            CarrierEvent("in_transit", "departed_facility", "Departed Facility", at(9), *origin),
            CarrierEvent("in_transit", "arrived_at_facility", "Arrived at Hub", at(22), *hub),
        ]
    if scenario in (DELIVERED, FAILURE, RETURNED):
        events += [
            CarrierEvent(
                "in_transit",
                "arrived_at_destination",
                "Arrived at Destination Facility",
                at(40),
                *last_hub,
            ),
            CarrierEvent(
                "out_for_delivery", "out_for_delivery", "Out for Delivery", at(50), *destination
            ),
        ]
    if scenario == DELIVERED:
        events.append(
            CarrierEvent("delivered", "arrived_at_destination", "Delivered", at(55), *destination)
        )
    if scenario in (FAILURE, RETURNED):
        events.append(
            CarrierEvent(
                "failure",
                "address_not_found",
                "Delivery Attempt Failed: Address Not Found",
                at(55),
                *destination,
            )
        )
    if scenario == RETURNED:
        events += [
            CarrierEvent(
                "return_to_sender",
                "return",
                "Returned to Sender",
                at(60),
                *destination,
            ),
        ]
    return [event for event in events if event.at <= now]


def tracker_status(events: list[CarrierEvent]) -> str:
    """A tracker's current status: its latest event's, "unknown" before any."""
    return events[-1].status if events else "unknown"


# TikTok Shop's order tracking gives descriptions only; these are the sandbox's words for each
# status (tkerp reads the status back from them: logistics.tracking_events).
TIKTOK_DESCRIPTIONS = {
    "pre_transit": "Shipping label created, awaiting carrier pickup",
    "in_transit": "In transit: {message}",
    "out_for_delivery": "Out for delivery",
    "delivered": "Delivered",
    "failure": "Delivery failed: {message}",
    "return_to_sender": "Returned to sender",
}


def tiktok_description(event: CarrierEvent) -> str:
    text = TIKTOK_DESCRIPTIONS[event.status].format(message=event.message)
    place = f"{event.city}, {event.state}" if event.city else ""
    return f"{text} ({place})" if place else text
