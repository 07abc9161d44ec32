"""The cockpit: the admin home page of a tenant, "what needs a hand now" at a glance.

A registry of widgets and charts. Each app declares its own in a `cockpit.py` module, found at
start-up like `admin.py` (`tkerp.cockpit.site.TkerpAdminConfig.ready`). Adding a widget is a
function and a decorator:

    from tkerp.cockpit import Figure, Panel, changelist_url, cockpit_widget

    @cockpit_widget(key="tracking_outbox", title="Tracking write-back", order=45,
                    permission="logistics.view_trackingupload")
    def tracking_outbox(*, now):
        failing = TrackingUpload.objects.filter(state="failed").count()   # one query
        return Panel(figures=[Figure(label="failing", value=failing, tone="bad",
                     url=changelist_url(TrackingUpload, state__exact="failed"))])

Rules every widget keeps: a constant number of queries whatever the data size (aggregate in
the database; bounded lists), each count linked to the admin list filtered to exactly the rows
it counted (the same queryset function feeds the widget and the list filter), and times shown
in the current timezone (the tenant's, activated by `tkerp.middleware.TenantMiddleware`).
"""

from tkerp.cockpit.registry import (
    CHARTS,
    WIDGETS,
    Chart,
    Figure,
    Panel,
    Widget,
    changelist_url,
    cockpit_chart,
    cockpit_widget,
)

__all__ = [
    "CHARTS",
    "WIDGETS",
    "Chart",
    "Figure",
    "Panel",
    "Widget",
    "changelist_url",
    "cockpit_chart",
    "cockpit_widget",
]
