//! Command-line arguments (clap). DESIGN §5 is the contract for names.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::format::Format;
use super::report::ReportFormat;
use crate::cluster::kmeans::KMeansOptions;
use crate::cluster::tsne::TsneOptions;

/// vlmdb: an embedded experiment database for vision-language research.
#[derive(Debug, Parser)]
#[command(name = "vlmdb", version, about)]
pub struct Cli {
    /// The store: a directory (created if missing), or an object-store prefix, s3://bucket/prefix (also gs://,
    /// az://), with credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
    /// AWS_REGION (or the GCS/Azure equivalents). Default: ./vlmdb_store
    #[arg(long, env = "VLMDB_DB", global = true, value_name = "DIR|URI")]
    pub db: Option<PathBuf>,

    /// Where models run: auto (a CUDA GPU when built with the cuda feature and present, else CPU), cpu, cuda[:N].
    #[arg(
        long,
        env = "VLMDB_DEVICE",
        global = true,
        default_value = "auto",
        value_name = "DEVICE"
    )]
    pub device: String,

    /// The memory SQL operators (sorts, joins, aggregations) may hold, e.g. 4G or 512M: beyond it a query spills to
    /// disk where it can, or fails naming the limit. Default: three quarters of the machine's memory.
    #[arg(long, env = "VLMDB_MEMORY_LIMIT", global = true, value_name = "SIZE")]
    pub memory_limit: Option<String>,

    /// Refuse every SQL statement that reads or writes a file (`COPY … TO`, `CREATE EXTERNAL TABLE`): for SQL you
    /// did not write yourself. Files inside the store are refused either way.
    #[arg(long, env = "VLMDB_NO_EXTERNAL_ACCESS", global = true)]
    pub no_external_access: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and its tables (those already there are kept).
    Init,
    /// Run SQL statements and print their results.
    Sql(SqlArgs),
    /// Run an experiment file (SQL) as a run: bound parameters and $run_id, results printed, numbers stored in
    /// `metrics` when the file's header has a `-- @metrics` line.
    Run(RunFileArgs),
    /// Interactive SQL shell (also reads statements from piped stdin).
    Shell(ShellArgs),
    /// Ingest a dataset: images, captions and composed-retrieval pairs.
    Ingest(IngestArgs),
    /// Write a dataset's captions (and its images), or any table, out as JSONL, Parquet or CSV; or a run's
    /// artifact to a file.
    Export(ExportArgs),
    /// Embed a dataset's images, captions or pair texts into the model's space table emb_<space>.
    Embed(EmbedArgs),
    /// Caption a dataset's images with a BLIP model into `captions` (source = the model id), under a run.
    Caption(CaptionArgs),
    /// Write new data from the store's own with a model: `augment pairs` describes each composed pair's target.
    Augment(AugmentArgs),
    /// The caption→image→caption loop: caption each image, generate the next image from the caption, for N hops,
    /// with lineage and per-hop similarities in the store (plus baselines as linked runs).
    Loop(Box<LoopArgs>),
    /// Exact cosine top-k over a model's space for a text or an image.
    Search(SearchArgs),
    /// Bring data computed elsewhere into the store.
    Import(ImportArgs),
    /// Retrieval metrics (R@K, median/mean rank, mAP@10, CIRR subsets) of a space on a dataset, into `metrics`.
    Eval(EvalArgs),
    /// k-means over a space's items into `clusters` and `centroids` (one run; inertia per step in `metrics`).
    Cluster(ClusterArgs),
    /// Build Lance's vector index on a space and print its measured recall@10.
    Index(IndexArgs),
    /// Mine hard negatives (one round = one iteration) into `hard_negatives`.
    Mine(MineArgs),
    /// Train projection heads over two frozen spaces (InfoNCE or SANW losses, MRL, topical or hard-negative
    /// batches, rounds); the heads become the space head:<run_id>. With --finetune, a whole CLIP.
    #[command(
        override_usage = "vlmdb train [OPTIONS] --dataset <DATASET> --loss <LOSS> --image-model <MODEL> --text-model <MODEL>\n       \
                                vlmdb train [OPTIONS] --dataset <DATASET> --loss <LOSS> --finetune <MODEL>\n       \
                                vlmdb train [OPTIONS] --resume [RUN]"
    )]
    Train(Box<TrainArgs>),
    /// Draw a plot to a PNG (also stored in `artifacts` under a `plot` run): metric curves, a PCA/t-SNE scatter
    /// coloured by cluster, positive vs negative similarity distributions, or a contact sheet of clusters.
    Plot(PlotArgs),
    /// List runs, or show one.
    Runs(RunsArgs),
    /// Read every table at every version and report what is damaged (exit 1 if anything is).
    Check,
    /// Speed figures beside the peer an issue names (run on an optimised build).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text, global = true)]
    pub report: ReportFormat,
    #[command(subcommand)]
    pub what: PlotWhat,
}

