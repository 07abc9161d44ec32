"""Permissions come from the user's role in the active tenant, not from global grants.

A user who owns tenant A and only views tenant B has owner rights while working in A and viewer
rights in B. Superusers keep Django's all-permissions short cut.
"""

from functools import cache

from django.apps import apps
from django.contrib.auth.backends import ModelBackend

from shops.models import Role
from tkerp.tenancy import current_tenant
from tkerp.tenants import user_role

DOMAIN_APPS = ("shops", "inventory", "orders", "logistics", "live", "tkerp")

# Models an operator works on day to day: orders and what hangs off them, parcels and counts.
OPERATOR_EDITS = {
    "orders.order",
    "orders.orderline",
    "orders.orderhold",
    "orders.ordertag",
    "orders.tag",
    "orders.orderevent",
    "logistics.shipment",
    "logistics.shipmentline",
    "logistics.labelbatch",
    "logistics.labelbatchitem",
    "inventory.stocklevel",
    "inventory.stockmovement",
    "tkerp.alert",
}
# Only owners manage who belongs to the tenant and the tenant's own settings.
OWNER_ONLY = {"shops.membership", "shops.tenant", "shops.shopcredentials"}


@cache
def role_permissions(role: str) -> frozenset[str]:
    """The `app_label.codename` permissions a role grants inside its tenant."""
    perms: set[str] = set()
    for app_label in DOMAIN_APPS:
        for model in apps.get_app_config(app_label).get_models():
            label = f"{app_label}.{model._meta.model_name}"
            name = model._meta.model_name
            if label == "shops.tenant":
                # A tenant's own row: owners may view and change it, nobody creates or deletes.
                if role == Role.OWNER:
                    perms |= {f"shops.view_{name}", f"shops.change_{name}"}
                continue
            if label == "shops.shopcredentials" and role != Role.OWNER:
                continue
            perms.add(f"{app_label}.view_{name}")
            if role == Role.VIEWER:
                continue
            if role == Role.OPERATOR and label not in OPERATOR_EDITS:
                continue
            if role == Role.MANAGER and label in OWNER_ONLY:
                continue
            perms |= {f"{app_label}.{action}_{name}" for action in ("add", "change", "delete")}
    # The audit trail is append-only for everyone.
    perms -= {"orders.change_orderevent", "orders.delete_orderevent"}
    perms -= {"inventory.change_stockmovement", "inventory.delete_stockmovement"}
    return frozenset(perms)


class TenantRoleBackend(ModelBackend):
    """Password login as usual; permissions from the membership role in the active tenant."""

    def get_user_permissions(self, user_obj, obj=None):
        return set()

    def get_group_permissions(self, user_obj, obj=None):
        return set()

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        tenant = current_tenant()
        if tenant is None:
            return set()
        role = user_role(user_obj, tenant)
        return set(role_permissions(role)) if role else set()
