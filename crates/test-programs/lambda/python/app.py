"""A Python Lambda handler for kumo's tests, run by AWS's runtime interface client."""
import json
import os

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
    return {
        "event": event,
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "started": started,
    }
