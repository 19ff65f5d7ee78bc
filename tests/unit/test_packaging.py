"""The Lambda layer installs what the package needs at run time: layers/requirements.txt and pyproject agree."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in requirements if r.strip()}


def test_the_layer_requirements_are_the_runtime_dependencies_but_boto3() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    layer = [line for line in (ROOT / "layers" / "requirements.txt").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert names(layer) == names(project["dependencies"]) - {"boto3"}  # boto3 comes with the Lambda runtime
