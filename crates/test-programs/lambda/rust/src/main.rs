//! A Lambda function on `lambda_runtime`: answers its event with what it knows of its
//! invocation; the event `"fail"` is an error.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    if event.payload == json!("fail") {
        return Err("bad input".into());
    }
    println!("handling {}", event.context.request_id);
    Ok(json!({
        "echo": event.payload,
        "request_id": event.context.request_id,
        "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        "arn": event.context.invoked_function_arn,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
