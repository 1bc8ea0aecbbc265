//! vlmdb's table functions, one per file: `knn`, `vector_search`, `retrieval_ranks`, `vectors`, `kmeans`,
//! `pca`, `pca_variance`, `tsne`, `cluster_matching`, `cluster_agreement` and `run_configs`. Arguments are
//! positional constants (bound parameters included) read with [`Args`]; the rows are computed when the statement
//! runs ([`Computed`]), on the session's device, and errors name the function and argument.

pub mod cluster_agreement;
pub mod cluster_matching;
pub mod kmeans;
pub mod knn;
pub mod pca;
pub mod pca_variance;
pub mod retrieval_ranks;
pub mod run_configs;
pub mod tsne;
pub mod vector_search;
pub mod vectors;

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, Documentation, Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::future::BoxFuture;

use super::ReadLog;
use crate::error::{Error, Result};
use crate::eval::space::{Filter, Vectors, load, resolve};
use crate::models::DeviceChoice;
use crate::store::Store;

/// The doc section of vlmdb's table functions.
pub const DOC_SECTION: datafusion::logical_expr::DocSection =
    datafusion::logical_expr::DocSection {
        include: true,
        label: "vlmdb table functions",
        description: Some(
            "Nearest neighbours, vector search, retrieval ranks, k-means and PCA over embedding spaces",
        ),
    };

/// What a table function's body needs.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub device: DeviceChoice,
    /// The session's reads: a function notes the store tables it reads here, for the run record.
    pub reads: ReadLog,
}

impl Context {
    /// Note the current version of each of `tables` (those that exist) as read by the session.
    pub async fn reading(&self, tables: &[&str]) -> Result<()> {
        self.reads.record_current(&self.store, tables).await
    }

    /// Note that the space `table` is read through `filter` (with the tables its lineage part reads).
    pub async fn reading_space(&self, table: &str, filter: &Filter) -> Result<()> {
        let mut tables = vec![table];
        tables.extend(filter.lineage_tables());
        self.reading(&tables).await
    }

    /// [`crate::eval::space::load_named`], noting what it reads.
    pub async fn load_named(&self, name: &str, filter: &Filter) -> Result<(String, Vectors)> {
        let table = resolve(&self.store, name).await?;
        self.reading_space(&table, filter).await?;
        let vectors = load(&self.store, &table, filter).await?;
        Ok((table, vectors))
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("store", &self.store)
            .finish()
    }
}

/// Register every table function in `ctx`; they note the store tables they read in `reads`.
pub fn register(ctx: &SessionContext, store: &Store, device: DeviceChoice, reads: ReadLog) {
    let context = Context {
        store: store.clone(),
        device,
        reads,
    };
    ctx.register_udtf("knn", Arc::new(knn::Knn(context.clone())));
    ctx.register_udtf(
        "vector_search",
        Arc::new(vector_search::VectorSearch(context.clone())),
    );
    ctx.register_udtf(
        "retrieval_ranks",
        Arc::new(retrieval_ranks::RetrievalRanks(context.clone())),
    );
    ctx.register_udtf("kmeans", Arc::new(kmeans::KMeansFunction(context.clone())));
    ctx.register_udtf("pca", Arc::new(pca::PcaFunction(context.clone())));
    ctx.register_udtf("tsne", Arc::new(tsne::TsneFunction(context.clone())));
    ctx.register_udtf(
        "cluster_matching",
        Arc::new(cluster_matching::ClusterMatching(context.clone())),
    );
    ctx.register_udtf(
        "cluster_agreement",
        Arc::new(cluster_agreement::ClusterAgreement(context.clone())),
    );
    ctx.register_udtf(
        "pca_variance",
        Arc::new(pca_variance::PcaVariance(context.clone())),
    );
    ctx.register_udtf(
        "run_configs",
        Arc::new(run_configs::RunConfigs(context.clone())),
    );
    ctx.register_udtf("vectors", Arc::new(vectors::VectorsOf(context)));
}

