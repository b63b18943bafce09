"""The CloudWatch half of the AWS emulator: metric alarms whose state tests and the demo set.

CloudWatch's botocore model lists three protocols, and which one a client speaks depends on its
botocore release, so the front answers all three, by the same operations:

- `smithy-rpc-v2-cbor`: `POST /service/GraniteServiceVersion20100801/operation/<Op>`, header
  `smithy-protocol: rpc-v2-cbor`, CBOR bodies (timestamps as tag 1, epoch seconds);
- `json` (AWS JSON 1.0): `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.<Op>` and
  `application/x-amz-json-1.0` bodies (timestamps as epoch seconds);
- `query`: `POST /` with a form body (`Action=<Op>&Version=2010-08-01&AlarmNames.member.1=...`)
  answered in XML, what botocore releases before the JSON switch speak.

CloudWatch is "query compatible": in CBOR and JSON an error's `__type` is its Smithy shape and the
`x-amzn-query-error: <code>;Sender` header carries the code query clients know (`ResourceNotFound`),
which is what botocore reports.

Alarms never evaluate metrics here: an alarm stays in the state it was created in, or last set to
with SetAlarmState or `set_state`, until it is set again. One set of alarms serves every region
(an alarm's ARN carries the region of the request that created it).

Not thread-safe by itself: the emulator serialises every call under its lock.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import cbor2

from sandbox.ecr import ACCOUNT_ID, DEFAULT_REGION, AwsError

TARGET_PREFIX = "GraniteServiceVersion20100801"
XML_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
JSON_TYPE = "application/x-amz-json-1.0"
CBOR_TYPE = "application/cbor"
OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)
MAX_NAMES = 100
INITIAL_REASON = "Unchecked: Initial alarm creation"

# query error code -> the Smithy shape its `__type` names (the shapes of botocore's model)
_SHAPES = {"ResourceNotFound": "ResourceNotFound", "InvalidFormat": "InvalidFormatFault",
           "LimitExceeded": "LimitExceededFault", "InvalidNextToken": "InvalidNextToken",
           "InvalidParameterValue": "InvalidParameterValueException",
           "InvalidParameterCombination": "InvalidParameterCombinationException",
           "MissingParameter": "MissingRequiredParameterException", "ValidationError": "ValidationException",
           "InternalServiceError": "InternalServiceFault", "InvalidAction": "InvalidAction"}
_OUTPUTS = {"DescribeAlarms"}  # the served operations with an output shape
_INTEGERS = {"Period", "EvaluationPeriods", "DatapointsToAlarm", "MaxRecords"}
_FLOATS = {"Threshold"}
_BOOLEANS = {"ActionsEnabled", "ReturnData"}
_DEFAULT_METRIC = {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
                   "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0,
                   "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validation(message: str) -> AwsError:
    return AwsError("ValidationError", f"1 validation error detected: {message}")


@dataclass(eq=False)
class Alarm:
    name: str
    region: str
    fields: dict[str, Any]  # PutMetricAlarm's parameters, tags apart
    tags: list[dict[str, str]]
    state: str = INSUFFICIENT_DATA
    reason: str = INITIAL_REASON
    reason_data: str | None = None
    state_updated_at: dt.datetime = field(default_factory=_now)
    state_transitioned_at: dt.datetime = field(default_factory=_now)
    configuration_updated_at: dt.datetime = field(default_factory=_now)

    @property
    def arn(self) -> str:
        return alarm_arn(self.name, self.region)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmArn": self.arn,
            "AlarmConfigurationUpdatedTimestamp": self.configuration_updated_at,
            "ActionsEnabled": True,
            "OKActions": [],
            "AlarmActions": [],
            "InsufficientDataActions": [],
            "Dimensions": [],
        }
        described.update(copy.deepcopy(self.fields))
        described.update(StateValue=self.state, StateReason=self.reason,
                         StateUpdatedTimestamp=self.state_updated_at,
                         StateTransitionedTimestamp=self.state_transitioned_at)
        if self.reason_data is not None:
            described["StateReasonData"] = self.reason_data
        return described


def alarm_arn(name: str, region: str = DEFAULT_REGION) -> str:
    return f"arn:aws:cloudwatch:{region}:{ACCOUNT_ID}:alarm:{name}"


class CloudWatchBackend:
    """Metric alarms and the four operations on them; `describe_calls` counts DescribeAlarms requests."""

    def __init__(self) -> None:
        self.alarms: dict[str, Alarm] = {}
        self.describe_calls = 0

    def handle(self, op: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise AwsError("InvalidAction", f"The action {op} is not valid for this web service.")
        return handler(params, region)

    # -- what ECS asks and the sandbox sets ----------------------------------------------------
    def alarm(self, name: str) -> Alarm | None:
        return self.alarms.get(name)

    def set_state(self, name: str, state: str, reason: str, reason_data: str | None = None) -> Alarm:
        """What SetAlarmState does; StateTransitionedTimestamp moves only when the state changes."""
        alarm = self.alarms.get(name)
        if alarm is None:
            raise AwsError("ResourceNotFound", f"Alarm {name} not found", status=404)
        if state not in STATES:
            raise _validation(f"Value '{state}' at 'stateValue' failed to satisfy constraint: "
                              "Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]")
        if reason_data is not None:
            try:
                json.loads(reason_data)
            except ValueError:
                raise AwsError("InvalidFormat", "StateReasonData is not valid JSON") from None
        now = _now()
        if state != alarm.state:
            alarm.state_transitioned_at = now
        alarm.state, alarm.reason, alarm.reason_data, alarm.state_updated_at = state, reason, reason_data, now
        return alarm

    def resources(self, op: str, params: dict[str, Any], region: str) -> list[str]:
        """The alarm ARNs a request names (none for a DescribeAlarms by prefix or of everything)."""
        names = list(params.get("AlarmNames") or [])
        if params.get("AlarmName"):
            names.append(params["AlarmName"])
        return [self.alarms[n].arn if n in self.alarms else alarm_arn(n, region) for n in names if isinstance(n, str)]

    # -- API -----------------------------------------------------------------------------------
    def _op_PutMetricAlarm(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params.get("AlarmName")
        if not name:
            raise AwsError("MissingParameter", "The parameter AlarmName is required.")
        if len(name) > 255:
            raise _validation(f"Value '{name}' at 'alarmName' failed to satisfy constraint: "
                              "Member must have length less than or equal to 255")
        for required in ("EvaluationPeriods", "ComparisonOperator"):
            if params.get(required) is None:
                raise AwsError("MissingParameter", f"The parameter {required} is required.")
        if not params.get("Metrics") and not (params.get("MetricName") and params.get("Namespace")):
            raise AwsError("MissingParameter", "The parameter MetricName or Metrics is required.")
        if params.get("Metrics") and params.get("MetricName"):
            raise AwsError("InvalidParameterCombination",
                           "The parameters MetricName and Metrics are mutually exclusive.")
        fields = {k: copy.deepcopy(v) for k, v in params.items() if k != "Tags"}
        alarm = self.alarms.get(name)
        if alarm is None:
            self.alarms[name] = Alarm(name, region, fields, copy.deepcopy(params.get("Tags") or []))
        else:  # an update replaces the whole configuration and leaves the state as it is
            alarm.fields, alarm.configuration_updated_at = fields, _now()
        return {}

    def _op_DescribeAlarms(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        self.describe_calls += 1
        names, prefix = params.get("AlarmNames"), params.get("AlarmNamePrefix")
        if names and prefix:
            raise AwsError("InvalidParameterCombination",
                           "AlarmNamePrefix and AlarmNames cannot be specified together.")
        if names is not None and len(names) > MAX_NAMES:
            raise _validation(f"Value '{names}' at 'alarmNames' failed to satisfy constraint: "
                              f"Member must have length less than or equal to {MAX_NAMES}")
        size = params.get("MaxRecords", 50)
        if not 1 <= size <= 100:
            raise _validation(f"Value '{size}' at 'maxRecords' failed to satisfy constraint: "
                              "Member must have value between 1 and 100")
        types = params.get("AlarmTypes") or ["MetricAlarm"]
        found = sorted((a for a in self.alarms.values()
                        if (not names or a.name in names)
                        and (not prefix or a.name.startswith(prefix))
                        and params.get("StateValue") in (None, a.state)
                        and _has_action(a, params.get("ActionPrefix"))), key=lambda a: a.name)
        if "MetricAlarm" not in types:
            found = []
        token = params.get("NextToken")
        if token is not None and not (token.isdigit() and int(token) <= len(found)):
            raise AwsError("InvalidNextToken", "The service couldn't process your request because the NextToken "
                                               "is invalid.")
        start = int(token) if token else 0
        page = found[start:start + size]
        answer: dict[str, Any] = {"MetricAlarms": [a.describe() for a in page], "CompositeAlarms": []}
        if start + size < len(found):
            answer["NextToken"] = str(start + size)
        return answer

    def _op_SetAlarmState(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        for required in ("AlarmName", "StateValue", "StateReason"):
            if not params.get(required):
                raise AwsError("MissingParameter", f"The parameter {required} is required.")
        self.set_state(params["AlarmName"], params["StateValue"], params["StateReason"],
                       params.get("StateReasonData"))
        return {}

    def _op_DeleteAlarms(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        names = params.get("AlarmNames") or []
        if len(names) > MAX_NAMES:
            raise _validation(f"Value '{names}' at 'alarmNames' failed to satisfy constraint: "
                              f"Member must have length less than or equal to {MAX_NAMES}")
        # as documented: the alarms named correctly are deleted, the other names are passed over
        for name in names:
            self.alarms.pop(name, None)
        return {}


def _has_action(alarm: Alarm, prefix: str | None) -> bool:
    if not prefix:
        return True
    actions = [*alarm.fields.get("OKActions", []), *alarm.fields.get("AlarmActions", []),
               *alarm.fields.get("InsufficientDataActions", [])]
    return any(a.startswith(prefix) for a in actions)


def put_alarm_params(name: str, **fields: Any) -> dict[str, Any]:
    """PutMetricAlarm parameters for a plausible 5xx-count alarm, with `fields` replacing any of them."""
    return {"AlarmName": name, **_DEFAULT_METRIC, **fields}


# -- wire encodings ------------------------------------------------------------------------------
def decode_json(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise AwsError("SerializationException", "request body is not JSON") from None
    if not isinstance(params, dict):
        raise AwsError("SerializationException", "request body is not a JSON object")
    return params


def decode_cbor(body: bytes) -> dict[str, Any]:
    try:
        params = cbor2.loads(body) if body else {}
    except (cbor2.CBORDecodeError, ValueError):
        raise AwsError("SerializationException", "request body is not CBOR") from None
    if not isinstance(params, dict):
        raise AwsError("SerializationException", "request body is not a CBOR map")
    return params


def decode_query(form: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The action and its parameters from a query request (`Dimensions.member.1.Name=...` nested)."""
    root: dict[Any, Any] = {}
    for key, value in form.items():
        if key in ("Action", "Version"):
            continue
        parts = key.split(".")
        tokens: list[Any] = []
        index = 0
        while index < len(parts):
            if parts[index] == "member" and index + 1 < len(parts) and parts[index + 1].isdigit():
                tokens.append(int(parts[index + 1]))
                index += 2
            else:
                tokens.append(parts[index])
                index += 1
        node = root
        for token in tokens[:-1]:
            node = node.setdefault(token, {})
        node[tokens[-1]] = value
    return form.get("Action", ""), _coerce(_listify(root))


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {k: _listify(v) for k, v in node.items()}


