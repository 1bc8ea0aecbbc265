//! The models against their reference implementations: the real all-MiniLM-L6-v2 against sentence-transformers,
//! tiny CLIP and SigLIP models written by transformers against transformers' own features and pixel tensors
//! (`fixtures/models/make_models.py` wrote both), plus hub resolution, the model cache across processes, and
//! `vlmdb embed` / `vlmdb search` end to end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use vlmdb::models::{DeviceChoice, Model};

use crate::common::{TestStore, assert_success, stdout};

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

pub fn reference(name: &str) -> Value {
    let path = fixture(&format!("models/reference/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

pub fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The real all-MiniLM-L6-v2 (`fixtures/models/fetch_minilm.sh` puts it there). Without it the MiniLM tests say
/// so and pass on a developer machine, but fail under CI (`CI=true`), where `.ci/run` must have fetched it.
fn minilm_dir() -> Option<PathBuf> {
    let dir = fixture("models/all-MiniLM-L6-v2");
    if dir.join("config.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: CI must run fixtures/models/fetch_minilm.sh first",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is missing (run fixtures/models/fetch_minilm.sh)",
        dir.display()
    );
    None
}

fn load(dir: &Path) -> Model {
    Model::load(&dir.display().to_string(), DeviceChoice::Cpu).expect("model loads")
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let model = load(&dir);
    assert_eq!(model.family, "bert");
    assert_eq!(model.dim(), 384);
    let reference = reference("minilm");
    let sentences = reference["sentences"].as_array().expect("sentences");
    assert!(sentences.len() >= 20);
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().expect("text"))
        .collect();
    let vectors = model.embed_texts(&texts, 8).expect("embeds");
    for (sentence, vector) in sentences.iter().zip(&vectors) {
        let expected = floats(&sentence["vector"]);
        let similarity = cosine(vector, &expected);
        assert!(
            similarity >= 0.9999,
            "{:?}: cosine {similarity} to sentence-transformers' vector",
            sentence["text"]
        );
    }
}

#[test]
fn minilm_is_batch_invariant() {
    let Some(dir) = minilm_dir() else { return };
    let model = load(&dir);
    let short = "a cat on a mat";
    let long = "a very long caption about a crowded market with colourful stalls, people carrying baskets, \
                children running between the tables and a musician playing an accordion near the fountain";
    let alone = model.embed_texts(&[short], 64).expect("alone");
    let batch = model
        .embed_texts(&[long, short, long, "x"], 64)
        .expect("batch");
    let diff = max_abs_diff(&alone[0], &batch[1]);
    assert!(diff <= 1e-5, "alone vs padded batch differ by {diff}");
}

/// Features of a tiny model against transformers' reference: texts, images and the preprocessed pixels.
fn check_tiny(name: &str) {
    let dir = fixture(&format!("models/{name}"));
    let model = load(&dir);
    let reference = reference(name);

    let texts = reference["texts"].as_array().expect("texts");
    let strings: Vec<&str> = texts
        .iter()
        .map(|t| t["text"].as_str().expect("text"))
        .collect();
    let features = model.text_features(&strings, 3).expect("text features");
    for (text, got) in texts.iter().zip(&features) {
        let diff = max_abs_diff(got, &floats(&text["features"]));
        assert!(
            diff <= 1e-4,
            "{name}: text {:?}: features differ by {diff}",
            text["text"]
        );
    }

    // Pixels: vlmdb decodes every file (PNG, and JPEG through libjpeg-turbo) to the RGB Pillow gives, and the
    // preprocessing reproduces the reference processor's tensor.
    let mut downscaled_png = false;
    for item in reference["pixel_values"].as_array().expect("pixel_values") {
        let file = fixture(item["file"].as_str().expect("file"));
        let bytes = std::fs::read(&file).expect("fixture image");
        let (image, _) = vlmdb::image::decode(&bytes).expect("decodes");
        let rgb = image.to_rgb8();
        let same_decode = vlmdb::store::model_cache::sha256(rgb.as_raw())
            == item["decoded_rgb_sha256"]
                .as_str()
                .expect("decoded_rgb_sha256");
        let got = model.pixels(&image).expect("pixels");
        let expected = floats(&item["values"]);
        let diff = max_abs_diff(&got, &expected);
        let mean = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / got.len() as f32;
        assert!(
            same_decode,
            "{}: decodes differently from Pillow",
            file.display()
        );
        let (w, h) = rgb.dimensions();
        if file.extension().is_some_and(|e| e == "png") {
            downscaled_png |= w != h && w.min(h) > 32;
        }
        // Pillow's resize reproduced step by step (pass order included): equal up to float rounding.
        assert!(
            diff <= 1e-5,
            "{name}: {}: pixels differ by max {diff}, mean {mean}",
            file.display()
        );
    }
    assert!(
        downscaled_png,
        "the fixtures must include a non-square PNG that needs downscaling"
    );

    let images = reference["images"].as_array().expect("images");
    let encoded: Vec<Vec<u8>> = images
        .iter()
        .map(|i| std::fs::read(fixture(i["file"].as_str().expect("file"))).expect("fixture image"))
        .collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let features = model.image_features(&slices, 3).expect("image features");
    // JPEGs included: their pixels are Pillow's, so their features are transformers' (issue 24 item 9).
    for (item, got) in images.iter().zip(&features) {
        let diff = max_abs_diff(got, &floats(&item["features"]));
        assert!(
            diff <= 1e-4,
            "{name}: image {}: features differ by {diff}",
            item["file"]
        );
    }
}

#[test]
fn tiny_clip_matches_transformers() {
    check_tiny("tiny-clip");
}

#[test]
fn tiny_siglip_matches_transformers() {
    check_tiny("tiny-siglip");
}

/// LAION/OpenCLIP exports in transformers' layout: exact GELU and a non-default layer-norm epsilon.
#[test]
fn tiny_clip_gelu_matches_transformers() {
    check_tiny("tiny-clip-gelu");
}

/// OpenCLIP's own checkpoint layout, preprocessing and tokenizer, against open_clip itself.
#[test]
fn tiny_openclip_matches_open_clip() {
    check_tiny("tiny-openclip");
    let model = load(&fixture("models/tiny-openclip"));
    assert_eq!(model.family, "clip");
    assert_eq!(model.dim(), 16);
}

/// A Hugging Face cache holding the tiny CLIP as `vlmdb-test/tiny-clip` at a commit, with `refs/main` naming it.
fn hub_cache(root: &Path) -> &'static str {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.join("models--vlmdb-test--tiny-clip");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot dir");
    std::fs::create_dir_all(repo.join("refs")).expect("refs dir");
    std::fs::write(repo.join("refs").join("main"), commit).expect("ref");
    for entry in std::fs::read_dir(fixture("models/tiny-clip")).expect("tiny-clip") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).expect("copy");
    }
    commit
}

