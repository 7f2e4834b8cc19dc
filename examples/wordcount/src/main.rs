//! A WASI command function: the invocation payload arrives on stdin, and what it prints on
//! stdout is the response. Counts lines, words and bytes like `wc`, as JSON.

use std::io::{Read, Write};

fn main() {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read the payload: {e}");
        std::process::exit(1);
    }
    let text = String::from_utf8_lossy(&input);
    let lines = text.lines().count();
    let words = text.split_whitespace().count();
    eprintln!("counted {} bytes", input.len());
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        r#"{{"lines":{lines},"words":{words},"bytes":{}}}"#,
        input.len()
    );
}
