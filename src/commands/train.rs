//! `vlmdb train`: one `train` run that fits projection heads over two frozen spaces of the store.
//!
//! Per round (seed S4: round 0 trains, round r ≥ 1 first mines hard negatives with round r − 1's best heads):
//! per epoch, the batches of [`epoch_batches`] → forward → loss → backward → clip → AdamW → clamp the logit
//! scale, every step's numbers buffered; at the epoch's end the validation split is projected into the run's space
//! and `sql/eval/retrieval.sql` scores it (per MRL width), then the step metrics are written, then the checkpoint
//! (and the best weights when validation R@1 improved) in one commit. A resumed run forgets metrics after its last
//! checkpoint and redoes the epoch from there, so interrupted + resumed equals uninterrupted.

use candle_core::{Device, Tensor};

use crate::commands::eval::{RETRIEVAL_SQL, space_model, space_params};
use crate::error::{Error, Result};
use crate::eval::space::head_table;
use crate::eval::space::resolve;
use crate::models::DeviceChoice;
use crate::progress::Progress;
use crate::rng::Rng;
use crate::sql::{Engine, FileRuns, ParamValue, Params};
use crate::store::Store;
use crate::store::columns::{floats, integers, strings};
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::TableSpec;
use crate::store::twins::{Inputs, finished_twin};
use crate::train::batches::{Negatives, Order, chunk_sizes, epoch_batches, group_sizes};
use crate::train::checkpoint::{self, TrainState};
use crate::train::composed::{
    ComposedBatch, ComposedNegatives, ComposedSet, composed_batches, load_composed,
    load_composed_negatives,
};
use crate::train::data::{PairedSet, load_clusters, load_negatives, load_pairs};
use crate::train::dead::DeadWatch;
use crate::train::epoch::{self, EpochLine, EpochLog, StepFacts, observe_r1};
use crate::train::fit::Fit;
use crate::train::head::{HeadKind, HeadShape, Heads};
use crate::train::optim::AdamW;
use crate::train::space::{head_space_spec, project_all};
use crate::train::step::{composed_step, train_step};

/// Everything a head-training run is: stored as the run's configuration, which is what `--resume` continues.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// The frozen image space (or the model that made it).
    pub image_model: String,
    /// The frozen text space (or the model that made it).
    pub text_model: String,
    pub head: HeadKind,
    /// Width of the shared space.
    pub dim: usize,
    /// Hidden width of MLP heads.
    pub hidden: usize,
    /// Matryoshka widths whose losses are summed (empty: the full width only).
    pub mrl: Vec<usize>,
    /// Rounds of mine → train → eval.
    pub rounds: usize,
    /// Negatives kept per query when a round mines.
    pub mine_k: usize,
    /// Train on composed queries (reference image + modification text → target image) of the dataset's pairs
    /// instead of caption–image pairs (seed 004).
    #[serde(default)]
    pub composed: bool,
    /// With `composed`: which of the training split's pairs (earlier configurations: every pair).
    #[serde(default, skip_serializing_if = "is_default")]
    pub augmented: crate::eval::augmented::Augmented,
    #[serde(flatten)]
    pub fit: Fit,
}

/// What a training run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    pub run_id: String,
    /// The space the trained heads project into.
    pub table: String,
    pub steps: u64,
    pub rounds: usize,
    pub final_loss: Option<f64>,
    /// Best validation R@1 (mean of image→text and text→image) of the last round.
    pub best_r1: Option<f64>,
    /// Why training was flagged dead, when it was.
    pub dead: Option<String>,
    /// The step a resumed run continued from.
    pub resumed_from: Option<u64>,
    /// Items projected into the space at the end.
    pub projected: usize,
    /// The run is an earlier one that did exactly this (nothing was written).
    pub reused: bool,
}

/// What a run trains on.
enum TrainData {
    Captions(PairedSet),
    Composed(ComposedSet),
}

