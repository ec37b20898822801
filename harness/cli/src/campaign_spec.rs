//! The campaign file (`faultline campaign FILE.toml`): parsing, validation with `file:line`
//! errors, and its expansion into cells with their seeds and `faultline run` flags.
//!
//! ```toml
//! name = "compare"            # default: the file's stem
//! seed = 1                    # every cell's seed derives from it (default: random, recorded)
//! [defaults]                  # any cell key; a [[matrix]] block overrides it
//! nodes = 3
//! time-limit = 20
//! [[matrix]]                  # the cross product targets × workloads × nemeses × repeats
//! targets = ["raft", "paxos"]
//! workloads = ["register"]
//! nemeses = ["partition", "clock"]
//! [[matrix]]                  # a single cell: singular keys
//! target = "raft"
//! workload = "register"
//! nemesis = "partition:isolate-leader"
//! bugs = ["stale-read"]
//! expect = "invalid"
//! ```
//!
//! Every cell is checked up front by the same validation `faultline run` applies, so a bad
//! campaign fails before any cluster starts, naming the line of the offending key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::Parser;
use faultline_core::nemesis::parse_choices;
use faultline_core::target::external;
use faultline_core::target::roles;
use serde::Deserialize;
use toml::Spanned;

use crate::run::RunArgs;

/// At most this many cells in one campaign.
pub const CELLS_MAX: usize = 1000;
/// Outcomes a cell may expect.
pub const EXPECTATIONS: &[&str] = &["valid", "invalid", "unknown", "error", "any"];

/// A campaign file error, located when the file says where.
#[derive(Debug, PartialEq)]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for SpecError {}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    name: Option<Spanned<String>>,
    seed: Option<Spanned<u64>>,
    defaults: Option<Spanned<Table>>,
    #[serde(default)]
    matrix: Vec<Spanned<Table>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The keys of [defaults] and of a [[matrix]] block.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Table {
    target: Option<Spanned<String>>,
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    workload: Option<Spanned<String>>,
    workloads: Option<Spanned<Vec<Spanned<String>>>>,
    nemesis: Option<Spanned<String>>,
    nemeses: Option<Spanned<Vec<Spanned<String>>>>,
    repeats: Option<Spanned<u32>>,
    seed: Option<Spanned<u64>>,
    expect: Option<Spanned<OneOrMany>>,
    nodes: Option<Spanned<usize>>,
    time_limit: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    rate: Option<Spanned<f64>>,
    nemesis_interval: Option<Spanned<f64>>,
    recovery: Option<Spanned<f64>>,
    op_timeout_ms: Option<Spanned<u64>>,
    setup_timeout: Option<Spanned<f64>>,
    target_opts: Option<Spanned<Vec<String>>>,
    bugs: Option<Spanned<Vec<String>>>,
    runtime: Option<Spanned<String>>,
    local_net: Option<Spanned<String>>,
    // `runtime = "ssh"` (docs/multi-host.md); paths are read from the campaign file's folder.
    nodes_file: Option<Spanned<String>>,
    ssh_user: Option<Spanned<String>>,
    ssh_key: Option<Spanned<String>>,
    ssh_port: Option<Spanned<u16>>,
    ssh_known_hosts: Option<Spanned<String>>,
    remote_dir: Option<Spanned<String>>,
}

/// A validated campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    /// The seed given in the file (the command line's `--seed` wins over it).
    pub seed: Option<u64>,
    pub cells: Vec<CellPlan>,
}

/// One cell, before it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CellPlan {
    pub target: String,
    pub workload: String,
    pub nemesis: String,
    pub fault_families: Vec<String>,
    pub repeat: u32,
    /// The block's explicit seed, if any (the cell's seed is then this + repeat - 1).
    pub fixed_seed: Option<u64>,
    pub expect: Vec<String>,
    /// `faultline run` flags other than target, workload, nemesis and seed, in order.
    pub flags: Vec<(String, String)>,
    /// Line of the [[matrix]] block it comes from.
    pub line: usize,
}

impl CellPlan {
    /// The cell's seed: the block's fixed seed, else one derived from the campaign seed and the
    /// cell's target, workload, nemesis and repeat (so adding a cell does not move the others,
    /// and the same cell with and without a bug flag runs the same schedule).
    pub fn seed(&self, campaign_seed: u64) -> u64 {
        match self.fixed_seed {
            Some(s) => s.wrapping_add(u64::from(self.repeat) - 1),
            None => {
                let stream = format!("campaign-cell:{}/{}/{}", self.target, self.workload, self.nemesis);
                faultline_core::generator::derive_seed(campaign_seed, &stream, u64::from(self.repeat)) % 1_000_000_000
            }
        }
    }

