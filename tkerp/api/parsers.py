"""How the API reads request bodies."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class ApiJSONParser(JSONParser):
    """DRF's JSON parser, with a body nested too deeply for Python's parser (`[[[[...]]]]`) a
    400 parse error like any other malformed JSON: `json` raises RecursionError for it, which
    DRF lets through as a server error on every POST."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
