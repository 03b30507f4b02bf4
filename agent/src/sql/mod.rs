//! `xdp-audit sql`: SQL over the store with an embedded engine (Apache DataFusion).
//!
//! One job per module: [`tables`] (what the store holds, as the engine's tables and views),
//! [`checked`] (the engine's reads of segments checked against their CRC-32s),
//! [`udf`] (the address and MAC conversions), [`output`] (the answer as a table, CSV or JSON
//! Lines), [`pushdown`] (filters on the text columns turned into filters on the column form).
//! The engine only reads: a statement that would define, change or write anything
//! (DDL, DML, `COPY`, `SET`) is refused before it runs, and no table or function reads
//! anything but the store's live segments and journals.

pub mod checked;
pub mod output;
pub mod pushdown;
pub mod remote;
pub mod tables;
pub mod udf;

use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures_util::StreamExt;

use crate::ship::config::ShipConfig;
use crate::store::export::Format;
use crate::store::query::QueryError;

pub use tables::Sources;

/// Errors of a `sql` run; each names the statement's problem or the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The store's chain, directory or a live journal could not be read.
    #[error(transparent)]
    Store(#[from] QueryError),
    /// A live journal's records could not be encoded for the engine.
    #[error("live journal {journal}: encoding its records for the engine: {cause}")]
    Encode {
        /// The journal.
        journal: PathBuf,
        /// What went wrong.
        cause: String,
    },
    /// The memory file holding a live journal's records failed.
    #[error("live journal {journal}: in-memory copy: {cause}")]
    Memory {
        /// The journal.
        journal: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The bucket of `--remote` could not be listed or read.
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
    /// The engine could not be set up (a bug, or the machine out of resources).
    #[error("setting up the SQL engine: {0}")]
    Engine(DataFusionError),
    /// The statement is not valid SQL, or names a table, column or function that does not
    /// exist.
    #[error("{} (the tables are `flows`, `flows_raw`, `segments_raw` and `journal_raw`; `SELECT * FROM information_schema.columns` lists their columns)", statement_text(.0))]
    Statement(DataFusionError),
    /// The statement would change something: `sql` only reads.
    #[error("`sql` only reads the store (SELECT, WITH, EXPLAIN, SHOW); this statement would define, change or write something: {0}")]
    ReadOnly(DataFusionError),
    /// The statement failed while it ran (a value a function refused, memory).
    #[error("running the statement: {}{}", .0, memory_hint(.0))]
    Execution(DataFusionError),
    /// The answer could not be written (a full disk, a closed pipe).
    #[error("writing the answer: {0}")]
    Output(std::io::Error),
}

/// What to do about a statement past the memory limit: the engine names its own setting,
/// which `sql` does not let a statement change.
fn memory_hint(e: &DataFusionError) -> &'static str {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        " (the engine's limit is `sql --memory-limit`: give it more, or ask for less: fewer \
         columns, a narrower time window, a LIMIT)"
    } else {
        ""
    }
}