#[test]
fn hub_cache_hit_and_fast_offline_miss() {
    let store = TestStore::initialised();
    let cache = store.dir.path().join("hf-cache");
    let commit = hub_cache(&cache);
    ingest_shapes(&store, "shapes");

    // Cache hit through refs/main, offline: the space carries the commit, the run records repo and commit.
    let out = store
        .command(&[
            "embed",
            "--model",
            "hf:vlmdb-test/tiny-clip",
            "--captions",
            "--quiet",
        ])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run vlmdb");
    assert_success(&out);
    assert!(
        stdout(&out).contains("emb_tiny_clip_0123456"),
        "{}",
        stdout(&out)
    );
    let runs = store.csv("SELECT models FROM runs WHERE kind = 'embed'");
    assert!(
        runs.contains("vlmdb-test/tiny-clip") && runs.contains(commit),
        "{runs}"
    );

    // A miss offline fails at once, naming the repo, the revision and the file.
    let started = Instant::now();
    let out = store
        .command(&["embed", "--model", "hf:vlmdb-test/absent@v2", "--captions"])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run vlmdb");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vlmdb-test/absent") && err.contains("v2") && err.contains("config.json"),
        "{err}"
    );
    assert!(elapsed < 1.0, "offline miss took {elapsed:.2} s");

    // A revision the cache lacks, of a repo it has: the error lists the revisions it has (issue 25 item 19).
    let out = store
        .command(&[
            "embed",
            "--model",
            "hf:vlmdb-test/tiny-clip@v9",
            "--captions",
        ])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run vlmdb");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the cache has this repo at {commit}")),
        "{err}"
    );
}

