//! `vector_mean(v)`: the element-wise mean of a group of vectors — a class centroid, or the mean embedding of an
//! image's captions.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;

use crate::sql::udf::vectors::{DOC_SECTION, check_vector, vector_array, vector_type, vectors};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Element-wise mean of the vectors of a group (NULL vectors are skipped), as a list of float32; NULL for a \
         group without vectors. Not re-normalised: wrap it in l2_normalize for a unit centroid. An error names the \
         lengths when the group's vectors differ in length.",
        "vector_mean(v)",
    )
    .with_argument("v", "A vector column: a list of floats.")
    .with_sql_example(
        "> SELECT vector_mean(v) FROM (VALUES ([1.0, 2.0]), ([3.0, 4.0])) AS t(v);\n+------------+\n| [2.0, 3.0] |\n+------------+",
    )
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorMean {
    signature: Signature,
}

impl VectorMean {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for VectorMean {
    fn default() -> Self {
        Self::new()
    }
}

fn sum_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

impl AggregateUDFImpl for VectorMean {
    fn name(&self) -> &str {
        "vector_mean"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_vector(self.name(), 0, &args[0])?;
        Ok(vector_type())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MeanAccumulator::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[sum]", args.name), sum_type(), true)),
            Arc::new(Field::new(
                format!("{}[count]", args.name),
                DataType::Int64,
                true,
            )),
        ])
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Running sum (in f64) and count of a group's vectors.
#[derive(Debug, Default)]
struct MeanAccumulator {
    sum: Vec<f64>,
    count: i64,
}

impl MeanAccumulator {
    fn add(&mut self, values: impl ExactSizeIterator<Item = f64>, count: i64) -> Result<()> {
        if self.count == 0 && self.sum.is_empty() {
            self.sum = vec![0.0; values.len()];
        }
        if values.len() != self.sum.len() {
            return Err(DataFusionError::Execution(format!(
                "vector_mean: vectors of different lengths ({} and {}) in one group",
                self.sum.len(),
                values.len()
            )));
        }
        for (s, v) in self.sum.iter_mut().zip(values) {
            *s += v;
        }
        self.count += count;
        Ok(())
    }
}

impl Accumulator for MeanAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values[0].len();
        let arg = datafusion::logical_expr::ColumnarValue::Array(values[0].clone());
        for v in vectors("vector_mean", 0, &arg, rows)?.into_iter().flatten() {
            self.add(v.iter().map(|x| f64::from(*x)), 1)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mean = (self.count > 0).then(|| {
            self.sum
                .iter()
                .map(|s| (s / self.count as f64) as f32)
                .collect()
        });
        ScalarValue::try_from_array(&vector_array(vec![mean]), 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let sum = arrow::array::ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            (self.count > 0).then(|| self.sum.iter().map(|s| Some(*s)).collect::<Vec<_>>()),
        ]);
        Ok(vec![
            ScalarValue::try_from_array(&sum, 0)?,
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let sums = states[0].as_list::<i32>();
        let counts = states[1].as_primitive::<Int64Type>();
        for row in 0..sums.len() {
            if sums.is_null(row) || counts.is_null(row) || counts.value(row) == 0 {
                continue;
            }
            let part = sums.value(row);
            let part = part.as_primitive::<Float64Type>();
            self.add(part.values().iter().copied(), counts.value(row))?;
        }
        Ok(())
    }
}
