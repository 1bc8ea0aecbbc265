//! The caption→image→caption loop end to end on the tiny BLIP and Stable Diffusion fixtures: the rows, lineage and
//! metric names of a 3-hop loop over 4 images with all baselines, resuming after a kill without duplicates, and
//! captioning through `vlmdb caption` and the SQL functions.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{RETRIEVAL_FIXTURE, TestStore, assert_fails_with, assert_success, stdout};

const CAPTIONER: &str = "fixtures/models/tiny-blip";
const GENERATOR: &str = "fixtures/models/tiny-sd";
const SPACE: &str = "fixtures/models/tiny-clip";

fn shapes_store() -> TestStore {
    let store = TestStore::initialised();
    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[0]));
    store
}

fn loop_args(images: &str, iterations: &str, baselines: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "loop",
        "--captioner",
        CAPTIONER,
        "--generator",
        GENERATOR,
        "--dataset",
        "shapes",
        "--images",
        images,
        "--iterations",
        iterations,
        "--image-space",
        SPACE,
        "--text-space",
        SPACE,
        "--steps",
        "3",
        "--seed",
        "11",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if baselines {
        args.push("--baselines".into());
    }
    args
}

/// `variant run <id>: …` lines of `vlmdb loop`'s output.
fn run_ids(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|line| {
            let (variant, rest) = line.split_once(" run ")?;
            let id = rest.split(':').next()?;
            Some((variant.to_string(), id.to_string()))
        })
        .collect()
}

fn one_number(store: &TestStore, sql: &str) -> i64 {
    let csv = store.csv(sql);
    csv.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {csv}"))
}

/// Rows, lineage and metrics one loop run (of any variant) must have: 4 items, 3 hops.
fn check_run(store: &TestStore, run: &str, variant: &str) {
    let count = |table: &str| {
        one_number(
            store,
            &format!("SELECT count(*) AS n FROM {table} WHERE run_id = '{run}'"),
        )
    };
    assert_eq!(count("images"), 12, "{variant}: 4 items × 3 generated hops");
    assert_eq!(count("captions"), 16, "{variant}: 4 items × hops 0..=3");
    assert_eq!(
        count("metrics"),
        80,
        "{variant}: (1 + 3·5) per item and per hop"
    );
    let distinct = one_number(
        store,
        &format!("SELECT count(DISTINCT image_id) AS n FROM images WHERE run_id = '{run}'"),
    );
    assert_eq!(distinct, 12, "{variant}: no duplicate images");
    // Lineage: every generated image at hop h came from the caption of the same item's image at hop h − 1.
    let broken = one_number(
        store,
        &format!(
            "SELECT count(*) AS n FROM images i \
             LEFT JOIN captions c ON c.caption_id = i.parent_id AND c.iteration = i.iteration - 1 \
             WHERE i.run_id = '{run}' AND (c.caption_id IS NULL OR c.run_id <> '{run}')"
        ),
    );
    assert_eq!(
        broken, 0,
        "{variant}: every image's parent is the previous hop's caption"
    );
    let orphans = one_number(
        store,
        &format!(
            "SELECT count(*) AS n FROM captions c LEFT JOIN images i ON i.image_id = c.image_id \
             WHERE c.run_id = '{run}' AND i.image_id IS NULL"
        ),
    );
    assert_eq!(
        orphans, 0,
        "{variant}: every caption describes a stored image"
    );
    let hop0 = one_number(
        store,
        &format!(
            "SELECT count(*) AS n FROM captions c JOIN images i ON i.image_id = c.image_id \
             WHERE c.run_id = '{run}' AND c.iteration = 0 AND i.dataset = 'shapes'"
        ),
    );
    assert_eq!(
        hop0, 4,
        "{variant}: hop-0 captions describe the dataset's images"
    );
    let names = store.csv(&format!(
        "SELECT name, count(*) AS n, count(item_id) AS per_item FROM metrics WHERE run_id = '{run}' \
         GROUP BY name ORDER BY name"
    ));
    assert_eq!(
        names,
        "name,n,per_item\n\
         caption_sim_to_hop0,15,12\n\
         caption_sim_to_prev,15,12\n\
         image_caption_sim,20,16\n\
         image_sim_to_hop0,15,12\n\
         image_sim_to_prev,15,12\n",
        "{variant}"
    );
    let bad = one_number(
        store,
        &format!(
            "SELECT count(*) AS n FROM metrics WHERE run_id = '{run}' \
             AND (value < -1.0001 OR value > 1.0001 OR iteration IS NULL OR iteration > 3)"
        ),
    );
    assert_eq!(bad, 0, "{variant}: similarities are cosines at hops 0..=3");
}

