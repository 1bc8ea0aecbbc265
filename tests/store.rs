//! The store through the library: schemas on disk match the schema files, writes are single commits, runs
//! open and close.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use vlmdb::Error;
use vlmdb::sql::{Engine, Params};
use vlmdb::store::Store;
use vlmdb::store::runs::{Run, RunSpec};
use vlmdb::store::schema::{self, check_compatible};
use vlmdb::store::write::{append, batch_for, upsert};

async fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&dir.path().join("store"))
        .await
        .expect("open store");
    (dir, store)
}

async fn query_csv(store: &Store, sql: &str) -> String {
    let engine = Engine::new(store.clone(), vlmdb::models::DeviceChoice::Auto)
        .await
        .expect("engine");
    let results = engine
        .execute_sql(sql, &Params::default())
        .await
        .expect("query");
    let mut out = Vec::new();
    for result in &results {
        vlmdb::cli::format::write_result(&mut out, vlmdb::cli::format::Format::Csv, result)
            .expect("csv");
    }
    String::from_utf8(out).expect("utf8")
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_on_disk_match_the_schema_files() {
    let (_dir, store) = fresh().await;
    let created = store.init().await.expect("init");
    let specs = schema::fixed_tables().expect("schema files");
    assert_eq!(created.len(), specs.len());
    for spec in &specs {
        let table = store.open_table(&spec.name).await.expect("open");
        let actual = table.schema().await.expect("schema");
        let expected = spec.arrow_schema();
        let describe = |s: &arrow::datatypes::Schema| {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            describe(&actual),
            describe(&expected),
            "table {}",
            spec.name
        );
        check_compatible(spec, &actual).expect("compatible");
    }
    // A second init creates nothing and keeps what is there.
    assert!(store.init().await.expect("second init").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn embedding_tables_take_the_model_width() {
    let (_dir, store) = fresh().await;
    let spec = schema::embedding_table("test_space", 3).expect("spec");
    let values = Float32Array::from(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let vectors = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        3,
        Arc::new(values),
        None,
    )
    .expect("vectors");
    let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let batch = batch_for(
        &spec,
        vec![
            ("item_id", text(vec!["a", "b"])),
            ("kind", text(vec!["image", "image"])),
            ("vector", Arc::new(vectors) as ArrayRef),
            ("run_id", text(vec!["r", "r"])),
        ],
    )
    .expect("batch");
    upsert(&store, &spec, batch.clone())
        .await
        .expect("first upsert");
    let version = upsert(&store, &spec, batch).await.expect("second upsert");
    let table = store.open_table("emb_test_space").await.expect("open");
    assert_eq!(
        table.count_rows(None).await.expect("count"),
        2,
        "upsert by key keeps one row per item"
    );
    // create (1), first upsert (2), second upsert (3): one commit per write.
    assert_eq!(version, 3);
    let table_schema = table.schema().await.expect("schema");
    let found = schema::spec_for("emb_test_space", &table_schema).expect("spec_for");
    assert_eq!(
        found.as_ref().map(|s| s.name.as_str()),
        Some("emb_test_space")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_checked_against_the_schema() {
    let (_dir, store) = fresh().await;
    store.init().await.expect("init");
    let spec = schema::fixed_table("metrics")
        .expect("parse")
        .expect("metrics");
    let wrong = RecordBatch::try_from_iter(vec![
        ("run_id", Arc::new(StringArray::from(vec!["r"])) as ArrayRef),
        (
            "name",
            Arc::new(StringArray::from(vec!["r_at_1"])) as ArrayRef,
        ),
        (
            "value",
            Arc::new(StringArray::from(vec!["0.5"])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let err = append(&store, &spec, wrong).await.unwrap_err();
    assert!(
        matches!(&err, Error::SchemaMismatch { table, .. } if table == "metrics"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "table 'metrics': column 'value' has type Utf8, expected Float64"
    );
    let null_name = batch_for(
        &spec,
        vec![
            ("run_id", Arc::new(StringArray::from(vec!["r"])) as ArrayRef),
            (
                "value",
                Arc::new(arrow::array::Float64Array::from(vec![0.5])) as ArrayRef,
            ),
        ],
    )
    .unwrap_err();
    assert_eq!(
        null_name.to_string(),
        "table 'metrics': column 'name' is NULL in row 0 but is declared not null"
    );
    let table = store.open_table("metrics").await.expect("metrics");
    assert_eq!(
        table.version().await.expect("version"),
        1,
        "nothing was committed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_opened_running_and_closed() {
    let (_dir, store) = fresh().await;
    let spec = RunSpec {
        kind: "test".into(),
        name: "open-close".into(),
        config: serde_json::json!({ "k": 5 }),
        seed: Some(42),
    };
    let mut run = Run::open(&store, spec.clone()).await.expect("open run");
    let id = run.id().to_string();
    let running = query_csv(
        &store,
        "SELECT status, seed, finished_at IS NULL AS open FROM runs",
    )
    .await;
    assert_eq!(running, "status,seed,open\nrunning,42,true\n");
    run.record_input("captions", 7);
    run.record_model("minilm", "abc123");
    run.finish(&store).await.expect("finish");
    let finished = query_csv(
        &store,
        "SELECT status, kind, name, config, inputs, models, finished_at >= started_at AS ordered FROM runs",
    )
    .await;
    assert_eq!(
        finished,
        "status,kind,name,config,inputs,models,ordered\n\
         finished,test,open-close,\"{\"\"k\"\":5}\",\"{\"\"captions\"\":7}\",\"{\"\"minilm\"\":\"\"abc123\"\"}\",true\n"
    );

    let failing = Run::open(&store, spec).await.expect("open second run");
    let failed_id = failing.id().to_string();
    let outcome: vlmdb::Result<()> = Err(Error::Usage("planted failure".into()));
    let err = failing.close(&store, outcome).await.unwrap_err();
    assert_eq!(err.to_string(), "planted failure");
    let engine = Engine::new(store.clone(), vlmdb::models::DeviceChoice::Auto)
        .await
        .expect("engine");
    let mut params = Params::default();
    params
        .set("id", vlmdb::sql::ParamValue::Text(failed_id))
        .expect("param");
    let results = engine
        .execute_sql("SELECT status, error FROM runs WHERE run_id = $id", &params)
        .await
        .expect("query");
    let mut out = Vec::new();
    vlmdb::cli::format::write_result(&mut out, vlmdb::cli::format::Format::Csv, &results[0])
        .expect("csv");
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        "status,error\nfailed,planted failure\n"
    );
    let both = query_csv(&store, "SELECT count(DISTINCT run_id) AS runs FROM runs").await;
    assert_eq!(
        both, "runs\n2\n",
        "the finished run {id} is kept beside the failed one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_moves_only_while_the_run_is_open() {
    let (_dir, store) = fresh().await;
    store.init().await.expect("init");
    let spec = RunSpec {
        kind: "test".into(),
        name: "beat".into(),
        config: serde_json::json!({}),
        seed: None,
    };
    let run = Run::open(&store, spec).await.expect("open");
    let id = run.id().to_string();
    let beat_of = |store: Store, id: String| async move {
        query_csv(
            &store,
            &format!("SELECT CAST(heartbeat_at AS BIGINT) AS t FROM runs WHERE run_id = '{id}'"),
        )
        .await
    };
    let before = beat_of(store.clone(), id.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    vlmdb::store::liveness::beat(&store, &id)
        .await
        .expect("beat");
    let after = beat_of(store.clone(), id.clone()).await;
    assert_ne!(before, after, "the heartbeat moved");
    run.finish(&store).await.expect("finish");
    let closed = beat_of(store.clone(), id.clone()).await;
    vlmdb::store::liveness::beat(&store, &id)
        .await
        .expect("beat after close");
    assert_eq!(
        beat_of(store.clone(), id.clone()).await,
        closed,
        "a closed run is not touched"
    );
    assert!(
        query_csv(
            &store,
            &format!("SELECT status FROM runs WHERE run_id = '{id}'")
        )
        .await
        .contains("finished")
    );
}

/// A store made before columns were added to the schema files (pairs' provenance, runs' process columns) gets them,
/// all NULL, and keeps working: what an earlier vlmdb wrote stays readable and writable.
#[tokio::test(flavor = "multi_thread")]
async fn tables_of_earlier_stores_gain_the_new_columns() {
    let (_dir, store) = fresh().await;
    store.init().await.expect("init");
    for (table, columns) in [
        ("pairs", vec!["source", "parent_id"]),
        ("runs", vec!["host", "pid", "pid_start", "heartbeat_at"]),
    ] {
        store
            .open_table(table)
            .await
            .expect("table")
            .drop_columns(&columns)
            .await
            .expect("drop");
    }
    let reopened = Store::open(store.location().dir().expect("a directory store"))
        .await
        .expect("reopen");
    reopened
        .upgrade_tables(&["pairs", "runs", "images"])
        .await
        .expect("add columns");
    for table in ["pairs", "runs"] {
        let spec = schema::fixed_table(table).expect("spec").expect("fixed");
        let actual = reopened
            .open_table(table)
            .await
            .expect("table")
            .schema()
            .await
            .expect("schema");
        check_compatible(&spec, &actual).expect("the schema file's columns");
    }
    // And a run opens on it (it writes the process columns).
    let run = Run::open(
        &reopened,
        RunSpec {
            kind: "test".into(),
            name: "after the upgrade".into(),
            config: serde_json::json!({}),
            seed: None,
        },
    )
    .await
    .expect("run");
    run.close(&reopened, Ok::<(), Error>(()))
        .await
        .expect("close");
}

/// Write `clusters` and `centroids` at `store` as vlmdb wrote them before the column `cluster` (a SQL keyword)
/// became `cluster_id`: run `old`, three items in two clusters.
async fn old_cluster_tables(store: &std::path::Path) {
    use arrow::array::{Int32Array, Int64Array, ListArray};
    use arrow::datatypes::{Float32Type, Schema};
    let conn = lancedb::connect(store.to_str().expect("utf8"))
        .execute()
        .await
        .expect("connect");
    let clusters = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("iteration", DataType::Int32, false),
            Field::new("item_id", DataType::Utf8, false),
            Field::new("cluster", DataType::Int32, false),
            Field::new("distance", DataType::Float32, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["old"; 3])) as ArrayRef,
            Arc::new(Int32Array::from(vec![0; 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(Int32Array::from(vec![0, 1, 1])),
            Arc::new(Float32Array::from(vec![0.5, 0.25, 0.125])),
        ],
    )
    .expect("clusters batch");
    let vector = Field::new_list_field(DataType::Float32, true);
    let centroids = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("iteration", DataType::Int32, false),
            Field::new("cluster", DataType::Int32, false),
            Field::new("size", DataType::Int64, false),
            Field::new("vector", DataType::List(Arc::new(vector)), false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["old"; 2])) as ArrayRef,
            Arc::new(Int32Array::from(vec![0; 2])),
            Arc::new(Int32Array::from(vec![0, 1])),
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([
                Some([Some(1.0), Some(0.0)]),
                Some([Some(0.0), Some(1.0)]),
            ])),
        ],
    )
    .expect("centroids batch");
    for (name, batch) in [("clusters", clusters), ("centroids", centroids)] {
        conn.drop_table(name, &[]).await.expect("drop");
        conn.create_table(name, batch)
            .execute()
            .await
            .expect("create the old layout");
    }
}

/// A store written before `clusters.cluster` and `centroids.cluster` became `cluster_id` (issue 25): the first
/// command renames the columns, keeping the rows, so SQL reads them unquoted, the cluster-tracking functions
/// read them, and the tables match the schema files again.
#[test]
fn cluster_columns_of_earlier_stores_are_renamed_on_open() {
    let store = crate::common::TestStore::initialised();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(old_cluster_tables(&store.path()));
    assert_eq!(
        store.csv("SELECT item_id, cluster_id, distance FROM clusters ORDER BY item_id"),
        "item_id,cluster_id,distance\na,0,0.5\nb,1,0.25\nc,1,0.125\n"
    );
    assert_eq!(
        store.csv("SELECT cluster_id, size FROM centroids ORDER BY cluster_id"),
        "cluster_id,size\n0,1\n1,2\n"
    );
    assert_eq!(
        store.csv("SELECT from_cluster, to_cluster, from_size FROM cluster_matching('old', 'old')"),
        "from_cluster,to_cluster,from_size\n0,0,1\n1,1,2\n"
    );
    assert_eq!(
        store.csv("SELECT items, ari FROM cluster_agreement('old', 'old')"),
        "items,ari\n3,1.0\n"
    );
    runtime.block_on(async {
        let reopened = Store::open(&store.path()).await.expect("open");
        for table in ["clusters", "centroids"] {
            let spec = schema::fixed_table(table).expect("spec").expect("fixed");
            let actual = reopened
                .open_table(table)
                .await
                .expect("table")
                .schema()
                .await
                .expect("schema");
            check_compatible(&spec, &actual).expect("the schema file's columns");
        }
    });
}

/// A read-only store keeps its old column name: it still opens, the rows read under the old name, and a note
/// says why the new one is missing.
#[test]
fn a_read_only_earlier_store_keeps_its_cluster_column() {
    use std::os::unix::fs::PermissionsExt;
    let store = crate::common::TestStore::initialised();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(old_cluster_tables(&store.path()));
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let out = store.vlmdb(&[
        "sql",
        "SELECT count(\"cluster\") AS n FROM clusters",
        "--format",
        "csv",
    ]);
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod back");
    crate::common::assert_success(&out);
    assert_eq!(crate::common::stdout(&out), "n\n3\n");
    let notes = crate::common::stderr(&out);
    assert!(
        notes.contains(
            "table 'clusters' is read-only and keeps its old column 'cluster' (now 'cluster_id')"
        ),
        "{notes}"
    );
}
