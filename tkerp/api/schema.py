"""OpenAPI additions every API operation shares (drf-spectacular).

`ApiAutoSchema` documents the problem-details answers (RFC 9457) each operation can give, and
the `Idempotency-Key` header every POST needs; `ProviderKeyScheme` documents the key header. So
the schema tells the truth about every status a client can meet, which is what the schemathesis
run in the test suite holds the API to.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from tkerp.api.problems import PROBLEM_CONTENT_TYPE
from tkerp.tenancy import all_tenants

ERRORS_ANY = ("400", "401", "403", "404", "406", "429")
ERRORS_WRITE = ("409", "413", "415", "422")


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, plus a stable `code` and field `errors`."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )

    class Meta:
        ref_name = "Problem"


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ERRORS_ANY + (ERRORS_WRITE if self.method == "POST" else ())
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    ProblemSerializer, code, media_types=[PROBLEM_CONTENT_TYPE]
                )
        return responses

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    required=True,
                    description="Any unique string (a UUID): a retry with the same key and body "
                    "gets the first answer back instead of acting twice.",
                    pattern=r"^[\x21-\x7e]{1,255}$",
                )
            )
        return parameters


class ProviderKeyScheme(OpenApiAuthenticationExtension):
    target_class = "logistics.api.auth.ProviderKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; keys come from the seller (admin or "
            "`manage.py provider_key create`).",
        }


class ApiSchemaGenerator(SchemaGenerator):
    """Builds the schema with every tenant in scope: drf-spectacular asks models' managers for
    empty querysets (`.none()`, no rows read), which the scoped managers refuse without one."""

    def get_schema(self, request=None, public=False):
        with all_tenants():
            return super().get_schema(request=request, public=public)