impl TrainData {
    async fn load(
        store: &Store,
        options: &TrainOptions,
        image_table: &str,
        text_table: &str,
        split: &str,
    ) -> Result<TrainData> {
        Ok(if options.composed {
            // Validation scores the dataset's own pairs, as eval does.
            let augmented = if split == options.fit.split {
                options.augmented
            } else {
                crate::eval::augmented::Augmented::Exclude
            };
            TrainData::Composed(
                load_composed(
                    store,
                    image_table,
                    text_table,
                    &options.fit.dataset,
                    split,
                    augmented,
                )
                .await?,
            )
        } else {
            TrainData::Captions(
                load_pairs(store, image_table, text_table, &options.fit.dataset, split).await?,
            )
        })
    }

    fn dims(&self) -> (usize, usize) {
        match self {
            TrainData::Captions(set) => (set.images.dim, set.texts.dim),
            TrainData::Composed(set) => (set.images.dim, set.texts.dim),
        }
    }

    /// The retrieval direction whose R@1 picks the best epoch.
    fn scored(&self, direction: &str) -> bool {
        match self {
            TrainData::Captions(_) => direction != "composed",
            TrainData::Composed(_) => direction == "composed",
        }
    }
}

/// One batch of an epoch.
enum EpochBatch {
    Captions(Vec<crate::train::batches::Pair>),
    Composed(ComposedBatch),
}

/// The mined negatives a round's batches carry.
enum Mined {
    Captions(Negatives),
    Composed(ComposedNegatives),
}

/// The rows of `vectors` at `rows`, as an `n × dim` tensor.
fn gather(
    vectors: &crate::eval::space::Vectors,
    rows: impl Iterator<Item = usize>,
    device: &Device,
) -> Result<Tensor> {
    let mut data = Vec::new();
    let mut n = 0;
    for r in rows {
        data.extend_from_slice(vectors.row(r));
        n += 1;
    }
    Tensor::from_vec(data, (n, vectors.dim), device).map_err(Error::tensor("a training batch"))
}

/// Number of batches an epoch has (the same for every seed: shuffles reorder, they do not regroup).
pub(crate) fn batches_per_epoch(
    captions: &[Vec<usize>],
    order: &Order,
    batch: usize,
    one_caption_per_image: bool,
) -> usize {
    group_sizes(captions, order, one_caption_per_image)
        .into_iter()
        .map(|n| {
            chunk_sizes(n, batch.max(2))
                .into_iter()
                .filter(|&s| s >= 2)
                .count()
        })
        .sum()
}

fn validate(options: &TrainOptions) -> Result<()> {
    let usage = |m: String| Err(Error::Usage(m));
    options.fit.validate()?;
    if options.rounds == 0 {
        return usage("--rounds must be at least 1".into());
    }
    if options.dim == 0 || (options.head == HeadKind::Mlp && options.hidden == 0) {
        return usage("--dim (and --hidden for an MLP head) must be at least 1".into());
    }
    if let Some(&bad) = options.mrl.iter().find(|&&d| d == 0 || d > options.dim) {
        return Err(Error::DimensionMismatch {
            left: "--mrl".into(),
            left_dim: bad,
            right: "the head (--dim)".into(),
            right_dim: options.dim,
        });
    }
    if options.composed && options.fit.topical.is_some() {
        return usage(
            "--topical groups caption–image pairs; it does not apply to --composed".into(),
        );
    }
    if options.rounds > 1 && options.mine_k == 0 {
        return usage("--mine-k must be at least 1 when --rounds > 1".into());
    }
    Ok(())
}

/// What a resumable `train` run was configured to do.
#[derive(Debug, Clone)]
pub enum Resumable {
    Heads(TrainOptions),
    Finetune(crate::commands::finetune::FinetuneOptions),
}

