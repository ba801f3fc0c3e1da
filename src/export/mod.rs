//! Export: a template version or a container's current tree, out as a
//! directory, a tar stream, or an OCI image layout.
//!
//! Every format reads the same [`tree::ExportTree`] (entries in path order,
//! each file's bytes in a store object or a container's private file). Tar
//! and OCI outputs are written under a temporary name beside the destination
//! and renamed into place when whole, so a failed export leaves nothing that
//! looks finished; object bytes are re-hashed as they stream, so a corrupt
//! object fails the export instead of travelling on.

pub mod oci;
pub mod tar;
pub mod tree;

use std::path::{Path, PathBuf};

use crate::lifecycle::IsMounted;
use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::name::TemplateRef;
use tree::ExportTree;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Dir,
    Tar,
    Oci,
}

/// Layer compression of an OCI export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// What to export.
pub enum What<'a> {
    Template(TemplateRef),
    /// A container (unmounted), with the check that says whether it is.
    Container(&'a str, IsMounted<'a>),
}

/// Where an export goes: a path, or standard output (tar only).
pub enum Dest {
    Path(PathBuf),
    Stdout,
}

/// Options of an export.
pub struct Options {
    pub format: Format,
    /// OCI: the tag written into the index (`org.opencontainers.image.ref.name`).
    pub tag: Option<String>,
    pub compression: LayerCompression,
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    /// `NAME@V` or `container CT`.
    pub label: String,
    pub entries: u64,
    /// Logical file bytes.
    pub bytes: u64,
    /// Bytes written (the archive's size; the tree's bytes for a directory).
    pub written: u64,
    pub seconds: f64,
}

/// Export `what` to `dest` in the format of `opts`.
pub fn export(store: &Store, what: What<'_>, dest: &Dest, opts: &Options) -> Result<ExportSummary> {
    let started = std::time::Instant::now();
    let tree = match what {
        What::Template(r) => ExportTree::template(store, &r)?,
        What::Container(ct, mounted) => ExportTree::container(store, ct, mounted)?,
    };
    if let Dest::Path(p) = dest {
        check_parent(p)?;
    }
    let written = match (opts.format, dest) {
        (Format::Dir, Dest::Path(p)) => {
            crate::store::export::check_dest(p)?;
            let tmp = temp_beside(p);
            let written = std::fs::create_dir(&tmp).at(&tmp).and_then(|()| {
                let open = |i| tree.open(store, i);
                crate::store::export::write_tree_from(&tree.manifest, &tmp, &open, true)?;
                put_in_place(&tmp, p)
            });
            if written.is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            written?;
            tree.manifest.logical_bytes()
        }
        (Format::Tar, Dest::Stdout) => {
            let out = std::io::stdout().lock();
            tar::write(
                store,
                &tree,
                std::io::BufWriter::with_capacity(1 << 20, out),
                Path::new("standard output"),
            )?
        }
        (Format::Tar, Dest::Path(p)) => atomic_file(p, |f, tmp| {
            let out = std::io::BufWriter::with_capacity(1 << 20, WriteAhead { f, unsynced: 0 });
            tar::write(store, &tree, out, tmp)
        })?,
        (Format::Oci, Dest::Path(p)) => oci::write(store, &tree, p, opts)?,
        (_, Dest::Stdout) => {
            return Err(Error::BadDestination {
                path: "-".into(),
                reason: "only a tar export can go to standard output",
            });
        }
    };
    Ok(ExportSummary {
        label: tree.label.clone(),
        entries: tree.manifest.entries.len() as u64,
        bytes: tree.manifest.logical_bytes(),
        written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A file that starts writeback of its dirty pages every 64 MiB, so the
/// `fsync` at the end of an export waits for little.
struct WriteAhead {
    f: std::fs::File,
    unsynced: u64,
}

impl std::io::Write for WriteAhead {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.f.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= 64 << 20 {
            crate::store::fsutil::start_writeback(&self.f);
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

/// Write file `dest` through `write` under a temporary name beside it,
/// synced and renamed into place when whole; removed on failure. `dest` must
/// not exist.
fn atomic_file(
    dest: &Path,
    write: impl FnOnce(std::fs::File, &Path) -> Result<u64>,
) -> Result<u64> {
    if dest.symlink_metadata().is_ok() {
        return Err(Error::BadDestination {
            path: dest.to_path_buf(),
            reason: "exists already (an archive export never overwrites)",
        });
    }
    let tmp = temp_beside(dest);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .at(&tmp)?;
    let result = write(f, &tmp).and_then(|n| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .at(&tmp)?;
        put_in_place(&tmp, dest)?;
        Ok(n)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Rename the finished `tmp` to `dest`: over an empty directory that was
/// there (the kernel refuses if it is no longer empty), else only if nothing
/// took the name meanwhile (`RENAME_NOREPLACE`): an export never replaces a
/// file someone else wrote.
pub(crate) fn put_in_place(tmp: &Path, dest: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    crate::store::fsutil::failpoint_io("export-place").at(dest)?;
    let was_dir = std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir());
    let flags = if was_dir && tmp.is_dir() {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    renameat_with(CWD, tmp, CWD, dest, flags).map_err(|e| match e {
        rustix::io::Errno::EXIST => Error::BadDestination {
            path: dest.to_path_buf(),
            reason: "appeared while the export ran; left as it is",
        },
        e => Error::Io {
            path: dest.to_path_buf(),
            err: e.into(),
        },
    })
}

/// The destination must name a new entry in an existing directory (not `.`,
/// `..` or `/`).
pub(crate) fn check_parent(dest: &Path) -> Result<()> {
    let bad = |reason| {
        Err(Error::BadDestination {
            path: dest.to_path_buf(),
            reason,
        })
    };
    if dest.file_name().is_none() || dest.as_os_str() == "." {
        return bad("names no new directory entry (give the path of a new file or directory)");
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return bad("its parent directory does not exist");
    }
    Ok(())
}

/// A hidden name beside `dest` for writing it.
fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.vzstore-partial-");
    // Partial exports of killed processes to the same destination go first.
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let dead = n
            .strip_prefix(&prefix)
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_some_and(|pid| !crate::store::lock::process_alive(pid));
        if dead {
            let p = e.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    dest.with_file_name(format!("{prefix}{}", std::process::id()))
}