/// Where every plot goes and which rows it draws.
#[derive(Debug, Args)]
pub struct PlotFile {
    /// The PNG file to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Draw the rows of this SQL file instead of the plot's own under sql/plot/ (same parameters, same columns).
    #[arg(long, value_name = "FILE.sql")]
    pub query: Option<PathBuf>,
    /// Bind $NAME in a --query file to VALUE (besides the plot's own parameters).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// The axes of metric curves.
#[derive(Debug, Args)]
pub struct CurveAxes {
    /// metric: one panel per metric, sharing the x axis; single: every series on one y axis.
    #[arg(long, default_value = "metric", value_name = "metric|single")]
    pub panels: String,
    /// A logarithmic y axis (every value must be above 0).
    #[arg(long)]
    pub log_y: bool,
}

impl CurveAxes {
    /// True for `--panels single`.
    pub fn single_axis(&self) -> crate::error::Result<bool> {
        match self.panels.as_str() {
            "metric" => Ok(false),
            "single" => Ok(true),
            other => Err(crate::error::Error::Usage(format!(
                "--panels '{other}': expected metric or single"
            ))),
        }
    }
}

/// The size of a chart (sheets take theirs from their cells).
#[derive(Debug, Args)]
pub struct ChartSize {
    /// Chart width in pixels.
    #[arg(long, default_value_t = 900)]
    pub width: u32,
    /// Chart height in pixels.
    #[arg(long, default_value_t = 600)]
    pub height: u32,
}

#[derive(Debug, Subcommand)]
pub enum PlotWhat {
    /// Metric curves of one or more runs over steps or iterations (sql/plot/metrics.sql).
    Metrics {
        #[command(flatten)]
        file: PlotFile,
        #[command(flatten)]
        size: ChartSize,
        #[command(flatten)]
        axes: CurveAxes,
        /// A run whose metrics are drawn (repeat to compare runs).
        #[arg(long = "run", required = true)]
        runs: Vec<String>,
        /// Only these metric names (repeatable or comma-separated; default: all).
        #[arg(long = "metric", value_delimiter = ',')]
        metrics: Vec<String>,
        /// The x axis: step or iteration (default: the step where there is one, else the iteration).
        #[arg(long)]
        x: Option<String>,
    },
    /// Similarity decay per hop of a `vlmdb loop` run and its baselines, one curve per run (sql/loop/drift.sql).
    Drift {
        #[command(flatten)]
        file: PlotFile,
        #[command(flatten)]
        size: ChartSize,
        #[command(flatten)]
        axes: CurveAxes,
        /// The loop run (its baselines are found through their `baseline_of`).
        #[arg(long)]
        run: String,
        /// The similarities drawn (repeatable or comma-separated; default: image_sim_to_hop0).
        #[arg(long = "metric", value_delimiter = ',')]
        metrics: Vec<String>,
    },
    /// A 2-D PCA or t-SNE view of a space's items, coloured by the clusters of a clustering run
    /// (sql/plot/pca_scatter.sql, sql/plot/tsne_scatter.sql).
    Scatter {
        #[command(flatten)]
        file: PlotFile,
        #[command(flatten)]
        size: ChartSize,
        /// The space: the model that made it (alias, hf: id, directory), or its name (imported spaces).
        #[arg(long)]
        model: String,
        /// Only items of this dataset (default: every item of the kind; with --run, the run's items).
        #[arg(long)]
        dataset: Option<String>,
        /// Only items of this split.
        #[arg(long)]
        split: Option<String>,
        /// Only the items a `vlmdb loop` run wrote (its hop images and captions, and the images it started from).
        #[arg(long)]
        run: Option<String>,
        /// Only the items of this loop hop (0: the images the loop started from and their captions).
        #[arg(long)]
        iteration: Option<i32>,
        /// The kind of item drawn: image, caption, pair_text.
        #[arg(long, default_value = "image")]
        kind: String,
        /// pca or tsne.
        #[arg(long, default_value = "pca")]
        method: String,
        /// The `vlmdb cluster` run whose clusters colour the points (default: one colour).
        #[arg(long)]
        clusters: Option<String>,
        /// t-SNE perplexity (default: 30, or (n - 1) / 3 on sets of fewer than 91 items).
        #[arg(long)]
        perplexity: Option<f64>,
        /// t-SNE gradient steps.
        #[arg(long, default_value_t = TsneOptions::default().iterations)]
        tsne_iterations: usize,
        /// Seed of the t-SNE layout.
        #[arg(long, default_value_t = TsneOptions::default().seed)]
        seed: u64,
    },
    /// Similarity distributions (histogram + KDE) of positive vs negative caption–image pairs
    /// (sql/plot/similarity.sql).
    Similarity {
        #[command(flatten)]
        file: PlotFile,
        #[command(flatten)]
        size: ChartSize,
        #[command(flatten)]
        on: SpaceOnDataset,
        /// Negative images per caption.
        #[arg(long, default_value_t = 5)]
        negatives: usize,
        /// Seed of the choice of negatives.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Histogram bins.
        #[arg(long, default_value_t = 40)]
        bins: usize,
    },
    /// The lineage sheet of a `vlmdb loop` run: one row per item, hop 0 … N images left to right, each hop's
    /// caption under its image (sql/plot/lineage.sql).
    Lineage {
        #[command(flatten)]
        file: PlotFile,
        /// The loop run (or one of its baselines).
        #[arg(long)]
        run: String,
        /// How many items (rows), the first by id.
        #[arg(long, default_value_t = 8)]
        items: usize,
        /// Thumbnail size in pixels.
        #[arg(long, default_value_t = 128)]
        thumb: u32,
        /// Caption lines under each image (longer captions end in an ellipsis).
        #[arg(long, default_value_t = 5)]
        lines: u32,
    },
    /// A grid of each cluster's most typical images, one row per cluster (sql/plot/contact_sheet.sql).
    ContactSheet {
        #[command(flatten)]
        file: PlotFile,
        /// The `vlmdb cluster` run (default: the latest finished one).
        #[arg(long)]
        clusters: Option<String>,
        /// Images per cluster (those closest to the centroid).
        #[arg(long, default_value_t = 8)]
        per_cluster: usize,
        /// Thumbnail size in pixels.
        #[arg(long, default_value_t = 96)]
        thumb: u32,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
    /// Runs per timing, vlmdb's and the peer's alike; the median is reported.
    #[arg(long, global = true, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Ingest N small JPEGs, beside a Python peer (PIL decode + pylance write_dataset).
    Ingest {
        /// How many images.
        #[arg(long, default_value_t = 10_000)]
        images: usize,
        /// The Python that runs the peer (needs pillow and pylance).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
    },
    /// Texts/s of a sentence-transformers model and images/s of a CLIP image tower, beside PyTorch.
    Embed(BenchEmbedArgs),
    /// Retrieval eval (ranks + R@K both ways) on random unit vectors, beside the CLIP_benchmark formula in PyTorch.
    Eval {
        /// Images; each has --per-image captions.
        #[arg(long, default_value_t = 5_000)]
        images: usize,
        /// Captions per image.
        #[arg(long, default_value_t = 5)]
        per_image: usize,
        /// Vector width.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// The Python that runs the peer (needs numpy and torch).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
    },
    /// k-means beside scikit-learn and faiss (every point used), same vectors and threads.
    Kmeans {
        /// Points.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Vector width.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Clusters.
        #[arg(short = 'k', long = "k", default_value_t = 100)]
        k: usize,
        /// Lloyd iterations of every side.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Seed of every side (vlmdb's RNG, scikit-learn's random_state, faiss's seed), to see the spread of
        /// inertia between starts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The Python that runs the peers (needs numpy, scikit-learn, faiss-cpu).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peers.
        #[arg(long)]
        no_peer: bool,
        /// Skip scikit-learn (slow), keep faiss.
        #[arg(long)]
        no_sklearn: bool,
    },
    /// Training steps/s (two linear heads, InfoNCE, AdamW) beside the same head and loss in PyTorch.
    Train {
        /// Pairs of random unit vectors.
        #[arg(long, default_value_t = 8192)]
        n: usize,
        /// Width of the input spaces and of the shared space.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Pairs per training step.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Timed steps (after 3 untimed ones).
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// The Python that runs the peer (needs numpy and torch).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
    },
    /// CLIP fine-tuning steps/s and peak memory (both towers, AdamW) beside transformers + PyTorch.
    Finetune {
        /// The CLIP (a local Hugging Face directory; tests/peers/write_clip_b32.py writes the ViT-B/32 one).
        #[arg(long, default_value = "fixtures/models/tiny-clip")]
        model: String,
        /// infonce, sanw-debias or sanw-bandpass (CLIPSE's defaults).
        #[arg(long, default_value = "infonce")]
        loss: String,
        /// Image–caption pairs per step.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Timed steps (after 2 untimed ones).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// The Python that runs the peer (needs numpy, torch and transformers).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
    },
    /// Exact kNN beside faiss IndexFlatIP, and hnsw_rs beside faiss HNSW32 at equal recall.
    Knn {
        /// Queries and corpus items of the exact search.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Corpus items of the HNSW comparison (1,000 queries).
        #[arg(long, default_value_t = 20_000)]
        hnsw_n: usize,
        /// Vector width.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Neighbours per query.
        #[arg(short = 'k', long = "k", default_value_t = 10)]
        k: usize,
        /// The Python that runs the peer (needs numpy and faiss-cpu).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the peer.
        #[arg(long)]
        no_peer: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// The text model (a sentence-transformers directory, alias or hf: id).
    #[arg(long, default_value = "fixtures/models/all-MiniLM-L6-v2")]
    pub text_model: String,
    /// The CLIP model whose image tower is timed (omit to skip).
    #[arg(long)]
    pub image_model: Option<String>,
    /// How many captions.
    #[arg(long, default_value_t = 10_000)]
    pub texts: usize,
    /// How many images.
    #[arg(long, default_value_t = 256)]
    pub images: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The Python that runs the peer (needs torch, transformers, sentence-transformers).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the peer.
    #[arg(long)]
    pub no_peer: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("items").required(true).args(["images", "captions", "pairs"])))]
pub struct EmbedArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The model: alias (minilm, clip-vit-b32, clip-vit-l14, laion-vit-b32, laion-vit-h14, siglip-b16), hf:org/repo[@rev], or a directory.
    #[arg(long)]
    pub model: String,
    /// Embed images (images.data).
    #[arg(long)]
    pub images: bool,
    /// Embed captions (captions.text).
    #[arg(long)]
    pub captions: bool,
    /// Embed the modification texts of composed-retrieval pairs (pairs.text).
    #[arg(long)]
    pub pairs: bool,
    /// Only this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = crate::models::DEFAULT_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The captioning model, BLIP or LLaVA-1.5: hf:org/repo[@rev] (e.g. hf:Salesforce/blip-image-captioning-base,
    /// hf:llava-hf/llava-1.5-7b-hf) or a directory.
    #[arg(long)]
    pub model: String,
    /// The dataset whose images are captioned.
    #[arg(long)]
    pub dataset: String,
    /// BLIP: a conditional prefix the captions continue, e.g. "an engraving depicting"; LLaVA: the instruction
    /// (default "Describe the image in one sentence.").
    #[arg(long)]
    pub prompt: Option<String>,
    /// At most this many new tokens per caption (default: the model's generation_config.json, else 20).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Only this split.
    #[arg(long)]
    pub split: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct AugmentArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    #[command(subcommand)]
    pub what: AugmentWhat,
}

