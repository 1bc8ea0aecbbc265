//! The shared argument handling of the vector functions: reading vector arguments row by row (arrays or
//! broadcast scalars), NULL in → NULL out, and errors that name the function, the argument and the row.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

/// The `\df` section of the vector functions.
pub const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Vector Functions",
    description: Some("Similarity, distance and normalisation of embedding vectors."),
};

/// The type vector-valued functions return.
pub fn vector_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
}

/// True for the list-of-float types accepted as vectors.
pub fn is_vector(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            matches!(
                f.data_type(),
                DataType::Float32 | DataType::Float64 | DataType::Float16
            )
        }
        DataType::Null => true,
        _ => false,
    }
}

/// Plan-time check that argument `position` (0-based) of `function` is a vector.
pub fn check_vector(function: &str, position: usize, data_type: &DataType) -> Result<()> {
    if is_vector(data_type) {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!(
            "{function}: argument {} must be a vector (a list of floats), got {data_type}",
            position + 1
        )))
    }
}

/// Argument `position` of `function` as one optional vector per row.
pub fn vectors(
    function: &str,
    position: usize,
    arg: &ColumnarValue,
    rows: usize,
) -> Result<Vec<Option<Vec<f32>>>> {
    let array = arg.to_array(rows)?;
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; rows]);
    }
    let list = arrow::compute::cast(&array, &vector_type())?;
    let list = list.as_list::<i32>();
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if list.is_null(row) {
            out.push(None);
            continue;
        }
        let values = list.value(row);
        let values = values.as_primitive::<Float32Type>();
        if values.null_count() > 0 {
            return Err(DataFusionError::Execution(format!(
                "{function}: argument {} has a NULL element in row {row}",
                position + 1
            )));
        }
        out.push(Some(values.values().to_vec()));
    }
    Ok(out)
}

/// Apply `score` to each row's pair of vectors; NULL when either is NULL; lengths must agree.
pub fn pairwise(
    function: &str,
    args: &[ColumnarValue],
    rows: usize,
    score: impl Fn(&[f32], &[f32]) -> f64,
) -> Result<ColumnarValue> {
    let [a, b] = args else {
        return Err(DataFusionError::Plan(format!(
            "{function} takes two vectors"
        )));
    };
    let left = vectors(function, 0, a, rows)?;
    let right = vectors(function, 1, b, rows)?;
    let mut out = Vec::with_capacity(rows);
    for (row, (x, y)) in left.iter().zip(&right).enumerate() {
        out.push(match (x, y) {
            (Some(x), Some(y)) => {
                if x.len() != y.len() {
                    return Err(DataFusionError::Execution(format!(
                        "{function}: vectors of different lengths ({} and {}) in row {row}",
                        x.len(),
                        y.len()
                    )));
                }
                Some(finite(function, row, score(x, y))?)
            }
            _ => None,
        });
    }
    Ok(columnar(Arc::new(Float64Array::from(out)), args))
}

/// Non-finite outputs are errors that name the row.
pub fn finite(function: &str, row: usize, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DataFusionError::Execution(format!(
            "{function}: result in row {row} is not finite ({value})"
        )))
    }
}

/// A list array of vectors (NULL rows stay NULL).
pub fn vector_array(rows: Vec<Option<Vec<f32>>>) -> ArrayRef {
    let lengths = rows.iter().map(|r| r.as_ref().map_or(0, Vec::len));
    let offsets = OffsetBuffer::from_lengths(lengths);
    let validity: Vec<bool> = rows.iter().map(Option::is_some).collect();
    let values = Float32Array::from(rows.into_iter().flatten().flatten().collect::<Vec<f32>>());
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        offsets,
        Arc::new(values),
        Some(validity.into()),
    ))
}

/// Scale to unit L2 norm; `None` for a zero (or non-finite) vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    (norm > 0.0 && norm.is_finite())
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// A scalar result when every argument was a scalar, else an array.
pub fn columnar(array: ArrayRef, args: &[ColumnarValue]) -> ColumnarValue {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
        && let Ok(scalar) = datafusion::scalar::ScalarValue::try_from_array(&array, 0)
    {
        return ColumnarValue::Scalar(scalar);
    }
    ColumnarValue::Array(array)
}

/// Dot product in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// A function of two vectors returning a float64 score (cosine similarity, dot product, L2 distance): the three
/// share everything but their name, documentation and scoring rule, which their own files supply.
#[derive(Debug)]
pub struct PairwiseScore {
    name: &'static str,
    doc: &'static LazyLock<Documentation>,
    score: fn(&[f32], &[f32]) -> f64,
    signature: Signature,
}

impl PairwiseScore {
    pub fn udf(
        name: &'static str,
        doc: &'static LazyLock<Documentation>,
        score: fn(&[f32], &[f32]) -> f64,
    ) -> ScalarUDF {
        ScalarUDF::from(PairwiseScore {
            name,
            doc,
            score,
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

// Functions are identified by name (function pointers do not compare reliably).
impl PartialEq for PairwiseScore {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PairwiseScore {}

impl std::hash::Hash for PairwiseScore {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PairwiseScore {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        for (i, t) in args.iter().enumerate() {
            check_vector(self.name, i, t)?;
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        pairwise(self.name, &args.args, args.number_rows, self.score)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.doc)
    }
}