/// The run to resume: the given id, or the newest `train` run that did not finish.
pub async fn run_to_resume(store: &Store, id: Option<&str>) -> Result<(String, Resumable)> {
    if !store.table_names().await?.iter().any(|t| t == "runs") {
        return Err(Error::Usage(
            "--resume: this store has no runs yet, so no train run to resume".into(),
        ));
    }
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    let sql = match id {
        Some(id) => {
            params.set("id", ParamValue::Text(id.to_string()))?;
            "SELECT run_id, config, status FROM runs WHERE run_id = $id AND kind = 'train'"
        }
        None => {
            "SELECT run_id, config, status FROM runs WHERE kind = 'train' AND status <> 'finished' \
             ORDER BY started_at DESC, run_id DESC LIMIT 1"
        }
    };
    let results = engine.execute_sql(sql, &params).await?;
    for batch in results.iter().flat_map(|r| &r.batches) {
        if batch.num_rows() == 0 {
            continue;
        }
        let run_id = strings(batch, "run_id")?.into_iter().next().flatten();
        let config = strings(batch, "config")?.into_iter().next().flatten();
        let status = strings(batch, "status")?.into_iter().next().flatten();
        if status.as_deref() == Some("finished") {
            return Err(Error::Usage(format!(
                "--resume {}: that run has already finished (its heads are head:{0})",
                run_id.unwrap_or_default()
            )));
        }
        if let (Some(run_id), Some(config)) = (run_id, config) {
            let mut value: serde_json::Value = serde_json::from_str(&config)?;
            if let Some(finetune) = value.get("finetune").filter(|v| v.is_object()) {
                let options = serde_json::from_value(finetune.clone())?;
                return Ok((run_id, Resumable::Finetune(options)));
            }
            if let Some(map) = value.as_object_mut() {
                for derived in ["notes", "space", "image_space", "text_space", "shape"] {
                    map.remove(derived);
                }
            }
            let options: TrainOptions = serde_json::from_value(value)?;
            return Ok((run_id, Resumable::Heads(options)));
        }
    }
    Err(match id {
        Some(id) => Error::UnknownRun {
            id: format!("{id} (no train run has this id)"),
        },
        None => Error::Usage("--resume: there is no unfinished train run to resume".into()),
    })
}

/// Train under a fresh `train` run.
pub async fn train(
    store: &Store,
    options: &TrainOptions,
    device: DeviceChoice,
    progress: bool,
    again: bool,
) -> Result<TrainSummary> {
    validate(options)?;
    if !again && let Some(summary) = finished(store, options).await? {
        return Ok(summary);
    }
    execute(store, options, Run::new_id(), false, device, progress).await
}

/// A finished training run with this configuration over the same versions of the same spaces and items, with
/// what it stored: its last step and loss.
async fn finished(store: &Store, options: &TrainOptions) -> Result<Option<TrainSummary>> {
    let image_table = resolve(store, &options.image_model).await?;
    let text_table = resolve(store, &options.text_model).await?;
    let items = if options.composed {
        "pairs"
    } else {
        "captions"
    };
    let mut inputs = Inputs::default();
    inputs
        .tables(store, &[&image_table, &text_table, items])
        .await?;
    for t in [&image_table, &text_table] {
        if let Some((id, revision)) = space_model(store, t).await? {
            inputs.models.insert(id, revision);
        }
    }
    let config = serde_json::to_value(options)?;
    let derived = ["space", "image_space", "text_space", "shape"];
    let Some(run_id) = finished_twin(store, "train", &config, &derived, &inputs).await? else {
        return Ok(None);
    };
    let last = crate::store::metrics::series(store, &run_id, "loss")
        .await?
        .last()
        .copied();
    Ok(Some(TrainSummary {
        table: head_table(&run_id),
        run_id,
        steps: last.map_or(0, |l| l.0.max(0) as u64),
        rounds: options.rounds,
        final_loss: last.map(|l| l.1),
        best_r1: None,
        dead: None,
        resumed_from: None,
        projected: 0,
        reused: true,
    }))
}

/// Continue head-training run `run_id` (configured as `options`) from its last checkpoint.
pub async fn resume(
    store: &Store,
    run_id: String,
    options: &TrainOptions,
    device: DeviceChoice,
    progress: bool,
) -> Result<TrainSummary> {
    validate(options)?;
    execute(store, options, run_id, true, device, progress).await
}

/// Drop the metrics a run wrote after `step` (those of an epoch its checkpoint does not cover).
pub(crate) async fn forget_after(store: &Store, run_id: &str, step: u64) -> Result<()> {
    crate::store::metrics::forget(store, run_id, &format!("step IS NULL OR step > {step}")).await
}