    /// Every `faultline run` argument of the cell.
    pub fn run_words(&self, seed: u64) -> Vec<String> {
        let mut w: Vec<String> = vec![
            "--target".into(),
            self.target.clone(),
            "--workload".into(),
            self.workload.clone(),
            "--nemesis".into(),
            self.nemesis.clone(),
            "--seed".into(),
            seed.to_string(),
        ];
        for (flag, value) in &self.flags {
            if value.starts_with('-') {
                // `--time-limit -3` would read -3 as a flag.
                w.push(format!("--{flag}={value}"));
            } else {
                w.push(format!("--{flag}"));
                w.push(value.clone());
            }
        }
        w
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and validates the campaign file at `path`.
pub fn load(path: &Path) -> Result<Campaign, SpecError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: file.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "campaign".into());
    parse(&text, &file, &base, &stem)
}

/// Parses campaign text; `file` names it in errors, `base` resolves relative target files.
pub fn parse(text: &str, file: &str, base: &Path, stem: &str) -> Result<Campaign, SpecError> {
    let src = Source { text, file };
    let spec: FileSpec = toml::from_str(text).map_err(|e| src.err(e.span(), e.message().trim().to_string()))?;
    let name = campaign_name(&src, &spec.name, stem)?;
    let defaults = spec.defaults.as_ref().map(|d| d.get_ref().clone()).unwrap_or_default();
    if let Some(s) = &defaults.seed {
        return Err(src.err(
            Some(s.span()),
            "seed in [defaults]: put the campaign seed at the top of the file (a [[matrix]] block may fix its own)"
                .into(),
        ));
    }
    if spec.matrix.is_empty() {
        return Err(
            src.err(None, "no [[matrix]] block: a campaign needs at least one (targets, workloads, nemeses)".into())
        );
    }
    let mut cells = Vec::new();
    for block in &spec.matrix {
        BlockPlan::read(&src, block, &defaults, base)?.push_cells(&src, block.span(), &mut cells)?;
    }
    Ok(Campaign { name, seed: spec.seed.as_ref().map(|s| *s.get_ref()), cells })
}

/// The campaign text and the file it names, to locate errors.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    /// An error at the line where `span` starts (unlocated without a span).
    fn err(&self, span: Option<Range<usize>>, message: String) -> SpecError {
        SpecError { file: self.file.to_string(), line: span.map(|s| line_of(self.text, s.start)), message }
    }

    /// An error at `line`.
    fn at_line(&self, line: usize, message: String) -> SpecError {
        SpecError { file: self.file.to_string(), line: Some(line), message }
    }
}

/// The file's `name`, checked, else the file's stem made a name.
fn campaign_name(src: &Source, name: &Option<Spanned<String>>, stem: &str) -> Result<String, SpecError> {
    match name {
        Some(n) => {
            let v = n.get_ref();
            if v.is_empty() || v.starts_with('.') || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(src.err(Some(n.span()), format!("name {v:?}: use letters, digits, '-', '_' and '.' only")));
            }
            Ok(v.clone())
        }
        None => Ok(sanitize(stem)),
    }
}

/// (flag, value, span) of a run option a cell sets.
type Flag = (String, String, Range<usize>);

/// One [[matrix]] block, validated, with [defaults] applied: what its cells are made of.
struct BlockPlan {
    line: usize,
    /// The targets as written, with their spans.
    targets: Vec<Located>,
    /// The targets as cells run them (target files resolved).
    resolved_targets: Vec<String>,
    workloads: Vec<Located>,
    nemeses: Vec<Located>,
    /// The fault families of each nemesis, in `nemeses` order.
    families: Vec<Vec<String>>,
    repeats: u32,
    fixed_seed: Option<u64>,
    expect: Vec<String>,
    flags: Vec<Flag>,
}

