"""The local runner serves the API's OpenAPI document at /openapi.json, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pms_connector.openapi import document
from tests.conftest import ROOT
from tests.e2e.test_local_runner import PROPERTIES, free_port, start, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    port = free_port()
    process, _ = start(PROPERTIES, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        stop(process)


def test_get_openapi_json_is_the_document_of_the_code(http: httpx.Client) -> None:
    response = http.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert response.json() == document()
    assert response.text == (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")


def test_the_documented_routes_are_the_ones_the_runner_serves(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]

    # Every documented route reaches its function (refused without credentials) with a documented status,
    # never the runner's own 404 or 405.
    for path, item in paths.items():
        concrete = path.replace("{property}", "demo-hotel").replace("{room}", "101")
        for method in item:
            if method == "parameters":
                continue
            response = http.request(method.upper(), concrete, content=b"{}",
                                    headers={"Content-Type": "application/json"})
            assert "message" not in response.json(), (method, path, response.text)
            assert str(response.status_code) in item[method]["responses"], (method, path, response.text)
            assert response.status_code == 401 or response.json()["code"] == 202  # POST /httppms: no property
    assert http.post("/openapi.json").status_code == 404  # only GET serves the document
