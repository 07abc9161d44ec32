"""Admin registrations; see tkerp.admin for the tenant-scoping base classes."""
