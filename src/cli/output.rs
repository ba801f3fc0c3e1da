//! Human output: the ingest progress bar, summary lines and tables.

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vzstore::ingest::{IngestSummary, Progress};
use vzstore::store::catalog::{ContainerRecord, TemplateRecord};
use vzstore::store::report::Report;
use vzstore::store::verify::{Problem, RepairSummary, VerifyReport};

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct IngestBar(ProgressBar);

impl IngestBar {
    pub fn new() -> IngestBar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        IngestBar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for IngestBar {
    fn start_stream(&self) {
        self.0.unset_length();
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} {bytes_per_sec}")
        {
            self.0.set_style(style);
        }
    }
    fn start(&self, total_bytes: u64, files: u64) {
        self.0.set_length(total_bytes);
        self.0.set_message(format!("{files} files"));
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// The ingest summary as JSON (`ingest --json`).
pub fn ingest_json(s: &IngestSummary) -> serde_json::Value {
    serde_json::json!({
        "template": s.record.label(),
        "name": s.record.name,
        "version": s.record.version,
        "source": s.record.source,
        "entries": s.entries,
        "files": s.files,
        "bytes": s.bytes,
        "new_objects": s.new_objects,
        "new_bytes": s.new_bytes,
        "dedup_bytes": s.dedup_bytes,
        "cache_hits": s.cache_hits,
        "seconds": s.seconds,
        "warnings": s.warnings,
    })
}

/// The one summary line printed after an ingest.
pub fn ingest_summary(s: &IngestSummary) -> String {
    let mbps = if s.seconds > 0.0 {
        s.bytes as f64 / 1e6 / s.seconds
    } else {
        0.0
    };
    format!(
        "ingested {}: {} files ({} entries), {}, {} new objects ({}), {} deduplicated, {} unchanged files not re-read, {:.2} s, {:.1} MB/s",
        s.record.label(),
        s.files,
        s.entries,
        HumanBytes(s.bytes),
        s.new_objects,
        HumanBytes(s.new_bytes),
        HumanBytes(s.dedup_bytes),
        s.cache_hits,
        s.seconds,
        mbps
    )
}

/// A template record as JSON.
pub fn template_json(t: &TemplateRecord) -> serde_json::Value {
    serde_json::json!({
        "template": t.label(),
        "name": t.name,
        "version": t.version,
        "created": t.created,
        "entries": t.entries,
        "logical_bytes": t.logical_bytes,
        "source": t.source,
        "digest": t.digest.map(|d| d.to_hex()),
        "kernel_image": t.image.map(|d| d.to_hex()),
    })
}

/// `templates show` as text (from its JSON form).
pub fn template_show(v: &serde_json::Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    println!("template:    {}", s("template"));
    println!("source:      {}", s("source"));
    println!("entries:     {}", v["entries"]);
    println!(
        "logical:     {}",
        HumanBytes(v["logical_bytes"].as_u64().unwrap_or(0))
    );
    println!("digest:      {}", s("digest"));
    println!("kernel:      {}", s("kernel_image"));
    let users: Vec<&str> = v["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    println!("containers:  {}", users.join(" "));
    if let Some(r) = v["lazy_from"].as_str() {
        println!(
            "objects:     fetched on first open from remote {r} (pulled lazily; `vzstore pull {} {r}` fetches the rest)",
            s("template")
        );
    }
    let c = &v["image_config"];
    if c.is_null() {
        println!("image:       (none: not ingested from an OCI image)");
        return;
    }
    println!(
        "image:       {} {}/{}",
        c["from"].as_str().unwrap_or("-"),
        c["os"].as_str().unwrap_or("-"),
        c["architecture"].as_str().unwrap_or("-")
    );
    let cfg = &c["config"];
    for key in [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        let val = &cfg[key];
        if !val.is_null() {
            println!("  {key:<12} {val}");
        }
    }
}

pub fn templates(list: &[TemplateRecord]) {
    println!(
        "{:<32} {:>8} {:>12} {:>16}  SOURCE",
        "TEMPLATE", "ENTRIES", "LOGICAL", "CREATED (UTC)"
    );
    for t in list {
        println!(
            "{:<32} {:>8} {:>12} {:>16}  {}",
            t.label(),
            t.entries,
            HumanBytes(t.logical_bytes).to_string(),
            utc(t.created),
            t.source
        );
    }
}

/// `YYYY-MM-DD HH:MM` of seconds since the epoch (UTC; proleptic Gregorian).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub fn report(r: &Report) {
    println!(
        "{:<32} {:>8} {:>12} {:>12} {:>12}",
        "TEMPLATE", "FILES", "LOGICAL", "SHARED", "EXCLUSIVE"
    );
    for t in &r.templates {
        println!(
            "{:<32} {:>8} {:>12} {:>12} {:>12}",
            format!("{}@{}", t.name, t.version),
            t.files,
            HumanBytes(t.logical_bytes).to_string(),
            HumanBytes(t.shared_bytes).to_string(),
            HumanBytes(t.exclusive_bytes).to_string()
        );
    }
    if !r.containers.is_empty() {
        println!(
            "{:<32} {:>12} {:>12} {:>12} {:>8}  TEMPLATE",
            "CONTAINER", "LOGICAL", "SHARED", "PRIVATE", "CHANGED"
        );
        for c in &r.containers {
            println!(
                "{:<32} {:>12} {:>12} {:>12} {:>8}  {}",
                c.name,
                HumanBytes(c.logical_bytes).to_string(),
                HumanBytes(c.shared_bytes).to_string(),
                HumanBytes(c.private_bytes).to_string(),
                c.changed_paths,
                c.template
            );
        }
    }
    let s = &r.store;
    println!(
        "store: logical {}, stored {} in {} objects, private {}, metadata {}, dedup ratio {:.2}, saved {}",
        HumanBytes(s.logical_bytes),
        HumanBytes(s.stored_bytes),
        s.objects,
        HumanBytes(s.private_bytes),
        HumanBytes(s.metadata_bytes),
        s.dedup_ratio,
        HumanBytes(s.saved_bytes)
    );
    if s.dedup_would_free > 0 {
        println!(
            "`vzstore dedup` would free {} of private files now",
            HumanBytes(s.dedup_would_free)
        );
    }
}

pub fn verify(r: &VerifyReport) {
    for b in &r.bad {
        let what = match b.problem {
            Problem::Corrupt => "CORRUPT",
            Problem::Missing => "MISSING",
        };
        println!("{what} object {} (used by: {})", b.hash, join(&b.templates));
        for p in &b.paths {
            println!("  file {p}");
        }
        if !b.containers.is_empty() {
            println!("  containers: {}", join(&b.containers));
        }
    }
    for (p, e) in &r.unreadable {
        println!("UNREADABLE {}: {e}", p.display());
    }
    for b in &r.bad_records {
        println!("BAD RECORD {b}");
    }
    for b in &r.bad_images {
        let state = if b.repaired { "REWRITTEN" } else { "DAMAGED" };
        println!(
            "{state} kernel image {} of {} (containers: {})",
            b.path.display(),
            b.template,
            join(&b.containers)
        );
    }
    for ct in &r.stale_mounts {
        println!(
            "STALE mount: container {ct} still reads the damaged image it was mounted with; mount it again (vzstore umount {ct} && vzstore mount {ct})"
        );
    }
    for t in &r.images_unchecked {
        println!("note: the kernel image of {t} was not checked: some of its objects are bad");
    }
    for p in &r.strays {
        println!("note: stray file {}", p.display());
    }
    if r.lazy_objects > 0 {
        println!(
            "note: {} objects of lazily pulled templates are not fetched yet (not damage: they come on first open)",
            r.lazy_objects
        );
    }
    let count = |p| r.with_problem(p).count();
    println!(
        "verify: {} objects ({}) re-hashed, {} templates and {} kernel images checked: {} corrupt, {} missing, {} unreadable, {} bad records, {} damaged images; {} unreferenced objects, {} unused images, {} crashed sessions (gc removes these) -> {}",
        r.objects_checked,
        HumanBytes(r.bytes_checked),
        r.templates_checked,
        r.images_checked,
        count(Problem::Corrupt),
        count(Problem::Missing),
        r.unreadable.len(),
        r.bad_records.len(),
        r.bad_images.iter().filter(|b| !b.repaired).count(),
        r.unreferenced,
        r.unused_images,
        r.dead_sessions,
        if r.is_clean() { "clean" } else { "NOT CLEAN" }
    );
}

pub fn repair(s: &RepairSummary) {
    for h in &s.restored {
        println!("restored object {h}");
    }
    for h in &s.unrestored {
        println!("NOT RESTORED object {h}: no source holds its content");
    }
}

fn join(s: &std::collections::BTreeSet<String>) -> String {
    if s.is_empty() {
        "nothing".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub fn containers(
    st: &vzstore::store::Store,
    list: &[ContainerRecord],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut out = Vec::new();
        for c in list {
            let mnt = vzstore::mount::current_mountpoint(st, c)?;
            let private =
                vzstore::store::objects::du(&vzstore::container::private_dir(st, &c.name))?;
            out.push(serde_json::json!({
                "name": c.name,
                "template": c.base_label(),
                "backend": c.backend.name(),
                "created": c.created,
                "mounted": mnt.is_some(),
                "mountpoint": mnt,
                "private_bytes": private,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<32} {:<8} {:<8} {:>12}  MOUNTPOINT",
        "CONTAINER", "TEMPLATE", "BACKEND", "MOUNTED", "PRIVATE"
    );
    for c in list {
        let mnt = vzstore::mount::current_mountpoint(st, c)?;
        let private = vzstore::store::objects::du(&vzstore::container::private_dir(st, &c.name))?;
        println!(
            "{:<24} {:<32} {:<8} {:<8} {:>12}  {}",
            c.name,
            c.base_label(),
            c.backend.name(),
            if mnt.is_some() { "yes" } else { "no" },
            HumanBytes(private).to_string(),
            mnt.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

/// One container's rebase.
pub fn rebase(o: &vzstore::lifecycle::rebase::RebaseOutcome) {
    let verb = if o.dry_run { "would move" } else { "moved" };
    if o.unchanged {
        println!("{}: already on {}", o.container, o.to);
        return;
    }
    let p = &o.paths;
    println!(
        "{}: {verb} {} -> {}: {} paths updated, {} kept, {} re-shared, {} in conflict; private: {} files, {}",
        o.container,
        o.from,
        o.to,
        p.updated.len(),
        p.kept.len(),
        p.reshared.len(),
        p.conflicts.len(),
        o.private_files,
        HumanBytes(o.private_bytes)
    );
    for c in &p.conflicts {
        println!(
            "  conflict {}: {} (the container's version stays)",
            c.path, c.reason
        );
    }
}

/// A dedup run.
pub fn dedup(s: &vzstore::lifecycle::dedup::DedupSummary, dry_run: bool) {
    let verb = if dry_run { "would share" } else { "shared" };
    for c in &s.containers {
        match &c.skipped {
            Some(why) => println!("{}: skipped ({why})", c.container),
            None => println!(
                "{}: {verb} {} files ({}) again; private: {} files, {} (was {} files, {})",
                c.container,
                c.shared_again_files,
                HumanBytes(c.shared_again_bytes),
                c.private_files_after,
                HumanBytes(c.private_bytes_after),
                c.private_files_before,
                HumanBytes(c.private_bytes_before)
            ),
        }
    }
    println!(
        "{} new objects ({}), {:.2} s",
        s.new_objects,
        HumanBytes(s.new_object_bytes),
        s.seconds
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(super::utc(1_795_809_900), "2026-11-27 20:05"); // date -u -d @1795809900
        assert_eq!(super::utc(-86_400), "1969-12-31 00:00");
    }
}
