//! The built binary's offline commands: `check-config` on a bad file lists
//! every problem with its field path and exits 1; on the default it says ok.

use std::process::Command;

fn switchboard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    // Overrides from the developer's shell must not change what is checked.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD__") {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[test]
fn check_config_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:0\"\n").expect("write");
    let out = switchboard()
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "good file refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(stdout.contains("listen 127.0.0.1:0"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[queues.billing]\noverflow_queue = \"nowhere\"\n[channels.voice.sla]\nwarning_fraction = 1.5\n[snapshot]\nkeep = 0\n",
    )
    .expect("write");
    let out = switchboard()
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad file");
    for line in [
        "queues.billing.overflow_queue: unknown queue `nowhere`",
        "channels.voice.sla.warning_fraction: 1.5 is outside (0, 1)",
        "snapshot.keep: must be at least 1",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "missing `{line}` in:\n{stderr}"
        );
    }
    assert!(stderr.trim_end().ends_with("3 problems"), "{stderr}");

    let out = switchboard()
        .arg("check-config")
        .arg(&good)
        .env("SWITCHBOARD__SERVER__LISTEN", "not-an-address")
        .output()
        .expect("run check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("server.listen: `not-an-address` is not an IP:port"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(set by SWITCHBOARD__SERVER__LISTEN)"),
        "{stderr}"
    );
}

#[test]
fn print_default_config_round_trips_through_check_config() {
    let out = switchboard()
        .arg("print-default-config")
        .output()
        .expect("run print-default-config");
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &out.stdout).expect("write");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[channels.voice]") && text.contains("dev-connector-token"),
        "{text}"
    );

    let complete = text.replace("inherit_default = true", "inherit_default = false");
    std::fs::write(&printed, complete).expect("write");
    let out = switchboard()
        .arg("check-config")
        .arg(&printed)
        .output()
        .expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 channels (voice, chat, email, sms, social)"),
        "{stdout}"
    );
    assert!(stdout.contains("development tokens"), "{stdout}");

    let out = switchboard()
        .arg("check-config")
        .output()
        .expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: embedded default:"));
}