#[test]
fn a_three_hop_loop_with_baselines_stores_every_row_with_lineage() {
    let store = shapes_store();
    let args = loop_args("4", "3", true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = store.vlmdb(&args);
    assert_success(&out);
    let runs = run_ids(&stdout(&out));
    let variants: Vec<&str> = runs.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        variants,
        ["loop", "generator_only", "random_captions", "fixed_caption"]
    );
    for (variant, run) in &runs {
        check_run(&store, run, variant);
    }
    let main = &runs[0].1;
    // Baselines are linked to the loop run.
    for (variant, run) in &runs[1..] {
        let config = store.csv(&format!("SELECT config FROM runs WHERE run_id = '{run}'"));
        assert!(
            config.contains(&format!("\"\"baseline_of\"\":\"\"{main}\"\"")),
            "{variant}: {config}"
        );
    }
    // The loop's captions come from the captioner; the baselines' from their rule.
    let sources = store.csv(
        "SELECT source, count(*) AS n FROM captions WHERE dataset = 'shapes/loop' GROUP BY source ORDER BY source",
    );
    assert!(sources.contains("baseline:fixed_caption,16"), "{sources}");
    assert!(sources.contains("baseline:generator_only,16"), "{sources}");
    assert!(sources.contains("baseline:random_captions,16"), "{sources}");
    assert!(sources.contains("tiny-blip,16"), "{sources}");
    let fixed = one_number(
        &store,
        &format!(
            "SELECT count(DISTINCT text) AS n FROM captions WHERE run_id = '{}'",
            runs[3].1
        ),
    );
    assert_eq!(fixed, 1, "one caption for every item and hop");
    // The same (item, hop) is generated with the same seed in every variant: generator-only and fixed caption
    // draw the first item from the same caption (the fixed caption defaults to it), so their images are equal.
    let same = one_number(
        &store,
        &format!(
            "SELECT count(*) AS n FROM images a JOIN images b ON a.sha256 = b.sha256 \
             WHERE a.run_id = '{}' AND b.run_id = '{}' AND a.image_id LIKE '%scene_001/hop%' \
             AND b.image_id LIKE '%scene_001/hop%' AND a.iteration = b.iteration",
            runs[1].1, runs[3].1
        ),
    );
    assert_eq!(same, 3);

    // drift.sql: one row per run and hop; plot drift draws it.
    let drift = store.vlmdb(&[
        "run",
        "sql/loop/drift.sql",
        "--param",
        &format!("run={main}"),
        "--format",
        "csv",
    ]);
    assert_success(&drift);
    let text = stdout(&drift);
    assert_eq!(text.lines().count(), 1 + 4 * 4, "{text}");
    assert!(
        text.starts_with("variant,run_id,hop,image_sim_to_hop0"),
        "{text}"
    );
    let png = store.dir.path().join("drift.png");
    let out = store.vlmdb(&[
        "plot",
        "drift",
        "--run",
        main,
        "--metric",
        "image_sim_to_hop0,caption_sim_to_hop0",
        "--out",
        png.to_str().expect("path"),
    ]);
    assert_success(&out);
    let image = image::open(&png).expect("a PNG");
    assert!(image.width() > 100);

    // compare.sql puts the loop and a baseline side by side at their last hop.
    let compared = store.vlmdb(&[
        "run",
        "sql/runs/compare.sql",
        "--param",
        &format!("runs={main},{}", runs[1].1),
        "--format",
        "csv",
    ]);
    assert_success(&compared);
    let text = stdout(&compared);
    assert!(
        text.contains(&format!("config.variant,{main},loop")),
        "{text}"
    );
    // `baseline_of` is in the configuration once (it used to be in its notes as well, so compare listed it twice).
    assert!(text.contains("config.baseline_of,"), "{text}");
    assert!(!text.contains("config.notes.baseline_of"), "{text}");
    let last_hop: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("image_sim_to_hop0,") && l.contains(",,3,"))
        .collect();
    assert_eq!(last_hop.len(), 2, "one hop-3 mean per run: {text}");

    // Running the same command again is the same experiment: the finished runs are reported, nothing is
    // written (issue 21: it used to write a second copy of every row).
    let rows = |store: &TestStore| {
        one_number(
            store,
            "SELECT (SELECT count(*) FROM images) + (SELECT count(*) FROM captions) + \
                           (SELECT count(*) FROM metrics) + (SELECT count(*) FROM runs) AS n",
        )
    };
    let before = rows(&store);
    let again = store.vlmdb(&args);
    assert_success(&again);
    assert!(!stdout(&again).contains("resumed"), "{}", stdout(&again));
    assert!(
        stdout(&again).contains("finished before"),
        "{}",
        stdout(&again)
    );
    assert!(stdout(&again).contains(main), "{}", stdout(&again));
    assert_eq!(rows(&store), before);
    check_run(&store, main, "loop (after a second invocation)");

    // `--again` runs a replicate as new runs and leaves the old rows alone.
    let mut replicate = args.clone();
    replicate.push("--again");
    let again = store.vlmdb(&replicate);
    assert_success(&again);
    assert!(
        !stdout(&again).contains("finished before"),
        "{}",
        stdout(&again)
    );
    assert!(!stdout(&again).contains(main), "{}", stdout(&again));
    assert!(rows(&store) > before);
    check_run(&store, main, "loop (after a replicate)");
}

