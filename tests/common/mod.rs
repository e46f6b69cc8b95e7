//! Helpers shared by the integration tests.

use std::process::Command;

/// Runs this test binary's test `child` alone with the environment variable
/// `var` set to `value`, and checks that memalloc stopped it as it stops
/// misuse: killed by SIGABRT, `message` on stderr, and the child's line
/// "misuse not caught" (printed after the misuse, should it return) absent.
pub fn expect_abort(child: &str, var: &str, value: &str, message: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(var, value)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("misuse not caught"),
        "{child} {value}: {stdout}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGABRT),
        "{child} {value}: {:?}",
        out.status
    );
    assert!(stderr.contains(message), "{child} {value}: stderr {stderr}");
}