def _coerce(node: Any, key: str = "") -> Any:
    """Query parameters are all strings; give the numbers and booleans of the served shapes their type."""
    if isinstance(node, dict):
        return {k: _coerce(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_coerce(v, key) for v in node]
    try:
        if key in _INTEGERS:
            return int(node)
        if key in _FLOATS:
            return float(node)
    except ValueError:
        raise AwsError("InvalidParameterValue", f"Value {node} for parameter {key} is invalid.") from None
    if key in _BOOLEANS:
        return node.lower() == "true"
    return node


def _plain(value: Any) -> Any:
    """JSON 1.0's shapes: timestamps as epoch seconds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def _xml(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml(v)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


class Encoded:
    """An answer ready for the wire: status, headers and body."""

    def __init__(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})}


def encode(protocol: str, op: str, result: dict[str, Any]) -> Encoded:
    if protocol == "cbor":
        return Encoded(200, CBOR_TYPE, cbor2.dumps(result, datetime_as_timestamp=True),
                       {"smithy-protocol": "rpc-v2-cbor"})
    if protocol == "json":
        return Encoded(200, JSON_TYPE, json.dumps(_plain(result)).encode())
    inner = f"<{op}Result>{_xml(result)}</{op}Result>" if op in _OUTPUTS else ""
    body = (f'<{op}Response xmlns="{XML_NAMESPACE}">{inner}'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{op}Response>")
    return Encoded(200, "text/xml", body.encode())


def encode_error(protocol: str, error: AwsError) -> Encoded:
    status = error.status
    if protocol == "query":
        body = (f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>Sender</Type>'
                f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        return Encoded(status, "text/xml", body.encode())
    shape = {"__type": f"com.amazonaws.cloudwatch#{_SHAPES.get(error.code, error.code)}", "message": error.message}
    headers = {"x-amzn-query-error": f"{error.code};{'Receiver' if status >= 500 else 'Sender'}"}
    if protocol == "cbor":
        return Encoded(status, CBOR_TYPE, cbor2.dumps(shape), {**headers, "smithy-protocol": "rpc-v2-cbor"})
    return Encoded(status, JSON_TYPE, json.dumps(shape).encode(), headers)


def translate_json_error(protocol: str, body: bytes) -> Encoded | None:
    """A fault injected in AWS's JSON shape (`{"__type": ..., "message": ...}`), for CBOR or query clients."""
    try:
        shape = json.loads(body or b"{}")
    except ValueError:
        return None
    if not isinstance(shape, dict):
        return None
    code = str(shape.get("__type") or "InternalFailure").rsplit("#", 1)[-1]
    message = str(shape.get("message") or shape.get("Message") or "")
    if protocol == "query":
        error = (f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>Sender</Type><Code>{escape(code)}</Code>'
                 f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        return Encoded(0, "text/xml", error.encode())
    return Encoded(0, CBOR_TYPE, cbor2.dumps({"__type": code, "message": message}), {"smithy-protocol": "rpc-v2-cbor"})
