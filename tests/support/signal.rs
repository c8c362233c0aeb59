//! Signals to a child process, as an operator sends them with `kill`.

use std::process::{Child, Command};

/// Sends `signal` (a name such as `"TERM"` or `"INT"`) to `child`; panics if it cannot be sent.
pub fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {} failed", child.id());
}
