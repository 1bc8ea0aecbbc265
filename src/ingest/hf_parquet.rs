//! Hugging Face datasets Parquet files: an image column stored as `struct<bytes, path>` and a text column
//! (`text` or `caption`, or `--caption-field`). PATH is one file or a directory of `*.parquet`; a file named
//! `<split>-00000-of-00001.parquet` gives its rows that split. Ids are `<file stem>/<row>`.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ReadOptions;
use super::record::{Collected, ImageData, ImageRecord};
use crate::error::{Error, Result};

const SPLITS: &[&str] = &["train", "validation", "val", "test"];

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no .parquet files",
            path.display()
        )));
    }
    let mut out = Collected::default();
    for file in files {
        read_file(&file, options, &mut out)?;
    }
    Ok(out)
}

fn read_file(file: &Path, options: &ReadOptions, out: &mut Collected) -> Result<()> {
    let origin = file.display().to_string();
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let split = stem
        .split(['-', '_'])
        .next()
        .filter(|s| SPLITS.contains(s))
        .map(|s| {
            if s == "validation" {
                "val".to_string()
            } else {
                s.to_string()
            }
        });
    let handle = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let bad = |m: String| Error::Usage(format!("{origin}: {m}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| bad(format!("not a Parquet file: {e}")))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let (images, texts) = columns(&batch, options).map_err(bad)?;
        let bytes_col = images
            .column_by_name("bytes")
            .ok_or_else(|| bad("image struct has no `bytes` field".into()))?;
        let path_col = images.column_by_name("path");
        for i in 0..batch.num_rows() {
            let key = format!("{stem}/{row}");
            row += 1;
            let image_bytes = binary_value(bytes_col.as_ref(), i);
            let Some(bytes) = image_bytes.filter(|_| images.is_valid(i)) else {
                out.reject(&origin, format!("row {}", row - 1), "image bytes are NULL");
                continue;
            };
            let path = path_col
                .and_then(|c| {
                    c.as_string_opt::<i32>()
                        .filter(|a| a.is_valid(i))
                        .map(|a| a.value(i).to_string())
                })
                .unwrap_or_else(|| key.clone());
            let text = texts.and_then(|t| t.is_valid(i).then(|| t.value(i).to_string()));
            let image = ImageRecord {
                key,
                path,
                split: split.clone(),
                data: ImageData::Bytes(bytes),
                origin: origin.clone(),
            };
            out.push_sample(image, text);
        }
    }
    Ok(())
}

type Columns<'a> = (&'a StructArray, Option<&'a arrow::array::StringArray>);

/// The image struct column and the text column of a batch.
fn columns<'a>(batch: &'a RecordBatch, options: &ReadOptions) -> Result<Columns<'a>, String> {
    let schema = batch.schema();
    let image_index = schema
        .fields()
        .iter()
        .position(|f| match f.data_type() {
            DataType::Struct(fields) => fields.iter().any(|x| x.name() == "bytes"),
            _ => false,
        })
        .ok_or("no image column (a struct<bytes, path>)")?;
    let images = batch.column(image_index).as_struct();
    let names: Vec<&str> = match options.caption_field.as_deref() {
        Some(f) => vec![f],
        None => vec!["text", "caption"],
    };
    let texts = match names.iter().find_map(|n| batch.column_by_name(n)) {
        Some(column) => Some(column.as_string_opt::<i32>().ok_or_else(|| {
            format!(
                "text column has type {}, expected a string",
                column.data_type()
            )
        })?),
        None if options.caption_field.is_some() => {
            return Err(format!("no column named {}", names[0]));
        }
        None => None,
    };
    Ok((images, texts))
}

fn binary_value(column: &dyn Array, i: usize) -> Option<Vec<u8>> {
    if column.is_null(i) {
        return None;
    }
    match column.data_type() {
        DataType::Binary => Some(column.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Some(column.as_binary::<i64>().value(i).to_vec()),
        DataType::BinaryView => Some(column.as_binary_view().value(i).to_vec()),
        _ => None,
    }
}