#[derive(Debug, Subcommand)]
pub enum AugmentWhat {
    /// Augmented CIR pairs: a captioner describes each pair's target image (once per --prompt); each description
    /// is a new pair (same reference, target and candidates; source = captioner and prompt, parent_id = the pair).
    /// Running it again replaces them.
    Pairs {
        /// The captioner (BLIP or LLaVA-1.5): hf:org/repo[@rev] or a directory.
        #[arg(long)]
        captioner: String,
        /// The dataset whose pairs are augmented.
        #[arg(long)]
        dataset: String,
        /// Only this split.
        #[arg(long)]
        split: Option<String>,
        /// A prompt (BLIP: a prefix; LLaVA: the instruction); repeat for several augmented pairs per pair
        /// (default: one unprompted description).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// At most this many new tokens per description.
        #[arg(long)]
        max_new_tokens: Option<usize>,
    },
}

#[derive(Debug, Args)]
pub struct LoopArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The captioner (BLIP or LLaVA-1.5): hf:org/repo[@rev] or a directory.
    #[arg(long)]
    pub captioner: String,
    /// The generator (a Stable Diffusion 1.x, 2.x, SDXL or SDXL-Turbo pipeline): hf:org/repo[@rev] or a diffusers
    /// directory.
    #[arg(long)]
    pub generator: String,
    /// The dataset whose images are hop 0.
    #[arg(long)]
    pub dataset: String,
    /// Only images of this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Items: the dataset's first N captioned images by image_id.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Hops after hop 0 (generated images per item).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Seed of every generation (and of the random-captions baseline).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also run the baselines (generator-only, random captions, fixed caption) as runs linked to the loop run.
    #[arg(long)]
    pub baselines: bool,
    /// The model that measures image–image and image–caption similarity (needs image and text towers).
    #[arg(long, default_value = "clip-vit-b32")]
    pub image_space: String,
    /// The model that measures caption–caption similarity.
    #[arg(long, default_value = "minilm")]
    pub text_space: String,
    /// Denoising steps per generated image.
    #[arg(long, default_value_t = crate::models::diffusion::DEFAULT_STEPS)]
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1 turns guidance off).
    #[arg(long, default_value_t = crate::models::diffusion::DEFAULT_GUIDANCE)]
    pub guidance: f64,
    /// The captioner's prompt (BLIP: a conditional prefix; LLaVA: the instruction).
    #[arg(long)]
    pub prompt: Option<String>,
    /// At most this many new tokens per caption (default: the captioner's own).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// The fixed-caption baseline's caption (default: the first item's original caption).
    #[arg(long)]
    pub fixed_caption: Option<String>,
    /// What the generator's guidance steers away from (diffusers' negative_prompt).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Run again even when a finished run of the same configuration exists (a deliberate replicate; without it,
    /// that run is reported and nothing is written).
    #[arg(long)]
    pub again: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text, global = true)]
    pub report: ReportFormat,
    #[command(subcommand)]
    pub what: ImportWhat,
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Vectors from a Parquet file (item_id, kind, vector) into the space emb_<SPACE>.
    Embeddings {
        /// The Parquet file: item_id (a stored image/caption/pair id), kind (image, caption, pair_text),
        /// vector (list of floats).
        file: PathBuf,
        /// The space name, a slug of [a-z0-9_] (the table is emb_<SPACE>).
        #[arg(long)]
        space: String,
        /// The model the vectors came from (recorded in the space's metadata).
        #[arg(long)]
        model_id: Option<String>,
    },
    /// A training log (per-epoch CSV, metrics.json) into `metrics` under a new run.
    Metrics {
        /// The log file (its format from the extension, .csv or .json, unless --csv or --json says).
        file: PathBuf,
        /// The file is CSV with a header row.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// The file is JSON: an array of rows, or an object of series / values.
        #[arg(long)]
        json: bool,
        /// The name of the new run (e.g. the experiment the log came from).
        #[arg(long)]
        run_name: String,
    },
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The space: the model that made it (alias, hf: id, directory), or its name (imported spaces).
    #[arg(long)]
    pub model: String,
    /// Only items of this dataset (default: every item of the kind; with --run, the run's items).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only items of this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Only the items a `vlmdb loop` run wrote (its hop images and captions, and the dataset images it started
    /// from); with it, --iteration also selects the hop clustered.
    #[arg(long)]
    pub run: Option<String>,
    /// Run again even when a finished run did exactly this over the same space (a deliberate replicate); without
    /// it that run is reported and nothing is written.
    #[arg(long)]
    pub again: bool,
    /// The kind of item clustered: image, caption, pair_text, text.
    #[arg(long, default_value = "image")]
    pub kind: String,
    /// Number of clusters; several (`-k 5,10,15`) make one run each, linked by `k_sweep` in their configuration.
    #[arg(short = 'k', long = "k", value_delimiter = ',', required = true)]
    pub k: Vec<usize>,
    /// Seed of the run's RNG (k-means++ seeding): the same seed gives the same clusters.
    #[arg(long, default_value_t = KMeansOptions::default().seed)]
    pub seed: u64,
    /// Most Lloyd iterations.
    #[arg(long, default_value_t = KMeansOptions::default().iterations)]
    pub iterations: usize,
    /// k-means++ starts; the lowest inertia is kept.
    #[arg(long, default_value_t = KMeansOptions::default().inits)]
    pub inits: usize,
    /// l2 (squared Euclidean, as scikit-learn) or cosine (spherical k-means).
    #[arg(long, default_value = "l2")]
    pub metric: String,
    /// The tracking iteration recorded on every row (clusters of iteration i are compared with i - 1); with --run,
    /// also the loop hop whose items are clustered (0: the dataset images the loop started from).
    #[arg(long, default_value_t = 0)]
    pub iteration: i32,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The space: the model that made it, or its name.
    #[arg(long)]
    pub model: String,
    /// The index type.
    #[arg(long, value_enum, default_value = "ivf_pq")]
    pub kind: crate::commands::index::IndexKind,
}

