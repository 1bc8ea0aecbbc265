//! `vlmdb plot` end to end on the retrieval fixture: every plot decodes at its size and is stored in `artifacts`
//! under a finished `plot` run; a scatter has one colour per cluster; each contact-sheet cell carries its own
//! image's dominant colour; the similarity plot's numbers are those of the store; bad arguments change nothing.

use std::path::{Path, PathBuf};

use image::RgbImage;
use vlmdb::plot::contact_sheet::Geometry;
use vlmdb::plot::palette;

use crate::common::{
    TestStore, assert_fails_with, assert_success, retrieval_store, run_in_parens, stderr, stdout,
};

/// Cluster the shapes images of space `ref` (k = 4, seed 1) and return the run id.
fn cluster(store: &TestStore, seed: &str) -> String {
    let out = store.vlmdb(&[
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "4",
        "--seed",
        seed,
    ]);
    assert_success(&out);
    run_in_parens(&out)
}

/// Run `vlmdb plot …`, check its output line, and return (the decoded PNG, the plot run id).
fn plot(store: &TestStore, out: &Path, args: &[&str]) -> (RgbImage, String) {
    let mut full = vec!["plot"];
    full.extend_from_slice(args);
    full.extend(["--out", out.to_str().expect("path")]);
    let result = store.vlmdb(&full);
    assert_success(&result);
    let text = stdout(&result);
    assert!(
        text.starts_with(&format!("wrote {}", out.display())),
        "{text}"
    );
    let run = text
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("run id")
        .to_string();
    let bytes = std::fs::read(out).expect("plot file");
    let png = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("a PNG")
        .to_rgb8();
    // The same bytes are in `artifacts` under the plot's finished run.
    let csv = store.csv(&format!(
        "SELECT a.name, a.media_type, a.data, r.kind, r.status FROM artifacts a JOIN runs r USING (run_id) \
         WHERE a.run_id = '{run}'"
    ));
    let name = out.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(
        csv.lines().nth(1),
        Some(format!("{name},image/png,{},plot,finished", hex::encode(&bytes)).as_str()),
        "artifact of run {run}"
    );
    (png, run)
}

fn pixels_of(png: &RgbImage, colour: plotters::style::RGBColor) -> usize {
    png.pixels()
        .filter(|p| p.0 == [colour.0, colour.1, colour.2])
        .count()
}

#[test]
fn metric_curves_and_scatters_decode_at_their_size_with_one_colour_per_cluster() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let first = cluster(&store, "1");
    let second = cluster(&store, "2");

    let (png, _) = plot(
        &store,
        &dir.path().join("inertia.png"),
        &[
            "metrics", "--run", &first, "--run", &second, "--metric", "inertia", "--width", "640",
            "--height", "480",
        ],
    );
    assert_eq!(png.dimensions(), (640, 480));
    // One line per run, in palette order.
    assert!(pixels_of(&png, palette(0)) > 0 && pixels_of(&png, palette(1)) > 0);
    assert_eq!(pixels_of(&png, palette(2)), 0);

    for method in [
        vec!["--method", "pca"],
        vec![
            "--method",
            "tsne",
            "--perplexity",
            "5",
            "--tsne-iterations",
            "300",
        ],
    ] {
        let mut args = vec![
            "scatter",
            "--model",
            "ref",
            "--dataset",
            "shapes",
            "--clusters",
            &first,
        ];
        args.extend(method.iter().copied());
        let (png, _) = plot(&store, &dir.path().join("scatter.png"), &args);
        assert_eq!(png.dimensions(), (900, 600));
        for c in 0..4 {
            assert!(
                pixels_of(&png, palette(c)) >= 20,
                "{method:?}: cluster {c} is not drawn in its colour"
            );
        }
        // No fifth cluster colour (palette 7 is grey, which anti-aliased text can produce).
        for c in (4..20).filter(|&c| c != 7) {
            assert_eq!(pixels_of(&png, palette(c)), 0, "{method:?}: colour {c}");
        }
    }
    // Without clusters every point is one colour.
    let (png, _) = plot(
        &store,
        &dir.path().join("plain.png"),
        &["scatter", "--model", "ref", "--dataset", "shapes"],
    );
    assert_eq!(pixels_of(&png, palette(0)), 0);
    assert!(pixels_of(&png, vlmdb::plot::UNLABELLED) > 0);
}

