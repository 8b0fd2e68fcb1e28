"""deploy/template.yaml and the Dockerfile: what can be checked without AWS or a Docker engine,
and the scanners a platform team runs before deploying (cfn-lint, checkov, bandit)."""

from __future__ import annotations

import importlib
import json
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
from scripts.tools.provision import REDRIVE_UNTIL_SUCCESS

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


# checkov pins botocore and packaging below what aiobotocore and pytest need: it gets a venv
# of its own, made once beside the test venv (`make clean` removes it).
CHECKOV = "checkov>=3,<4"


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkov command, installed into its own venv on first use."""
    in_venv = sys.prefix != sys.base_prefix
    home = Path(sys.prefix) / "tools" if in_venv else tmp_path_factory.mktemp("tools")
    venv = home / "checkov"
    command = venv / "bin" / "checkov"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", CHECKOV],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert pip.returncode == 0, f"pip install {CHECKOV} failed: {pip.stderr[-2000:]}"
        stamp.touch()
    return command


def _with_api(enabled: bool, directory: Path) -> Path:
    """The template with EnableApi defaulting to `enabled`: checkov skips the resources of a
    condition that is false, so the API function is scanned from a copy with it on."""
    text = TEMPLATE.read_text(encoding="utf-8")
    pattern = r'(  EnableApi:\n    Type: String\n    Default: )"false"'
    text, count = re.subn(pattern, rf'\1"{str(enabled).lower()}"', text)
    assert count == 1
    copy = directory / f"template-api-{enabled}.yaml"
    copy.write_text(text, encoding="utf-8")
    return copy


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("api", [False, True], ids=["worker", "with-api"])
def test_checkov_finds_no_unexplained_failure(checkov: Path, api: bool, tmp_path: Path) -> None:
    """checkov (its CloudFormation checks, offline) fails no check of the template, with and
    without the API; each check it skips is suppressed in the template with the reason."""
    done = subprocess.run(
        [str(checkov), "--file", str(_with_api(api, tmp_path)), "--framework", "cloudformation",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    skipped = {
        (c["check_id"], c["resource"]): c["check_result"].get("suppress_comment", "")
        for c in results["skipped_checks"]
    }
    assert all(len(reason) > 30 for reason in skipped.values()), skipped
    scanned = {c["resource"] for c in results["passed_checks"]} | {r for _, r in skipped}
    assert ("AWS::Serverless::Function.ApiFunction" in scanned) is api


@pytest.mark.slow
def test_bandit_finds_no_medium_or_high_issue() -> None:
    """bandit over the shipped packages reports nothing of medium or high severity (the
    metrics bind 127.0.0.1 unless the image sets it; the local services GET loopback only)."""
    bandit = shutil.which("bandit", path=str(Path(sys.executable).parent)) or "bandit"
    done = subprocess.run(
        [bandit, "--quiet", "--recursive", "--severity-level", "medium", "--format", "json",
         "lanes", "markets", "worker", "scripts"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in json.loads(done.stdout)["results"]
    ]
    assert found == [], found


def test_queues_environments_and_logs_are_encrypted(template: dict[str, Any]) -> None:
    """What checkov asks, checked without it: every queue SSE-SQS, the functions'
    environment (the resolved credentials) and both log groups under the stack's rotated
    key, whose holders can decrypt the environment; every security group rule described."""
    for queue in _resources(template, "AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    key = {"GetAtt": "LanesKey.Arn"}
    assert template["Resources"]["LanesKey"]["Properties"]["EnableKeyRotation"] is True
    assert template["Globals"]["Function"]["KmsKeyArn"] == key
    for group in _resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["KmsKeyId"] == key
    for function in _resources(template, "AWS::Serverless::Function").values():
        statements = function["Properties"]["Policies"][0]["Statement"]
        assert {"Sid": "DecryptTheEnvironment", "Effect": "Allow", "Action": "kms:Decrypt",
                "Resource": key} in statements  # fmt: skip
    for group in _resources(template, "AWS::EC2::SecurityGroup").values():
        properties = group["Properties"]
        rules = properties.get("SecurityGroupIngress", []) + properties.get(
            "SecurityGroupEgress", []
        )
        assert rules
        assert all(rule.get("Description") for rule in rules)


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


def test_dockerfile_has_a_daemon_an_api_and_a_lambda_target() -> None:
    """The daemon gets the core install, the API and the Lambda image the api extra (both
    Lambda handlers); `docker build .` builds the daemon (the last stage)."""
    targets = _dockerfile_targets()
    assert targets["lambda"] == "public.ecr.aws/lambda/python:3.11"
    assert list(targets)[-1] == "daemon"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert (
        "FROM source AS core-install\nRUN pip install --no-cache-dir --prefix=/install .\n" in text
    )
    assert "RUN pip install --no-cache-dir --prefix=/install '.[api]'" in text
    for target, install in (("daemon", "core"), ("api", "api"), ("lambda", "api")):
        stage = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert f"COPY --from={install}-install /install" in stage
    assert 'CMD ["worker.lambda_handler.handler"]' in text
    assert 'ENTRYPOINT ["lanes"]' in text
    assert 'CMD ["api", "--host", "0.0.0.0", "--port", "8080"]' in text


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
