//! Credentials for a remote: from the file its record names (AWS format,
//! refused unless only its owner can read it), else from the standard
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`
//! variables. Secrets are never printed: `Debug` shows the key id only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::remote::error::{RemoteError, Result};
use crate::store::records::RemoteRecord;

/// An access key pair (and session token).
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The credentials for remote `rec` (see the module documentation).
    pub fn for_remote(rec: &RemoteRecord) -> Result<Credentials> {
        match &rec.credentials_file {
            Some(p) => from_file(p),
            None => from_env().ok_or_else(|| RemoteError::NoCredentials(rec.name.clone())),
        }
    }
}

fn from_env() -> Option<Credentials> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
        session_token: get("AWS_SESSION_TOKEN"),
    })
}

/// Read an AWS-format credentials file: `key = value` lines, from the
/// `[default]` section when there are sections.
pub fn from_file(path: &Path) -> Result<Credentials> {
    let bad = |reason: String| RemoteError::BadConfig {
        what: format!("credentials file {}", path.display()),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode {mode:04o} lets others read it; `chmod 600` it"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut section: Option<String> = None;
    for (n, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(s.trim().to_string());
            continue;
        }
        if section.as_deref().is_some_and(|s| s != "default") {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            // The line is not shown: it may hold a secret.
            return Err(bad(format!("line {} is not a `key = value` line", n + 1)));
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        _ => Err(bad(
            "needs aws_access_key_id and aws_secret_access_key (in [default] if it has sections)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join("creds");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn reads_the_default_section_and_hides_the_secret() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = write(
            d.path(),
            "[other]\naws_access_key_id = no\n[default]\naws_access_key_id = GKid\naws_secret_access_key = s3cr3t\n",
            0o600,
        );
        let c = from_file(&p).expect("read");
        assert_eq!(c.access_key_id, "GKid");
        assert_eq!(c.secret_access_key, "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = write(
            d.path(),
            "aws_access_key_id=a\naws_secret_access_key=b\n",
            0o644,
        );
        let e = from_file(&p).expect_err("0644 refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let p = write(
            d.path(),
            "aws_access_key_id=a\nwJalrXUtnFEMI/K7MDENG\n",
            0o600,
        );
        let e = from_file(&p).expect_err("no key = value");
        assert!(
            e.to_string().contains("line 2") && !e.to_string().contains("wJalr"),
            "{e}"
        );
        let p = write(d.path(), "aws_access_key_id=a\n", 0o600);
        assert!(
            from_file(&p)
                .expect_err("no secret")
                .to_string()
                .contains("aws_secret_access_key")
        );
    }
}
