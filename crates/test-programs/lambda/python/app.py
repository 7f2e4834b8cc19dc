"""A Python Lambda handler for kumo's tests, run by AWS's runtime interface client.

`"fail"` raises; an HTTP event gets a 201 with `x-py`; `{"call": NAME, "payload": ...}`
invokes another function with boto3 (through AWS_ENDPOINT_URL); `{"kumo": [METHOD, PATH,
BODY]}` sends a request to kumo's API (KUMO_API_URL) and answers its status and body; anything
else is echoed with some of the context.
"""
import json
import os
import urllib.error
import urllib.request

started = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")


def handler(event, context):
    if event == "fail":
        raise ValueError("bad input")
    print(f"handling {context.aws_request_id}")
    if isinstance(event, dict) and "rawPath" in event:
        return {
            "statusCode": 201,
            "headers": {"x-py": "1"},
            "body": json.dumps({"path": event["rawPath"], "method": event["requestContext"]["http"]["method"]}),
        }
    if isinstance(event, dict) and "call" in event:
        import boto3

        out = boto3.client("lambda").invoke(
            FunctionName=event["call"], Payload=json.dumps(event.get("payload", {}))
        )
        return {"called": json.loads(out["Payload"].read()), "version": out["ExecutedVersion"]}
    if isinstance(event, dict) and "kumo" in event:
        method, path, body = event["kumo"]
        data = body.encode() if body is not None else None
        request = urllib.request.Request(os.environ["KUMO_API_URL"] + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return {"status": response.status, "body": response.read().decode()}
        except urllib.error.HTTPError as e:
            return {"status": e.code, "body": e.read().decode()}
    return {
        "event": event,
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "started": started,
        "client_custom": context.client_context.custom if context.client_context else None,
    }