impl BlockPlan {
    /// Reads and checks `block`, in the order its errors are reported.
    fn read(src: &Source, block: &Spanned<Table>, defaults: &Table, base: &Path) -> Result<BlockPlan, SpecError> {
        let b = block.get_ref();
        let line = line_of(src.text, block.span().start);
        let targets =
            axis(src, line, (&b.target, &b.targets), (&defaults.target, &defaults.targets), "target", "targets")?;
        let workloads = axis(
            src,
            line,
            (&b.workload, &b.workloads),
            (&defaults.workload, &defaults.workloads),
            "workload",
            "workloads",
        )?;
        let nemeses =
            axis(src, line, (&b.nemesis, &b.nemeses), (&defaults.nemesis, &defaults.nemeses), "nemesis", "nemeses")?;
        let mut resolved_targets = Vec::new();
        for (t, span) in &targets {
            resolved_targets.push(check_target(t, base).map_err(|m| src.err(Some(span.clone()), m))?);
        }
        check_workloads(src, &workloads)?;
        let families = fault_families(src, &nemeses)?;
        let repeats = repeats(src, b, defaults)?;
        let expect = expectations(src, b, defaults)?;
        let flags = run_flags(src, b, defaults, base)?;
        let fixed_seed = b.seed.as_ref().map(|s| *s.get_ref());
        Ok(BlockPlan {
            line,
            targets,
            resolved_targets,
            workloads,
            nemeses,
            families,
            repeats,
            fixed_seed,
            expect,
            flags,
        })
    }