fn ingest_shapes(store: &TestStore, dataset: &str) {
    let fixtures = fixture("datasets/karpathy");
    let out = store.vlmdb(&[
        "ingest",
        "karpathy",
        &fixtures.join("dataset_shapes.json").display().to_string(),
        "--images",
        &fixtures.join("images").display().to_string(),
        "--dataset",
        dataset,
    ]);
    assert_success(&out);
}

#[test]
fn embed_search_and_the_cache_across_processes() {
    let store = TestStore::initialised();
    ingest_shapes(&store, "shapes");
    let clip = fixture("models/tiny-clip").display().to_string();

    let out = store.vlmdb(&["embed", "--model", &clip, "--images", "--quiet"]);
    assert_success(&out);
    let text = stdout(&out);
    // The summary adds up: every image computed, or the same bytes as another (issue 25 item 11).
    assert!(
        text.starts_with("embedded 30 images into")
            && text.contains("29 computed, 1 the same bytes as another; 0 already there")
            && !text.contains("model cache"),
        "{text}"
    );
    let images = store.csv("SELECT count(*) FROM images");
    let space = store.csv(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'emb_tiny_clip_%'",
    );
    let space = space
        .lines()
        .nth(1)
        .expect("a space table")
        .trim()
        .to_string();
    let vectors = store.csv(&format!(
        "SELECT count(*), count(DISTINCT item_id), min(kind), max(kind) FROM {space}"
    ));
    let n = images.lines().nth(1).expect("count");
    assert_eq!(
        vectors.lines().nth(1),
        Some(format!("{n},{n},image,image").as_str())
    );

    // The space records its model in the table's schema metadata.
    let metadata = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = vlmdb::store::Store::open(&store.path())
                .await
                .expect("store");
            let table = store.open_table(&space).await.expect("space table");
            table.schema().await.expect("schema").metadata().clone()
        });
    assert!(
        metadata["vlmdb.model_id"].ends_with("tiny-clip"),
        "{metadata:?}"
    );
    assert_eq!(metadata["vlmdb.dim"], "16");
    assert_eq!(metadata["vlmdb.normalization"], "l2");
    assert_eq!(metadata["vlmdb.family"], "clip");
    assert!(
        space.ends_with(&metadata["vlmdb.revision"][..7]),
        "{space} {metadata:?}"
    );

    // Running again embeds nothing (resume / idempotence).
    let out = store.vlmdb(&["embed", "--model", &clip, "--images", "--quiet"]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("embedded 0 image"),
        "{}",
        stdout(&out)
    );

    // Captions; then the same captions under another dataset name: a second process computes nothing.
    let out = store.vlmdb(&[
        "embed",
        "--model",
        &clip,
        "--captions",
        "--quiet",
        "--dataset",
        "shapes",
    ]);
    assert_success(&out);
    ingest_shapes(&store, "shapes_again");
    let out = store.vlmdb(&[
        "embed",
        "--model",
        &clip,
        "--captions",
        "--quiet",
        "--dataset",
        "shapes_again",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains(" 0 computed"), "{text}");
    assert!(!text.contains(" 0 from the model cache"), "{text}");

    // Vectors are unit length, with dataset and split copied in.
    let check = store.csv(&format!(
        "SELECT min(round(sqrt(dot_product(vector, vector)), 4)), max(round(sqrt(dot_product(vector, vector)), 4)), \
         count(*) FILTER (WHERE dataset IS NULL) FROM {space}"
    ));
    assert_eq!(check.lines().nth(1), Some("1.0,1.0,0"), "{check}");

    // search: k results, best first, the top image's own caption text finds a caption of that image.
    let out = store.vlmdb(&[
        "search",
        "--model",
        &clip,
        "--text",
        "a red square",
        "-k",
        "3",
        "--kind",
        "image",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("rank,item_id,kind,dataset,split,content,score"),
        "{}",
        stdout(&out)
    );
    let rows: Vec<String> = stdout(&out).lines().skip(1).map(str::to_string).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let scores: Vec<f32> = rows
        .iter()
        .map(|r| r.rsplit(',').next().expect("score").parse().expect("float"))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // An image query finds that very image first (cosine 1).
    let first = fixture("datasets/karpathy/images/scene_002.png");
    let out = store.vlmdb(&[
        "search",
        "--model",
        &clip,
        "--image",
        &first.display().to_string(),
        "-k",
        "1",
        "--kind",
        "image",
        "--dataset",
        "shapes",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    let row = stdout(&out).lines().nth(1).expect("a result").to_string();
    assert!(row.contains("scene_002"), "{row}");
    // Each result says what it is (issue 25 item 10): an image's path and size.
    assert!(row.contains("scene_002.png (64×48)"), "{row}");
    let score: f32 = row
        .rsplit(',')
        .next()
        .expect("score")
        .parse()
        .expect("float");
    assert!((score - 1.0).abs() < 1e-4, "{row}");
}

#[test]
fn model_errors_are_clear() {
    let store = TestStore::initialised();
    ingest_shapes(&store, "shapes");
    let out = store.vlmdb(&["embed", "--model", "no-such-model", "--captions"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-model") && err.contains("minilm"),
        "{err}"
    );

    let siglip = fixture("models/tiny-siglip").display().to_string();
    let out = store.vlmdb(&["search", "--model", &siglip, "--text", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vlmdb embed"));

    let out = store.vlmdb(&[
        "embed", "--model", &siglip, "--images", "--device", "cuda:3", "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cuda"));
}

#[test]
fn pair_texts_embed_into_the_space() {
    let store = TestStore::initialised();
    let out = store.vlmdb(&[
        "ingest",
        "cirr",
        &fixture("datasets/cirr").display().to_string(),
        "--dataset",
        "cirr",
    ]);
    assert_success(&out);
    let siglip = fixture("models/tiny-siglip").display().to_string();
    let out = store.vlmdb(&[
        "embed", "--model", &siglip, "--pairs", "--quiet", "--batch", "4",
    ]);
    assert_success(&out);
    let pairs = store.csv("SELECT count(*) FROM pairs");
    let space = store.csv(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'emb_tiny_siglip_%'",
    );
    let space = space
        .lines()
        .nth(1)
        .expect("a space table")
        .trim()
        .to_string();
    let embedded = store.csv(&format!(
        "SELECT count(*) FROM {space} WHERE kind = 'pair_text' AND split IS NOT NULL"
    ));
    assert_eq!(
        pairs.lines().nth(1),
        embedded.lines().nth(1),
        "{pairs} vs {embedded}"
    );
}

/// An OpenCLIP checkpoint without a tokenizer beside it (and no `hf_tokenizer_name`) takes OpenCLIP's default,
/// OpenAI's CLIP BPE, from the pinned `clip-vit-b32` repo: offline and not cached, it fails at once naming that repo
/// and file; once the cache holds it, the checkpoint embeds.
#[test]
fn openclip_without_a_tokenizer_uses_openais_from_the_hub() {
    let store = TestStore::initialised();
    ingest_shapes(&store, "shapes");
    let dir = store.dir.path().join("bare-openclip");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(
        fixture("models/tiny-openclip/open_clip_model.safetensors"),
        dir.join("open_clip_model.safetensors"),
    )
    .expect("weights");
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("models/tiny-openclip/open_clip_config.json"))
            .expect("config"),
    )
    .expect("json");
    config["model_cfg"]["text_cfg"]
        .as_object_mut()
        .expect("text_cfg")
        .remove("hf_tokenizer_name");
    std::fs::write(dir.join("open_clip_config.json"), config.to_string()).expect("write");
    let cache = store.dir.path().join("hf-cache");
    let model = dir.display().to_string();
    let embed = || {
        store
            .command(&["embed", "--model", &model, "--captions", "--quiet"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("run vlmdb")
    };
    let out = embed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "no tokenizer.json beside it",
        "clip-vit-b32",
        "openai/clip-vit-base-patch32",
        "tokenizer.json",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let snapshot = cache
        .join("models--openai--clip-vit-base-patch32")
        .join("snapshots")
        .join("3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(
            fixture(&format!("models/tiny-clip/{file}")),
            snapshot.join(file),
        )
        .expect("copy");
    }
    let out = embed();
    assert_success(&out);
    assert!(stdout(&out).contains("embedded"), "{}", stdout(&out));
    // The OpenCLIP and LAION-style fixtures through SQL, cached in model_cache like any model.
    for model in [
        "fixtures/models/tiny-openclip",
        "fixtures/models/tiny-clip-gelu",
    ] {
        let sql = format!(
            "SELECT array_length(embed_text('{model}', 'a red circle'), 1) AS t, \
                    array_length(embed_image('{model}', data), 1) AS i \
             FROM images ORDER BY image_id LIMIT 1"
        );
        assert_eq!(store.csv(&sql), "t,i\n16,16\n", "{model}");
        let cached = store.csv(&format!(
            "SELECT count(*) > 0 AS cached FROM model_cache WHERE strpos(model_key, '{}') > 0",
            model.rsplit('/').next().expect("name")
        ));
        assert_eq!(cached, "cached\ntrue\n", "{model}");
    }
}

/// A sharded checkpoint (`model.safetensors.index.json` naming its shards, as large hub repos ship them) loads and
/// embeds exactly as the single file does.
#[test]
fn a_sharded_checkpoint_loads_like_the_single_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fixture("models/tiny-clip");
    for entry in std::fs::read_dir(&source).expect("tiny-clip") {
        let entry = entry.expect("entry");
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("weights");
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", shard + 1);
        let subset: std::collections::HashMap<String, candle_core::Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&subset, dir.path().join(&file)).expect("shard");
        for n in part {
            weight_map.insert((*n).clone(), Value::String(file.clone()));
        }
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .expect("index");
    let sharded = load(dir.path());
    let single = load(&source);
    let texts = ["a red circle", "two blue squares"];
    assert_eq!(
        sharded.text_features(&texts, 2).expect("sharded"),
        single.text_features(&texts, 2).expect("single")
    );
}

/// Two repos of one name at one revision (`hf:vlmdb-test/tiny-clip` and `hf:vlmdb-test2/tiny-clip`) would name
/// the same space table: the second refuses to write into the first's, naming both (issue 25 item 18).
#[test]
fn a_space_of_another_model_is_never_written_into() {
    let store = TestStore::initialised();
    let cache = store.dir.path().join("hf-cache");
    let commit = hub_cache(&cache);
    // The same files again under another organisation, at the same commit.
    let other = cache.join("models--vlmdb-test2--tiny-clip");
    std::fs::create_dir_all(other.join("refs")).expect("refs");
    std::fs::write(other.join("refs").join("main"), commit).expect("ref");
    let snapshot = other.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    for entry in std::fs::read_dir(fixture("models/tiny-clip")).expect("tiny-clip") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).expect("copy");
    }
    ingest_shapes(&store, "shapes");
    let embed = |model: &str| {
        store
            .command(&["embed", "--model", model, "--captions", "--quiet"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("run vlmdb")
    };
    assert_success(&embed("hf:vlmdb-test/tiny-clip"));
    let out = embed("hf:vlmdb-test2/tiny-clip");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds the vectors of model vlmdb-test/tiny-clip")
            && err.contains("vlmdb-test2/tiny-clip"),
        "{err}"
    );
}

/// An OpenCLIP checkpoint whose weights are open_clip's pickle (`open_clip_pytorch_model.bin`, written by
/// `save_for_hf(..., safe_serialization=False)`) embeds exactly as its safetensors twin.
#[test]
fn an_openclip_pickle_loads_like_its_safetensors() {
    let safetensors = load(&fixture("models/tiny-openclip"));
    let pickle = load(&fixture("models/tiny-openclip-bin"));
    let texts = ["a red circle", "two blue squares next to a triangle"];
    assert_eq!(
        pickle.text_features(&texts, 2).expect("pickle"),
        safetensors.text_features(&texts, 2).expect("safetensors")
    );
    let image = std::fs::read(fixture("datasets/karpathy/images/scene_002.png")).expect("image");
    assert_eq!(
        pickle
            .image_features(&[image.as_slice()], 1)
            .expect("pickle"),
        safetensors
            .image_features(&[image.as_slice()], 1)
            .expect("safetensors")
    );
}