/// Score `split` of `dataset` in the space `table` with `sql/eval/retrieval.sql` at every width of `dims` (rows
/// to `metrics` under `run`, keyed by `step` and round), and return the R@1 rows.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn score_split(
    store: &Store,
    device: DeviceChoice,
    run: &mut Run,
    table: &str,
    dataset: &str,
    split: &str,
    dims: &[usize],
    step: u64,
    round: usize,
) -> Result<Vec<(String, i64, f64)>> {
    let mut runs = FileRuns::default();
    let run_id = run.id().to_string();
    for &d in dims {
        let mut params = space_params(&run_id, table, dataset, Some(split))?;
        params.set("dim", ParamValue::Int(d as i64))?;
        params.set("combiner", ParamValue::Text("sum".into()))?;
        params.set("step", ParamValue::Int(step as i64))?;
        params.set("iteration", ParamValue::Int(round as i64))?;
        runs.run(
            store,
            device,
            "sql/eval/retrieval.sql",
            RETRIEVAL_SQL,
            &params,
            run,
        )
        .await?;
    }
    r_at_1(&runs.finish())
}

/// The R@1 rows of an eval result: (direction, width, value).
fn r_at_1(result: &crate::sql::StatementResult) -> Result<Vec<(String, i64, f64)>> {
    let mut rows = Vec::new();
    for batch in &result.batches {
        let names = strings(batch, "name")?;
        let directions = strings(batch, "direction")?;
        let dims = integers(batch, "dim")?;
        let values = floats(batch, "value")?;
        for i in 0..batch.num_rows() {
            if let (Some("r_at_1"), Some(dim), Some(value)) =
                (names[i].as_deref(), dims[i], values[i])
            {
                rows.push((directions[i].clone().unwrap_or_default(), dim, value));
            }
        }
    }
    Ok(rows)
}

