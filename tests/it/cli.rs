//! The command line people expect: --version, completions and man pages
//! generated from the command definitions, --json on every listing and
//! report, and the documented exit codes.

use std::process::Command;

use crate::common::*;

fn json(store: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = vz_ok(store, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

#[test]
fn version_completions_and_man_pages() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vzstore {}", env!("CARGO_PKG_VERSION"))
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef vzstore"),
        ("fish", "complete -c vzstore"),
    ] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(marker),
            "{shell}: {text}"
        );
        assert!(
            text.contains("ingest") && text.contains("export"),
            "{shell}"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["man", t.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(t.path().join("vzstore-export.1")).unwrap();
    assert!(
        page.contains(".TH") && page.contains(r"\-\-format"),
        "{page}"
    );
    assert!(t.path().join("vzstore.1").exists() && t.path().join("vzstore-ingest.1").exists());
    assert!(
        !t.path().join("vzstore-reap.1").exists(),
        "hidden commands get no page"
    );
}

#[test]
fn json_everywhere_and_exit_codes() {
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    let t = json(&store, &["templates", "--json"]);
    assert_eq!(t[0]["template"], "fx@1");
    assert!(t[0]["entries"].as_u64().unwrap() > 10);
    let l = json(&store, &["list", "--json"]);
    assert_eq!(
        (l[0]["name"].as_str(), l[0]["mounted"].as_bool()),
        (Some("c1"), Some(false))
    );
    assert_eq!(
        json(&store, &["verify", "--json"])["bad"],
        serde_json::json!([])
    );
    assert!(json(&store, &["gc", "--json"])["removed_objects"].is_u64());
    assert!(json(&store, &["report", "--json"])["store"].is_object());
    let dry = json(
        &store,
        &["rebase", "c1", "--to", "fx", "--dry-run", "--json"],
    );
    assert!(dry.is_array() || dry.is_object(), "{dry}");
    let e = json(
        &store,
        &[
            "export",
            "fx",
            _t.path().join("x.tar").to_str().unwrap(),
            "--format",
            "tar",
            "--json",
        ],
    );
    assert_eq!(e["label"], "fx@1");
    // Exit codes: 2 for a wrong command line, 1 for a failed command.
    let code = |args: &[&str]| vz(&store, args).status.code();
    assert_eq!(code(&["ingest"]), Some(2));
    assert_eq!(code(&["export", "--format", "zip", "fx", "d"]), Some(2));
    assert_eq!(code(&["templates", "show", "nope"]), Some(1));
    assert_eq!(code(&["export", "nope", "/nonexistent/x"]), Some(1));
}

#[test]
fn output_to_a_closed_pipe_is_not_a_panic() {
    let (_t, store, _src) = fixture_store();
    // `vzstore completions bash | head -1`: the writer gets EPIPE; the
    // process ends quietly (as other Unix tools do), not with a panic.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --store {} completions bash | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]:-$?}}",
            bin().display(),
            store.display()
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{out:?}"
    );
}
