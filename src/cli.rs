//! The command-line interface: argument parsing ([`args`]), the commands ([`commands`]), result printing
//! ([`format`]), and the SQL shell ([`shell`], [`meta`]). Commands write results to the `Write` they are given;
//! errors go back to `main`, which prints them to stderr and maps them to exit codes.

pub mod args;
pub mod commands;
pub mod format;
pub mod meta;
pub mod shell;

use std::io::Write;
use std::path::PathBuf;

use crate::error::Result;
use crate::models::DeviceChoice;
use crate::store::{DEFAULT_STORE_DIR, Store};
pub use args::Cli;
use args::{BenchWhat, Command, ImportWhat, RunsAction};

/// Run one command line; returns the process exit code (errors are returned, not printed).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    let store_path = cli.db.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_DIR));
    let device: DeviceChoice = cli.device.parse()?;
    crate::models::device::set_default_choice(device);
    // The store is opened (and created) only by the commands that use it; benchmarks make their own.
    let store = || Store::open(&store_path);
    let code = match cli.command {
        Command::Init => commands::init(&store().await?, out).await?,
        Command::Sql(args) => commands::sql(&store().await?, args, out).await?,
        Command::Run(args) => commands::run_file(&store().await?, args, out).await?,
        Command::Shell(args) => shell::run(&store().await?, args, out).await?,
        Command::Ingest(args) => commands::ingest(&store().await?, args, out).await?,
        Command::Export(args) => commands::export(&store().await?, args, out).await?,
        Command::Embed(args) => commands::embed(&store().await?, args, device, out).await?,
        Command::Caption(args) => commands::caption(&store().await?, args, device, out).await?,
        Command::Loop(args) => commands::feedback_loop(&store().await?, *args, device, out).await?,
        Command::Search(args) => commands::search(&store().await?, args, device, out).await?,
        Command::Import(args) => match args.what {
            ImportWhat::Embeddings {
                file,
                space,
                model_id,
            } => {
                let options = crate::import::ImportOptions {
                    file,
                    space,
                    model_id,
                };
                let summary = crate::import::embeddings(&store().await?, &options).await?;
                writeln!(
                    out,
                    "imported {} vectors of {} dimensions into {} (run {})",
                    summary.rows, summary.dim, summary.table, summary.run_id
                )?;
                0
            }
            ImportWhat::Metrics {
                file,
                csv,
                json: _,
                run_name,
            } => {
                use crate::import::metrics::{LogFormat, import};
                let format = if csv { LogFormat::Csv } else { LogFormat::Json };
                let s = import(&store().await?, &file, format, &run_name).await?;
                writeln!(
                    out,
                    "imported {} values of {} metrics from {} rows into run {} ({}){}",
                    s.metrics,
                    s.names.len(),
                    s.rows,
                    s.run_id,
                    s.names.join(", "),
                    if s.ignored.is_empty() {
                        String::new()
                    } else {
                        format!("; left out text columns: {}", s.ignored.join(", "))
                    }
                )?;
                0
            }
        },
        Command::Cluster(args) => {
            let options = crate::cluster::run::ClusterOptions {
                model: args.on.model,
                dataset: Some(args.on.dataset),
                split: args.on.split,
                kind: args.kind,
                k: args.k,
                iterations: args.iterations,
                seed: args.seed,
                inits: args.inits,
                metric: args.metric.parse()?,
                iteration: args.iteration,
                device,
            };
            let s = crate::cluster::run::cluster(&store().await?, &options).await?;
            writeln!(
                out,
                "k-means k={} on {} items of {}: inertia {:.6} after {} steps, sizes {:?} (run {})",
                s.k, s.items, s.table, s.inertia, s.lloyd_steps, s.sizes, s.run_id
            )?;
            0
        }
        Command::Index(args) => {
            let report = crate::eval::index::build(
                &store().await?,
                &args.model,
                args.kind,
                &device.device()?,
            )
            .await?;
            writeln!(
                out,
                "{} index on {} ({} vectors): recall@10 {:.4} against exact search on {} of its vectors (run {})",
                report.kind,
                report.table,
                report.rows,
                report.recall_at_10,
                report.sample,
                report.run_id
            )?;
            0
        }
        Command::Mine(args) => commands::mine(&store().await?, args, device, out).await?,
        Command::Train(args) => commands::train(&store().await?, *args, device, out).await?,
        Command::Eval(args) => commands::eval(&store().await?, args, device, out).await?,
        Command::Plot(args) => commands::plot(&store().await?, args, device, out).await?,
        Command::Runs(args) => match args.action {
            None | Some(RunsAction::List) => {
                commands::runs_list(&store().await?, args.format, out).await?
            }
            Some(RunsAction::Show { id }) => {
                commands::runs_show(&store().await?, &id, args.format, out).await?
            }
        },
        Command::Bench(args) => match args.what {
            BenchWhat::Ingest {
                images,
                python,
                no_peer,
            } => {
                crate::bench::ingest_bench(images, (!no_peer).then_some(python.as_str()), out)
                    .await?;
                0
            }
            BenchWhat::Eval {
                images,
                per_image,
                dim,
                python,
                no_peer,
            } => {
                crate::bench::retrieval::eval_bench(
                    images,
                    per_image,
                    dim,
                    (!no_peer).then_some(python.as_str()),
                    out,
                )?;
                0
            }
            BenchWhat::Kmeans {
                n,
                dim,
                k,
                iterations,
                seed,
                python,
                no_peer,
                no_sklearn,
            } => {
                crate::bench::cluster::kmeans_bench(
                    crate::bench::cluster::KmeansBench {
                        n,
                        dim,
                        k,
                        iterations,
                        seed,
                    },
                    (!no_peer).then_some(python.as_str()),
                    no_sklearn,
                    out,
                )?;
                0
            }
            BenchWhat::Knn {
                n,
                hnsw_n,
                dim,
                k,
                python,
                no_peer,
            } => {
                crate::bench::retrieval::knn_bench(
                    n,
                    hnsw_n,
                    dim,
                    k,
                    (!no_peer).then_some(python.as_str()),
                    out,
                )?;
                0
            }
            BenchWhat::Train {
                n,
                dim,
                batch,
                steps,
                python,
                no_peer,
            } => {
                crate::bench::train::train_bench(
                    n,
                    dim,
                    batch,
                    steps,
                    (!no_peer).then_some(python.as_str()),
                    out,
                )?;
                0
            }
            BenchWhat::Embed(args) => {
                crate::bench::embed_bench(&args, device, out).await?;
                0
            }
        },
    };
    out.flush()?;
    Ok(code)
}
