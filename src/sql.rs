//! The SQL engine: a DataFusion session over the store ([`catalog`]) with vlmdb's functions ([`udf`]) and their
//! docs ([`functions`]), and parameters bound on the parsed statement ([`params`]).

pub mod access;
pub mod catalog;
pub mod dml;
pub mod functions;
pub mod memory;
pub mod params;
pub mod reads;
pub mod udaf;
pub mod udf;
pub mod udtf;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::{ObjectType, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::store::Store;
pub use access::ExternalAccess;
use catalog::StoreSchema;
pub use params::{ParamValue, Params};
pub use reads::ReadLog;

/// The catalog and schema the store's tables are registered under (the session's defaults, so bare names work).
const CATALOG: &str = "vlmdb";
const SCHEMA: &str = "store";

/// The result of one statement.
#[derive(Debug, Clone)]
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StatementResult {
    /// Number of rows over all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The results of running a SQL file several times (once per parameter set), concatenated: each run's last
/// statement, which is the file's output.
#[derive(Debug, Default)]
pub struct FileRuns {
    result: Option<StatementResult>,
}

impl FileRuns {
    /// Run every statement of `sql` (named `name` in errors) in a fresh session on `store` — so the file's session
    /// tables are its own — with `params`, recording the tables read on `run`, and keep the last result.
    pub async fn run(
        &mut self,
        store: &Store,
        device: DeviceChoice,
        name: &str,
        sql: &str,
        params: &Params,
        run: &mut crate::store::runs::Run,
    ) -> Result<()> {
        let engine = Engine::new(store.clone(), device).await?;
        let last = engine
            .execute_sql(sql, params)
            .await?
            .pop()
            .ok_or_else(|| Error::Usage(format!("{name} has no statements")))?;
        for (table, version) in engine.reads() {
            run.record_input(&table, version);
        }
        match &mut self.result {
            None => self.result = Some(last),
            Some(r) => r.batches.extend(last.batches),
        }
        Ok(())
    }

    /// All the rows (an empty result when nothing ran).
    pub fn finish(self) -> StatementResult {
        self.result.unwrap_or_else(|| StatementResult {
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            batches: Vec::new(),
        })
    }
}

/// A SQL session over a store.
pub struct Engine {
    ctx: SessionContext,
    store: Store,
    tables: Arc<StoreSchema>,
    reads: ReadLog,
    access: ExternalAccess,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .finish()
    }
}

impl Engine {
    /// A session in which every table of `store` is queryable by name and whose model functions (`embed_text`,
    /// `embed_image`, `caption`, `generate_image`, …) run on `device`.
    pub async fn new(store: Store, device: DeviceChoice) -> Result<Engine> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_create_default_catalog_and_schema(true);
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(memory::limit(), 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let reads = ReadLog::default();
        let tables = Arc::new(StoreSchema::new(store.clone(), reads.clone()));
        tables.refresh().await?;
        let catalog = ctx.catalog(CATALOG).ok_or_else(|| {
            Error::Usage(format!("DataFusion session has no catalog '{CATALOG}'"))
        })?;
        catalog.register_schema(SCHEMA, tables.clone())?;
        for function in udf::functions() {
            ctx.register_udf(function);
        }
        ctx.register_udf(udf::embed_text::udf(Some(store.clone()), device));
        ctx.register_udf(udf::embed_image::udf(Some(store.clone()), device));
        ctx.register_udf(udf::caption::udf(Some(store.clone()), device));
        ctx.register_udf(udf::generate_image::udf(device));
        udf::bounded::register(&ctx, memory::limit());
        for function in udaf::functions() {
            ctx.register_udaf(function);
        }
        udtf::register(&ctx, &store, device, reads.clone());
        Ok(Engine {
            ctx,
            store,
            tables,
            reads,
            access: ExternalAccess::default(),
        })
    }

    /// A session for the fixed reads commands make (their own SQL, no model function): should a model function
    /// run anyway, it runs on the CPU.
    pub async fn for_reads(store: Store) -> Result<Engine> {
        Engine::new(store, DeviceChoice::Cpu).await
    }

