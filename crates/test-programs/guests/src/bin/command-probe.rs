//! A WASI command guest whose behaviour is chosen by its payload (stdin):
//! `exit:N`, `panic`, `loop`, `oom`, `big:N`, `env:NAME`, `fs`; anything else is echoed.

use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("stdin is readable");
    eprintln!("command got {} bytes", input.len());
    let mut out = std::io::stdout();
    let command = input.trim();
    if let Some(code) = command.strip_prefix("exit:") {
        std::process::exit(code.parse().unwrap_or(1));
    } else if command == "panic" {
        panic!("command panicked on purpose");
    } else if command == "loop" {
        #[allow(clippy::empty_loop)]
        loop {}
    } else if command == "oom" {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    } else if let Some(n) = command.strip_prefix("big:") {
        let chunk = [b'y'; 4096];
        let mut left: usize = n.parse().unwrap_or(0);
        while left > 0 {
            let k = left.min(chunk.len());
            out.write_all(&chunk[..k]).expect("stdout is writable");
            left -= k;
        }
    } else if let Some(name) = command.strip_prefix("env:") {
        let _ = write!(out, "{}", std::env::var(name).unwrap_or_else(|_| "<unset>".into()));
    } else if command == "fs" {
        let _ = match std::fs::read_to_string("/etc/passwd") {
            Ok(_) => write!(out, "read /etc/passwd"),
            Err(e) => write!(out, "denied: {e}"),
        };
    } else {
        let _ = write!(out, "{input}");
    }
}