/// The doc block of a table function (DataFusion keeps none for them).
pub fn documentation(name: &str) -> Option<&'static Documentation> {
    match name {
        "knn" => Some(knn::documentation()),
        "vector_search" => Some(vector_search::documentation()),
        "retrieval_ranks" => Some(retrieval_ranks::documentation()),
        "vectors" => Some(vectors::documentation()),
        "kmeans" => Some(kmeans::documentation()),
        "pca" => Some(pca::documentation()),
        "tsne" => Some(tsne::documentation()),
        "cluster_matching" => Some(cluster_matching::documentation()),
        "cluster_agreement" => Some(cluster_agreement::documentation()),
        "pca_variance" => Some(pca_variance::documentation()),
        "run_configs" => Some(run_configs::documentation()),
        _ => None,
    }
}

pub type Compute =
    Box<dyn Fn(Option<ScalarValue>) -> BoxFuture<'static, Result<RecordBatch>> + Send + Sync>;

/// A table whose rows are computed when it is scanned. An argument that is a scalar subquery (`(SELECT vector
/// FROM … WHERE item_id = 'x')`) is run first, in the scanning session, and its value handed to the computation.
pub struct Computed {
    schema: SchemaRef,
    compute: Compute,
    subquery: Option<LogicalPlan>,
}

impl Computed {
    pub fn table(schema: SchemaRef, compute: Compute) -> Arc<dyn TableProvider> {
        Arc::new(Computed {
            schema,
            compute,
            subquery: None,
        })
    }

    /// A table whose computation needs the value of the scalar subquery `plan`.
    pub fn table_with_subquery(
        schema: SchemaRef,
        plan: LogicalPlan,
        compute: Compute,
    ) -> Arc<dyn TableProvider> {
        Arc::new(Computed {
            schema,
            compute,
            subquery: Some(plan),
        })
    }
}

/// The value of a scalar subquery: its first row's first column, NULL when it has no rows.
async fn scalar_subquery(state: &dyn Session, plan: &LogicalPlan) -> DfResult<ScalarValue> {
    let physical = state.create_physical_plan(plan).await?;
    let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > 1 {
        return Err(DataFusionError::Plan(format!(
            "a scalar subquery argument returned {rows} rows; it must return at most one"
        )));
    }
    match batches.iter().find(|b| b.num_rows() > 0) {
        Some(b) => ScalarValue::try_from_array(b.column(0), 0),
        None => Ok(ScalarValue::Null),
    }
}

impl fmt::Debug for Computed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed")
            .field("schema", &self.schema)
            .finish()
    }
}

#[async_trait]
impl TableProvider for Computed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let value = match &self.subquery {
            Some(plan) => Some(scalar_subquery(state, plan).await?),
            None => None,
        };
        let batch = (self.compute)(value)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// The constant arguments of one call, read by position.
pub struct Args<'a> {
    function: &'static str,
    exprs: &'a [Expr],
    session: &'a dyn Session,
}

