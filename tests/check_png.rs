//! `scripts/check-png.py`, which CI runs on the app's screenshots, passes a
//! screenshot only if it shows a run: its self-test draws a blank window,
//! the idle app (filled sky-blue buttons, legend swatches, text) and the
//! app with a process node, and only the last may pass.

use std::process::Command;

#[test]
fn screenshot_check_tells_a_run_from_the_idle_app() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-png.py");
    let out = match Command::new("python3")
        .arg(script)
        .arg("--self-test")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("python3 is not installed: the screenshot check is not tested here");
            return;
        }
        Err(e) => panic!("cannot run {script}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("self-test ok"),
        "{script} --self-test:\n{stdout}{stderr}"
    );
}