/// The mean R@1 at the full width over the directions `scored` keeps (image→text and text→image for captions,
/// composed for composed queries).
pub(crate) fn mean_r1(
    rows: &[(String, i64, f64)],
    dim: usize,
    scored: impl Fn(&str) -> bool,
) -> Option<f64> {
    let values: Vec<f64> = rows
        .iter()
        .filter(|r| r.1 == dim as i64 && scored(&r.0))
        .map(|r| r.2)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[allow(clippy::too_many_lines)]
async fn execute(
    store: &Store,
    options: &TrainOptions,
    run_id: String,
    resuming: bool,
    device_choice: DeviceChoice,
    progress: bool,
) -> Result<TrainSummary> {
    store.ensure_writable("train")?;
    let device = device_choice.device()?;
    let image_table = resolve(store, &options.image_model).await?;
    let text_table = resolve(store, &options.text_model).await?;
    let items = if options.composed {
        "pairs"
    } else {
        "captions"
    };
    // The versions about to be read.
    let mut read = Inputs::default();
    read.tables(store, &[&image_table, &text_table, items])
        .await?;
    let set = TrainData::load(
        store,
        options,
        &image_table,
        &text_table,
        &options.fit.split,
    )
    .await?;
    if let Some(val) = &options.fit.val_split {
        TrainData::load(store, options, &image_table, &text_table, val)
            .await
            .map_err(|e| Error::Context {
                context: "validation split (or train with --no-val)".into(),
                source: Box::new(e),
            })?;
    }
    let (image_dim, text_dim) = set.dims();
    let shape = HeadShape {
        kind: options.head,
        image_dim,
        text_dim,
        dim: options.dim,
        hidden: options.hidden,
    };
    store
        .ensure_tables(&["metrics", "artifacts", "hard_negatives"])
        .await?;
    let space = head_space_spec(&run_id, options.dim, &image_table, &text_table)?;
    let table = head_table(&run_id);

    let mut config = serde_json::to_value(options)?;
    if let Some(map) = config.as_object_mut() {
        map.insert("space".into(), serde_json::json!(table));
        map.insert("image_space".into(), serde_json::json!(image_table));
        map.insert("text_space".into(), serde_json::json!(text_table));
        map.insert("shape".into(), serde_json::to_value(shape)?);
    }
    let spec = RunSpec {
        kind: "train".into(),
        name: format!(
            "{} on {} ({} heads into {})",
            options.fit.loss.name(),
            options.fit.dataset,
            format!("{:?}", options.head).to_lowercase(),
            options.dim
        ),
        config,
        seed: Some(options.fit.seed as i64),
    };
    let mut run = Run::open_with_id(store, run_id.clone(), spec).await?;
    for t in [&image_table, &text_table] {
        if let Some((id, revision)) = space_model(store, t).await? {
            run.record_model(&id, &revision);
        }
    }
    for (table, version) in &read.tables {
        run.record_input(table, *version);
    }
    // Each epoch projects into the run's own space and scores it there.
    run.record_output(&space.name);

    let mut rng = Rng::new(options.fit.seed);
    let heads = Heads::init(shape, &mut rng, &device)?;
    let mut state = TrainState {
        step: 0,
        round: 0,
        epoch: 0,
        round_step: 0,
        rng: rng.state(),
        best_r1: None,
        since_best: 0,
        negatives_run: options.fit.negatives.clone(),
        dead_at: None,
    };
    let mut optimizer = AdamW::new(options.fit.adamw, &heads)?;
    let mut resumed_from = None;
    if resuming {
        match store.latest_artifact(&run_id, "checkpoint_").await? {
            Some((name, bytes)) => {
                let (tensors, saved) = checkpoint::decode(&bytes, &device)?;
                heads.load(&tensors)?;
                optimizer.load(&heads, &tensors, saved.round_step)?;
                forget_after(store, &run_id, saved.step).await?;
                resumed_from = Some(saved.step);
                run.note(
                    "resumed_from",
                    serde_json::json!({ "step": saved.step, "checkpoint": name }),
                );
                state = saved;
            }
            None => {
                forget_after(store, &run_id, 0).await?;
                run.note(
                    "resumed_from",
                    serde_json::json!({ "step": 0, "checkpoint": null }),
                );
            }
        }
    }
    let outcome = train_rounds(
        store,
        options,
        &mut run,
        &set,
        &heads,
        &mut optimizer,
        &mut state,
        &space,
        &image_table,
        &text_table,
        device_choice,
        &device,
        progress,
    )
    .await;
    let outcome = match outcome {
        Ok(final_loss) => {
            // The space holds the best heads' projection of every item of the dataset.
            if let Some((_, bytes)) = store.latest_artifact(&run_id, "best_").await? {
                let (tensors, _) = checkpoint::decode(&bytes, &device)?;
                heads.load(&tensors)?;
            }
            let projected = project_all(
                store,
                &heads,
                &space,
                &image_table,
                &text_table,
                Some(&options.fit.dataset),
                None,
                &run_id,
                &device,
            )
            .await;
            projected.map(|p| (final_loss, p))
        }
        Err(e) => Err(e),
    };
    if let Some(step) = state.dead_at {
        run.note("dead_training", serde_json::json!({ "step": step }));
    }
    let dead = state.dead_at.map(|s| format!("flagged at step {s}"));
    let (final_loss, projected) = run.close(store, outcome).await?;
    Ok(TrainSummary {
        run_id,
        table,
        steps: state.step,
        rounds: options.rounds,
        final_loss,
        best_r1: state.best_r1,
        dead,
        resumed_from,
        projected,
        reused: false,
    })
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn train_rounds(
    store: &Store,
    options: &TrainOptions,
    run: &mut Run,
    set: &TrainData,
    heads: &Heads,
    optimizer: &mut AdamW,
    state: &mut TrainState,
    space: &TableSpec,
    image_table: &str,
    text_table: &str,
    device_choice: DeviceChoice,
    device: &Device,
    progress: bool,
) -> Result<Option<f64>> {
    let run_id = run.id().to_string();
    let order = match (&options.fit.topical, set) {
        (Some(cluster_run), TrainData::Captions(set)) => {
            let clusters = load_clusters(store, cluster_run, &set.rows()).await?;
            run.record_current(store, "clusters").await?;
            Order::Topical(clusters)
        }
        _ => Order::Random,
    };
    let per_epoch = match set {
        TrainData::Captions(set) => batches_per_epoch(
            &set.captions,
            &order,
            options.fit.batch,
            options.fit.one_caption_per_image,
        ),
        TrainData::Composed(set) => chunk_sizes(set.pairs.len(), options.fit.batch.max(2))
            .into_iter()
            .filter(|&s| s >= 2)
            .count(),
    };
    let schedule = options.fit.schedule(per_epoch);
    let total = schedule.total;
    let bar = progress.then(|| Progress::bar_only((total * options.rounds) as u64, "train"));
    let (started, first_step) = (std::time::Instant::now(), state.step);
    if let Some(bar) = &bar {
        bar.inc(state.step);
    }
    let mut rng = Rng::from_state(state.rng);
    let mut watch = DeadWatch::new(options.fit.dead_steps);
    let mut final_loss = None;
    let eval_dims: Vec<usize> = std::iter::once(options.dim)
        .chain(options.mrl.iter().copied().filter(|&d| d != options.dim))
        .collect();
    while state.round < options.rounds {
        let round = state.round;
        if state.epoch == 0 || state.epoch >= options.fit.epochs {
            if round > 0 {
                // The round starts from the previous round's best heads.
                if let Some((_, bytes)) = store.latest_artifact(&run_id, "best_").await? {
                    let (tensors, _) = checkpoint::decode(&bytes, device)?;
                    heads.load(&tensors)?;
                }
                // Mine with the previous round's best heads, on the training split, in the run's space.
                project_all(
                    store,
                    heads,
                    space,
                    image_table,
                    text_table,
                    Some(&options.fit.dataset),
                    Some(&options.fit.split),
                    &run_id,
                    device,
                )
                .await?;
                let mined = crate::commands::mine::mine(
                    store,
                    &crate::commands::mine::MineOptions {
                        model: space.name.clone(),
                        dataset: options.fit.dataset.clone(),
                        split: Some(options.fit.split.clone()),
                        k: options.mine_k,
                        depth: None,
                        iteration: round as i64,
                        directions: if options.composed {
                            vec!["composed".into()]
                        } else {
                            vec!["t2i".into(), "i2t".into()]
                        },
                        margin: None,
                        max_ratio: None,
                        max_positive_similarity: None,
                        device: device_choice,
                        again: true,
                        augmented: options.augmented,
                    },
                )
                .await?;
                state.negatives_run = Some(mined.run_id);
            }
            *optimizer = AdamW::new(options.fit.adamw, heads)?;
            state.epoch = 0;
            state.round_step = 0;
            state.best_r1 = None;
            state.since_best = 0;
        }
        if state.negatives_run.is_some() {
            run.record_current(store, "hard_negatives").await?;
        }
        let negatives: Option<Mined> = match (&state.negatives_run, set) {
            (Some(mine_run), TrainData::Captions(set)) => Some(Mined::Captions(
                load_negatives(
                    store,
                    mine_run,
                    &set.rows(),
                    options.fit.negatives_per_query,
                )
                .await?,
            )),
            (Some(mine_run), TrainData::Composed(set)) => Some(Mined::Composed(
                load_composed_negatives(store, mine_run, set, options.fit.negatives_per_query)
                    .await?,
            )),
            (None, _) => None,
        };
        while state.epoch < options.fit.epochs {
            let batches: Vec<EpochBatch> = match set {
                TrainData::Captions(set) => {
                    let negatives = match &negatives {
                        Some(Mined::Captions(n)) => Some(n),
                        _ => None,
                    };
                    epoch_batches(
                        &set.captions,
                        &order,
                        negatives,
                        options.fit.batch,
                        options.fit.one_caption_per_image,
                        &mut rng,
                    )
                    .into_iter()
                    .map(EpochBatch::Captions)
                    .collect()
                }
                TrainData::Composed(set) => {
                    let negatives = match &negatives {
                        Some(Mined::Composed(n)) => Some(n),
                        _ => None,
                    };
                    composed_batches(
                        set.pairs.len(),
                        |p| set.pairs[p].2,
                        negatives,
                        options.fit.batch,
                        &mut rng,
                    )
                    .into_iter()
                    .map(EpochBatch::Composed)
                    .collect()
                }
            };
            let mut log = EpochLog::default();
            let epoch_started = std::time::Instant::now();
            for batch in &batches {
                let lr = schedule.lr(state.round_step as usize);
                let (done, batch_len) = match (batch, set) {
                    (EpochBatch::Captions(batch), TrainData::Captions(set)) => {
                        let x_img = gather(&set.images, batch.iter().map(|p| p.0), device)?;
                        let x_txt = gather(&set.texts, batch.iter().map(|p| p.1), device)?;
                        let done = train_step(
                            heads,
                            optimizer,
                            &options.fit.loss,
                            &options.mrl,
                            &x_img,
                            &x_txt,
                            lr,
                            options.fit.max_grad_norm,
                        )?;
                        (done, batch.len())
                    }
                    (EpochBatch::Composed(batch), TrainData::Composed(set)) => {
                        let pairs = || batch.pairs.iter().map(|&p| set.pairs[p]);
                        let x_ref = gather(&set.images, pairs().map(|p| p.0), device)?;
                        let x_text = gather(&set.texts, pairs().map(|p| p.1), device)?;
                        let x_targets = gather(
                            &set.images,
                            pairs().map(|p| p.2).chain(batch.negatives.iter().copied()),
                            device,
                        )?;
                        let done = composed_step(
                            heads,
                            optimizer,
                            &options.mrl,
                            &x_ref,
                            &x_text,
                            &x_targets,
                            lr,
                            options.fit.max_grad_norm,
                        )?;
                        (done, batch.pairs.len() + batch.negatives.len())
                    }
                    _ => {
                        return Err(Error::Usage(
                            "internal: a batch of another kind than the run's data".into(),
                        ));
                    }
                };
                let facts = StepFacts {
                    scale: heads.scale()?,
                    lr,
                    batch_size: batch_len,
                    round,
                };
                log.step(state, &mut watch, &done, facts, &run_id, bar.as_ref())?;
                final_loss = log.last_loss;
            }
            state.epoch += 1;
            log.metrics
                .push("epoch", state.epoch as f64, state.step, round);
            let mut r1_rows = Vec::new();
            let new_best = if let Some(val) = &options.fit.val_split {
                project_all(
                    store,
                    heads,
                    space,
                    image_table,
                    text_table,
                    Some(&options.fit.dataset),
                    Some(val),
                    &run_id,
                    device,
                )
                .await?;
                r1_rows = score_split(
                    store,
                    device_choice,
                    run,
                    &space.name,
                    &options.fit.dataset,
                    val,
                    &eval_dims,
                    state.step,
                    round,
                )
                .await?;
                observe_r1(state, mean_r1(&r1_rows, options.dim, |d| set.scored(d)))
            } else {
                true
            };
            if let Some(bar) = &bar {
                let done = (state.step - first_step) as f64;
                let left = (total * options.rounds) as f64 - state.step as f64;
                bar.line(
                    &EpochLine {
                        run_id: &run_id,
                        round,
                        rounds: options.rounds,
                        epoch: state.epoch,
                        epochs: options.fit.epochs,
                        loss: log.mean_loss(),
                        lr: log.last_lr,
                        r1: &r1_rows,
                        epoch_seconds: epoch_started.elapsed().as_secs_f64(),
                        eta_seconds: started.elapsed().as_secs_f64() / done.max(1.0)
                            * left.max(0.0),
                    }
                    .to_string(),
                );
            }
            let stop_early = options.fit.patience.is_some_and(|p| state.since_best >= p)
                && state.epoch < options.fit.epochs;
            if stop_early {
                log.metrics
                    .push("early_stop", state.epoch as f64, state.step, round);
                state.epoch = options.fit.epochs;
            }
            let round_done = state.epoch >= options.fit.epochs;
            if round_done {
                state.round += 1;
            }
            state.rng = rng.state();
            log.metrics.write(store, &run_id).await?;
            epoch::save(
                store,
                &run_id,
                heads.tensors()?,
                optimizer.tensors(heads)?,
                state,
                new_best,
            )
            .await?;
            if round_done {
                break;
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    Ok(final_loss)
}

fn is_default(augmented: &crate::eval::augmented::Augmented) -> bool {
    *augmented == crate::eval::augmented::Augmented::default()
}
