"""The README's IAM policy allows every AWS call the product makes, and holds nothing it does not need.

A deploy (canaries, Proceed, rollout, Done), an emergency deploy rolled back after its rollout, two peas
deployed (one of them crashing) and released, and `fatcontroller doctor` run against the sandbox, whose
services are tagged and have task roles as Terraform would leave them. Its AWS emulator records each
request as IAM sees it (`AwsCall`: the action, the ARNs it names, its condition keys, and the actions AWS
authorises with it: ecs:TagResource for tags given on creation, iam:PassRole for the roles it passes).

Which of the named ARNs IAM checks an action on comes from AWS's Service Authorization Reference, as the
policy_sentry package ships it (UpdateService is checked on the service, its task definition is only a
condition key; ListTasks names no resource of its type, so `*`). The policy is read straight from the
README's JSON block and evaluated by the small evaluator below, which knows the condition operators the
policy uses. No maintained request evaluator was found on PyPI (principalmapper's has not changed since
2022; sibyl-aws and iam-ape answer other questions), and moto's IAM enforcement checks every ECS call on
`*` (so it refuses resource-scoped statements) and ignores ArnEquals conditions.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from policy_sentry.querying.actions import get_privilege_info
from policy_sentry.util.arns import does_arn_match

from flows.doctor import AWS, Status, Systems, examine
from integrations.cloudwatch import CloudWatch
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from sandbox.aws import AwsCall
from sandbox.world import Sandbox
from tests.fixtures.peas import PEAS, Pool
from tests.fixtures.world import EMERGENCY, REQUESTER, Train, eventually

README = Path(__file__).resolve().parents[2] / "README.md"
POLICY_HEADING = "### 2. AWS permissions"
TEAM_TAGS = [{"key": "team", "value": "checkout"}, {"key": "managed-by", "value": "terraform"}]
TASK_ROLE = "arn:aws:iam::123456789012:role/app-task"
WATCHED = "app-5xx-rate"  # the alarm the train's deploys are watched by
_REGISTERED = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu", "memory",
               "executionRoleArn")


# -- the policy and its evaluation ------------------------------------------------------------------------
def _glob(pattern: str, value: str) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` any one; everything else literally."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike (and ArnEquals, which IAM matches the same way): each of the six parts on its own."""
    wanted, got = pattern.split(":", 5), value.split(":", 5)
    return len(wanted) == len(got) == 6 and all(_glob(w, g) for w, g in zip(wanted, got, strict=True))


def _covers(pattern: str, resource: str) -> bool:
    """Whether a statement's Resource entry covers a requested resource (`*` only by a pattern that matches it)."""
    return _arn_like(pattern, resource) if pattern.startswith("arn:") else _glob(pattern, resource)


# the operators the evaluator knows: a policy using another one is refused when it is read
_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda wanted, value: wanted == value,
    "StringLike": _glob,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}


@dataclass(frozen=True)
class Request:
    """One (action, resource) pair IAM evaluates, with the condition keys of the request."""

    action: str
    resource: str  # an ARN, or "*" when the request names none of the resource types the action is checked on
    context: tuple[tuple[str, str], ...]

    def value(self, key: str) -> str | None:
        return next((v for k, v in self.context if k.lower() == key.lower()), None)

    def __str__(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in self.context if not k.startswith("aws:"))
        return f"{self.action} on {self.resource}" + (f" ({keys})" if keys else "")


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str
    values: tuple[str, ...]

    def holds(self, request: Request, values: tuple[str, ...] | None = None) -> bool:
        """Whether the request's value of the key matches one of the condition's values (or of `values`)."""
        value = request.value(self.key)  # a key the request lacks fails the condition (no ...IfExists here)
        return value is not None and any(_OPERATORS[self.operator](v, value) for v in values or self.values)


def _strings(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Statement:
    sid: str
    line: int  # of its Sid in README.md
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...]

    @classmethod
    def read(cls, data: dict[str, Any], line: int) -> Statement:
        unknown = set(data) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert not unknown, f"README.md:{line}: the evaluator knows no {sorted(unknown)} (NotAction, Principal...)"
        conditions = tuple(Condition(operator, key, _strings(values))
                           for operator, keys in data.get("Condition", {}).items() for key, values in keys.items())
        for condition in conditions:
            assert condition.operator in _OPERATORS, (
                f"README.md:{line}: the evaluator of {Path(__file__).name} knows no {condition.operator}: teach it")
        return cls(data["Sid"], line, data["Effect"], _strings(data["Action"]), _strings(data["Resource"]),
                   conditions)

    def grants(self, action: str) -> bool:
        return any(_glob(a.lower(), action.lower()) for a in self.actions)  # actions are case-insensitive

    def covers(self, resource: str) -> bool:
        return any(_covers(r, resource) for r in self.resources)

    def matches(self, request: Request) -> bool:
        return (self.grants(request.action) and self.covers(request.resource)
                and all(c.holds(request) for c in self.conditions))

    def why_not(self, request: Request) -> str:
        if not self.covers(request.resource):
            return f"not on {request.resource}"
        failed = next(c for c in self.conditions if not c.holds(request))
        return (f"its condition {failed.operator} {failed.key} {list(failed.values)} does not hold "
                f"({failed.key} is {request.value(failed.key) or 'not in the request'})")