/// The dominant colour of a region: the most frequent colour at 3 bits per channel, as the mean of the pixels that
/// have it (so JPEG noise and the blended edges of a resized shape do not move it).
fn dominant_colour(image: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> [u8; 3] {
    let mut buckets: std::collections::HashMap<[u8; 3], (usize, [u64; 3])> = Default::default();
    for py in y..y + h {
        for px in x..x + w {
            let p = image.get_pixel(px, py).0;
            let entry = buckets.entry(p.map(|v| v >> 5)).or_default();
            entry.0 += 1;
            for (sum, v) in entry.1.iter_mut().zip(p) {
                *sum += v as u64;
            }
        }
    }
    let (_, (n, sums)) = buckets
        .into_iter()
        .max_by_key(|(bucket, (n, _))| (*n, *bucket))
        .expect("pixels");
    sums.map(|s| (s / n as u64) as u8)
}

fn fixture_image(item_id: &str) -> PathBuf {
    let stem = item_id.strip_prefix("shapes/").expect("a shapes item");
    let dir = Path::new("fixtures/datasets/karpathy/images");
    ["png", "jpg"]
        .iter()
        .map(|e| dir.join(format!("{stem}.{e}")))
        .find(|p| p.exists())
        .expect("fixture image")
}

#[test]
fn contact_sheet_cells_carry_their_own_images_dominant_colour() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let run = cluster(&store, "1");
    // Without --clusters the latest clustering run is drawn.
    let (png, _) = plot(
        &store,
        &dir.path().join("sheet.png"),
        &["contact-sheet", "--per-cluster", "5", "--thumb", "48"],
    );
    let members = store.csv(&format!(
        "SELECT cluster_id, item_id FROM clusters WHERE run_id = '{run}' ORDER BY cluster_id, distance, item_id"
    ));
    let mut rows: Vec<(i64, Vec<String>)> = Vec::new();
    for line in members.lines().skip(1) {
        let (cluster, item) = line.split_once(',').expect("row");
        let cluster: i64 = cluster.parse().expect("cluster");
        match rows.last_mut() {
            Some((c, items)) if *c == cluster => items.push(item.to_string()),
            _ => rows.push((cluster, vec![item.to_string()])),
        }
    }
    let geometry = Geometry {
        thumb: 48,
        columns: rows.iter().map(|r| r.1.len().min(5)).max().expect("rows") as u32,
        rows: rows.len() as u32,
        caption_lines: 0,
    };
    assert_eq!(png.dimensions(), geometry.size());
    let mut colours = std::collections::HashSet::new();
    let mut cells = 0;
    for (r, (_, items)) in rows.iter().enumerate() {
        for (c, item) in items.iter().take(5).enumerate() {
            let source = image::open(fixture_image(item)).expect("decode").to_rgb8();
            let want = dominant_colour(&source, 0, 0, source.width(), source.height());
            let (x, y) = geometry.cell(r as u32, c as u32);
            let (dx, dy, w, h) = geometry.fit(source.width(), source.height());
            let have = dominant_colour(&png, x + dx, y + dy, w, h);
            for ch in 0..3 {
                assert!(
                    (want[ch] as i32 - have[ch] as i32).abs() <= 12,
                    "cell ({r}, {c}) shows {have:?}, but {item}'s dominant colour is {want:?}"
                );
            }
            colours.insert(want);
            cells += 1;
        }
    }
    assert!(cells >= 12, "{cells} cells");
    assert!(
        colours.len() >= 4,
        "the cells do not tell images apart: {colours:?}"
    );
}

