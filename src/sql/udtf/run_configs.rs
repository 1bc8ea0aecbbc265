//! `run_configs(runs)`: the configuration of runs as rows, one per setting, so SQL can compare runs
//! (`sql/runs/compare.sql`).

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::error::Result;
use datafusion::prelude::{col, lit};

use crate::store::columns::strings;
use crate::store::runs::flatten;

const SIGNATURE: &str = "run_configs(runs)";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The configuration of each run, one row per setting: run_id, key, value. Nested settings are flattened \
         with dots (`loss.alpha`), lists and texts are shown as JSON; the run's kind, name and seed are settings \
         too. Runs that do not exist give no rows.",
        SIGNATURE,
    )
    .with_argument("runs", "Run ids, comma-separated (a text constant or a bound parameter).")
    .with_sql_example(
        "> SELECT key, run_id, value FROM run_configs('20261201-101500-1a2b3c4d,20261201-113000-5e6f7a8b')\n  WHERE key LIKE 'loss%' ORDER BY key, run_id;",
    )
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]))
}

async fn rows(context: &Context, runs: &str) -> Result<RecordBatch> {
    let wanted: Vec<_> = runs
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(lit)
        .collect();
    context.reading(&["runs"]).await?;
    let batches = context
        .store
        .scan_if_exists(
            "runs",
            &["run_id", "kind", "name", "seed", "config"],
            Some(col("run_id").in_list(wanted, false)),
        )
        .await?;
    let mut found = Vec::new();
    for batch in &batches {
        let columns = ["run_id", "kind", "name", "seed", "config"]
            .iter()
            .map(|c| strings(batch, c))
            .collect::<Result<Vec<_>>>()?;
        for (r, run_id) in columns[0].iter().enumerate() {
            let Some(run_id) = run_id.clone() else {
                continue;
            };
            let mut settings = vec![
                ("kind".to_string(), columns[1][r].clone()),
                ("name".to_string(), columns[2][r].clone()),
                ("seed".to_string(), columns[3][r].clone()),
            ];
            let config = columns[4][r].as_deref().unwrap_or("{}");
            let value: serde_json::Value = serde_json::from_str(config)
                .unwrap_or_else(|_| serde_json::Value::String(config.to_string()));
            let mut flat = std::collections::BTreeMap::new();
            flatten("config", &value, &mut flat);
            settings.extend(flat.into_iter().map(|(key, v)| {
                let text = match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                };
                (key, text)
            }));
            found.push((run_id, settings));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut ids, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (run_id, settings) in found {
        for (key, value) in settings {
            ids.push(run_id.clone());
            keys.push(key);
            values.push(value);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(values)),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[derive(Debug)]
pub struct RunConfigs(pub Context);

impl TableFunctionImpl for RunConfigs {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("run_configs", SIGNATURE, &args, 1, 1).map_err(df)?;
        let runs = args.required_text(0, "runs").map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let (context, runs) = (context.clone(), runs.clone());
                Box::pin(async move { rows(&context, &runs).await })
            }),
        ))
    }
}
