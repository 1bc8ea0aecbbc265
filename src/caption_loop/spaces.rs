//! Each hop's vectors in the spaces the loop measures with, so hops can be clustered, projected and plotted like
//! any embedded data: the image space gets the hop's images (kind `image`) and captions (kind `caption`, its text
//! tower), the text space the captions. Items are the rows the hop wrote (ids carry the run and the hop; hop 0's
//! images are the dataset's own), `run_id` is the loop run, `dataset` and `split` are the rows' own. Rows already
//! in a space (hop-0 images a `vlmdb embed` wrote, or a hop being redone) are kept: nothing is embedded or
//! stored twice.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};

use super::similarity::HopSet;
use super::{HopState, Item, LoopOptions, Models};
use crate::error::Result;
use crate::inference::space_spec;
use crate::models::Model;
use crate::store::Store;
use crate::store::arrays::{repeated, vectors};
use crate::store::write::{batch_for, insert_new};

/// One row of a space.
struct Row<'a> {
    item_id: &'a str,
    kind: &'static str,
    dataset: String,
    split: Option<&'a str>,
    vector: &'a [f32],
}

/// Insert `rows` into `model`'s space (those whose key is not there yet).
async fn insert(store: &Store, model: &Model, run_id: &str, rows: &[Row<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let spec = space_spec(model)?;
    let dim = model.dim();
    let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let values: Vec<f32> = rows.iter().flat_map(|r| r.vector.iter().copied()).collect();
    let batch = batch_for(
        &spec,
        vec![
            ("item_id", text(&|r| Some(r.item_id.to_string()))),
            ("kind", text(&|r| Some(r.kind.to_string()))),
            ("dataset", text(&|r| Some(r.dataset.clone()))),
            ("split", text(&|r| r.split.map(str::to_string))),
            ("vector", Arc::new(vectors(values, dim)?)),
            ("run_id", repeated(run_id, rows.len())),
        ],
    )?;
    insert_new(store, &spec, batch).await?;
    Ok(())
}

/// Store the vectors of `hop` (whose states are `states`) in the image and text spaces.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write<'a>(
    store: &Store,
    models: &Models,
    run_id: &str,
    options: &LoopOptions,
    items: &'a [Item],
    states: &'a [HopState],
    hop: usize,
    set: &'a HopSet,
) -> Result<()> {
    let generated = format!("{}/loop", options.dataset);
    let image_dataset = if hop == 0 {
        options.dataset.clone()
    } else {
        generated.clone()
    };
    let captions = |vectors: &'a [Vec<f32>]| -> Vec<Row<'a>> {
        states
            .iter()
            .zip(items)
            .zip(vectors)
            .map(|((s, item), v)| Row {
                item_id: s.caption_id.as_str(),
                kind: "caption",
                dataset: generated.clone(),
                split: item.split.as_deref(),
                vector: v.as_slice(),
            })
            .collect()
    };
    let mut image_rows: Vec<Row> = states
        .iter()
        .zip(items)
        .zip(&set.image)
        .map(|((s, item), v)| Row {
            item_id: s.image_id.as_str(),
            kind: "image",
            dataset: image_dataset.clone(),
            split: item.split.as_deref(),
            vector: v.as_slice(),
        })
        .collect();
    image_rows.extend(captions(&set.joint_text));
    insert(store, &models.image_space, run_id, &image_rows).await?;
    if models.text_space.space() != models.image_space.space() {
        insert(store, &models.text_space, run_id, &captions(&set.text)).await?;
    }
    Ok(())
}
