//! A wasi:http guest that can serve only one request per instance, as a JavaScript component
//! built with componentize-js does: the first request is answered, every later one on the
//! same instance returns without sending a response.

use std::sync::atomic::{AtomicU32, Ordering};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

static SERVED: AtomicU32 = AtomicU32::new(0);

struct ServeOnce;

impl wasip2::exports::http::incoming_handler::Guest for ServeOnce {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        if SERVED.fetch_add(1, Ordering::Relaxed) > 0 {
            eprintln!("this instance has served already");
            return;
        }
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        stream
            .blocking_write_and_flush(b"served")
            .expect("the host takes the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("the body ends");
    }
}

wasip2::http::proxy::export!(ServeOnce);

fn main() {}
