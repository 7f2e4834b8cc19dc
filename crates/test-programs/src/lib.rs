//! Paths of kumo's guest programs, built for wasm32-wasip2 by this crate's build script.
//!
//! - `HTTP_PROBE`: wasi:http guest, behaviour chosen by path (`/echo`, `/env/NAME`, `/big?bytes=N`,
//!   `/log`, `/panic`, `/loop`, `/oom`, `/fs`, `/socket`, `/outbound`, `/status`).
//! - `COMMAND_PROBE`: WASI command, behaviour chosen by stdin (`exit:N`, `panic`, `loop`, `oom`,
//!   `big:N`, `env:NAME`, `fs`; anything else is echoed).
//! - `NO_RESPONSE`: wasi:http guest that never sends a response.
//! - `EVENT_PROBE`: wasi:http guest for asynchronous invocations, behaviour chosen by the
//!   payload (`fail`, `fail-until:N`, `sleep:MS`, `report:URL`; anything else: a JSON echo
//!   of the event id, attempt, content type, traceparent and body).
//! - `STEP_PROBE`: wasi:http guest for workflow tasks, behaviour chosen by its JSON input
//!   (`count`, `fail`, `fail_until`, `sleep_ms`); answers its input with `step` and `runs`.
//! - `HTTP_WASI_0_2_0`: wasi:http guest built against WASI 0.2.0 (the others use 0.2.12).
//! - `HELLO`, `WORDCOUNT`, `ORDERS`, `THUMBNAIL`, `TRIP`: the examples in `examples/`.
//! - `LAMBDA_RUST_BOOTSTRAP`: a Lambda function on AWS's `lambda_runtime` crate, built
//!   natively (the `bootstrap` of a `provided` package): echoes its event with its request id,
//!   function name and ARN; the event `"fail"` is an error.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Lambda functions for the tests (native, not wasm), as files to zip into a package:
/// - `LAMBDA_SHELL_BOOTSTRAP`: a `provided` runtime in shell and curl; its behaviour is chosen
///   by the event (`fail`, `exit`, `sleep`, `oom`, `big` (a 7 MB answer), `{"fetch": URL}`
///   (POSTs there, answers `{"got": "STATUS CONNECT_STATUS"}`); anything else is echoed with
///   some of its environment) and by `_HANDLER` (`init-error`; `init-hang`: never finishes
///   its init; `ticker`: a background process counts while the environment runs, and the
///   event `"ticks"` answers `{"ticks": N}`).
pub const LAMBDA_SHELL_BOOTSTRAP: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/lambda/shell/bootstrap");

/// A zip of `files` (name, bytes, unix mode), as a Lambda deployment package.
pub fn zip(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in files {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        zip.start_file(*name, options).expect("a zip entry");
        zip.write_all(bytes).expect("writing to memory");
    }
    zip.finish().expect("writing to memory").into_inner()
}

/// - `LAMBDA_PYTHON_APP`: `app.handler`, a python3 handler (`fail` raises; an HTTP event gets
///   a 201 with `x-py`; `{"call": NAME}` invokes a function with boto3; `{"kumo": [METHOD,
///   PATH, BODY]}` calls kumo's API; anything else is echoed with some of the context).
pub const LAMBDA_PYTHON_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lambda/python/app.py");
