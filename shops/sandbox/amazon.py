urlpatterns: list = []  # filled in by the platform sandbox
