//! `--format json` on the commands that make a run (issue 25): one JSON object with the run id, the counts and
//! the outputs, so a script reads the run id instead of scraping a sentence.

use std::process::Output;

use crate::common::{RETRIEVAL_FIXTURE, TestStore, assert_success, stdout};

fn report(out: &Output) -> serde_json::Value {
    assert_success(out);
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The id of the newest run of `kind`.
fn newest(store: &TestStore, kind: &str) -> String {
    let csv = store.csv(&format!(
        "SELECT run_id FROM runs WHERE kind = '{kind}' ORDER BY started_at DESC LIMIT 1"
    ));
    csv.lines().nth(1).unwrap_or_default().to_string()
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    args
}

#[test]
fn run_commands_report_json() {
    let store = TestStore::initialised();
    let ingest = report(&store.vlmdb(&with_json(RETRIEVAL_FIXTURE[0])));
    assert_eq!(ingest["run_id"], newest(&store, "ingest").as_str());
    assert_eq!(ingest["images"], 30);
    assert_eq!(ingest["images_written"], 30);
    assert_eq!(ingest["captions"], 150);
    assert_eq!(ingest["rejected"], 0);

    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[1]));
    let import = report(&store.vlmdb(&with_json(RETRIEVAL_FIXTURE[2])));
    assert_eq!(import["table"], "emb_ref");
    assert_eq!(import["run_id"], newest(&store, "import").as_str());

    let embed = report(&store.vlmdb(&with_json(&[
        "embed",
        "--model",
        "fixtures/models/tiny-clip",
        "--images",
        "--dataset",
        "shapes",
        "--quiet",
    ])));
    assert_eq!(embed["run_id"], newest(&store, "embed").as_str());
    assert_eq!(embed["embedded"], 30);
    assert!(
        embed["table"]
            .as_str()
            .is_some_and(|t| t.starts_with("emb_")),
        "{embed}"
    );

    let cluster = report(&store.vlmdb(&with_json(&[
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "2,3",
    ])));
    let runs = cluster["runs"].as_array().expect("one report per k");
    assert_eq!(runs.len(), 2, "{cluster}");
    assert_eq!(runs[1]["k"], 3);
    assert_eq!(runs[1]["run_id"], newest(&store, "cluster").as_str());

    let eval = report(&store.vlmdb(&with_json(&[
        "eval",
        "--model",
        "ref",
        "--dataset",
        "shapes",
    ])));
    assert_eq!(eval["run_id"], newest(&store, "eval").as_str());
    assert!(
        eval["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["name"] == "r_at_1")),
        "{eval}"
    );

    let mine = report(&store.vlmdb(&with_json(&[
        "mine",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "2",
    ])));
    assert_eq!(mine["run_id"], newest(&store, "mine").as_str());
    assert_eq!(mine["table"], "emb_ref");

    let png = store.dir.path().join("similarity.png");
    let plot = report(&store.vlmdb(&with_json(&[
        "plot",
        "similarity",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--out",
        png.to_str().unwrap_or_default(),
    ])));
    assert_eq!(plot["run_id"], newest(&store, "plot").as_str());
    assert_eq!(plot["out"], png.to_str().unwrap_or_default());

    let log = store.dir.path().join("log.csv");
    std::fs::write(&log, "step,loss\n1,2.0\n2,1.5\n").expect("log");
    let metrics = report(&store.vlmdb(&with_json(&[
        "import",
        "metrics",
        log.to_str().unwrap_or_default(),
        "--run-name",
        "old",
    ])));
    assert_eq!(metrics["rows"], 2);
    assert_eq!(metrics["names"], serde_json::json!(["loss"]));

    let train = report(&store.vlmdb(&with_json(&[
        "train",
        "--image-model",
        "ref",
        "--text-model",
        "ref",
        "--dataset",
        "shapes",
        "--loss",
        "infonce",
        "--dim",
        "8",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--quiet",
    ])));
    assert_eq!(train["run_id"], newest(&store, "train").as_str());
    assert!(train["steps"].as_u64().is_some_and(|s| s > 0), "{train}");

    // The default stays a sentence for people.
    let text = store.vlmdb(&["eval", "--model", "ref", "--dataset", "shapes"]);
    assert_success(&text);
    assert!(stdout(&text).contains("eval run "), "{}", stdout(&text));
}
