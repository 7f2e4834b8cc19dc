//! A wasi:http guest built against WASI 0.2.0 (exports `wasi:http/incoming-handler@0.2.0`):
//! answers "built against wasi 0.2.0" on every path.

use std::io::Write as _;
use wasi_0_2_0::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct OldGuest;

impl wasi_0_2_0::exports::http::incoming_handler::Guest for OldGuest {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("the body is writable once");
        out.write_all(b"built against wasi 0.2.0")
            .expect("writing the body");
        out.flush().expect("flushing the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}

wasi_0_2_0::http::proxy::export!(OldGuest with_types_in wasi_0_2_0);

fn main() {}
