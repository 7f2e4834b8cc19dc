"""The Lambda API through boto3, as a user of Lambda would call it, against a real kumo.

Run by lambda_api.rs with KUMO_URL, the access keys it made (developer, invoker) and the
packages. Every step asserts what AWS's API would answer; a failure exits non-zero with the
step's message. Prints one JSON line of ids the Rust test checks through kumo's own API.
"""
import base64
import json
import os
import sys

import boto3
import botocore
from botocore.config import Config

URL = os.environ["KUMO_URL"]


def client(key_id, secret, **kwargs):
    return boto3.client(
        "lambda",
        endpoint_url=URL,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **kwargs),
    )


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call was expected to fail")


dev = client(os.environ["DEV_KEY_ID"], os.environ["DEV_SECRET"])
invoker = client(os.environ["INVOKER_KEY_ID"], os.environ["INVOKER_SECRET"])
python_zip = open(os.environ["PYTHON_ZIP"], "rb").read()
shell_zip = open(os.environ["SHELL_ZIP"], "rb").read()
out = {}

# Create, wait as SDKs do, read back.
created = dev.create_function(
    FunctionName="py", Runtime="python3.12", Role="arn:aws:iam::1:role/any",
    Handler="app.handler", Code={"ZipFile": python_zip}, Timeout=5, MemorySize=256,
    Environment={"Variables": {"STAGE": "test"}}, EphemeralStorage={"Size": 1024},
)
assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
assert created["FunctionArn"].endswith(":function:py"), created
assert created["Version"] == "$LATEST" and created["State"] == "Active", created
dev.get_waiter("function_active_v2").wait(FunctionName="py")
config = dev.get_function_configuration(FunctionName="py")
assert (config["Runtime"], config["Handler"], config["Timeout"], config["MemorySize"]) == (
    "python3.11", "app.handler", 5, 256), config
assert config["Environment"]["Variables"] == {"STAGE": "test"}, config
assert config["EphemeralStorage"] == {"Size": 1024}, config
assert dev.get_function(FunctionName="py")["Configuration"]["CodeSize"] == len(python_zip)

# Invoke: the handler's value, its logs in the tail, the version it ran.
invoked = invoker.invoke(FunctionName="py", Payload=json.dumps({"n": 1}), LogType="Tail")
assert invoked["StatusCode"] == 200 and "FunctionError" not in invoked, invoked
answer = json.loads(invoked["Payload"].read())
assert answer["event"] == {"n": 1} and answer["function"] == "py", answer
assert invoked["ExecutedVersion"] == "$LATEST", invoked
tail = base64.b64decode(invoked["LogResult"]).decode()
request_id = invoked["ResponseMetadata"]["RequestId"]
assert f"START RequestId: {request_id}" in tail and "REPORT RequestId" in tail, tail
out["invoked"] = request_id

# The client context reaches the handler (context.client_context); a malformed one is refused.
custom = base64.b64encode(json.dumps({"custom": {"tenant": "t1"}}).encode()).decode()
answer = json.loads(invoker.invoke(FunctionName="py", ClientContext=custom)["Payload"].read())
assert answer["client_custom"] == {"tenant": "t1"}, answer
assert error_code(lambda: invoker.invoke(FunctionName="py", ClientContext="not base64!")) == (
    "InvalidParameterValueException", 400)

# A function error is a 200 with X-Amz-Function-Error and the runtime's error document.
failed = invoker.invoke(FunctionName="py", Payload=json.dumps("fail"))
assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled", failed
document = json.loads(failed["Payload"].read())
assert document["errorType"] == "ValueError" and document["errorMessage"] == "bad input", document

# Versions and an alias with a canary (RoutingConfig).
v1 = dev.publish_version(FunctionName="py", Description="first")
assert v1["Version"] == "1" and v1["Description"] == "first", v1
dev.update_function_configuration(FunctionName="py", Environment={"Variables": {"STAGE": "two"}})
dev.get_waiter("function_updated_v2").wait(FunctionName="py")
v2 = dev.publish_version(FunctionName="py")
assert v2["Version"] == "2" and v2["Environment"]["Variables"] == {"STAGE": "two"}, v2
versions = [v["Version"] for v in dev.list_versions_by_function(FunctionName="py")["Versions"]]
assert versions == ["$LATEST", "1", "2"], versions
alias = dev.create_alias(FunctionName="py", Name="live", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
assert alias["AliasArn"].endswith(":function:py:live"), alias
assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.25}, alias
assert error_code(lambda: dev.create_alias(FunctionName="py", Name="live", FunctionVersion="1")) == (
    "ResourceConflictException", 409)