#[test]
fn similarity_plot_compares_positive_and_negative_pairs_of_the_store() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let out = store.vlmdb(&[
        "plot",
        "similarity",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--negatives",
        "3",
        "--out",
        dir.path().join("sim.png").to_str().expect("path"),
    ]);
    assert_success(&out);
    let text = stdout(&out);
    // The positives are every caption with its own image: their mean similarity is the store's.
    let csv = store.csv(
        "SELECT count(*), round(avg(cosine_similarity(c.vector, i.vector)), 4) FROM emb_ref c \
         JOIN captions k ON k.caption_id = c.item_id JOIN emb_ref i ON i.item_id = k.image_id \
         WHERE c.kind = 'caption' AND i.kind = 'image' AND k.dataset = 'shapes'",
    );
    let (n, mean) = csv
        .lines()
        .nth(1)
        .and_then(|l| l.split_once(','))
        .expect("row");
    assert!(
        text.contains(&format!("positive: n = {n}, mean {mean:0<6}")),
        "{text} vs {csv}"
    );
    let negatives = n.parse::<usize>().expect("n") * 3;
    assert!(
        text.contains(&format!("negative: n = {negatives},")),
        "{text}"
    );

    // The shipped SQL runs on its own too, and never pairs a caption with its own image.
    let rows = store.vlmdb(&[
        "sql",
        "-f",
        "sql/plot/similarity.sql",
        "--param",
        "space=ref",
        "--param",
        "dataset=shapes",
        "--param",
        "split=test",
        "--param",
        "negatives=3",
        "--param",
        "seed=7",
        "--format",
        "csv",
    ]);
    assert_success(&rows);
    let truth = store.csv(
        "SELECT caption_id, image_id FROM captions WHERE dataset = 'shapes' AND split = 'test'",
    );
    let image_of: std::collections::HashMap<&str, &str> = truth
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    let (mut positives, mut negatives) = (0, 0);
    for line in stdout(&rows).lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let own = image_of.get(fields[1]).expect("a test-split caption");
        match fields[0] {
            "positive" => {
                assert_eq!(fields[2], *own);
                positives += 1;
            }
            "negative" => {
                assert_ne!(fields[2], *own, "{line}");
                negatives += 1;
            }
            other => panic!("pair {other}"),
        }
    }
    assert_eq!(positives, image_of.len());
    assert_eq!(negatives, 3 * image_of.len());
}

#[test]
fn bad_plot_arguments_are_clear_errors_and_store_nothing() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let run = cluster(&store, "1");
    let png = dir.path().join("x.png");
    let png = png.to_str().expect("path");
    let artifacts = || store.csv("SELECT count(*) FROM artifacts");
    let before = artifacts();
    for (args, error) in [
        (
            vec!["plot", "metrics", "--run", "no-such-run", "--out", png],
            "run 'no-such-run' not found",
        ),
        (
            vec!["plot", "metrics", "--run", &run, "--out", "x.txt"],
            "--out x.txt: plots are PNG files",
        ),
        (
            vec!["plot", "contact-sheet", "--out", "/no/such/dir/x.png"],
            "directory /no/such/dir does not exist",
        ),
        (
            vec![
                "plot", "metrics", "--run", &run, "--metric", "loss", "--out", png,
            ],
            "have no metrics with a step or iteration to draw",
        ),
        (
            vec![
                "plot",
                "scatter",
                "--model",
                "ref",
                "--dataset",
                "cirr",
                "--clusters",
                &run,
                "--out",
                png,
            ],
            "none of the 30 items drawn is in the clusters of run",
        ),
        (
            vec![
                "plot",
                "scatter",
                "--model",
                "nope",
                "--dataset",
                "shapes",
                "--out",
                png,
            ],
            "unknown space 'nope'",
        ),
        (
            vec![
                "plot",
                "contact-sheet",
                "--clusters",
                &run,
                "--query",
                "sql/plot/pca_scatter.sql",
                "--param",
                "per_cluster=3",
                "--out",
                png,
            ],
            "parameter per_cluster: is set by the plot itself",
        ),
        (
            vec![
                "plot",
                "contact-sheet",
                "--clusters",
                &run,
                "--query",
                "sql/plot/metrics.sql",
                "--param",
                "runs=x",
                "--param",
                "metrics=x",
                "--param",
                "x=step",
                "--out",
                png,
            ],
            "the plot query returned no column 'cluster_id'",
        ),
    ] {
        assert_fails_with(&store.vlmdb(&args), error);
        assert!(!Path::new(png).exists(), "{args:?} wrote a file");
    }
    // --out is required, and said so by the usage line.
    let missing = store.vlmdb(&["plot", "metrics", "--run", &run]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("Usage: vlmdb plot metrics --out <FILE.png> --run <RUNS>"),
        "{}",
        stderr(&missing)
    );
    assert_eq!(artifacts(), before);
}