/// The space a retrieval command works on, and the dataset that is its ground truth.
#[derive(Debug, Args)]
pub struct SpaceOnDataset {
    /// The space: the model that made it (alias, hf: id, directory), or its name (imported spaces).
    #[arg(long)]
    pub model: String,
    /// The dataset whose captions / pairs are the ground truth.
    #[arg(long)]
    pub dataset: String,
    /// The split (default: the whole dataset as one pool).
    #[arg(long)]
    pub split: Option<String>,
}

#[derive(Debug, Args)]
pub struct MineArgs {
    #[command(flatten)]
    pub on: SpaceOnDataset,
    /// Run again even when a finished run did exactly this over the same inputs (a deliberate replicate);
    /// without it that run is reported and nothing is written.
    #[arg(long)]
    pub again: bool,
    /// Negatives kept per query.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    pub k: usize,
    /// The mining round, recorded on every row.
    #[arg(long, default_value_t = 0)]
    pub iteration: i64,
    /// Directions to mine: t2i, i2t, composed (default: all the dataset has).
    #[arg(long, value_delimiter = ',')]
    pub directions: Vec<String>,
    /// Neighbours fetched per query before filtering (default: 2k + the most captions an image has).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Absolute margin: keep a negative only when its score <= the positive's score - MARGIN.
    #[arg(long)]
    pub margin: Option<f64>,
    /// Relative margin: keep a negative only when its score <= MAX_RATIO x the positive's score (e.g. 0.95).
    #[arg(long)]
    pub max_ratio: Option<f64>,
    /// False-negative guard: skip candidates whose similarity to the positive item exceeds this.
    #[arg(long)]
    pub max_positive_similarity: Option<f64>,
    /// Composed queries from: include (every pair), exclude (the dataset's own), only (the pairs `vlmdb augment
    /// pairs` wrote).
    #[arg(long, default_value = "include")]
    pub augmented: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The frozen image space: the model that made it, or its name.
    #[arg(long, required_unless_present_any = ["resume", "finetune"], conflicts_with = "finetune")]
    pub image_model: Option<String>,
    /// The frozen text space: the model that made it, or its name.
    #[arg(long, required_unless_present_any = ["resume", "finetune"], conflicts_with = "finetune")]
    pub text_model: Option<String>,
    /// Train again even when a finished run did exactly this over the same spaces (a deliberate replicate);
    /// without it that run is reported and nothing is written.
    #[arg(long)]
    pub again: bool,
    /// Fine-tune this CLIP end to end (alias, hf:org/repo or directory) instead of training heads over frozen
    /// spaces; the best weights become the model ft:<run_id>.
    #[arg(long, value_name = "MODEL")]
    pub finetune: Option<String>,
    /// Fine-tuning: keep a tower frozen (vision or text; repeatable).
    #[arg(long, value_name = "TOWER", requires = "finetune")]
    pub freeze: Vec<String>,
    /// Fine-tuning: train only the last N transformer layers of each unfrozen tower (plus its final norm and
    /// projection).
    #[arg(long, value_name = "N", requires = "finetune")]
    pub unfreeze_last: Option<usize>,
    /// Fine-tuning: the towers' compute dtype: auto (bf16 mixed precision on CUDA, f32 on the CPU), f32 or bf16.
    #[arg(long, default_value = "auto", requires = "finetune")]
    pub precision: String,
    /// Fine-tuning: keep logit_scale frozen for the first N epochs (as CLIPSE's freeze_logit_scale_epochs).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "finetune")]
    pub freeze_logit_scale_epochs: usize,
    /// The dataset whose caption–image pairs are trained on.
    #[arg(long, required_unless_present = "resume")]
    pub dataset: Option<String>,
    /// infonce, sanw-debias (--alpha --delta --lambda) or sanw-bandpass (--alpha --m1 --m2 --gamma), the SANW
    /// losses exactly as CLIPSE (seed 001) defines them.
    #[arg(long, required_unless_present = "resume")]
    pub loss: Option<String>,
    /// The split trained on.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// The split scored (R@1/5/10 both ways) after every epoch.
    #[arg(long, default_value = "val", conflicts_with = "no_val")]
    pub val_split: String,
    /// No validation: the last epoch counts as the best.
    #[arg(long)]
    pub no_val: bool,
    /// Head shape: linear or mlp (one hidden layer, GELU).
    #[arg(long, default_value = "linear")]
    pub head: String,
    /// Width of the shared space.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Hidden width of an MLP head.
    #[arg(long, default_value_t = 1024)]
    pub hidden: usize,
    /// Matryoshka (MRL) widths whose losses are summed, e.g. 512,256,128,64 (each also evaluated every epoch).
    #[arg(long, value_delimiter = ',')]
    pub mrl: Vec<usize>,
    /// Pairs per batch (mined negatives come on top).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Epochs per round.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Peak learning rate (default 1e-3 for heads, 1e-5 for fine-tuning as CLIPSE).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning rate at the end of the cosine decay.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Linear-warmup steps (default: one epoch, at most a tenth of the round).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// AdamW's decoupled weight decay on parameters of two or more dimensions (default 0.1 for heads, 0.01 for
    /// fine-tuning as CLIPSE).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW's first-moment decay (β₁, as torch.optim.AdamW).
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    /// AdamW's second-moment decay (β₂).
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// AdamW's ε added to the second moment's square root.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed of the run's RNG (initial weights, caption choice, batch order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SANW affinity mix, as CLIPSE: A = alpha * text-text cosine + (1 - alpha) * image-image cosine (default 0.5).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// SANW-Debias threshold, as CLIPSE: W = 1 - sigmoid(lambda * (A - delta)) (default 0.6).
    #[arg(long)]
    pub delta: Option<f64>,
    /// SANW-Debias sharpness, as CLIPSE (default 4).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// SANW-Bandpass lower edge, as CLIPSE: W = sigmoid((A - m1)/gamma) * (1 - sigmoid((A - m2)/gamma)) (default 0.3).
    #[arg(long)]
    pub m1: Option<f64>,
    /// SANW-Bandpass upper edge, as CLIPSE (default 0.8).
    #[arg(long)]
    pub m2: Option<f64>,
    /// SANW-Bandpass edge width, as CLIPSE (default 0.05).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Topical batches: one cluster per batch, from this `vlmdb cluster` run.
    #[arg(long, value_name = "CLUSTER_RUN")]
    pub topical: Option<String>,
    /// Append to each batch the negatives this `vlmdb mine` run found for its images.
    #[arg(long, value_name = "MINE_RUN")]
    pub negatives: Option<String>,
    /// Mined negatives appended per image.
    #[arg(long, default_value_t = 1)]
    pub negatives_per_query: usize,
    /// Stop a round after this many epochs without a better validation R@1.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Train heads on the dataset's composed pairs (reference image + modification text -> target image, CIRR /
    /// FashionIQ) instead of its captions; rounds mine with --directions composed.
    #[arg(long, conflicts_with = "finetune")]
    pub composed: bool,
    /// With --composed, the training split's pairs: include (every pair), exclude (the dataset's own), only (the
    /// pairs `vlmdb augment pairs` wrote). Validation uses the dataset's own.
    #[arg(long, default_value = "include", requires = "composed")]
    pub augmented: String,
    /// An epoch visits each image once with one of its captions (drawn per epoch), instead of every caption–image
    /// pair.
    #[arg(long)]
    pub one_caption_per_image: bool,
    /// Flag dead training after this many steps of flat loss, ~0 gradients or no parameter change (0: off).
    #[arg(long, default_value_t = 50)]
    pub dead_steps: usize,
    /// Rounds of mine → train → eval; round r > 0 mines with round r - 1's best heads.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Negatives kept per query when a round mines.
    #[arg(long, default_value_t = 10)]
    pub mine_k: usize,
    /// Continue an interrupted run from its last checkpoint (default: the newest unfinished train run), with the
    /// configuration it started with.
    #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub on: SpaceOnDataset,
    /// Run again even when a finished run did exactly this over the same inputs (a deliberate replicate);
    /// without it that run is reported and nothing is written.
    #[arg(long)]
    pub again: bool,
    /// Matryoshka (MRL) widths to evaluate, e.g. 512,256,128,64 (default: the full width).
    #[arg(long, value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// How composed (CIRR / FashionIQ) queries combine reference image r and text t: sum (normalise(r + t)),
    /// image, text.
    #[arg(long, default_value = "sum")]
    pub combiner: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["text", "image"])))]
