"""Property-based run of schemathesis against our own OpenAPI: no call may end in a 5xx.

Bounded: a fixed number of examples per operation and a time limit for the whole run.
"""

from __future__ import annotations

import warnings

import pytest
import schemathesis
from tests.ciu.api.conftest import ApiWorld, as_role
from hypothesis import HealthCheck, settings

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def api_schema(client):
    schemathesis.experimental.OPEN_API_3_1.enable()  # FastAPI writes OpenAPI 3.1
    return schemathesis.from_dict(client.app.openapi(), data_generation_methods=schemathesis.DataGenerationMethod.all())


with warnings.catch_warnings():  # schemathesis 3.39 warns about its own default arguments
    warnings.simplefilter("ignore", DeprecationWarning)
    schema = schemathesis.from_pytest_fixture("api_schema")


@pytest.mark.slow
@pytest.mark.timeout(150)
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, client, api_world: ApiWorld) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    generated = kwargs.pop("headers", None) or {}
    headers = {k: v for k, v in generated.items() if k.lower() == "content-type"}
    headers.update(as_role(api_world, "admin"))
    if isinstance(kwargs.get("data"), (bytes, str)):
        kwargs["content"] = kwargs.pop("data")
    response = client.request(headers=headers, **{k: v for k, v in kwargs.items() if k in (
        "method", "url", "params", "json", "content", "data", "files")})
    assert response.status_code < 500, (case.method, case.formatted_path, kwargs, response.status_code,
                                        response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text[:200]
