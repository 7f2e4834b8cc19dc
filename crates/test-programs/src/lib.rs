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
//! - `HTTP_WASI_0_2_0`: wasi:http guest built against WASI 0.2.0 (the others use 0.2.12).
//! - `HELLO`, `WORDCOUNT`: the examples in `examples/`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