/// Start `vlmdb loop`, and kill it once stderr shows `needle` (a hop it finished).
fn kill_after(store: &TestStore, args: &[&str], needle: &str) {
    let mut child = store
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vlmdb loop");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("stderr line");
        if line.contains(needle) {
            child.kill().expect("kill");
            seen = true;
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(seen, "the loop reported {needle:?}");
    assert!(!status.success(), "the loop was killed, not finished");
}

#[test]
fn a_killed_loop_resumes_from_the_last_completed_hop_without_duplicates() {
    let store = shapes_store();
    let args = loop_args("4", "3", true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Killed in the loop run itself.
    kill_after(&store, &args, "(loop): hop 1/3 done");
    // Its process is gone, so the run reads as interrupted (issue 21: it used to stay `running`).
    let running = store.csv("SELECT run_id, status FROM runs WHERE kind = 'loop'");
    assert_eq!(running.lines().count(), 2, "{running}");
    assert!(running.contains(",interrupted"), "{running}");
    let main = running
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .expect("the loop run")
        .to_string();
    // Resumed, then killed in the first baseline: the loop run finished on the way.
    kill_after(&store, &args, "(generator_only): hop 1/3 done");
    let status = store.csv(&format!("SELECT status FROM runs WHERE run_id = '{main}'"));
    assert_eq!(status, "status\nfinished\n");
    check_run(&store, &main, "resumed loop");

    let out = store.vlmdb(&args);
    assert_success(&out);
    let text = stdout(&out);
    let runs = run_ids(&text);
    let variants: Vec<&str> = runs.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        variants,
        ["loop", "generator_only", "random_captions", "fixed_caption"],
        "{text}"
    );
    assert_eq!(runs[0].1, main, "the same loop run: {text}");
    assert!(
        text.contains("(resumed after hop 3): 0 images, 0 captions, 0 metrics"),
        "the finished loop run is not redone: {text}"
    );
    let baseline = text.lines().nth(1).unwrap_or_default();
    assert!(baseline.contains("(resumed after hop "), "{text}");
    for (variant, run) in &runs {
        check_run(&store, run, variant);
    }
    let all = store.csv("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM runs WHERE kind = 'loop' AND status = 'finished'");
    assert_eq!(all, "n,runs\n4,4\n", "no run was started twice");
    let images = one_number(
        &store,
        "SELECT count(*) AS n FROM images WHERE dataset = 'shapes/loop'",
    );
    assert_eq!(images, 4 * 12, "no duplicate images");
}

#[test]
fn vlmdb_caption_writes_prompted_captions_under_a_run_and_replaces_on_rerun() {
    let store = shapes_store();
    let prompt = "an engraving depicting";
    let args = [
        "caption",
        "--model",
        CAPTIONER,
        "--dataset",
        "shapes",
        "--prompt",
        prompt,
        "--split",
        "test",
    ];
    let out = store.vlmdb(&args);
    assert_success(&out);
    let images = one_number(
        &store,
        "SELECT count(*) AS n FROM images WHERE dataset = 'shapes' AND split = 'test'",
    );
    assert!(images > 0);
    let rows = store.csv(
        "SELECT count(*) AS n, count(DISTINCT run_id) AS runs, min(source) AS source FROM captions \
         WHERE source <> 'human'",
    );
    assert!(
        rows.starts_with(&format!("n,runs,source\n{images},1,")),
        "{rows}"
    );
    assert!(rows.trim_end().ends_with("tiny-blip"), "{rows}");
    let unprompted = one_number(
        &store,
        &format!(
            "SELECT count(*) AS n FROM captions WHERE source <> 'human' AND text NOT LIKE '{prompt}%'"
        ),
    );
    assert_eq!(unprompted, 0, "every caption continues the prompt");
    // Again: the same ids are replaced, not duplicated, and the model cache serves the captions.
    assert_success(&store.vlmdb(&args));
    let again = one_number(
        &store,
        "SELECT count(*) AS n FROM captions WHERE source <> 'human'",
    );
    assert_eq!(again, images);
    let cached = one_number(
        &store,
        "SELECT count(*) AS n FROM model_cache WHERE text IS NOT NULL",
    );
    assert_eq!(cached, images, "one cached caption per image");

    assert_fails_with(
        &store.vlmdb(&["caption", "--model", CAPTIONER, "--dataset", "nope"]),
        "dataset 'nope' has no images",
    );
    assert_fails_with(
        &store.vlmdb(&["caption", "--model", GENERATOR, "--dataset", "shapes"]),
        "config.json",
    );
}

#[test]
fn caption_and_generate_image_in_sql() {
    let store = shapes_store();
    let sql = format!(
        "SELECT image_id, caption('{CAPTIONER}', data) AS plain, caption('{CAPTIONER}', data, 'an engraving depicting') AS prompted \
         FROM images WHERE dataset = 'shapes' ORDER BY image_id LIMIT 3"
    );
    let csv = store.csv(&sql);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",an engraving depicting")),
        "{csv}"
    );
    let same = store.csv(&format!(
        "SELECT generate_image('{GENERATOR}', 'a red circle', 5, 2) = generate_image('{GENERATOR}', 'a red circle', 5, 2) AS same, \
                generate_image('{GENERATOR}', 'a red circle', 5, 2) = generate_image('{GENERATOR}', 'a red circle', 6, 2) AS other, \
                image_size(generate_image('{GENERATOR}', 'a red circle', 5, 2))['width'] AS size"
    ));
    assert!(same.starts_with("same,other,size\ntrue,false,"), "{same}");
    assert!(same.ends_with(",32\n"), "{same}");
    let negative = store.csv(&format!(
        "SELECT generate_image('{GENERATOR}', 'a red circle', 5, 2, 7.5, 'blurry') = \
                generate_image('{GENERATOR}', 'a red circle', 5, 2, 7.5) AS same"
    ));
    assert_eq!(
        negative, "same\nfalse\n",
        "a negative prompt changes the image"
    );
    let xl = store.csv(
        "SELECT image_size(generate_image('fixtures/models/tiny-sdxl', 'a red circle', 5, 1, 0.0))['width'] AS w",
    );
    assert_eq!(
        xl, "w\n32\n",
        "an SDXL-Turbo-style pipeline: one step, no guidance"
    );
    let null = store.csv(&format!(
        "SELECT generate_image('{GENERATOR}', CAST(NULL AS VARCHAR), 5) IS NULL AS n"
    ));
    assert_eq!(null, "n\ntrue\n");
    let out = store.vlmdb(&[
        "sql",
        &format!("SELECT generate_image('{GENERATOR}', 'x', 1.5)"),
    ]);
    assert_fails_with(&out, "seed");
}

