//! A wasi:http guest that calls out: the request body is a URL (`http://NAME.fn.internal/...`
//! for another function, or any granted host); the guest POSTs the same body there and
//! answers with the callee's status and body. `x-callee-error` carries the callee's
//! `x-kumo-error` (or the `x-callee-error` it passed on), so a failure deep in a chain of
//! calls reaches the outside. A request that fails before any response is 502 with the error.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let url = String::from_utf8_lossy(&request.into_body().bytes_contents().await?).into_owned();
    let call = Request::post(url.trim()).body(Body::from(url.clone()))?;
    match Client::new().send(call).await {
        Ok(response) => {
            let status = response.status();
            let error = ["x-kumo-error", "x-callee-error"]
                .iter()
                .find_map(|h| response.headers().get(*h).cloned());
            let body = response.into_body().bytes_contents().await?.to_vec();
            let mut answer = Response::builder().status(status);
            if let Some(error) = error {
                answer = answer.header("x-callee-error", error);
            }
            Ok(answer.body(Body::from(body))?)
        }
        Err(e) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("error: {e:?}")))?),
    }
}
