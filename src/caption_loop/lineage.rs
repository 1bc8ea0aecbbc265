//! What a hop writes, with its lineage: generated images (parent = the caption they were drawn from) and captions
//! (image = the image they describe), their stable ids (so an interrupted hop is replaced, not duplicated), the
//! columns every generated row shares, and the generation seed of each (item, hop), the same in every variant.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, LargeBinaryArray, StringArray};

use super::{HopState, Item, LoopOptions};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::store::Store;
use crate::store::schema::fixed_table;
use crate::store::write::{batch_for, upsert};

/// The seed of the generation of `item` at `hop` (the same in every variant).
pub fn generation_seed(seed: u64, item: usize, hop: usize) -> u64 {
    let mut rng = Rng::new(seed ^ ((item as u64) << 32) ^ (hop as u64).rotate_left(16));
    rng.next_u64()
}

/// The id of the image `item` has at `hop` (> 0) of run `run_id`.
pub fn image_row_id(run_id: &str, item: &Item, hop: usize) -> String {
    format!("{run_id}/{}/hop{hop}", item.image_id)
}

/// The id of the caption `item` has at `hop` of run `run_id`.
pub fn caption_row_id(run_id: &str, item: &Item, hop: usize) -> String {
    format!("{run_id}/{}/hop{hop}/caption", item.image_id)
}

/// The columns every generated row shares: dataset `<dataset>/loop`, the item's split, the run and the hop.
fn lineage_columns(
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    hop: usize,
) -> Vec<(&'static str, ArrayRef)> {
    let n = items.len();
    let dataset = format!("{}/loop", options.dataset);
    vec![
        ("dataset", crate::store::arrays::repeated(&dataset, n)),
        (
            "split",
            Arc::new(StringArray::from(
                items.iter().map(|i| i.split.clone()).collect::<Vec<_>>(),
            )),
        ),
        ("run_id", crate::store::arrays::repeated(run_id, n)),
        ("iteration", Arc::new(Int32Array::from(vec![hop as i32; n]))),
    ]
}

/// Store the images of `hop` (> 0), each the child of the previous hop's caption; returns how many.
#[allow(clippy::too_many_arguments)]
pub async fn write_images(
    store: &Store,
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    previous: &[HopState],
    states: &[HopState],
    hop: usize,
) -> Result<usize> {
    let spec = fixed_table("images")?.ok_or_else(|| Error::UnknownTable {
        name: "images".into(),
    })?;
    let mut widths = Vec::new();
    let mut heights = Vec::new();
    let mut formats = Vec::new();
    for state in states {
        let (_, info) = crate::image::decode(&state.image).map_err(|reason| {
            Error::Usage(format!("generated image {}: {reason}", state.image_id))
        })?;
        widths.push(info.width as i32);
        heights.push(info.height as i32);
        formats.push(crate::image::format_name(info.format));
    }
    let n = states.len();
    let mut columns: Vec<(&str, ArrayRef)> = lineage_columns(run_id, options, items, hop);
    columns.extend::<Vec<(&str, ArrayRef)>>(vec![
        (
            "image_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.image_id.as_str()),
            )),
        ),
        (
            "data",
            Arc::new(LargeBinaryArray::from_iter_values(
                states.iter().map(|s| s.image.as_slice()),
            )),
        ),
        ("width", Arc::new(Int32Array::from(widths))),
        ("height", Arc::new(Int32Array::from(heights))),
        ("format", Arc::new(StringArray::from(formats))),
        (
            "sha256",
            Arc::new(StringArray::from_iter_values(
                states
                    .iter()
                    .map(|s| crate::store::model_cache::sha256(&s.image)),
            )),
        ),
        (
            "parent_id",
            Arc::new(StringArray::from_iter_values(
                previous.iter().map(|p| p.caption_id.as_str()),
            )),
        ),
    ]);
    upsert(store, &spec, batch_for(&spec, columns)?).await?;
    Ok(n)
}

/// Store the captions of `hop` with `source`; returns how many.
pub async fn write_captions(
    store: &Store,
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    states: &[HopState],
    hop: usize,
    source: String,
) -> Result<usize> {
    let spec = fixed_table("captions")?.ok_or_else(|| Error::UnknownTable {
        name: "captions".into(),
    })?;
    let n = states.len();
    let mut columns: Vec<(&str, ArrayRef)> = lineage_columns(run_id, options, items, hop);
    columns.extend::<Vec<(&str, ArrayRef)>>(vec![
        (
            "caption_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.caption_id.as_str()),
            )),
        ),
        (
            "image_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.image_id.as_str()),
            )),
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.caption.as_str()),
            )),
        ),
        ("source", crate::store::arrays::repeated(source.as_str(), n)),
    ]);
    upsert(store, &spec, batch_for(&spec, columns)?).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_seeds_differ_by_item_and_hop_and_repeat() {
        let a = generation_seed(0, 0, 1);
        assert_eq!(a, generation_seed(0, 0, 1));
        assert_ne!(a, generation_seed(0, 1, 1));
        assert_ne!(a, generation_seed(0, 0, 2));
        assert_ne!(a, generation_seed(1, 0, 1));
    }
}