/// The loop's hops are analysable like any embedded data (issue 23 item 3): every hop's images and captions are in
/// the measuring space (hop 0: the dataset images), the space functions and `cluster` / `plot scatter` take a run
/// and a hop, `cluster -k 2,3` makes one linked run per k, `sql/loop/clusters.sql` follows the clusters from hop to
/// hop through the items' lineage, and `plot lineage` draws one row per item, hop by hop, captions under images.
#[test]
fn a_loops_hops_are_clustered_projected_and_drawn() {
    let store = shapes_store();
    let args = loop_args("4", "2", false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_ids(&stdout(&out))[0].1.clone();
    for hop in 0..=2 {
        for kind in ["image", "caption"] {
            assert_eq!(
                one_number(
                    &store,
                    &format!(
                        "SELECT count(*) FROM vectors('{SPACE}', NULL, NULL, '{kind}', '{run}', {hop})"
                    )
                ),
                4,
                "{kind}s of hop {hop}"
            );
        }
    }
    assert_eq!(
        one_number(
            &store,
            &format!("SELECT count(*) FROM vectors('{SPACE}', NULL, NULL, NULL, '{run}')")
        ),
        4 * 3 * 2,
        "every hop's images and captions"
    );
    // Embedding the dataset afterwards finds the loop's hop-0 images already there.
    let embed = store.vlmdb(&["embed", "--model", SPACE, "--images", "--dataset", "shapes"]);
    assert_success(&embed);
    assert!(
        stdout(&embed).contains("embedded 26 image"),
        "{}",
        stdout(&embed)
    );

    let cluster = |hop: &str, k: &str| -> Vec<String> {
        let out = store.vlmdb(&[
            "cluster",
            "--model",
            SPACE,
            "--run",
            &run,
            "--iteration",
            hop,
            "-k",
            k,
        ]);
        assert_success(&out);
        stdout(&out)
            .lines()
            .map(|line| {
                assert!(line.contains("on 4 items"), "{line}");
                line.rsplit_once("(run ")
                    .and_then(|(_, r)| r.split(')').next())
                    .expect("run id")
                    .to_string()
            })
            .collect()
    };
    let hop1 = cluster("1", "2,3");
    assert_eq!(hop1.len(), 2, "one run per k");
    for id in &hop1 {
        let config = store.csv(&format!("SELECT config FROM runs WHERE run_id = '{id}'"));
        assert!(config.contains("\"\"k_sweep\"\":[2,3]"), "{config}");
        assert!(
            config.contains(&format!("\"\"run\"\":\"\"{run}\"\"")),
            "{config}"
        );
    }
    let hop2 = cluster("2", "2");
    let tracked = store.vlmdb(&[
        "run",
        "sql/loop/clusters.sql",
        "--param",
        &format!("from_run={}", hop1[0]),
        "--param",
        &format!("to_run={}", hop2[0]),
        "--format",
        "csv",
    ]);
    assert_success(&tracked);
    let text = stdout(&tracked);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let followed: i64 = rows
        .iter()
        .map(|r| r[6].parse::<i64>().expect("followed"))
        .sum();
    let sizes: i64 = rows
        .iter()
        .map(|r| r[4].parse::<i64>().expect("size"))
        .sum();
    assert_eq!(sizes, 4, "{text}");
    assert!(followed <= 4, "{text}");

    for sql in [
        format!(
            "SELECT count(*) FROM kmeans('{SPACE}', 2, 10, 0, NULL, NULL, 'image', NULL, '{run}', 1)"
        ),
        format!("SELECT count(*) FROM pca('{SPACE}', 2, NULL, NULL, 'caption', '{run}', 2)"),
        format!(
            "SELECT count(*) FROM tsne('{SPACE}', 1.0, 250, 0, NULL, NULL, 'image', NULL, '{run}', 0)"
        ),
    ] {
        assert_eq!(one_number(&store, &sql), 4, "{sql}");
    }
    // Each hop's captions retrieve among that hop's images (hop 0: the dataset images), and back.
    for hop in [0, 2] {
        let ranks = store.csv(&format!(
            "SELECT direction, count(*) AS n, max(rank) AS worst FROM retrieval_ranks('{SPACE}', 'shapes/loop', \
             NULL, NULL, NULL, '{run}', {hop}) GROUP BY direction ORDER BY direction"
        ));
        let lines: Vec<&str> = ranks.lines().skip(1).collect();
        assert_eq!(lines.len(), 2, "hop {hop}: {ranks}");
        for (line, direction) in lines.iter().zip(["i2t", "t2i"]) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells[0], direction, "{ranks}");
            assert_eq!(cells[1], "4", "hop {hop}: {ranks}");
            assert!(cells[2].parse::<i64>().expect("rank") <= 4, "{ranks}");
        }
    }

    let scatter = store.path().join("hop1.png");
    let out = store.vlmdb(&[
        "plot",
        "scatter",
        "--model",
        SPACE,
        "--run",
        &run,
        "--iteration",
        "1",
        "--clusters",
        &hop1[0],
        "--out",
        scatter.to_str().expect("path"),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("4 points in 2 clusters"),
        "{}",
        stdout(&out)
    );

    let sheet = store.path().join("lineage.png");
    let out = store.vlmdb(&[
        "plot",
        "lineage",
        "--run",
        &run,
        "--thumb",
        "64",
        "--lines",
        "3",
        "--out",
        sheet.to_str().expect("path"),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("4 items, 12 images"),
        "{}",
        stdout(&out)
    );
    let png = image::open(&sheet).expect("sheet").to_rgb8();
    let geometry = vlmdb::plot::contact_sheet::Geometry {
        thumb: 64,
        columns: 3,
        rows: 4,
        caption_lines: 3,
    };
    assert_eq!(png.dimensions(), geometry.size());
    // Hop 0 of the first item is its dataset image.
    let first = store.csv(&format!(
        "SELECT image_id FROM captions WHERE run_id = '{run}' AND iteration = 0 ORDER BY image_id LIMIT 1"
    ));
    let image_id = first.lines().nth(1).expect("an item");
    let data = store.csv(&format!(
        "SELECT path FROM images WHERE image_id = '{image_id}'"
    ));
    let path = data.lines().nth(1).expect("path");
    let source = image::open(format!("fixtures/datasets/karpathy/images/{path}"))
        .expect("source")
        .to_rgb8();
    let (x, y) = geometry.cell(0, 0);
    let (dx, dy, w, h) = geometry.fit(source.width(), source.height());
    let centre = png.get_pixel(x + dx + w / 2, y + dy + h / 2);
    let want = image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle);
    let expected = want.get_pixel(w / 2, h / 2);
    for c in 0..3 {
        assert!(
            (i32::from(centre[c]) - i32::from(expected[c])).abs() <= 16,
            "hop 0 of {image_id}: {centre:?} vs {expected:?}"
        );
    }
}