    /// Appends the block's cells (targets × workloads × nemeses × repeats), each checked by the
    /// run's validation; `span` is the block's.
    fn push_cells(&self, src: &Source, span: Range<usize>, cells: &mut Vec<CellPlan>) -> Result<(), SpecError> {
        for (ti, target) in self.resolved_targets.iter().enumerate() {
            for (workload, _) in &self.workloads {
                for (ni, (nemesis, _)) in self.nemeses.iter().enumerate() {
                    for repeat in 1..=self.repeats {
                        let cell = CellPlan {
                            target: target.clone(),
                            workload: workload.clone(),
                            nemesis: nemesis.clone(),
                            fault_families: self.families[ni].clone(),
                            repeat,
                            fixed_seed: self.fixed_seed,
                            expect: self.expect.clone(),
                            flags: self.flags.iter().map(|(f, v, _)| (f.clone(), v.clone())).collect(),
                            line: self.line,
                        };
                        self.check_cell(src, &cell, &self.targets[ti].1)?;
                        cells.push(cell);
                        if cells.len() > CELLS_MAX {
                            return Err(src.err(Some(span), format!("more than {CELLS_MAX} cells")));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The run's own validation, on the exact flags the cell will run with, located at the
    /// offending flag, else at the target (`target_span`), else at the block.
    fn check_cell(&self, src: &Source, cell: &CellPlan, target_span: &Range<usize>) -> Result<(), SpecError> {
        let Err(e) = validate_run(cell) else { return Ok(()) };
        let span = self.flags.iter().find(|(f, _, _)| e.contains(&format!("--{f}"))).map(|x| x.2.clone());
        let span = span.or_else(|| (e.contains("target") || e.contains("--runtime")).then(|| target_span.clone()));
        let (target, workload, nemesis) = (&cell.target, &cell.workload, &cell.nemesis);
        Err(SpecError {
            file: src.file.to_string(),
            line: Some(span.map_or(self.line, |s| line_of(src.text, s.start))),
            message: format!("cell {target}/{workload}/{nemesis}: {e}"),
        })
    }
}

/// One axis of a block (`target`/`targets`, ...): the block's key, else [defaults]' key; it must
/// be set in one of them. `line` is the block's.
fn axis(
    src: &Source,
    line: usize,
    block: (&One, &Many),
    defaults: (&One, &Many),
    what: &str,
    plural: &str,
) -> Result<Vec<Located>, SpecError> {
    match axis_values(src, block, what, plural)? {
        Some(v) => Ok(v),
        None => axis_values(src, defaults, what, plural)?.ok_or_else(|| {
            src.at_line(
                line,
                format!("this [[matrix]] block has no {what}: set `{what}` or `{plural}` (here or in [defaults])"),
            )
        }),
    }
}

/// The values of an axis in one table (`None` if unset); both keys, or an empty list, are errors.
fn axis_values(
    src: &Source,
    (one, many): (&One, &Many),
    what: &str,
    plural: &str,
) -> Result<Option<Vec<Located>>, SpecError> {
    match (one, many) {
        (Some(o), Some(_)) => Err(src.err(Some(o.span()), format!("both `{what}` and `{plural}`: give one"))),
        (Some(o), None) => Ok(Some(vec![(o.get_ref().clone(), o.span())])),
        (None, Some(m)) if m.get_ref().is_empty() => Err(src.err(Some(m.span()), format!("`{plural}` is empty"))),
        (None, Some(m)) => Ok(Some(m.get_ref().iter().map(|s| (s.get_ref().clone(), s.span())).collect())),
        (None, None) => Ok(None),
    }
}

/// Every workload must be a known one.
fn check_workloads(src: &Source, workloads: &[Located]) -> Result<(), SpecError> {
    for (w, span) in workloads {
        if !faultline_workloads::NAMES.contains(&w.as_str()) {
            return Err(src.err(
                Some(span.clone()),
                format!("unknown workload {w:?}: expected one of {}", faultline_workloads::NAMES.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The fault families of each nemesis, which must parse.
fn fault_families(src: &Source, nemeses: &[Located]) -> Result<Vec<Vec<String>>, SpecError> {
    let mut families = Vec::new();
    for (n, span) in nemeses {
        let choices = parse_choices(n).map_err(|e| src.err(Some(span.clone()), format!("nemesis {n:?}: {e}")))?;
        let mut f: Vec<String> = choices.iter().map(|c| c.family.as_str().to_string()).collect();
        f.dedup();
        families.push(f);
    }
    Ok(families)
}

/// `repeats` (default 1), between 1 and 100.
fn repeats(src: &Source, b: &Table, defaults: &Table) -> Result<u32, SpecError> {
    let repeats = pick(&b.repeats, &defaults.repeats);
    let repeats_n = repeats.map_or(1, |r| *r.get_ref());
    if !(1..=100).contains(&repeats_n) {
        return Err(src.err(repeats.map(Spanned::span), format!("repeats must be between 1 and 100, got {repeats_n}")));
    }
    Ok(repeats_n)
}

/// `expect` (default "valid"): a non-empty list of known outcomes.
fn expectations(src: &Source, b: &Table, defaults: &Table) -> Result<Vec<String>, SpecError> {
    let Some(e) = pick(&b.expect, &defaults.expect) else { return Ok(vec!["valid".to_string()]) };
    let list = match e.get_ref() {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(v) => v.clone(),
    };
    if list.is_empty() {
        return Err(src.err(Some(e.span()), "`expect` is empty".into()));
    }
    if let Some(bad) = list.iter().find(|x| !EXPECTATIONS.contains(&x.as_str())) {
        return Err(src
            .err(Some(e.span()), format!("unknown expectation {bad:?}: expected one of {}", EXPECTATIONS.join(", "))));
    }
    Ok(list)
}

/// Every run option the cell sets, as (flag, value, span); target options must read KEY=VALUE.
fn run_flags(src: &Source, b: &Table, defaults: &Table, base: &Path) -> Result<Vec<Flag>, SpecError> {
    let mut flags: Vec<Flag> = Vec::new();
    macro_rules! opt {
        ($field:ident, $flag:literal) => {
            if let Some(v) = pick(&b.$field, &defaults.$field) {
                flags.push(($flag.to_string(), v.get_ref().to_string(), v.span()));
            }
        };
    }
    opt!(nodes, "nodes");
    opt!(time_limit, "time-limit");
    opt!(concurrency, "concurrency");
    opt!(rate, "rate");
    opt!(nemesis_interval, "nemesis-interval");
    opt!(recovery, "recovery");
    opt!(op_timeout_ms, "op-timeout-ms");
    opt!(setup_timeout, "setup-timeout");
    opt!(runtime, "runtime");
    opt!(local_net, "local-net");
    opt!(ssh_user, "ssh-user");
    opt!(ssh_port, "ssh-port");
    opt!(remote_dir, "remote-dir");
    for (field, flag) in [
        (pick(&b.nodes_file, &defaults.nodes_file), "nodes-file"),
        (pick(&b.ssh_key, &defaults.ssh_key), "ssh-key"),
        (pick(&b.ssh_known_hosts, &defaults.ssh_known_hosts), "ssh-known-hosts"),
    ] {
        if let Some(v) = field {
            let p = Path::new(v.get_ref());
            let p = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            flags.push((flag.to_string(), p.display().to_string(), v.span()));
        }
    }
    for (field, flag) in
        [(pick(&b.bugs, &defaults.bugs), "bug"), (pick(&b.target_opts, &defaults.target_opts), "target-opt")]
    {
        if let Some(v) = field {
            for x in v.get_ref() {
                flags.push((flag.to_string(), x.clone(), v.span()));
            }
        }
    }
    if let Some(v) = pick(&b.target_opts, &defaults.target_opts) {
        if let Some(bad) = v.get_ref().iter().find(|o| !o.contains('=')) {
            return Err(src.err(Some(v.span()), format!("target option {bad:?}: expected KEY=VALUE")));
        }
    }
    Ok(flags)
}

/// A singular axis key (`target`), its plural (`targets`), and a value with its span.
type One = Option<Spanned<String>>;
type Many = Option<Spanned<Vec<Spanned<String>>>>;
type Located = (String, Range<usize>);

fn pick<'a, T>(block: &'a Option<Spanned<T>>, defaults: &'a Option<Spanned<T>>) -> Option<&'a Spanned<T>> {
    block.as_ref().or(defaults.as_ref())
}

/// A role, `etcd`, `redis`, or a target file (resolved against the campaign file's folder and
/// required to exist).
fn check_target(t: &str, base: &Path) -> Result<String, String> {
    if roles::role(t).is_some() || external::NAMED.contains(&t) {
        return Ok(t.to_string());
    }
    if external::is_external(t) {
        let p = PathBuf::from(t);
        let p = if p.is_absolute() { p } else { base.join(p) };
        if !p.is_file() {
            return Err(format!(
                "target file {} not found (relative paths are read from the campaign file's folder)",
                p.display()
            ));
        }
        return Ok(p.display().to_string());
    }
    Err(format!(
        "unknown target {t:?}: expected one of {}, {} or a file *.toml",
        roles::names().collect::<Vec<_>>().join(", "),
        external::NAMED.join(", ")
    ))
}

#[derive(Parser)]
struct RunWords {
    #[command(flatten)]
    run: RunArgs,
}

/// Parses the cell's flags as `faultline run` would and applies its validation.
fn validate_run(cell: &CellPlan) -> Result<(), String> {
    let words = cell.run_words(0);
    let args = RunWords::try_parse_from(std::iter::once("run".to_string()).chain(words))
        .map_err(|e| {
            e.render().to_string().lines().next().unwrap_or("bad flags").trim_start_matches("error: ").to_string()
        })?
        .run;
    crate::run::validate(&crate::run::nodes_from_file(args)).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// `s` as a name: letters, digits, '-', '_', '.'; anything else becomes '-'.
pub fn sanitize(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    let t = t.trim_start_matches('.').to_string();
    if t.is_empty() {
        "campaign".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Campaign {
        // A node binary must exist for reference targets: point the run's lookup at one.
        std::env::set_var("FAULTLINE_NODE_BIN", "/bin/true");
        parse(text, "c.toml", Path::new("/nonexistent"), "c").unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> SpecError {
        std::env::set_var("FAULTLINE_NODE_BIN", "/bin/true");
        parse(text, "c.toml", Path::new("/nonexistent"), "c").expect_err("should be refused")
    }

    #[test]
    fn expands_the_cross_product_with_defaults_and_overrides() {
        let c = parse_ok(
            r#"
seed = 7
[defaults]
nodes = 3
time-limit = 8
[[matrix]]
targets = ["raft", "paxos"]
workloads = ["register"]
nemeses = ["partition", "clock"]
repeats = 2
[[matrix]]
target = "crdt"
workload = "set"
nemesis = "partition"
nodes = 5
bugs = ["bad-merge"]
expect = ["invalid", "unknown"]
"#,
        );
        assert_eq!((c.name.as_str(), c.seed), ("c", Some(7)));
        assert_eq!(c.cells.len(), 2 * 2 * 2 + 1);
        let first = &c.cells[0];
        assert_eq!((first.target.as_str(), first.nemesis.as_str(), first.repeat), ("raft", "partition", 1));
        assert_eq!(first.flags, vec![("nodes".into(), "3".into()), ("time-limit".into(), "8".into())]);
        assert_eq!(first.expect, ["valid"]);
        assert_eq!(first.fault_families, ["partition"]);
        let crdt = c.cells.last().unwrap();
        assert_eq!(
            crdt.flags,
            vec![("nodes".into(), "5".into()), ("time-limit".into(), "8".into()), ("bug".into(), "bad-merge".into())]
        );
        assert_eq!(crdt.expect, ["invalid", "unknown"]);
        assert_eq!(crdt.line, 11);
        // Seeds: derived, stable per (target, workload, nemesis, repeat), different across cells.
        let seeds: Vec<u64> = c.cells.iter().map(|x| x.seed(7)).collect();
        let mut uniq = seeds.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), seeds.len());
        assert_eq!(c.cells[0].seed(7), c.cells[0].seed(7));
        assert_ne!(c.cells[0].seed(7), c.cells[0].seed(8));
        assert_eq!(
            crdt.run_words(5)[..8],
            ["--target", "crdt", "--workload", "set", "--nemesis", "partition", "--seed", "5"]
        );
    }

    #[test]
    fn ssh_cells_take_their_hosts_from_a_nodes_file_beside_the_campaign() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nodes.txt"), "root@10.0.0.1\nroot@10.0.0.2\nroot@10.0.0.3\n").unwrap();
        let text = "[defaults]\nruntime = \"ssh\"\nnodes-file = \"nodes.txt\"\nssh-port = 2222\n\
                    [[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\nnemesis = \"partition\"\n";
        let c = parse(text, "c.toml", dir.path(), "c").expect("an ssh campaign parses");
        let words = c.cells[0].run_words(1).join(" ");
        let nodes = dir.path().join("nodes.txt");
        assert!(words.contains(&format!("--nodes-file {}", nodes.display())), "{words}");
        assert!(words.contains("--runtime ssh") && words.contains("--ssh-port 2222"), "{words}");
        let bad = text.replace("nodes.txt", "missing.txt");
        let e = parse(&bad, "c.toml", dir.path(), "c").expect_err("a missing nodes file is refused up front");
        assert!(e.to_string().contains("--nodes-file"), "{e}");
    }

    #[test]
    fn a_fixed_seed_counts_up_with_the_repeats() {
        let c = parse_ok(
            "[[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\nnemesis = \"none\"\nseed = 40\nrepeats = 3\n",
        );
        assert_eq!(c.cells.iter().map(|x| x.seed(1)).collect::<Vec<_>>(), [40, 41, 42]);
    }

    #[test]
    fn errors_name_the_line_of_the_bad_key() {
        let base = "[[matrix]]\ntargets = [\"raft\"]\nworkloads = [\"register\"]\nnemeses = [\"partition\"]\n";
        let cases: &[(&str, usize, &str)] = &[
            (
                "[[matrix]]\ntargets = [\"raft\", \"zookeeper\"]\nworkloads = [\"register\"]\nnemeses = [\"none\"]\n",
                2,
                "unknown target \"zookeeper\"",
            ),
            (
                "[[matrix]]\ntargets = [\"raft\"]\nworkloads = [\"queue\"]\nnemeses = [\"none\"]\n",
                3,
                "unknown workload \"queue\"",
            ),
            (
                "[[matrix]]\ntargets = [\"raft\"]\nworkloads = [\"register\"]\nnemeses = [\"flood\"]\n",
                4,
                "nemesis \"flood\"",
            ),
            (&format!("{base}nodes = 0\n"), 5, "--nodes must be between 1 and 20"),
            (&format!("{base}time-limit = -3\n"), 5, "--time-limit"),
            (&format!("{base}bugs = [\"sloppy\"]\n"), 5, "unknown --bug \"sloppy\""),
            (&format!("{base}expect = \"great\"\n"), 5, "unknown expectation \"great\""),
            (&format!("{base}nodes = \"three\"\n"), 5, "invalid type"),
            (&format!("{base}colour = \"red\"\n"), 5, "unknown field `colour`"),
            (&format!("{base}target-opts = [\"novalue\"]\n"), 5, "expected KEY=VALUE"),
            ("[[matrix]]\ntargets = [\"raft\"]\nworkloads = [\"register\"]\n", 1, "no nemesis"),
            ("[[matrix]]\ntargets = []\n", 2, "`targets` is empty"),
            ("[defaults]\nseed = 3\n[[matrix]]\n", 2, "seed in [defaults]"),
            ("name = \"a b\"\n[[matrix]]\n", 1, "name \"a b\""),
            ("[[matrix]]\ntargets = [\"raft\"\n", 2, ""),
            (
                "[[matrix]]\ntarget = \"missing.toml\"\nworkload = \"register\"\nnemesis = \"none\"\n",
                2,
                "target file /nonexistent/missing.toml not found",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_err(text);
            assert_eq!(e.line, Some(*line), "{text}\n→ {e}");
            assert!(e.message.contains(needle), "{text}\n→ {e}");
            assert!(e.to_string().starts_with(&format!("c.toml:{line}: ")), "{e}");
        }
        assert!(parse_err("seed = 1\n").message.contains("no [[matrix]] block"));
    }
}
