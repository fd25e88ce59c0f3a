//! Running the `tgsearch` binary against the local stack, as an operator would.

#![allow(dead_code)] // each test file uses its own share of these

use std::process::{Command, Output};

use testkit::stack::{self, Stack};

/// `tgsearch <args>` with the stack's environment (and `extra` variables on top).
pub fn tgsearch_with(extra: &[(&str, &str)], args: &[&str]) -> Output {
    Stack::require();
    Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(args)
        .envs(stack::exports())
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

pub fn tgsearch(args: &[&str]) -> Output {
    tgsearch_with(&[], args)
}

/// stdout and stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}
