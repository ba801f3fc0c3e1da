//! Names of templates and containers, and `NAME[@VERSION]` template references.

use std::fmt;

use crate::store::error::{Error, Result};

/// Check a template or container name: 1-64 characters of `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`. Names become file names and database keys, so
/// nothing else is allowed (no `/`, no `@`, no NUL, no `..`).
pub fn validate(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("a name cannot be empty");
    }
    if name.len() > 64 {
        return bad("a name has at most 64 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("a name cannot start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A reference to a template: a name and, optionally, one version.
/// Without a version it means the latest version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRef {
    pub name: String,
    pub version: Option<u32>,
}

impl TemplateRef {
    /// Parse `NAME` or `NAME@V` (V a positive integer).
    pub fn parse(s: &str) -> Result<TemplateRef> {
        let (name, version) = match s.split_once('@') {
            None => (s, None),
            Some((n, v)) => {
                let v: u32 = v.parse().map_err(|_| Error::InvalidName {
                    name: s.to_string(),
                    reason: "the version after '@' must be a positive integer",
                })?;
                if v == 0 {
                    return Err(Error::InvalidName {
                        name: s.to_string(),
                        reason: "versions start at 1",
                    });
                }
                (n, Some(v))
            }
        };
        validate(name)?;
        Ok(TemplateRef {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate("debian-12.minbase_x").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a@b", "a b", "ü", &"x".repeat(65)] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refs() {
        let r = TemplateRef::parse("deb@3").unwrap();
        assert_eq!((r.name.as_str(), r.version), ("deb", Some(3)));
        assert_eq!(TemplateRef::parse("deb").unwrap().version, None);
        assert!(TemplateRef::parse("deb@0").is_err());
        assert!(TemplateRef::parse("deb@x").is_err());
        assert!(TemplateRef::parse("@1").is_err());
    }
}
