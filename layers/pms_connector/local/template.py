"""Read template.yaml the way the local runner and the tests need it: routes, handlers, tables, buses.

Tables are created from the template's own AttributeDefinitions/KeySchema/indexes, so tests and the local
runner cannot drift from what `sam deploy` creates. Intrinsic functions are resolved for the few shapes the
template uses in environment variables (!Ref to a resource or parameter, !Sub with ${Name}).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

# libyaml's safe loader when PyYAML has it (ten times faster on template.yaml, which the tests load often).
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeLoader):  # type: ignore[misc]
    """YAML loader that turns short-form intrinsic tags into their long-form dicts."""


def _intrinsic(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _tag in ("Ref", "Sub", "GetAtt", "Join", "Select", "Split", "If", "Equals", "Not", "And", "Or",
             "FindInMap", "ImportValue", "Base64", "Cidr", "GetAZs", "Condition"):
    _CfnLoader.add_constructor(f"!{_tag}", _intrinsic(_tag))


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # e.g. /httppms/{property}
    function: str  # logical id
    pattern: re.Pattern[str] = field(compare=False)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    environment: dict[str, str]


class Template:
    """A parsed SAM template with local names for its resources."""

    def __init__(self, path: str | Path, *, stack_name: str = "pms-connector-local",
                 parameters: Mapping[str, str] | None = None) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.stack_name = stack_name
        with self.path.open(encoding="utf-8") as fh:
            self.doc: dict[str, Any] = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
        self.resources: dict[str, Any] = self.doc.get("Resources", {})
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in
                           self.doc.get("Parameters", {}).items()}
        self.parameters.update(parameters or {})

    # --- resources -----------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def physical_name(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties", {})
        for key in ("TableName", "Name"):
            if key in props:
                return str(self.resolve(props[key]))
        return f"{self.stack_name}-{logical_id}"

    def table_definitions(self) -> dict[str, dict[str, Any]]:
        """CreateTable arguments for each AWS::DynamoDB::Table, from the template's own schema."""
        out = {}
        for lid, res in self.of_type("AWS::DynamoDB::Table").items():
            props = res["Properties"]
            args: dict[str, Any] = {
                "TableName": self.physical_name(lid),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if props.get("GlobalSecondaryIndexes"):
                args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            if props.get("StreamSpecification"):
                args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            out[lid] = args
        return out

    def ttl_attribute(self, logical_id: str) -> str | None:
        spec = self.resources[logical_id]["Properties"].get("TimeToLiveSpecification") or {}
        return str(spec["AttributeName"]) if spec.get("Enabled") else None

    def event_buses(self) -> dict[str, str]:
        return {lid: self.physical_name(lid) for lid in self.of_type("AWS::Events::EventBus")}

    # --- functions and routes ------------------------------------------------------------------

    def functions(self) -> dict[str, FunctionSpec]:
        globals_env = self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        out = {}
        for lid, res in self.of_type("AWS::Serverless::Function").items():
            props = res["Properties"]
            env_doc = {**globals_env, **props.get("Environment", {}).get("Variables", {})}
            env = {key: str(self.resolve(value)) for key, value in env_doc.items()}
            out[lid] = FunctionSpec(lid, self.root / props["CodeUri"], props["Handler"], env)
        return out

    def routes(self) -> list[Route]:
        routes = []
        for lid, res in self.of_type("AWS::Serverless::Function").items():
            for event in res["Properties"].get("Events", {}).values():
                if event.get("Type") != "HttpApi":
                    continue
                path, method = event["Properties"]["Path"], event["Properties"]["Method"].upper()
                regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
                routes.append(Route(method, path, lid, re.compile(regex)))
        # Literal paths before parameterised ones, as API Gateway does.
        return sorted(routes, key=lambda r: r.path.count("{"))

    def load_handler(self, logical_id: str, instance: int = 0) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """Import a function's handler from its CodeUri, unchanged, under a unique module name.

        Each ``instance`` is a separate copy of the module, like a separate Lambda container.
        """
        spec = self.functions()[logical_id]
        module_name, _, attr = spec.handler.rpartition(".")
        module = _load_module(f"_fn_{logical_id}_{module_name}_{instance}", spec.code_uri / f"{module_name}.py")
        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = getattr(module, attr)
        return handler

    # --- intrinsics ----------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and "Ref" in value:
            name = value["Ref"]
            if name in self.parameters:
                return self.parameters[name]
            if name in self.resources:
                return self.physical_name(name)
            return self._pseudo(name)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return self.attribute(logical_id, attribute)
        if isinstance(value, dict) and "Fn::Sub" in value:
            text = value["Fn::Sub"]
            return re.sub(r"\$\{([\w:.]+)\}", lambda m: str(self.resolve({"Ref": m.group(1)})), text)
        return value

    def attribute(self, logical_id: str, attribute: str) -> str:
        """Fn::GetAtt for the attributes the functions' environment uses (ARNs and names)."""
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        account, region = self._pseudo("AWS::AccountId"), self._pseudo("AWS::Region")
        if attribute in ("QueueName", "Name"):
            return name
        if attribute == "Arn" and kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{region}:{account}:{name}"
        if attribute == "Arn" and kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{name}"
        raise ValueError(f"Fn::GetAtt {logical_id}.{attribute} is not supported by the local runner")

    def queues(self) -> dict[str, str]:
        return {lid: self.physical_name(lid) for lid in self.of_type("AWS::SQS::Queue")}

    def schedule_groups(self) -> dict[str, str]:
        return {lid: self.physical_name(lid) for lid in self.of_type("AWS::Scheduler::ScheduleGroup")}

    def _pseudo(self, name: str) -> str:
        return {
            "AWS::StackName": self.stack_name,
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }.get(name, name)


def _load_module(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def find_template(start: Path | None = None) -> Path:
    """template.yaml in the current directory or one of its parents (the repository root)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("template.yaml not found here or in a parent folder; pass --template")