pub struct SearchArgs {
    /// The model whose space is searched.
    #[arg(long)]
    pub model: String,
    /// A text query.
    #[arg(long)]
    pub text: Option<String>,
    /// An image file as the query.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// How many results.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    pub k: usize,
    /// Only this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Only items of this kind: image, caption, pair_text.
    #[arg(long)]
    pub kind: Option<String>,
    /// Search through the space's stored vector index (`vlmdb index`) instead of scoring every item; stderr names
    /// the index and the recall its build measured.
    #[arg(long)]
    pub ann: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// How the report is printed: text, or one JSON object (run id, counts, outputs) for scripts.
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// Input format.
    #[arg(value_enum)]
    pub format: crate::ingest::InputFormat,
    /// The annotation file, dataset root, folder, Parquet file/directory, or shard pattern (`shards/{000..009}.tar`).
    pub path: PathBuf,
    /// Dataset name; ids are `<dataset>/<source id>`.
    #[arg(long)]
    pub dataset: String,
    /// Images root (default depends on the format: the annotation file's directory, or the dataset root).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Split for images whose source gives none.
    #[arg(long, conflicts_with = "split_ratio")]
    pub split: Option<String>,
    /// Assign splits by seeded hash of the image id, e.g. train=0.9,val=0.1.
    #[arg(long, value_name = "NAME=RATIO,...")]
    pub split_ratio: Option<String>,
    /// Seed of --split-ratio.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Store images resized so their longest side is PX (original size kept in orig_width/orig_height).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=16384))]
    pub resize: Option<u32>,
    /// Validate every item before writing anything; stop at the first bad one.
    #[arg(long)]
    pub strict: bool,
    /// Images per commit (each chunk's images, then their captions).
    #[arg(long, value_name = "N", default_value_t = crate::ingest::DEFAULT_CHUNK, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub chunk: usize,
    /// Caption field of JSON/JSONL/Parquet inputs (default: text, then caption).
    #[arg(long, value_name = "NAME")]
    pub caption_field: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportWhat,
}

