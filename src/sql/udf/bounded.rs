//! DataFusion's built-ins whose output size is an argument (`repeat(s, n)`, `lpad`/`rpad(s, n)`,
//! `array_repeat(x, n)`, `array_resize(a, n)`, `range`/`generate_series(a, b [, step])` as lists), wrapped so that
//! a call whose result would not fit in the query memory limit (`--memory-limit`) fails with an error naming the
//! function and the size, instead of the process running out of memory: those results are allocated outside the
//! memory pool that bounds sorts and joins. Everything else (signature, types, documentation) is the built-in's.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(s, n)`: bytes of `s` times `n`.
    Repeat,
    /// `lpad(s, n)`, `rpad(s, n)`: `n` characters (up to 4 bytes each).
    Pad,
    /// `array_repeat(x, n)`, `array_resize(a, n)`: `n` elements (counted at 8 bytes).
    Count,
    /// `range(a, b [, step])`: `(b − a) / step` elements of 8 bytes.
    Range,
}

const BOUNDED: &[(&str, Rule)] = &[
    ("repeat", Rule::Repeat),
    ("lpad", Rule::Pad),
    ("rpad", Rule::Pad),
    ("array_repeat", Rule::Count),
    ("array_resize", Rule::Count),
    ("range", Rule::Range),
    ("generate_series", Rule::Range),
];

/// Replace the session's built-ins of [`BOUNDED`] with their bounded versions, each refusing a call whose result
/// would exceed `limit` bytes.
pub fn register(ctx: &SessionContext, limit: usize) {
    for (name, rule) in BOUNDED {
        if let Some(inner) = ctx.state().scalar_functions().get(*name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner: inner.as_ref().clone(),
                rule: *rule,
                limit,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    rule: Rule,
    limit: usize,
}

/// Row `row` of an argument as an integer (`None`: NULL or not an integer).
fn integer(arg: &ColumnarValue, row: usize) -> Option<i64> {
    match arg {
        ColumnarValue::Scalar(value) => match value.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(v) => v,
            _ => None,
        },
        ColumnarValue::Array(array) => {
            let cast = arrow::compute::cast(array, &DataType::Int64).ok()?;
            let values = cast.as_primitive::<Int64Type>();
            values.is_valid(row).then(|| values.value(row))
        }
    }
}

/// Row `row` of a text argument's length in bytes (0 when it is not text).
fn text_bytes(arg: &ColumnarValue, row: usize) -> u128 {
    let text = match arg {
        ColumnarValue::Scalar(value) => match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => {
                return s.len() as u128;
            }
            _ => return 0,
        },
        ColumnarValue::Array(array) => arrow::compute::cast(array, &DataType::LargeUtf8).ok(),
    };
    text.map_or(0, |t| {
        let t = t.as_string::<i64>();
        if t.is_valid(row) {
            t.value(row).len() as u128
        } else {
            0
        }
    })
}

impl Bounded {
    /// The bytes the call's result would take (an estimate from its arguments; at least the real size).
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> u128 {
        let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            1
        } else {
            rows
        };
        let count = |row: usize, i: usize| {
            args.get(i)
                .and_then(|a| integer(a, row))
                .map_or(0, |n| n.max(0) as u128)
        };
        (0..rows)
            .map(|row| match self.rule {
                Rule::Repeat => args.first().map_or(0, |a| text_bytes(a, row)) * count(row, 1),
                Rule::Pad => 4 * count(row, 1),
                Rule::Count => 8 * count(row, 1),
                // Ranges of dates and timestamps step by intervals: only integer ranges are sized.
                Rule::Range if !args.iter().all(|a| a.data_type().is_integer()) => 0,
                Rule::Range => {
                    let (start, stop) = match args.len() {
                        1 => (Some(0), args.first().and_then(|a| integer(a, row))),
                        _ => (
                            args.first().and_then(|a| integer(a, row)),
                            args.get(1).and_then(|a| integer(a, row)),
                        ),
                    };
                    let step = args.get(2).and_then(|a| integer(a, row)).unwrap_or(1);
                    match (start, stop) {
                        (Some(a), Some(b)) if step != 0 => {
                            let span = (i128::from(b) - i128::from(a)) / i128::from(step);
                            8 * span.max(0) as u128
                        }
                        _ => 0,
                    }
                }
            })
            .sum()
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[allow(deprecated)]
        self.inner.inner().display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.inner().is_nullable(args, schema)
    }

    fn with_updated_config(&self, _config: &ConfigOptions) -> Option<ScalarUDF> {
        None
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args.args, args.number_rows);
        if bytes > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}: the result would take about {} MB, more than the query memory limit of {} MB",
                self.name(),
                bytes >> 20,
                self.limit >> 20
            )));
        }
        self.inner.inner().invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
