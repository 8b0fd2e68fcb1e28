"""deploy/template.yaml and the Dockerfile: what can be checked without AWS or a Docker engine."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import markets
from lanes.policy import Lane, LanePolicies
from scripts.provision import REDRIVE_UNTIL_SUCCESS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "template.yaml"


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_Loader)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


@pytest.mark.slow
def test_cfn_lint_passes() -> None:
    """cfn-lint (with the SAM transform) finds nothing in the template."""
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    done = subprocess.run([lint, str(TEMPLATE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_queue_names_and_redrive_match_the_worker(template: dict[str, Any]) -> None:
    """Queues are {prefix}-{market}-{lane} with a -dlq each; every lane redrives only
    after 1000 receives, as `lanes provision` sets it (the worker dead-letters first)."""
    queues = _resources(template, "AWS::SQS::Queue")
    names = {r["Properties"]["QueueName"]["Sub"]: r for r in queues.values()}
    for lane in Lane:
        queue = names[f"${{QueuePrefix}}-${{Market}}-{lane.value}"]
        assert f"${{QueuePrefix}}-${{Market}}-{lane.value}-dlq" in names
        redrive = queue["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == REDRIVE_UNTIL_SUCCESS
        target = redrive["deadLetterTargetArn"]["GetAtt"]
        assert target == f"{lane.value.capitalize()}DeadLetterQueue.Arn"


def test_visibility_is_at_least_six_times_the_function_timeout(template: dict[str, Any]) -> None:
    timeouts = template["Mappings"]["Worker"]["Timeouts"]
    assert template["Globals"]["Function"]["Timeout"] == {
        "FindInMap": ["Worker", "Timeouts", "FunctionSeconds"]
    }
    assert timeouts["VisibilitySeconds"] >= 6 * timeouts["FunctionSeconds"]
    for resource in _resources(template, "AWS::SQS::Queue").values():
        visibility = resource["Properties"].get("VisibilityTimeout")
        if "RedrivePolicy" in resource["Properties"]:
            assert visibility == {"FindInMap": ["Worker", "Timeouts", "VisibilitySeconds"]}


def test_one_event_source_per_lane_with_partial_batch_failures(template: dict[str, Any]) -> None:
    """Each lane queue feeds the worker function through its own event source with
    ReportBatchItemFailures and its own maximum concurrency."""
    worker = template["Resources"]["Worker"]["Properties"]
    assert worker["ImageConfig"]["Command"] == ["worker.lambda_handler.handler"]
    events = worker["Events"]
    assert {e["Properties"]["Queue"]["GetAtt"] for e in events.values()} == {
        f"{lane.value.capitalize()}Queue.Arn" for lane in Lane
    }
    for event in events.values():
        properties = event["Properties"]
        assert event["Type"] == "SQS"
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert "MaximumConcurrency" in properties["ScalingConfig"]
        assert 1 <= properties["BatchSize"] <= 10


def test_redis_is_tls_and_egress_has_a_fixed_ip(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["LANES_REDIS_URL"]["Sub"].startswith("rediss://")
    assert template["Resources"]["Cache"]["Properties"]["Engine"] == "valkey"
    assert template["Outputs"]["NatPublicIp"]["Value"] == {"Ref": "NatIp"}
    routes = template["Resources"]["PrivateDefaultRoute"]["Properties"]
    assert routes["NatGatewayId"] == {"Ref": "NatGateway"}


def _dockerfile_targets() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return {m.group(2): m.group(1) for m in re.finditer(r"^FROM (\S+) AS (\S+)$", text, re.M)}


def test_dockerfile_has_a_daemon_and_a_lambda_target() -> None:
    targets = _dockerfile_targets()
    assert targets["lambda"] == "public.ecr.aws/lambda/python:3.11"
    assert "daemon" in targets
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'CMD ["worker.lambda_handler.handler"]' in text
    assert 'ENTRYPOINT ["lanes"]' in text


def test_the_baked_config_loads_and_matches_the_template() -> None:
    """deploy/lanes.toml is copied into both images, loads, and its low max_attempts is the
    one the template's low redrive count (+10) assumes."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY deploy/lanes.toml ${LAMBDA_TASK_ROOT}/lanes.toml" in text
    assert "COPY deploy/lanes.toml /etc/lanes/lanes.toml" in text
    config = markets.load_config(ROOT / "deploy" / "lanes.toml")
    assert sorted(config.markets) == ["coupang", "naver"]
    assert config.lanes[Lane.LOW].max_attempts == LanePolicies()[Lane.LOW].max_attempts


def test_the_entry_points_import() -> None:
    """The Lambda handler and the console script named by the image exist."""
    handler = importlib.import_module("worker.lambda_handler")
    assert callable(handler.handler)
    cli = importlib.import_module("scripts.cli")
    assert callable(cli.main)