#[derive(Debug, Subcommand)]
pub enum ExportWhat {
    /// JSON Lines: a dataset's captions as Hugging Face ImageFolder's metadata.jsonl (with --images-out, the
    /// stored images beside it), or a table's rows.
    Jsonl {
        #[command(flatten)]
        rows: ExportRows,
        /// Write the dataset's stored images (resized ones as stored) into DIR, with metadata.jsonl beside them
        /// naming each by a path relative to it, so `vlmdb ingest jsonl DIR/metadata.jsonl` restores the dataset.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["table", "out"])]
        images_out: Option<PathBuf>,
    },
    /// CSV with a header line: a dataset's captions or a table's rows (vectors as JSON arrays, bytes as hex).
    Csv {
        #[command(flatten)]
        rows: ExportRows,
    },
    /// Parquet: a dataset's captions or a table's rows (needs --out).
    Parquet {
        #[command(flatten)]
        rows: ExportRows,
    },
    /// A stored artifact of a run (a plot, a checkpoint) to a file.
    Artifact {
        /// The run that stored it.
        run: String,
        /// The artifact's name (`vlmdb sql "SELECT name FROM artifacts WHERE run_id = '…'"` lists them).
        name: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Which rows an export writes, and where.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("rows").required(true).multiple(true).args(["dataset", "table"]))]
