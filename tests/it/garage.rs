//! A private Garage S3 server per test (tools/garage.sh, on free loopback
//! ports, in the test's own directory), and rclone to look at or tamper with
//! what the bucket holds behind vzstore's back. A missing garage binary fails
//! the test loudly: tools/setup.sh installs it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{vz_env, vz_ok};

pub const KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const BUCKET: &str = "vzstore-test";

/// One running Garage; stopped on drop.
pub struct Garage {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// A port p with p+1 and p+3 free too (S3, RPC, admin).
fn free_ports() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p > 65000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 3)).is_ok()
        {
            return p;
        }
    }
    panic!("no free ports for garage");
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/garage.sh")
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Garage {
            dir,
            port: free_ports(),
        };
        g.run("start");
        g
    }

    fn run(&self, verb: &str) {
        let out = Command::new(script())
            .arg(verb)
            .env("VZSTORE_GARAGE_DIR", self.dir.path())
            .env("VZSTORE_GARAGE_PORT", self.port.to_string())
            .output()
            .expect("run tools/garage.sh");
        assert!(
            out.status.success(),
            "tools/garage.sh {verb} failed (tools/setup.sh installs garage): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kill the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("pid")).expect("pid");
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        std::fs::remove_file(self.dir.path().join("pid")).expect("rm pid");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("garage did not die");
    }

    pub fn restart(&self) {
        self.run("start");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `remote add NAME s3://BUCKET/PREFIX` in `store`, pointing here.
    pub fn add_remote(&self, store: &Path, name: &str, prefix: &str) {
        vz_ok(
            store,
            &[
                "remote",
                "add",
                name,
                &format!("s3://{BUCKET}/{prefix}"),
                "--endpoint",
                &self.endpoint(),
                "--region",
                "garage",
            ],
        );
    }

    /// rclone against this server's bucket (`:s3:` remote from flags).
    pub fn rclone(&self, args: &[&str]) -> Output {
        Command::new("rclone")
            .args(args)
            // rclone's S3 client fails on a CA bundle it cannot load, and
            // loopback HTTP needs none.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_G_TYPE", "s3")
            .env("RCLONE_CONFIG_G_PROVIDER", "Other")
            .env("RCLONE_CONFIG_G_ENDPOINT", self.endpoint())
            .env("RCLONE_CONFIG_G_ACCESS_KEY_ID", KEY)
            .env("RCLONE_CONFIG_G_SECRET_ACCESS_KEY", SECRET)
            .env("RCLONE_CONFIG_G_REGION", "garage")
            .env("RCLONE_CONFIG_G_FORCE_PATH_STYLE", "true")
            .output()
            .expect("rclone is not installed (tools/setup.sh installs it)")
    }

    /// Keys under `prefix` in the bucket.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.rclone(&["lsf", "-R", "--files-only", &format!("g:{BUCKET}/{prefix}")]);
        assert!(
            out.status.success(),
            "rclone lsf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| format!("{prefix}{l}"))
            .collect()
    }

    /// Replace the object at `key` with `bytes`.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let f = self.dir.path().join("upload");
        std::fs::write(&f, bytes).expect("write");
        let out = self.rclone(&["copyto", f.to_str().unwrap(), &format!("g:{BUCKET}/{key}")]);
        assert!(
            out.status.success(),
            "rclone copyto: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn delete(&self, key: &str) {
        let out = self.rclone(&["deletefile", &format!("g:{BUCKET}/{key}")]);
        assert!(
            out.status.success(),
            "rclone deletefile: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if self.dir.path().join("pid").exists() {
            let _ = Command::new(script())
                .arg("stop")
                .env("VZSTORE_GARAGE_DIR", self.dir.path())
                .env("VZSTORE_GARAGE_PORT", self.port.to_string())
                .output();
        }
    }
}

/// The credentials, and a short retry window so that faults end quickly.
pub const CREDS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("VZSTORE_REMOTE_RETRY_SECS", "3"),
];

/// Run vzstore with the server's credentials; returns the output.
pub fn vzr(store: &Path, args: &[&str]) -> Output {
    vz_env(store, &CREDS, args)
}

/// Run with credentials and require success; returns stdout.
pub fn vzr_ok(store: &Path, args: &[&str]) -> String {
    let out = vzr(store, args);
    assert!(
        out.status.success(),
        "vzstore {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run with credentials and require failure (exit 1); returns stderr.
pub fn vzr_err(store: &Path, args: &[&str]) -> String {
    let out = vzr(store, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "vzstore {args:?} should fail with exit 1: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON a command printed.
pub fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}
