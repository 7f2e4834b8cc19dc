//! A wasi:http guest that returns from its handler without ever sending a response.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct NoResponse;

impl wasip2::exports::http::incoming_handler::Guest for NoResponse {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        eprintln!("returning without a response");
    }
}

wasip2::http::proxy::export!(NoResponse);

fn main() {}