/// t-SNE without --perplexity fits small sets (issue 25 item 16): the 30 shapes images get (30 − 1) / 3, not 30.
#[test]
fn a_tsne_scatter_of_a_small_set_needs_no_perplexity() {
    let store = retrieval_store();
    let out_path = store.path().join("tsne.png");
    let out = store.vlmdb(&[
        "plot",
        "scatter",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--method",
        "tsne",
        "--out",
        out_path.to_str().expect("path"),
    ]);
    assert_success(&out);
    assert!(out_path.is_file());
}

/// `plot metrics` draws one panel per metric sharing the x axis (a loss of 4 and a learning rate of 0.001 each on
/// their own y axis), `--panels single` puts them on one axis, and `--log-y` refuses values ≤ 0 (issue 25).
#[test]
fn metric_panels_and_a_log_axis() {
    let store = TestStore::initialised();
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("log.csv");
    std::fs::write(
        &log,
        "step,loss,lr\n1,4.0,0.001\n2,3.0,0.001\n3,2.5,0.0005\n",
    )
    .expect("log");
    let import = store.vlmdb(&[
        "import",
        "metrics",
        log.to_str().unwrap_or_default(),
        "--run-name",
        "old",
        "--format",
        "json",
    ]);
    assert_success(&import);
    let report: serde_json::Value = serde_json::from_str(&stdout(&import)).expect("json");
    let run = report["run_id"].as_str().expect("run id").to_string();

    let png_path = dir.path().join("panels.png");
    let out = store.vlmdb(&[
        "plot",
        "metrics",
        "--run",
        &run,
        "--out",
        png_path.to_str().unwrap_or_default(),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("2 series in 2 panels, 6 points"),
        "{}",
        stdout(&out)
    );
    let png = image::open(&png_path).expect("png").to_rgb8();
    let (width, height) = png.dimensions();
    let in_rows = |colour: plotters::style::RGBColor, rows: std::ops::Range<u32>| {
        rows.flat_map(|y| (0..width).map(move |x| (x, y)))
            .filter(|&(x, y)| png.get_pixel(x, y).0 == [colour.0, colour.1, colour.2])
            .count()
    };
    // The loss (colour 0) is drawn in the upper panel only, the learning rate (colour 1) in the lower one too.
    assert_eq!(in_rows(palette(0), height / 2 + 10..height), 0);
    assert!(in_rows(palette(1), height / 2 + 10..height) > 50);

    let single = store.vlmdb(&[
        "plot",
        "metrics",
        "--run",
        &run,
        "--panels",
        "single",
        "--log-y",
        "--out",
        png_path.to_str().unwrap_or_default(),
        "--format",
        "json",
    ]);
    assert_success(&single);
    let report: serde_json::Value = serde_json::from_str(&stdout(&single)).expect("json");
    assert!(
        report["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("2 series in 1 panel,")),
        "{report}"
    );
    let config = store.csv(&format!(
        "SELECT key, value FROM run_configs('{}') WHERE key IN ('config.single_axis', 'config.log_y') ORDER BY key",
        report["run_id"].as_str().expect("run id")
    ));
    assert_eq!(
        config,
        "key,value\nconfig.log_y,true\nconfig.single_axis,true\n"
    );

    std::fs::write(&log, "step,delta\n1,0.5\n2,0.0\n").expect("log");
    let import = store.vlmdb(&[
        "import",
        "metrics",
        log.to_str().unwrap_or_default(),
        "--run-name",
        "zero",
        "--format",
        "json",
    ]);
    assert_success(&import);
    let report: serde_json::Value = serde_json::from_str(&stdout(&import)).expect("json");
    let refused = store.vlmdb(&[
        "plot",
        "metrics",
        "--run",
        report["run_id"].as_str().expect("run id"),
        "--log-y",
        "--out",
        png_path.to_str().unwrap_or_default(),
    ]);
    assert_fails_with(
        &refused,
        "--log-y: 'delta' is 0 at step 2; a log axis needs values above 0",
    );
}