pub struct ExportRows {
    /// Export this dataset's captions (with --table: only this dataset's rows).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Export this table instead of captions.
    #[arg(long)]
    pub table: Option<String>,
    /// Only this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Write here instead of stdout (required for parquet).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run (several statements separated by `;` run in order).
    #[arg(
        value_name = "STATEMENT",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub statement: Option<String>,
    /// Read the SQL from this file instead.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Bind $NAME to VALUE (NAME:int|float|bool|text=VALUE forces a type, NAME:null= binds NULL). Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunFileArgs {
    /// The experiment file (e.g. sql/runs/compare.sql).
    #[arg(value_name = "FILE.sql")]
    pub file: PathBuf,
    /// Bind $NAME to VALUE (NAME:int|float|bool|text=VALUE forces a type, NAME:null= binds NULL). Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Bind $NAME to VALUE for every statement of the session. Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format (change it in the shell with \format).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: Option<RunsAction>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// List runs, newest first.
    List,
    /// Show one run: configuration, inputs, models, status.
    Show {
        /// The run id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag of every command says what it does in `--help` (issue 25 item 12).
    #[test]
    fn every_flag_has_a_description() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "vlmdb", &mut missing);
        assert!(
            missing.is_empty(),
            "flags without a description: {missing:?}"
        );
    }

    /// Usage lines show what a command needs, including what it needs in one of several ways.
    #[test]
    fn usage_lines_show_required_arguments() {
        let mut cli = Cli::command();
        let mut usage = |path: &[&str]| {
            let mut command = &mut cli;
            for name in path {
                command = command.find_subcommand_mut(name).expect("subcommand");
            }
            command.render_usage().to_string()
        };
        let train = usage(&["train"]);
        assert!(
            train.contains("--dataset <DATASET> --loss <LOSS> --finetune <MODEL>"),
            "{train}"
        );
        assert!(train.contains("--resume [RUN]"), "{train}");
        let export = usage(&["export", "jsonl"]);
        assert!(
            export.contains("<--dataset <DATASET>|--table <TABLE>>"),
            "{export}"
        );
        let ingest = usage(&["ingest"]);
        assert!(
            ingest.contains("--dataset <DATASET> <FORMAT> <PATH>"),
            "{ingest}"
        );
    }

    /// Sheets do not offer the charts' --width/--height, and every plot's usage line shows --out as required.
    #[test]
    fn plot_flags_belong_to_their_plots() {
        let mut cli = Cli::command();
        let plot = cli.find_subcommand_mut("plot").expect("plot");
        let flags = |plot: &mut clap::Command, name: &str| -> (Vec<String>, String) {
            let sub = plot.find_subcommand_mut(name).expect(name);
            let ids = sub
                .get_arguments()
                .map(|a| a.get_id().to_string())
                .collect();
            (ids, sub.render_usage().to_string())
        };
        for sheet in ["contact-sheet", "lineage"] {
            let (ids, usage) = flags(plot, sheet);
            assert!(!ids.contains(&"width".to_string()), "{sheet}: {ids:?}");
            assert!(!ids.contains(&"height".to_string()), "{sheet}: {ids:?}");
            assert!(usage.contains("--out <FILE.png>"), "{sheet}: {usage}");
        }
        for chart in ["metrics", "drift", "scatter", "similarity"] {
            let (ids, usage) = flags(plot, chart);
            assert!(ids.contains(&"width".to_string()), "{chart}: {ids:?}");
            assert!(usage.contains("--out <FILE.png>"), "{chart}: {usage}");
        }
    }
}