@dataclass(frozen=True)
class Policy:
    line: int  # of the JSON block in README.md
    statements: tuple[Statement, ...]

    @classmethod
    def read(cls, text: str) -> Policy:
        """The JSON block after `### 2. AWS permissions`, each statement with the line of its Sid."""
        lines = text.splitlines()
        heading = lines.index(POLICY_HEADING)
        start = lines.index("```json", heading) + 1
        end = lines.index("```", start)
        document = json.loads("\n".join(lines[start:end]))
        statements = []
        for data in document["Statement"]:
            assert "Sid" in data, f"README.md:{start}: every statement has a Sid, so that a failure can name it"
            line = start + 1 + next(i for i, t in enumerate(lines[start:end]) if f'"Sid": "{data["Sid"]}"' in t)
            statements.append(Statement.read(data, line))
        return cls(start, tuple(statements))

    def decide(self, request: Request) -> tuple[bool, tuple[Statement, ...]]:
        """Allowed or not, and the statements that decide it: an explicit Deny wins over any Allow."""
        matching = tuple(s for s in self.statements if s.matches(request))
        denying = tuple(s for s in matching if s.effect == "Deny")
        if denying:
            return False, denying
        allowing = tuple(s for s in matching if s.effect == "Allow")
        return bool(allowing), allowing

    def refusal(self, request: Request) -> str:
        """Why `request` is not allowed, and which line of README.md to change."""
        allowed, deciding = self.decide(request)
        assert not allowed
        if deciding:
            return "; ".join(f"README.md:{s.line}: statement {s.sid} denies {request}" for s in deciding)
        granting = [s for s in self.statements if s.effect == "Allow" and s.grants(request.action)]
        if not granting:
            return f"README.md:{self.line}: no statement allows {request}: add the action to the policy"
        return "; ".join(f"README.md:{s.line}: statement {s.sid} allows {request.action} but {s.why_not(request)}"
                         for s in granting)

    def unused(self, allowed: Iterable[Request]) -> list[str]:
        """Each action, resource and condition value of an Allow statement that no allowed request needed, as
        README lines."""
        used: set[tuple[str, str]] = set()
        for request in allowed:
            for s in self.decide(request)[1]:
                used |= {(s.sid, a) for a in s.actions if _glob(a.lower(), request.action.lower())}
                used |= {(s.sid, r) for r in s.resources if _covers(r, request.resource)}
                used |= {(s.sid, f"{c.key} {v}") for c in s.conditions for v in c.values if c.holds(request, (v,))}
        return [f"README.md:{s.line}: statement {s.sid} grants {entry}, which no call of the run needed"
                for s in self.statements if s.effect == "Allow"
                for entry in (*s.actions, *s.resources, *(f"{c.key} {v}" for c in s.conditions for v in c.values))
                if (s.sid, entry) not in used]