    /// Set whether statements may touch files outside the store ([`access`]); the store's own files are never
    /// reachable.
    pub fn with_external_access(mut self, access: ExternalAccess) -> Engine {
        self.access = access;
        self
    }

    /// The underlying DataFusion session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The store the session reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Versions of the store tables read so far in this session, by its statements and its table functions (for
    /// run records).
    pub fn reads(&self) -> BTreeMap<String, u64> {
        self.reads.tables()
    }

    /// Split `sql` into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let dialect = GenericDialect {};
        let statements = DFParser::parse_sql_with_dialect(sql, &dialect)?;
        Ok(statements.into_iter().collect())
    }

    /// Bind `params` into `statement`, plan it against the store as it is now, and run it to completion.
    pub async fn execute(
        &self,
        mut statement: Statement,
        params: &Params,
    ) -> Result<StatementResult> {
        params::bind(&mut statement, params)?;
        access::check(&statement, self.store.location(), self.access)?;
        if writes_store(&statement) {
            self.store.ensure_writable("this statement")?;
        }
        self.tables.refresh().await?;
        if let Some(name) = self.dropped_store_table(&statement) {
            return Err(Error::Usage(format!(
                "'{name}' is a table of the store; store tables are not dropped from SQL"
            )));
        }
        let read_before = self.reads.tables();
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(Error::from_datafusion)?;
        if let Some(target) = unread_insert_target(&plan) {
            self.reads
                .restore(&target, read_before.get(&target).copied());
        }
        if let Some(result) =
            dml::execute(&self.ctx, &self.store, &self.tables.store_names(), &plan).await?
        {
            return Ok(result);
        }
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::from_datafusion)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(Error::from_datafusion)?;
        Ok(StatementResult { schema, batches })
    }

    /// The store table a `DROP TABLE` names, if any (DataFusion would report it as missing instead).
    fn dropped_store_table(&self, statement: &Statement) -> Option<String> {
        let Statement::Statement(s) = statement else {
            return None;
        };
        let SqlStatement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } = s.as_ref()
        else {
            return None;
        };
        let store_tables = self.tables.store_names();
        names
            .iter()
            .map(|n| n.to_string().trim_matches('"').to_string())
            .find(|n| {
                // A past version (`"images@1"`) is the store's table too.
                let base = n.split_once('@').map_or(n.as_str(), |(base, _)| base);
                store_tables.iter().any(|t| t == base)
            })
    }

    /// Parse and run every statement of `sql` in order, stopping at the first error.
    pub async fn execute_sql(&self, sql: &str, params: &Params) -> Result<Vec<StatementResult>> {
        let mut results = Vec::new();
        for statement in self.parse(sql)? {
            results.push(self.execute(statement, params).await?);
        }
        Ok(results)
    }
}

/// The table an `INSERT` writes when the statement does not also read it: planning opened it as it opens a table
/// that is read, but only the rows of the `SELECT` / `VALUES` are read (a session view that reads it was noted
/// when it was defined).
fn unread_insert_target(plan: &LogicalPlan) -> Option<String> {
    let LogicalPlan::Dml(dml) = plan else {
        return None;
    };
    if !matches!(dml.op, WriteOp::Insert(_)) {
        return None;
    }
    let target = dml.table_name.table();
    let mut read = false;
    // The closure never fails, so neither does the walk.
    let _ = dml.input.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && catalog::split_version(scan.table_name.table()).0 == target
        {
            read = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (!read).then(|| target.to_string())
}

/// True when the statement changes a store table (as opposed to reading, or defining session views).
pub fn writes_store(statement: &Statement) -> bool {
    match statement {
        Statement::Statement(s) => matches!(
            s.as_ref(),
            SqlStatement::Insert(_)
                | SqlStatement::Update(_)
                | SqlStatement::Delete(_)
                | SqlStatement::Merge(_)
                | SqlStatement::Truncate(_)
        ),
        Statement::Explain(e) => e.analyze && writes_store(&e.statement),
        Statement::CopyTo(_) | Statement::CreateExternalTable(_) | Statement::Reset(_) => false,
    }
}
