"""The hot routes' plumbing (issue 19): routes served without FastAPI's per-request dependency solving.

- :class:`HotRoute`: an ``APIRoute`` whose endpoint takes only the ``Request`` and checks its caller itself.
- :func:`parse_query`: a query string validated by one pydantic model, with the 422s FastAPI gives for
  declared query parameters.
- :func:`query_parameters` and :data:`VALIDATION_ERROR`: what the OpenAPI document says of such a route,
  as if its parameters were declared.

Shared by the JSON routes that the pages and the dispatch desk call most (``/responders/nearest``,
``/me/households``); routes never import each other, so this lives beside ``api.auth``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError


class HotRoute(APIRoute):
    """A route whose endpoint takes only the ``Request`` and checks its caller itself (:func:`api.auth.caller`):
    FastAPI solves no dependencies for it per request — neither the app-wide gate
    (:func:`api.auth.require_token`) nor parameters. Issue 19: solving them cost the busiest route about a
    third of its CPU. The route stays an ``APIRoute``, so the OpenAPI document still lists it with
    its security and (declared through ``openapi_extra``) parameters; errors raised by the endpoint
    go through the app's handlers as before. Use only for endpoints whose first act is ``caller``
    (tests/api/test_hotpath.py refuses a hot route that answers without a token)."""

    def get_route_handler(self):
        endpoint = self.endpoint

        async def handler(request: Request):
            return await endpoint(request)

        return handler


def query_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI query parameters of ``model``'s fields (what FastAPI would list for ``Query`` arguments)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        description = prop.get("description")
        out.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                    **({"description": description} if description else {})})
    return out


def parse_query(request: Request, model: type[BaseModel]):
    """The request's query string as ``model``, or the 422 FastAPI gives for query parameters
    (``loc`` ``["query", name]``; a missing one echoes no input)."""
    try:
        # parse_qsl as Starlette's QueryParams does (blank values kept, the last of a repeated name wins),
        # without building the multi-dict
        return model.model_validate(dict(parse_qsl(request.scope["query_string"].decode("latin-1"),
                                                   keep_blank_values=True)))
    except ValidationError as e:
        errors = []
        for err in e.errors(include_url=False):
            err = {**err, "loc": ("query", *err["loc"])}
            if err["type"] == "missing":
                err["input"] = None
            errors.append(err)
        raise RequestValidationError(errors) from None


#: The 422 FastAPI documents for a route with parameters (its component exists: other routes have them).
VALIDATION_ERROR = {"description": "Validation Error", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