# -- what IAM checks for a recorded call ---------------------------------------------------------------------
@cache
def _privilege(action: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The ARN formats of the resource types AWS checks `action` on, and the condition keys it defines for it."""
    service, _, name = action.partition(":")
    info = get_privilege_info(service, name)  # raises for an action AWS does not define
    kinds = [kind for kind in info["resource_types"] if kind]
    keys = {k.lower() for entry in info["resource_types"].values() for k in entry["condition_keys"]}
    keys |= {k.lower() for kind in kinds for k in info["service_resources"][kind]["condition_keys"]}
    return tuple(info["service_resources"][kind]["arn"] for kind in kinds), frozenset(keys)


def requests_of(call: AwsCall) -> list[Request]:
    """What IAM evaluates for one authorised action of a call: a request per ARN it names of a type the action
    is checked on, or one on `*`."""
    formats, _ = _privilege(call.action)
    arns = [arn for arn in call.resources if any(does_arn_match(arn, f) for f in formats)]
    context = {**call.conditions, "aws:RequestedRegion": call.region,
               **{f"aws:RequestTag/{key}": value for key, value in call.request_tags.items()}}
    return [Request(call.action, arn, tuple(sorted(context.items()))) for arn in arns or ["*"]]


def undefined_keys(call: AwsCall) -> list[str]:
    """Condition keys the emulator gives a call that AWS does not define for its action (a sandbox bug)."""
    _, keys = _privilege(call.action)
    return [f"{call.action} carries {key}" for key in call.conditions if key.lower() not in keys]


# -- the evaluator alone -------------------------------------------------------------------------------------
def _policy(*statements: dict[str, Any]) -> Policy:
    text = "\n".join([POLICY_HEADING, "```json", json.dumps({"Version": "2012-10-17", "Statement": statements},
                                                            indent=2), "```"])
    return Policy.read(text)


def _request(action: str, resource: str, **context: str) -> Request:
    return Request(action, resource, tuple(sorted(context.items())))


def test_the_evaluator_allows_only_what_a_statement_matches_and_an_explicit_deny_wins() -> None:
    cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/production"
    policy = _policy(
        {"Sid": "Services", "Effect": "Allow", "Action": "ecs:*Service?",
         "Resource": "arn:aws:ecs:*:123456789012:service/production/*"},
        {"Sid": "Tag", "Effect": "Allow", "Action": "ecs:TagResource", "Resource": "*",
         "Condition": {"StringEquals": {"ecs:CreateAction": ["CreateService", "RegisterTaskDefinition"]}}},
        {"Sid": "Tasks", "Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*",
         "Condition": {"ArnEquals": {"ecs:cluster": cluster}}},
        {"Sid": "NotThatOne", "Effect": "Deny", "Action": "ecs:DescribeServices",
         "Resource": "arn:aws:ecs:eu-west-1:123456789012:service/production/secret"})
    web = "arn:aws:ecs:eu-west-1:123456789012:service/production/web"

    def allowed(request: Request) -> bool:
        return policy.decide(request)[0]

    assert allowed(_request("ecs:DescribeServices", web)) and allowed(_request("ECS:describeservices", web))
    assert not allowed(_request("ecs:DescribeServices", web.replace("production", "staging")))
    assert not allowed(_request("ecs:DescribeServices", "*"))  # a statement on ARNs never matches `*`
    assert not allowed(_request("ecs:DescribeServices", web.replace("web", "secret")))
    assert "statement NotThatOne denies" in policy.refusal(_request("ecs:DescribeServices", web[:-3] + "secret"))
    assert allowed(_request("ecs:TagResource", web, **{"ecs:CreateAction": "CreateService"}))
    assert not allowed(_request("ecs:TagResource", web, **{"ecs:CreateAction": "TagResource"}))
    assert not allowed(_request("ecs:TagResource", web))  # the key is missing: the condition fails
    assert allowed(_request("ecs:ListTasks", "*", **{"ecs:cluster": cluster}))
    assert "ecs:cluster is arn:aws:ecs:eu-west-1:123456789012:cluster/peas" in policy.refusal(
        _request("ecs:ListTasks", "*", **{"ecs:cluster": cluster.replace("production", "peas")}))
    assert "README.md:2: no statement allows ecs:DeleteCluster" in policy.refusal(_request("ecs:DeleteCluster", "*"))
    tag_on_create = _request("ecs:TagResource", web, **{"ecs:CreateAction": "RegisterTaskDefinition"})
    assert policy.unused([_request("ecs:DescribeServices", web), tag_on_create]) == [
        "README.md:13: statement Tag grants ecs:CreateAction CreateService, which no call of the run needed",
        "README.md:27: statement Tasks grants ecs:ListTasks, which no call of the run needed",
        "README.md:27: statement Tasks grants *, which no call of the run needed",
        f"README.md:27: statement Tasks grants ecs:cluster {cluster}, which no call of the run needed"]
    with pytest.raises(AssertionError, match="knows no NumericLessThan"):
        _policy({"Sid": "X", "Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*",
                 "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}})


def test_the_readme_policy_names_only_actions_aws_defines() -> None:
    for statement in Policy.read(README.read_text()).statements:
        for action in statement.actions:
            _privilege(action)  # raises "Unknown action ..." for a misspelt one


# -- the product's calls -------------------------------------------------------------------------------------
def _terraform(sandbox: Sandbox) -> None:
    """What a team's Terraform leaves: every service on a revision tagged by `default_tags`, with a task role."""
    ecs = boto3.client("ecs", endpoint_url=sandbox.aws.url, region_name="eu-west-1")
    for cluster in (sandbox.spec.cluster, sandbox.spec.pea_cluster):
        for service in sandbox.aws.services(cluster):
            current = sandbox.aws.task_definition(service["taskDefinition"])
            tagged = ecs.register_task_definition(**{k: current[k] for k in _REGISTERED if k in current},
                                                  taskRoleArn=TASK_ROLE, tags=TEAM_TAGS)
            ecs.update_service(cluster=cluster, service=service["serviceName"],
                               taskDefinition=tagged["taskDefinition"]["taskDefinitionArn"])


@pytest.fixture
async def both(make_pool: Callable[..., Pool]) -> AsyncIterator[tuple[Pool, Train]]:
    """A train with peas (its engine not started yet), on a sandbox set up as Terraform would have it; the pool
    for its pea helpers."""
    pool = make_pool(deploy={"alarms": [WATCHED]})  # its deploys watched by an alarm, as ECS's rollouts are then
    pool.sandbox.aws.create_alarm(WATCHED)
    _terraform(pool.sandbox)

    async def steady() -> bool:
        return all(len(s["deployments"]) == 1 for c in (pool.sandbox.spec.cluster, pool.sandbox.spec.pea_cluster)
                   for s in pool.sandbox.aws.services(c))

    await eventually(steady, what="the services on their tagged revisions")
    train = Train(pool.config, pool.database, pool.sandbox, pool.notifier, pool.outside)
    yield pool, train
    await train.engine.stop()


async def _run_the_product(pool: Pool, train: Train) -> None:
    first = await train.request(train.new_pr("Add a banner"))
    await train.reaches(first.id, "canary_check", within=30)
    await train.press(first.id, "Proceed")
    await train.reaches(first.id, "awaiting_confirmation", within=30)
    await train.press(first.id, "Done")
    await train.reaches(first.id, "completed")

    bad = await train.request(train.new_pr("Serves errors"))  # its alarm goes off while ECS watches it too
    await train.reaches(bad.id, "canary_check", within=30)
    pool.sandbox.aws.alarm_bake_steps = 10_000
    await train.press(bad.id, "Proceed")
    await train.reaches(bad.id, "rolling_out", within=30)
    pool.sandbox.aws.set_alarm(WATCHED, "ALARM", "Threshold Crossed")
    await train.reaches(bad.id, "rolled_back", within=30)
    pool.sandbox.aws.set_alarm(WATCHED, "OK")
    pool.sandbox.aws.alarm_bake_steps = 0

    second = await train.request(train.new_pr("Risky change"), EMERGENCY, skip_build=True, reason="site down")
    await train.reaches(second.id, "canary_check", within=30)
    await train.press(second.id, "Proceed", EMERGENCY)
    await train.reaches(second.id, "awaiting_confirmation", within=30)
    await train.press(second.id, "Roll back", EMERGENCY)
    await train.reaches(second.id, "rolled_back", within=30)

    up, crashing = PEAS[:2]
    pr, _ = await pool.ready_pr("Purple buttons")
    await pool.flows.deploy(REQUESTER, up, pr)
    await pool.reaches(up, "up", within=30)
    pr, sha = await pool.ready_pr("Crashes on boot")
    pool.sandbox.aws.unhealthy_images.add(pool.sandbox.image(sha))
    await pool.flows.deploy(REQUESTER, crashing, pr)  # its tasks crash: the pea fails, and is released all the same
    await pool.reaches(crashing, "failed", within=30)
    for pea in (up, crashing):
        await pool.flows.release(REQUESTER, pea)
        await pool.reaches(pea, "free")
        await pool.scaled_to_zero(pea)

    github, jenkins, ecs = train.outside.github, train.outside.jenkins, train.outside.ecs  # the facades the train runs
    assert isinstance(github, GitHub) and isinstance(jenkins, Jenkins) and isinstance(ecs, Ecs)
    cloudwatch = CloudWatch(region="eu-west-1", endpoint_url=pool.sandbox.aws.url, timeout=5.0)
    try:
        report = await examine(train.config, Systems(github, jenkins, ecs, cloudwatch))
    finally:
        cloudwatch.close()
    assert [c.words for c in report.checks if c.system == AWS and c.status is not Status.OK] == []


async def test_every_aws_call_of_the_product_is_allowed_by_the_readme_policy_and_nothing_else_is_needed(
        both: tuple[Pool, Train]) -> None:
    pool, train = both
    start = len(pool.sandbox.aws.call_log)  # what the product asks from here on; the set-up before was Terraform
    train.start()
    await _run_the_product(pool, train)
    policy = Policy.read(README.read_text())

    authorised = [a for call in pool.sandbox.aws.call_log[start:] for a in call.authorised]
    assert sorted({k for a in authorised for k in undefined_keys(a)}) == []
    requests = {r for a in authorised for r in requests_of(a)}
    refused = sorted({policy.refusal(r) for r in requests if not policy.decide(r)[0]})
    assert not refused, "the README's IAM policy refuses calls the product makes:\n" + "\n".join(refused)
    unused = policy.unused(requests)
    assert not unused, "the README's IAM policy grants what nothing needs (remove it, or run here the flow " \
                       "that needs it):\n" + "\n".join(unused)