/// What is wrong with a statement, in words: the engine prints a parser's complaint with
/// Rust's debug formatting (`SQL error: ParserError("Expected: ...")`).
fn statement_text(e: &DataFusionError) -> String {
    use datafusion::sql::sqlparser::parser::ParserError;
    match e.find_root() {
        DataFusionError::SQL(p, _) => match p.as_ref() {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => {
                format!("not valid SQL: {m}")
            }
            ParserError::RecursionLimitExceeded => "not valid SQL: nested too deeply".into(),
        },
        root => root.message().into_owned(),
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows of the answer.
    pub rows: u64,
    /// Live segments the tables cover.
    pub segments: usize,
    /// Live journals the tables cover.
    pub journals: usize,
    /// Records of those journals.
    pub journal_rows: u64,
    /// Live journals with a damaged stretch whose records the tables lack.
    pub damaged_journals: usize,
}

/// A session over one store: its tables registered, ready for statements.
pub struct Session {
    runtime: tokio::runtime::Runtime,
    ctx: SessionContext,
    summary: Summary,
    /// The store read, to tell a segment pruned or merged under a statement from damage.
    dir: Option<PathBuf>,
}

impl Session {
    /// Opens the store at `dir` (segments and live journals as they are now); the engine
    /// holds at most `memory_limit` bytes.
    pub fn open(dir: &Path, memory_limit: usize) -> Result<Self, SqlError> {
        let mut session = Self::new(&tables::sources(dir)?, memory_limit)?;
        session.dir = Some(dir.to_owned());
        Ok(session)
    }

    /// A session over `sources` (a store's, or chosen files: tests, other stores' segments).
    pub fn new(sources: &Sources, memory_limit: usize) -> Result<Self, SqlError> {
        let (runtime, ctx) = engine(memory_limit)?;
        runtime
            .block_on(tables::register(&ctx, sources))
            .map_err(SqlError::Engine)?;
        let summary = Summary {
            rows: 0,
            segments: sources.segments.len(),
            journals: sources.journals.len(),
            journal_rows: sources.journal_rows(),
            damaged_journals: sources.damaged_journals,
        };
        Ok(Self {
            runtime,
            ctx,
            summary,
            dir: None,
        })
    }

    /// A session over the segments a fleet shipped to the bucket of `cfg` (its gateway id is
    /// not used: every gateway under the prefix is read, `gateway` and `date` as columns).
    pub fn remote(cfg: &ShipConfig, memory_limit: usize) -> Result<Self, SqlError> {
        let (runtime, ctx) = engine(memory_limit)?;
        runtime.block_on(remote::register(&ctx, cfg))?;
        Ok(Self {
            runtime,
            ctx,
            summary: Summary::default(),
            dir: None,
        })
    }

    /// Runs `statement` and writes its answer to `out` in `format`. A statement that would
    /// change anything is refused before it runs.
    pub fn run(
        &self,
        statement: &str,
        format: Format,
        out: &mut dyn Write,
    ) -> Result<Summary, SqlError> {
        let rows = self.runtime.block_on(async {
            let state = self.ctx.state();
            let plan = state
                .create_logical_plan(statement)
                .await
                .map_err(SqlError::Statement)?;
            read_only().verify_plan(&plan).map_err(SqlError::ReadOnly)?;
            let df = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(SqlError::Statement)?;
            let schema = df.schema().inner().clone();
            let failed = |e| self.execution_error(e);
            let mut stream = df.execute_stream().await.map_err(failed)?;
            let mut writer = output::Writer::new(out, format, schema);
            while let Some(batch) = stream.next().await {
                writer.write(&batch.map_err(failed)?)?;
            }
            writer.finish()
        })?;
        Ok(Summary {
            rows,
            ..self.summary.clone()
        })
    }
}

impl Session {
    /// A statement's failure: [`QueryError::Changed`] where a segment file it read was gone
    /// and the chain no longer lists it (retention pruned it, or compaction merged it, while
    /// the statement ran: nothing is damaged, and the statement can run again), else the
    /// engine's error (a segment gone that the chain still lists is named there).
    fn execution_error(&self, e: DataFusionError) -> SqlError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let (Some(checked::Gone(path)), Some(dir)) = (c.downcast_ref(), &self.dir) {
                let file = path.rsplit('/').next().unwrap_or(path);
                if crate::store::query::removed_since(dir, file) {
                    return SqlError::Store(QueryError::Changed {
                        file: file.to_owned(),
                    });
                }
                break;
            }
            cause = c.source();
        }
        SqlError::Execution(e)
    }
}

/// The default bound of the engine's memory: a quarter of the machine's (or of the memory
/// its cgroup allows, when less), at least 256 MiB. A self-join or a sort of a 100 M-row store
/// would otherwise take what the agent next to it needs; past the bound the statement fails
/// ("Resources exhausted"), the gateway does not.
pub fn default_memory_limit() -> usize {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let machine = usize::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(usize::try_from(page).unwrap_or(0));
    let total = cgroup_memory_max().map_or(machine, |c| c.min(machine));
    (total / 4).max(256 << 20)
}

/// The `memory.max` of this process's cgroup (v2), if it sets one.
fn cgroup_memory_max() -> Option<usize> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
    max.trim().parse().ok()
}

/// The engine with its functions and rules, and the runtime it runs on.
fn engine(memory_limit: usize) -> Result<(tokio::runtime::Runtime, SessionContext), SqlError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SqlError::Engine(DataFusionError::IoError(e)))?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("xdp_audit", "store");
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    // No spilling: a sort or join past the memory limit wrote the store's records in plain
    // text to the system's temporary directory (left there when the run was killed), out of
    // reach of the store's permissions, retention and holds. Past the limit a statement fails
    // and says to raise --memory-limit.
    let env = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(SqlError::Engine)?;
    let ctx = SessionContext::new_with_config_rt(config, env);
    for f in udf::functions() {
        ctx.register_udf(f);
    }
    // Functions that make a string of any size from a small one allocate outside the memory
    // pool: `repeat('a', 1500000000)` took the process past --memory-limit to an abort.
    for name in UNBOUNDED {
        ctx.deregister_udf(name);
    }
    ctx.add_optimizer_rule(std::sync::Arc::new(pushdown::TextFilterPushdown::default()));
    Ok((runtime, ctx))
}

/// The built-in functions `sql` does not offer: each makes a string of a size its arguments
/// choose, outside the memory limit.
pub const UNBOUNDED: [&str; 3] = ["repeat", "lpad", "rpad"];

/// What a statement may do: read.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
