"""The HTTP contract, openapi.yaml at the repository root.

Checks that the file is a valid OpenAPI 3.1 document, that schemathesis loads
it, that its examples match their schemas, and a few facts the server relies
on: the routes and their scopes, problem+json on errors, the label order.
Needs no server and no ichctl binary.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM = "application/problem+json"
OPEN_ROUTES = {("get", "/healthz"), ("get", "/readyz")}

# (method, path) -> the scope the contract names; None for the open routes.
ROUTES = {
    ("post", "/dicomweb/studies"): "ingest",
    ("post", "/dicomweb/studies/{StudyInstanceUID}"): "ingest",
    ("post", "/v1/instances"): "ingest",
    ("get", "/v1/instances/{SOPInstanceUID}"): "read",
    ("get", "/v1/studies"): "read",
    ("get", "/v1/studies/{StudyInstanceUID}"): "read",
    ("delete", "/v1/studies/{StudyInstanceUID}"): "admin",
    ("put", "/v1/studies/{StudyInstanceUID}/priority"): "admin",
    ("get", "/v1/studies/{StudyInstanceUID}/report"): "read",
    ("get", "/healthz"): None,
    ("get", "/readyz"): None,
    ("get", "/metrics"): "admin",
    ("get", "/v1/tokens"): "admin",
    ("post", "/v1/tokens"): "admin",
    ("delete", "/v1/tokens/{tokenId}"): "admin",
}

# Statuses the contract lists per route (the file may list more, e.g. the any-route 408/413/431).
ROUTE_STATUSES = {
    ("post", "/dicomweb/studies"): {"200", "202", "400", "401", "403", "409", "413", "415", "431", "503"},
    ("post", "/dicomweb/studies/{StudyInstanceUID}"): {"200", "202", "400", "401", "403", "409", "413", "415", "431", "503"},
    ("post", "/v1/instances"): {"200", "202", "400", "401", "403", "413", "415", "431", "503"},
    ("get", "/v1/instances/{SOPInstanceUID}"): {"200", "400", "401", "403", "404"},
    ("get", "/v1/studies"): {"200", "400", "401", "403"},
    ("get", "/v1/studies/{StudyInstanceUID}"): {"200", "400", "401", "403", "404"},
    ("delete", "/v1/studies/{StudyInstanceUID}"): {"204", "401", "403", "404"},
    ("put", "/v1/studies/{StudyInstanceUID}/priority"): {"200", "400", "401", "403", "404", "415"},
    ("get", "/v1/studies/{StudyInstanceUID}/report"): {"200", "401", "403", "404", "409"},
    ("get", "/healthz"): {"200"},
    ("get", "/readyz"): {"200", "503"},
    ("get", "/metrics"): {"200", "401", "403"},
    ("get", "/v1/tokens"): {"200", "401", "403"},
    ("post", "/v1/tokens"): {"201", "400", "401", "403", "415"},
    ("delete", "/v1/tokens/{tokenId}"): {"204", "400", "401", "403", "404"},
}

# Error responses the contract answers with something other than a problem.
NON_PROBLEM_ERRORS = {
    ("post", "/dicomweb/studies", "409"): "application/dicom+json",
    ("post", "/dicomweb/studies/{StudyInstanceUID}", "409"): "application/dicom+json",
    ("get", "/readyz", "503"): "application/json",
}

BASE_URI = "urn:ich-triage:openapi"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def pointer_token(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def resolve(spec: dict, node: dict, pointer: str) -> tuple[dict, str]:
    """Follows a local $ref (Response, Parameter, Request Body objects); returns the object and its pointer."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"non-local $ref {ref} at {pointer}"
        pointer = ref[1:]
        node = spec
        for token in pointer.split("/")[1:]:
            node = node[token.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def responses(spec: dict, operation: dict, base: str) -> Iterator[tuple[str, dict, str]]:
    for status, response in operation["responses"].items():
        resolved, pointer = resolve(spec, response, f"{base}/responses/{status}")
        yield str(status), resolved, pointer


def test_valid_openapi_31(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_routes_are_the_contracts(spec):
    assert {(method, path) for method, path, _ in operations(spec)} == set(ROUTES)


def test_every_operation_has_a_unique_id_and_a_summary(spec):
    ids = []
    for method, path, operation in operations(spec):
        assert operation.get("summary"), f"{method} {path}: no summary"
        assert operation.get("operationId"), f"{method} {path}: no operationId"
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {ids}"


def test_security_and_scopes(spec):
    bearer = spec["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for method, path, operation in operations(spec):
        security = operation.get("security", spec.get("security"))
        scope = ROUTES[(method, path)]
        if (method, path) in OPEN_ROUTES:
            assert security == [], f"{method} {path} should be open"
            assert "x-required-scope" not in operation
            continue
        assert security == [{"bearer": []}], f"{method} {path}: security {security}"
        assert operation.get("x-required-scope") == scope, f"{method} {path}: x-required-scope"
        assert f"`{scope}`" in operation["description"], f"{method} {path}: description does not name `{scope}`"
        statuses = {str(status) for status in operation["responses"]}
        assert {"401", "403"} <= statuses, f"{method} {path}: no 401/403"


def test_contract_statuses_are_documented(spec):
    for method, path, operation in operations(spec):
        statuses = {str(status) for status in operation["responses"]}
        missing = ROUTE_STATUSES[(method, path)] - statuses
        assert not missing, f"{method} {path}: missing {sorted(missing)}"


def test_errors_are_problems(spec):
    for method, path, operation in operations(spec):
        base = f"/paths/{pointer_token(path)}/{method}"
        for status, response, pointer in responses(spec, operation, base):
            if int(status) < 400:
                continue
            expected = NON_PROBLEM_ERRORS.get((method, path, status), PROBLEM)
            content = response.get("content", {})
            # /readyz's 503 is the Readiness object, or a problem when the connection limit answers first.
            allowed = [PROBLEM, expected] if expected != PROBLEM and path == "/readyz" else [expected]
            assert list(content) == allowed, f"{method} {path} {status} ({pointer}): {list(content)}"
            if expected == PROBLEM:
                schema = content[PROBLEM]["schema"]
                refs = [schema.get("$ref")] + [part.get("$ref") for part in schema.get("allOf", [])]
                assert "#/components/schemas/Problem" in refs, f"{method} {path} {status}: not a Problem"


def test_auth_and_overload_headers(spec):
    components = spec["components"]["responses"]
    assert "WWW-Authenticate" in components["Unauthorized"]["headers"]
    assert "Retry-After" in components["Overloaded"]["headers"]
    assert "Retry-After" in components["Unavailable"]["headers"]
    ingest = {("post", "/dicomweb/studies"), ("post", "/dicomweb/studies/{StudyInstanceUID}"), ("post", "/v1/instances")}
    for method, path, operation in operations(spec):
        base = f"/paths/{pointer_token(path)}/{method}"
        for status, response, pointer in responses(spec, operation, base):
            if status == "401":
                assert pointer == "/components/responses/Unauthorized", f"{method} {path}"
            if status == "503" and path != "/readyz":
                expected = "Overloaded" if (method, path) in ingest else "Unavailable"
                assert pointer == f"/components/responses/{expected}", f"{method} {path}"


def test_labels_in_order(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["Label"]["enum"] == LABELS
    assert schemas["Probabilities"]["required"] == LABELS
    assert list(schemas["Probabilities"]["properties"]) == LABELS
    assert schemas["Probabilities"]["additionalProperties"] is False
    assert schemas["Study"]["properties"]["labels"] == {"$ref": "#/components/schemas/Labels"}
    assert schemas["Series"]["properties"]["labels"]["anyOf"][0] == {"$ref": "#/components/schemas/Labels"}
    labels = schemas["Labels"]
    assert labels["minItems"] == labels["maxItems"] == 6
    assert [item["allOf"][1]["properties"]["label"]["const"] for item in labels["prefixItems"]] == LABELS
    description = spec["info"]["description"]
    assert ", ".join(f"`{label}`" for label in LABELS) in " ".join(description.split())
    assert "model.notice" in description


def test_own_objects_are_closed(spec):
    """Every object schema in components (our JSON) forbids unknown properties."""

    def walk(node, pointer):
        if isinstance(node, dict):
            if node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"]):
                assert node.get("additionalProperties") is False, f"{pointer}: additionalProperties is not false"
            for key, value in node.items():
                if key not in ("examples", "example", "const", "enum", "default"):
                    walk(value, f"{pointer}/{pointer_token(key)}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{pointer}/{index}")

    walk(spec["components"]["schemas"], "/components/schemas")


def test_uid_path_parameters(spec):
    uid = spec["components"]["schemas"]["Uid"]
    assert uid["pattern"] == r"^[0-9A-Za-z._-]{1,64}$" and uid["not"] == {"enum": [".", ".."]}
    assert uid["maxLength"] == 64
    for name in ("StudyInstanceUID", "SOPInstanceUID"):
        parameter = spec["components"]["parameters"][name]
        assert parameter["in"] == "path" and parameter["schema"] == {"$ref": "#/components/schemas/Uid"}


def schema_validator(spec: dict, pointer: str) -> Draft202012Validator:
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry = Registry().with_resource(BASE_URI, resource)
    return Draft202012Validator({"$ref": f"{BASE_URI}#{pointer}"}, registry=registry, format_checker=FormatChecker())


def examples_with_schemas(spec: dict) -> Iterator[tuple[str, str, Any]]:
    """(schema pointer, where, example value) for every example in the file."""

    def schema_examples(node, pointer):
        if isinstance(node, dict):
            if isinstance(node.get("examples"), list):
                for index, value in enumerate(node["examples"]):
                    yield pointer, f"{pointer}/examples/{index}", value
            for key, value in node.items():
                if key not in ("examples", "const", "enum", "default"):
                    yield from schema_examples(value, f"{pointer}/{pointer_token(key)}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from schema_examples(value, f"{pointer}/{index}")

    yield from schema_examples(spec["components"]["schemas"], "/components/schemas")

    def media_examples(media, pointer):
        if "schema" not in media:
            return
        if "example" in media:
            yield f"{pointer}/schema", f"{pointer}/example", media["example"]
        for name, example in media.get("examples", {}).items():
            yield f"{pointer}/schema", f"{pointer}/examples/{name}", example["value"]

    seen = set()
    for method, path, operation in operations(spec):
        base = f"/paths/{pointer_token(path)}/{method}"
        for _, response, pointer in responses(spec, operation, base):
            if pointer in seen:
                continue
            seen.add(pointer)
            for media_type, media in response.get("content", {}).items():
                yield from media_examples(media, f"{pointer}/content/{pointer_token(media_type)}")
    for name, parameter in spec["components"]["parameters"].items():
        if "example" in parameter:
            yield f"/components/parameters/{name}/schema", f"/components/parameters/{name}/example", parameter["example"]
    for name, header in spec["components"]["headers"].items():
        if "example" in header:
            yield f"/components/headers/{name}/schema", f"/components/headers/{name}/example", header["example"]


def test_examples_match_their_schemas(spec):
    checked = 0
    for schema_pointer, where, value in examples_with_schemas(spec):
        errors = list(schema_validator(spec, schema_pointer).iter_errors(value))
        assert not errors, f"{where}: " + "; ".join(error.message for error in errors)
        checked += 1
    assert checked > 30


def test_schemathesis_loads_every_operation():
    import schemathesis

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = schemathesis.openapi.from_path(str(SPEC_PATH))
        results = list(schema.get_all_operations())
    loaded = {(result.ok().method.lower(), result.ok().path) for result in results}
    assert loaded == set(ROUTES)
    relevant = [w for w in caught if "ResourceWarning" not in type(w.message).__name__]
    assert not relevant, [str(w.message) for w in relevant]
