//! Typed errors of the remote layer. Every message names the remote and, where
//! there is one, the key or object concerned; none carries a credential.

use crate::store::hash::Hash;

/// Result alias for the remote layer.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a remote.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The local store failed (its own error says how).
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// No remote of that name is configured.
    #[error("no remote named {0} (see `vzstore remote ls`; add one with `vzstore remote add`)")]
    NotConfigured(String),
    /// `remote add` of a name that exists.
    #[error("a remote named {0} exists already (`vzstore remote rm {0}` first)")]
    Exists(String),
    /// A remote URL or option that cannot be used.
    #[error("{what}: {reason}")]
    BadConfig { what: String, reason: String },
    /// Neither the environment nor a credentials file gives keys.
    #[error(
        "no credentials for remote {0}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a 0600 credentials file with `vzstore remote add --credentials-file`"
    )]
    NoCredentials(String),
    /// The server could not be reached, after retries.
    #[error("remote {remote} ({endpoint}) is unreachable after retries: {detail}")]
    Unreachable {
        remote: String,
        endpoint: String,
        detail: String,
    },
    /// The server refused the credentials or the operation.
    #[error(
        "remote {remote} refused access to {key} (check the credentials and their rights on the bucket): {detail}"
    )]
    AccessDenied {
        remote: String,
        key: String,
        detail: String,
    },
    /// Any other failure of a request.
    #[error("remote {remote}: {op} {key}: {detail}")]
    Request {
        remote: String,
        op: &'static str,
        key: String,
        detail: String,
    },
    /// No template (or container) of that name on the remote.
    #[error("remote {remote} has no {what}")]
    NotOnRemote { remote: String, what: String },
    /// A document on the remote that this version cannot read.
    #[error("remote {remote}: {key} is not a valid vzstore document: {reason}")]
    BadDocument {
        remote: String,
        key: String,
        reason: String,
    },
    /// Bytes from the remote that are not what their name says.
    #[error(
        "remote {remote}: object {hash} ({key}) is refused: {reason}; nothing of it was stored"
    )]
    BadObject {
        remote: String,
        key: String,
        hash: Hash,
        reason: String,
    },
    /// A remote manifest names objects the remote does not hold.
    #[error(
        "remote {remote}: {what} names {count} object(s) the remote does not hold (first: {first}); the remote is damaged, push it again from a node that has it"
    )]
    MissingOnRemote {
        remote: String,
        what: String,
        count: usize,
        first: Hash,
    },
    /// The same name and version means other content on the two sides.
    #[error("{what} differs between here and remote {remote} ({detail}); nothing was changed")]
    Conflict {
        remote: String,
        what: String,
        detail: String,
    },
    /// Another node holds the remote for an operation that excludes this one.
    #[error("remote {remote} is busy: {detail}; try again later")]
    Busy { remote: String, detail: String },
}
