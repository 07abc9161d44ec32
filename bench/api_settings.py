"""Settings of the gunicorn that bench/api.py starts: the project's, plus the bare DRF list the
provider API's parcel list is measured against (bench/api_urls.py). Never used elsewhere."""

from tkerp.settings import *  # noqa: F403

ROOT_URLCONF = "api_urls"