impl<'a> Args<'a> {
    /// Check the count against `min..=max` and wrap.
    pub fn new(
        function: &'static str,
        signature: &str,
        args: &TableFunctionArgs<'a, 'a>,
        min: usize,
        max: usize,
    ) -> Result<Args<'a>> {
        let exprs = args.exprs();
        if exprs.len() < min || exprs.len() > max {
            return Err(Error::Usage(format!(
                "{function} takes {} arguments, got {}: {signature}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min} to {max}")
                },
                exprs.len()
            )));
        }
        Ok(Args {
            function,
            exprs,
            session: args.session(),
        })
    }

    /// The session the call is planned in.
    pub fn session(&self) -> &'a dyn Session {
        self.session
    }

    /// The raw expression at `i`, when given.
    pub fn expr(&self, i: usize) -> Option<&'a Expr> {
        self.exprs.get(i)
    }

    fn bad(&self, name: &str, message: impl fmt::Display) -> Error {
        Error::Usage(format!("{}: argument {name}: {message}", self.function))
    }

    /// The value of argument `i` (NULL when absent).
    pub fn scalar(&self, i: usize, name: &str) -> Result<ScalarValue> {
        match self.exprs.get(i) {
            None => Ok(ScalarValue::Null),
            Some(expr) => constant(self.session, expr).map_err(|e| self.bad(name, e)),
        }
    }

    /// A text argument; `None` when absent or NULL.
    pub fn text(&self, i: usize, name: &str) -> Result<Option<String>> {
        let value = self.scalar(i, name)?;
        if value.is_null() {
            return Ok(None);
        }
        match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Ok(Some(s)),
            other => Err(self.bad(name, format!("expected text, got {other}"))),
        }
    }

    /// A text argument that must be given.
    pub fn required_text(&self, i: usize, name: &str) -> Result<String> {
        self.text(i, name)?
            .ok_or_else(|| self.bad(name, "must not be NULL"))
    }

    /// A non-negative integer argument; `None` when absent or NULL.
    pub fn count(&self, i: usize, name: &str) -> Result<Option<usize>> {
        let value = self.scalar(i, name)?;
        if value.is_null() {
            return Ok(None);
        }
        let n = match &value {
            ScalarValue::Int64(Some(v)) => *v,
            ScalarValue::Int32(Some(v)) => i64::from(*v),
            ScalarValue::Int16(Some(v)) => i64::from(*v),
            ScalarValue::Int8(Some(v)) => i64::from(*v),
            ScalarValue::UInt64(Some(v)) => i64::try_from(*v).unwrap_or(i64::MAX),
            ScalarValue::UInt32(Some(v)) => i64::from(*v),
            other => return Err(self.bad(name, format!("expected an integer, got {other}"))),
        };
        usize::try_from(n)
            .map(Some)
            .map_err(|_| self.bad(name, format!("must not be negative, got {n}")))
    }

    /// The optional `dataset, split, kind` arguments starting at `first` (NULL or absent: no filter; the kind
    /// falls back to `default_kind`).
    pub fn filter(&self, first: usize, default_kind: Option<&str>) -> Result<Filter> {
        Ok(Filter {
            dataset: self.text(first, "dataset")?,
            split: self.text(first + 1, "split")?,
            kind: self
                .text(first + 2, "kind")?
                .or_else(|| default_kind.map(str::to_string)),
            ..Filter::default()
        })
    }

    /// [`Args::filter`], plus the optional `run, iteration` arguments at `lineage` and `lineage + 1` (a loop
    /// run's items, one hop of it).
    pub fn filter_with_lineage(
        &self,
        first: usize,
        default_kind: Option<&str>,
        lineage: usize,
    ) -> Result<Filter> {
        let (run, iteration) = self.lineage(lineage)?;
        Ok(self
            .filter(first, default_kind)?
            .lineage(run.as_deref(), iteration))
    }

    /// The optional `run, iteration` arguments at `at` and `at + 1`.
    pub fn lineage(&self, at: usize) -> Result<(Option<String>, Option<i32>)> {
        let iteration = match self.count(at + 1, "iteration")? {
            Some(i) => Some(
                i32::try_from(i).map_err(|_| self.bad("iteration", format!("{i} is too large")))?,
            ),
            None => None,
        };
        Ok((self.text(at, "run")?, iteration))
    }

    /// A numeric argument (integer or float); `None` when absent or NULL.
    pub fn number(&self, i: usize, name: &str) -> Result<Option<f64>> {
        let value = self.scalar(i, name)?;
        if value.is_null() {
            return Ok(None);
        }
        let cast = value
            .cast_to(&arrow::datatypes::DataType::Float64)
            .map_err(|_| self.bad(name, format!("expected a number, got {value}")))?;
        match cast {
            ScalarValue::Float64(Some(v)) => Ok(Some(v)),
            other => Err(self.bad(name, format!("expected a number, got {other}"))),
        }
    }

    pub fn required_count(&self, i: usize, name: &str) -> Result<usize> {
        self.count(i, name)?
            .ok_or_else(|| self.bad(name, "must not be NULL"))
    }
}

/// Evaluate a constant expression (a literal, a bound parameter, `[0.1, 0.2]`, `l2_normalize([...])`, …).
pub fn constant(session: &dyn Session, expr: &Expr) -> std::result::Result<ScalarValue, String> {
    let schema = DFSchema::empty();
    let physical = session
        .create_physical_expr(expr.clone(), &schema)
        .map_err(|e| format!("must be a constant ({e})"))?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| e.to_string())?;
    match physical
        .evaluate(&batch)
        .map_err(|e| format!("must be a constant ({e})"))?
    {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0).map_err(|e| e.to_string()),
    }
}

/// Wrap our error for DataFusion.
pub fn df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