/// LLaVA captions through every path BLIP's take (issue 23 item 2): `vlmdb caption` with an instruction and a
/// token limit, `caption(model, image, prompt, max_new_tokens)` in SQL (cached), and as the loop's captioner.
#[test]
fn llava_captions_through_the_cli_sql_and_the_loop() {
    const LLAVA: &str = "fixtures/models/tiny-llava";
    let store = shapes_store();
    let out = store.vlmdb(&[
        "caption",
        "--model",
        LLAVA,
        "--dataset",
        "shapes",
        "--split",
        "test",
        "--prompt",
        "What shape is in the picture?",
        "--max-new-tokens",
        "4",
    ]);
    assert_success(&out);
    let written = store.csv(
        "SELECT count(*) AS n, max(array_length(string_to_array(text, ' '))) AS words FROM captions \
         WHERE source LIKE '%tiny-llava'",
    );
    let line = written.lines().nth(1).expect("a row");
    let (n, words) = line.split_once(',').expect("two cells");
    assert!(n.parse::<i64>().expect("n") > 0, "{written}");
    assert!(
        words.parse::<i64>().unwrap_or(0) <= 4,
        "at most 4 tokens: {written}"
    );
    let config = store.csv("SELECT config FROM runs WHERE kind = 'caption'");
    assert!(config.contains("\"\"max_new_tokens\"\":4"), "{config}");

    let sql = store.csv(&format!(
        "SELECT caption('{LLAVA}', data, 'Describe the image.', 3) = caption('{LLAVA}', data, 'Describe the image.', 3) AS same \
         FROM images WHERE dataset = 'shapes' ORDER BY image_id LIMIT 1"
    ));
    assert_eq!(sql, "same\ntrue\n");
    assert_fails_with(
        &store.vlmdb(&[
            "sql",
            &format!("SELECT caption('{LLAVA}', data, NULL, 0) FROM images LIMIT 1"),
        ]),
        "max_new_tokens",
    );

    let mut args = loop_args("2", "1", false);
    args[2] = LLAVA.to_string();
    args.extend(["--max-new-tokens".to_string(), "5".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let looped = store.vlmdb(&args);
    assert_success(&looped);
    let run = run_ids(&stdout(&looped))[0].1.clone();
    assert_eq!(
        one_number(
            &store,
            &format!(
                "SELECT count(*) AS n FROM captions WHERE run_id = '{run}' AND source LIKE '%tiny-llava'"
            )
        ),
        4,
        "2 items × hops 0 and 1"
    );
}

/// Augmented CIR pairs (issue 23 item 4): a captioner describes each pair's target once per prompt; the new pairs
/// carry their provenance and stable ids (running again replaces them), embed like any pair, are mined when asked
/// (`--augmented only`) and left out when not (`exclude`), and leave the dataset's own evaluation unchanged.
#[test]
fn augmented_pairs_round_trip_through_embedding_mining_and_eval() {
    let store = TestStore::initialised();
    assert_success(&store.vlmdb(&[
        "ingest",
        "cirr",
        "fixtures/datasets/cirr",
        "--dataset",
        "cirr",
    ]));
    for what in ["--images", "--pairs"] {
        assert_success(&store.vlmdb(&["embed", "--model", SPACE, what, "--dataset", "cirr"]));
    }
    let eval = || {
        let out = store.vlmdb(&["eval", "--model", SPACE, "--dataset", "cirr", "--again"]);
        assert_success(&out);
        // The metrics table (the last line names the run).
        stdout(&out)
            .lines()
            .filter(|l| !l.starts_with("eval run"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = eval();
    let originals = one_number(
        &store,
        "SELECT count(*) AS n FROM pairs WHERE dataset = 'cirr' AND target_id IS NOT NULL",
    );
    assert!(originals > 0);
    let augment = [
        "augment",
        "pairs",
        "--captioner",
        CAPTIONER,
        "--dataset",
        "cirr",
        "--prompt",
        "an engraving depicting",
        "--prompt",
        "a photo of",
    ];
    let out = store.vlmdb(&augment);
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!("{} augmented pairs written", 2 * originals)),
        "{}",
        stdout(&out)
    );
    let check = store.csv(
        "SELECT count(*) AS n, count(DISTINCT a.parent_id) AS parents, \
                sum(CASE WHEN a.reference_id = p.reference_id AND a.target_id = p.target_id THEN 1 ELSE 0 END) AS same, \
                min(a.source) LIKE '%tiny-blip%' AS source \
         FROM pairs a JOIN pairs p ON p.pair_id = a.parent_id WHERE a.source IS NOT NULL",
    );
    assert_eq!(
        check,
        format!(
            "n,parents,same,source\n{},{originals},{},true\n",
            2 * originals,
            2 * originals
        )
    );
    let engraved = one_number(
        &store,
        "SELECT count(*) AS n FROM pairs WHERE source LIKE '%|an engraving depicting' AND text LIKE 'an engraving depicting%'",
    );
    assert_eq!(
        engraved, originals,
        "BLIP's descriptions continue the prompt"
    );
    // Again: the same ids, replaced.
    assert_success(&store.vlmdb(&augment));
    assert_eq!(
        one_number(
            &store,
            "SELECT count(*) AS n FROM pairs WHERE source IS NOT NULL"
        ),
        2 * originals
    );
    let embedded = store.vlmdb(&["embed", "--model", SPACE, "--pairs", "--dataset", "cirr"]);
    assert_success(&embedded);
    assert!(
        stdout(&embedded).contains(&format!("embedded {} pair", 2 * originals)),
        "{}",
        stdout(&embedded)
    );
    let mine = |augmented: &str| -> (i64, i64) {
        let out = store.vlmdb(&[
            "mine",
            "--model",
            SPACE,
            "--dataset",
            "cirr",
            "--directions",
            "composed",
            "-k",
            "2",
            "--augmented",
            augmented,
            "--again",
        ]);
        assert_success(&out);
        let run = store
            .csv("SELECT run_id FROM runs WHERE kind = 'mine' ORDER BY started_at DESC LIMIT 1");
        let run = run.lines().nth(1).expect("run").to_string();
        let counts = |pattern: &str| {
            one_number(
                &store,
                &format!(
                    "SELECT count(DISTINCT query_id) AS n FROM hard_negatives WHERE run_id = '{run}' \
                     AND query_id {pattern} '%/aug/%'"
                ),
            )
        };
        (counts("LIKE"), counts("NOT LIKE"))
    };
    let (augmented, own) = mine("only");
    assert!(
        augmented > 0 && own == 0,
        "only: {augmented} augmented, {own} own"
    );
    let (augmented, own) = mine("exclude");
    assert!(
        augmented == 0 && own > 0,
        "exclude: {augmented} augmented, {own} own"
    );
    assert_eq!(eval(), before, "eval scores the dataset's own pairs only");
    // Composed training takes them or not: an epoch is one pass over the pairs it takes.
    let steps = |augmented: &str| {
        let out = store.vlmdb(&[
            "train",
            "--image-model",
            SPACE,
            "--text-model",
            SPACE,
            "--dataset",
            "cirr",
            "--composed",
            "--augmented",
            augmented,
            "--epochs",
            "1",
            "--batch",
            "2",
            "--dead-steps",
            "0",
            "--quiet",
            "--loss",
            "infonce",
        ]);
        assert_success(&out);
        one_number(
            &store,
            "SELECT max(step) AS n FROM metrics WHERE name = 'loss' AND run_id = \
             (SELECT run_id FROM runs WHERE kind = 'train' ORDER BY started_at DESC LIMIT 1)",
        )
    };
    let (own, all) = (steps("exclude"), steps("include"));
    assert!(
        all > own,
        "include trains on more pairs: {all} vs {own} steps"
    );
}
