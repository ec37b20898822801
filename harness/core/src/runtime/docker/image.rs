//! The node image: its source hash, and building it when it is missing or stale.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{clean_stderr, err, run_bounded, DOCKER_CALL_TIMEOUT, IMAGE, LABEL_SOURCE_HASH};
use crate::runtime::RuntimeError;

/// What [`ensure_image`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageReport {
    /// The image's label matched the sources.
    UpToDate { hash: String },
    /// The image was (re)built; why and in how many seconds.
    Built { hash: String, reason: String, seconds: f64 },
    /// No sources found: the existing image is used as it is.
    NoSources { why: String },
}

/// The repository to build the image from: `FAULTLINE_REPO`, else the source tree this harness
/// was compiled from, if it still holds docker/Dockerfile.
pub fn find_repo() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FAULTLINE_REPO").map(PathBuf::from),
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("docker/Dockerfile").is_file() && p.join("targets/node/Cargo.toml").is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

/// Files whose content decides the image: the node crate and the crate it depends on, the
/// workspace manifest and lock file, the Dockerfile and the build script.
fn image_inputs(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files: Vec<PathBuf> = ["Cargo.toml", "Cargo.lock", "docker/Dockerfile", "scripts/docker-image.sh"]
        .iter()
        .map(|f| repo.join(f))
        .collect();
    for krate in ["targets/node", "targets/protocols"] {
        files.push(repo.join(krate).join("Cargo.toml"));
        walk(&repo.join(krate).join("src"), &mut files);
    }
    files.sort();
    files
}

/// A 64-bit FNV-1a hash (hex) over the relative path and content of every image input. Not a
/// security measure: it only tells whether the image is older than the sources.
pub fn source_hash(repo: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for f in image_inputs(repo) {
        let rel = f.strip_prefix(repo).unwrap_or(&f).to_string_lossy().into_owned();
        feed(rel.as_bytes());
        feed(&[0]);
        match std::fs::read(&f) {
            Ok(content) => {
                feed(&(content.len() as u64).to_le_bytes());
                feed(&content);
            }
            Err(_) => feed(b"<missing>"),
        }
    }
    format!("{h:016x}")
}

/// The image's source-hash label; `Ok(None)` when the image does not exist.
fn image_label() -> Result<Option<String>, RuntimeError> {
    let fmt = format!("{{{{index .Config.Labels \"{LABEL_SOURCE_HASH}\"}}}}");
    let out = run_bounded("docker", &["image", "inspect", "-f", &fmt, IMAGE], &[], None, DOCKER_CALL_TIMEOUT, None)?;
    if out.ok {
        let v = out.stdout.trim();
        // A missing label prints "<no value>".
        Ok(Some(if v == "<no value>" { String::new() } else { v.to_string() }))
    } else if out.stderr.contains("No such image") || out.stderr.contains("No such object") {
        Ok(None)
    } else {
        Err(err(format!("docker image inspect {IMAGE}"), clean_stderr(&out.stderr)))
    }
}

/// Makes sure [`IMAGE`] exists and was built from the current sources; rebuilds it with
/// scripts/docker-image.sh (bounded by `timeout`, abandoned on `cancel`) when not.
pub fn ensure_image(
    repo: Option<&Path>,
    timeout: Duration,
    cancel: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<ImageReport, RuntimeError> {
    let label = image_label()?;
    let Some(repo) = repo.map(Path::to_path_buf).or_else(find_repo) else {
        return no_sources(label.is_some());
    };
    let hash = source_hash(&repo);
    let Some(reason) = rebuild_reason(label.as_deref(), &hash) else {
        return Ok(ImageReport::UpToDate { hash });
    };
    tracing::info!("building {IMAGE}: {reason}");
    eprintln!("faultline: building image {IMAGE} ({reason}); this may take minutes the first time");
    let started = Instant::now();
    let script_s = build_image(&repo, &hash, timeout, cancel)?;
    match image_label()? {
        Some(l) if l == hash => {
            Ok(ImageReport::Built { hash, reason, seconds: started.elapsed().as_secs_f64() })
        }
        other => Err(err(
            format!("bash {script_s}"),
            format!("the built image carries source hash {other:?}, expected {hash}: did the sources change during the build?"),
        )),
    }
}

/// Without a source tree: the existing image as it is, if there is one.
fn no_sources(image_exists: bool) -> Result<ImageReport, RuntimeError> {
    if image_exists {
        Ok(ImageReport::NoSources {
            why: "no faultline source tree found (set FAULTLINE_REPO); using the existing image as it is".into(),
        })
    } else {
        Err(RuntimeError::Unsupported {
            mechanism: "docker".into(),
            what: "the runtime".into(),
            why: format!(
                "image {IMAGE} does not exist and no source tree to build it from was found: \
                 set FAULTLINE_REPO to the repository, or run scripts/docker-image.sh there"
            ),
        })
    }
}

/// Why the image must be rebuilt, given its source-hash label (`None`: no image) and the
/// sources' hash; `None` when it is up to date.
fn rebuild_reason(label: Option<&str>, hash: &str) -> Option<String> {
    Some(match label {
        Some(l) if l == hash => return None,
        Some("") => "the image has no source-hash label".to_string(),
        Some(l) => format!("the sources changed (image {l}, sources {hash})"),
        None => "the image does not exist".to_string(),
    })
}

/// Runs scripts/docker-image.sh of `repo` (bounded by `timeout`, abandoned on `cancel`) to
/// build the image labelled `hash`; returns the script's path. A failed build is an error
/// quoting the end of its stderr.
fn build_image(
    repo: &Path,
    hash: &str,
    timeout: Duration,
    cancel: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<String, RuntimeError> {
    let script = repo.join("scripts/docker-image.sh");
    let script_s = script.to_string_lossy().into_owned();
    // Build into the repository's own target folder unless the caller chose one.
    let target_dir =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| repo.join("target").to_string_lossy().into_owned());
    let out = run_bounded(
        "bash",
        &[&script_s],
        &[("FAULTLINE_SOURCE_HASH", hash), ("CARGO_TARGET_DIR", &target_dir)],
        Some(repo),
        timeout,
        cancel,
    )?;
    if !out.ok {
        let tail: Vec<&str> = out.stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(err(
            format!("bash {script_s}"),
            format!("image build failed ({}): {}", out.status, tail.join("\n")),
        ));
    }
    Ok(script_s)
}