ran = {invoker.invoke(FunctionName="py", Qualifier="live")["ExecutedVersion"] for _ in range(40)}
assert ran == {"1", "2"}, ran
moved = dev.update_alias(FunctionName="py", Name="live", FunctionVersion="2",
                         RoutingConfig={"AdditionalVersionWeights": {}})
assert moved["FunctionVersion"] == "2" and "RoutingConfig" not in moved, moved
assert dev.get_alias(FunctionName="py", Name="live")["FunctionVersion"] == "2"
assert [a["Name"] for a in dev.list_aliases(FunctionName="py")["Aliases"]] == ["live"]
by_arn = invoker.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:py:live")
assert by_arn["ExecutedVersion"] == "2", by_arn

# Event (kumo's durable queue) and DryRun.
queued = invoker.invoke(FunctionName="py", InvocationType="Event", Payload=b'{"async": true}')
assert queued["StatusCode"] == 202, queued
out["event"] = queued["ResponseMetadata"]["RequestId"]
assert invoker.invoke(FunctionName="py", InvocationType="DryRun")["StatusCode"] == 204

# A provided runtime, its code updated; a WebAssembly function invoked the same way.
dev.create_function(FunctionName="sh", Runtime="provided.al2023", Role="r", Handler="echo",
                    Code={"ZipFile": shell_zip})
echoed = json.loads(invoker.invoke(FunctionName="sh", Payload=b'{"k": 1}')["Payload"].read())
assert echoed["echo"] == {"k": 1}, echoed
updated = dev.update_function_code(FunctionName="sh", ZipFile=shell_zip, Publish=True)
assert updated["Version"] == "1", updated
hello = invoker.invoke(FunctionName="hello")
assert hello["StatusCode"] == 200 and "FunctionError" not in hello and hello["Payload"].read(), hello

# Listing, paginated as SDKs do.
pages = dev.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
names = [f["FunctionName"] for page in pages for f in page["Functions"]]
assert names == ["hello", "py", "sh"], names

# AWS's errors.
assert error_code(lambda: dev.get_function(FunctionName="nope")) == ("ResourceNotFoundException", 404)
assert error_code(lambda: invoker.invoke(FunctionName="nope")) == ("ResourceNotFoundException", 404)
assert error_code(lambda: dev.create_function(
    FunctionName="py", Runtime="python3.12", Role="r", Handler="app.handler",
    Code={"ZipFile": python_zip})) == ("ResourceConflictException", 409)
assert error_code(lambda: dev.create_function(
    FunctionName="node", Runtime="nodejs20.x", Role="r", Handler="index.handler",
    Code={"ZipFile": python_zip})) == ("InvalidParameterValueException", 400)
assert error_code(lambda: dev.create_function(
    FunctionName="nozip", Runtime="provided.al2023", Role="r", Handler="x",
    Code={"ZipFile": b"not a zip"})) == ("InvalidParameterValueException", 400)
assert error_code(lambda: invoker.invoke(FunctionName="py", Payload=b"x" * (7 << 20))) == (
    "RequestEntityTooLargeException", 413)
assert error_code(lambda: dev.delete_function(FunctionName="py", Qualifier="2")) == (
    "ResourceConflictException", 409)

# Who may do what: the invoker's key may not change anything; a wrong secret or no
# signature is refused.
assert error_code(lambda: invoker.delete_function(FunctionName="py")) == ("AccessDeniedException", 403)
wrong = client(os.environ["DEV_KEY_ID"], "kumo_wrong")
assert error_code(lambda: wrong.list_functions()) == ("UnrecognizedClientException", 403)
unsigned = client("x", "y", signature_version=botocore.UNSIGNED)
assert error_code(lambda: unsigned.list_functions()) == ("UnrecognizedClientException", 403)

# Deletes.
dev.delete_alias(FunctionName="py", Name="live")
dev.delete_function(FunctionName="py", Qualifier="1")
assert [v["Version"] for v in dev.list_versions_by_function(FunctionName="py")["Versions"]] == [
    "$LATEST", "2"]
dev.delete_function(FunctionName="sh")
assert error_code(lambda: dev.get_function(FunctionName="sh")) == ("ResourceNotFoundException", 404)

print(json.dumps(out))
sys.stdout.flush()
