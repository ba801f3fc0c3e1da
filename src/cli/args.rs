//! Every flag and command of `vzstore`, in one place.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A content-addressed, deduplicating template store for OS containers.
#[derive(Parser, Debug)]
#[command(
    name = "vzstore",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 the command failed (the message says why; the store is left as it was) or verify found damage; 2 the command line is wrong."
)]
pub struct Args {
    /// Store directory.
    #[arg(
        long,
        global = true,
        env = "VZSTORE_ROOT",
        default_value = "/var/lib/vzstore"
    )]
    pub store: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the store (idempotent; refuses a non-empty directory that is not a store).
    Init,
    /// Ingest a tree as a new version of a template: a directory, a tar
    /// archive (plain, gzip, zstd, xz or bzip2; `-` reads standard input), or
    /// an OCI image (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:TAG]`).
    Ingest {
        /// What to ingest (see above).
        src: String,
        /// Template name; ingesting an existing name makes the next version (NAME@2...).
        #[arg(long)]
        name: String,
        /// Directory sources only: move new files into the store instead of
        /// copying them (for pipelines that throw the tree away; files on
        /// another file system, or with other hardlinks, are copied).
        #[arg(long)]
        consume: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List templates and versions; `templates show` describes one,
    /// `templates rm` removes one.
    Templates {
        #[command(subcommand)]
        cmd: Option<TemplatesCmd>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a template version (`export NAME[@V] DEST`) or a container's
    /// current tree (`export --container CT DEST`) as a directory, a tar
    /// archive (DEST `-`: standard output) or an OCI image layout.
    Export {
        /// NAME[@VERSION] then DEST; with --container, DEST only. DEST: a
        /// missing or empty directory (dir, oci), a new file or `-` (tar).
        #[arg(required = true, num_args = 1..=2, value_name = "NAME[@V] DEST")]
        args: Vec<String>,
        /// Export this container's current tree (it must be unmounted).
        #[arg(long, value_name = "CT")]
        container: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FormatArg::Dir)]
        format: FormatArg,
        /// OCI: the tag written into index.json (default NAME:VERSION of a template,
        /// CT:latest of a container).
        #[arg(long)]
        tag: Option<String>,
        /// OCI: layer compression (default gzip).
        #[arg(long, value_enum)]
        compression: Option<CompressionArg>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every object and check every reference; exit 1 if anything is wrong.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Repair: write damaged kernel images again, and restore corrupt or
        /// missing objects from these sources (directories holding the same
        /// content, e.g. the trees the templates came from).
        #[arg(long, value_name = "SRC", num_args = 0..)]
        repair: Option<Vec<PathBuf>>,
    },
    /// Remove objects nothing references; safe while ingests run.
    Gc {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create containers from a template version (kilobytes, milliseconds each).
    Create {
        /// Container names (several are created in one step, all or none).
        #[arg(required = true)]
        names: Vec<String>,
        /// NAME or NAME@VERSION of the base template (latest when omitted).
        #[arg(long)]
        template: String,
        /// How the container's root is served.
        #[arg(long, value_enum, default_value_t = BackendArg::Fuse)]
        backend: BackendArg,
    },
    /// List containers: base template, mounted or not, private bytes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a template version (`push NAME[@V] REMOTE`) or a container
    /// (`push --container CT REMOTE`) to a remote: only the objects it lacks,
    /// then the document naming them.
    Push {
        /// NAME[@V] then REMOTE; with --container, only REMOTE.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Push this (unmounted) container: its base template and its own files.
        #[arg(long)]
        container: Option<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring a template version (`pull NAME[@V] REMOTE`; the newest when no
    /// version is given) or a container (`pull --container CT REMOTE`) from a
    /// remote: only the objects this store lacks, each checked by blake3.
    Pull {
        /// NAME[@V] then REMOTE; with --container, only REMOTE.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Pull this container (and its base template).
        #[arg(long)]
        container: Option<String>,
        /// Fetch the template's document only; its files are fetched on first
        /// open by FUSE containers (kernel containers need a full pull).
        #[arg(long)]
        lazy: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Configure remotes (S3 buckets), list what they hold, collect their garbage.
    Remote {
        #[command(subcommand)]
        cmd: RemoteCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write man pages (vzstore.1 and one per command) into a directory.
    #[command(hide = true)]
    Man {
        /// Output directory (made if missing).
        dir: PathBuf,
    },
    /// Remove a container and its private area.
    Destroy {
        /// Container name.
        name: String,
        /// Unmount it first if it is mounted.
        #[arg(long)]
        force: bool,
    },
    /// Serve a container's root read-write (FUSE daemon or kernel overlayfs, as
    /// its record says).
    Mount {
        /// Container name.
        name: String,
        /// Mount point (default: STORE/root/NAME, which only root can reach); must
        /// be an empty directory. Mounts carry suid for the container's setuid
        /// programs: put one only where host users cannot reach.
        mountpoint: Option<PathBuf>,
        /// Stay in the foreground instead of returning once the mount is ready.
        #[arg(long)]
        foreground: bool,
        /// Serve reads through the daemon even where the kernel offers FUSE
        /// passthrough (for comparisons; costs a page-cache copy per container).
        #[arg(long)]
        no_passthrough: bool,
    },
    /// Unmount a container (also cleans up a stale mount of a crashed daemon).
    Umount {
        /// Container name.
        name: String,
    },
    /// Move containers to another template version, keeping their own changes
    /// (three-way per path; atomic per container; unmounted containers only).
    Rebase {
        /// Containers to move (or use --from).
        names: Vec<String>,
        /// NAME or NAME@VERSION to move to (latest version when omitted).
        #[arg(long)]
        to: String,
        /// Move every container of this NAME@VERSION (besides those named).
        #[arg(long)]
        from: Option<String>,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON (every path updated, kept, re-shared, in conflict).
        #[arg(long)]
        json: bool,
    },
    /// Make a container's current root a new version of a template.
    Commit {
        /// Container name (unmounted).
        container: String,
        /// Template name; an existing name gets its next version.
        #[arg(long)]
        name: String,
        /// Then move the container onto the new version (its private area empties).
        #[arg(long)]
        rebase: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Share again the private files of containers whose bytes equal a stored
    /// object or another container's private file (mounted FUSE containers
    /// through their daemon; mounted kernel containers are skipped and listed).
    Dedup {
        /// Containers (all when none is named).
        names: Vec<String>,
        /// Show what would be shared; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove replaced private areas parked by rebase and dedup (started by
    /// them in the background; gc does it too).
    #[command(hide = true)]
    Reap,
    /// Logical, stored, shared and exclusive bytes per template and for the store.
    Report {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RemoteCmd {
    /// Add a remote: `remote add NAME s3://BUCKET[/PREFIX] --endpoint URL`.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
    /// AWS_SESSION_TOKEN), or from --credentials-file; they are never stored
    /// in the store nor printed.
    Add {
        name: String,
        /// s3://BUCKET[/PREFIX]
        url: String,
        /// The S3 endpoint, e.g. http://127.0.0.1:3900.
        #[arg(long)]
        endpoint: String,
        /// Signing region (default: AWS_REGION, else us-east-1; Garage's is
        /// usually `garage`).
        #[arg(long)]
        region: Option<String>,
        /// An AWS-format credentials file (mode 0600) to read keys from.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
    },
    /// List the remotes; `remote ls NAME` lists what the remote holds.
    Ls {
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a remote (nothing on it is touched).
    Rm { name: String },
    /// Remove a template version's (or `--container CT`'s) document from a
    /// remote; its objects go at the next `remote gc`.
    Delete {
        remote: String,
        /// NAME@V on the remote.
        template: Option<String>,
        #[arg(long)]
        container: Option<String>,
    },
    /// Remove the remote's objects that no document names (safe beside pushes
    /// from other nodes).
    Gc {
        remote: String,
        /// Keep unnamed objects younger than this (e.g. 0s, 30m, 1h, 2d).
        #[arg(long, default_value = "1h")]
        min_age: String,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TemplatesCmd {
    /// Describe a template version: record, sizes, and the image config it
    /// came with (Env, Cmd, Entrypoint, WorkingDir, User, Labels).
    Show {
        /// NAME or NAME@VERSION (latest when omitted).
        template: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a template version (its objects become garbage unless shared).
    Rm {
        /// NAME@VERSION, or NAME when it has a single version (or with --all).
        template: String,
        /// Remove every version of NAME.
        #[arg(long)]
        all: bool,
    },
}

/// `--backend` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    /// A FUSE daemon per mounted container (passthrough where the kernel offers it).
    Fuse,
    /// The kernel: the template's EROFS image under overlayfs, no daemon.
    Kernel,
}

impl From<BackendArg> for vzstore::store::catalog::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Fuse => vzstore::store::catalog::Backend::Fuse,
            BackendArg::Kernel => vzstore::store::catalog::Backend::Kernel,
        }
    }
}

/// `export --format` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// A directory tree with every byte and piece of metadata.
    Dir,
    /// A pax tar archive (xattrs, hardlinks, sparse files, ns mtimes).
    Tar,
    /// An OCI image layout with one layer.
    Oci,
}

/// `export --compression` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Zstd,
}
