//! How the table format shows a result. Every cell becomes text: NULL apart from '', floats at six significant
//! digits, lists in brackets. On a terminal the table is made to be read: at most `max_rows` rows with a footer
//! counting the rest, binary cells summarised (`<png 64×48, 2.1 KB>`), and the columns narrowed (long values cut
//! with an ellipsis) so each line fits the terminal. Piped output keeps every row and every value.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::Result;

/// Rows a terminal shows unless `\maxrows` says otherwise.
pub const DEFAULT_MAX_ROWS: usize = 40;
/// Elements of a list shown on a terminal before the rest is cut.
const LIST_ELEMENTS: usize = 16;
/// The narrowest a column is made when the table is fitted to the terminal.
const MIN_COLUMN: usize = 6;

/// How a table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStyle {
    /// Rows shown; the footer counts the others. `None`: every row.
    pub max_rows: Option<usize>,
    /// The width to fit each line into. `None`: columns as wide as their longest cell.
    pub width: Option<usize>,
    /// Binary cells summarised and lists cut after a few elements (else binary as hex, lists whole).
    pub summarise: bool,
    /// One block per row, one line per column (`\x`).
    pub expanded: bool,
}

impl TableStyle {
    /// Everything, as wide as it needs: for files and pipes.
    pub fn complete() -> TableStyle {
        TableStyle {
            max_rows: None,
            width: None,
            summarise: false,
            expanded: false,
        }
    }

    /// For a terminal `width` columns wide.
    pub fn terminal(width: usize) -> TableStyle {
        TableStyle {
            max_rows: Some(DEFAULT_MAX_ROWS),
            width: Some(width),
            summarise: true,
            expanded: false,
        }
    }

    /// [`TableStyle::terminal`] when standard output is a terminal, else [`TableStyle::complete`].
    pub fn for_stdout() -> TableStyle {
        let term = console::Term::stdout();
        if term.is_term() {
            // A terminal that reports no size (or an absurd one) is taken as 80 columns.
            let width = term
                .size_checked()
                .map(|(_, cols)| cols as usize)
                .filter(|&cols| cols >= 20)
                .unwrap_or(80);
            TableStyle::terminal(width)
        } else {
            TableStyle::complete()
        }
    }
}

/// `schema` and `batches` as a text table (no final newline).
pub fn render(schema: &SchemaRef, batches: &[RecordBatch], style: &TableStyle) -> Result<String> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let shown = style.max_rows.map_or(total, |m| m.min(total));
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    // Cells column by column, only for the rows shown.
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(shown); names.len()];
    let mut left = shown;
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        for (cells, column) in columns.iter_mut().zip(batch.columns()) {
            cells.extend(column_cells(&column.slice(0, take), style)?);
        }
        left -= take;
    }
    let mut text = if style.expanded {
        expanded(&names, &columns, shown, style.width)
    } else {
        boxed(&names, &columns, shown, style.width)
    };
    if shown < total {
        text.push_str(&format!(
            "\n{} rows ({} shown; \\maxrows N or off to change)",
            thousands(total),
            thousands(shown)
        ));
    }
    Ok(text)
}

/// The classic box: `+---+` borders, one line per row, cells left-aligned.
fn boxed(names: &[String], columns: &[Vec<String>], rows: usize, width: Option<usize>) -> String {
    let natural: Vec<usize> = names
        .iter()
        .zip(columns)
        .map(|(name, cells)| {
            cells
                .iter()
                .map(|c| text_width(c))
                .chain([text_width(name)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let widths = match width {
        // Each column adds 3 characters of borders and padding, the line one more.
        Some(width) => fit(&natural, width.saturating_sub(3 * names.len() + 1)),
        None => natural,
    };
    let border = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line
    };
    let row_line = |cell: &dyn Fn(usize) -> String| {
        let mut line = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let text = cut(&cell(i), *w);
            let pad = w.saturating_sub(text_width(&text));
            line.push(' ');
            line.push_str(&text);
            line.push_str(&" ".repeat(pad + 1));
            line.push('|');
        }
        line
    };
    let mut lines = vec![
        border.clone(),
        row_line(&|i| names[i].clone()),
        border.clone(),
    ];
    lines.extend((0..rows).map(|r| row_line(&|i| columns[i][r].clone())));
    lines.push(border);
    lines.join("\n")
}

/// `\x`: one block per row, `column | value` per line.
fn expanded(
    names: &[String],
    columns: &[Vec<String>],
    rows: usize,
    width: Option<usize>,
) -> String {
    let name_width = names.iter().map(|n| text_width(n)).max().unwrap_or(0);
    let value_width = width.map(|w| w.saturating_sub(name_width + 3).max(MIN_COLUMN));
    let mut lines = Vec::new();
    for r in 0..rows {
        let title = format!("-[ RECORD {} ]", r + 1);
        let rule = width.unwrap_or(name_width + 3 + 20).max(title.len());
        lines.push(format!("{title}{}", "-".repeat(rule - text_width(&title))));
        for (name, cells) in names.iter().zip(columns) {
            let value = match value_width {
                Some(w) => cut(&cells[r], w),
                None => cells[r].clone(),
            };
            let pad = name_width - text_width(name);
            lines.push(format!("{name}{} | {value}", " ".repeat(pad)));
        }
    }
    if rows == 0 {
        lines.push("(0 rows)".to_string());
    }
    lines.join("\n")
}

/// Column widths that add up to at most `available`: the widest columns are narrowed to a common cap (never below
/// [`MIN_COLUMN`] or their natural width), so short columns keep their width.
fn fit(natural: &[usize], available: usize) -> Vec<usize> {
    if natural.iter().sum::<usize>() <= available {
        return natural.to_vec();
    }
    let capped = |cap: usize| -> usize { natural.iter().map(|&w| w.min(cap)).sum() };
    let (mut low, mut high) = (MIN_COLUMN, natural.iter().copied().max().unwrap_or(0));
    // The largest cap that fits; MIN_COLUMN when none does (the line is then wider than the terminal).
    while low < high {
        let mid = (low + high).div_ceil(2);
        if capped(mid) <= available {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    natural.iter().map(|&w| w.min(low)).collect()
}

/// `text` cut to `width` display columns, ending in `…` when cut.
fn cut(text: &str, width: usize) -> String {
    console::truncate_str(text, width, "…").into_owned()
}

fn text_width(text: &str) -> usize {
    console::measure_text_width(text)
}

/// Each value of `column` as a cell.
fn column_cells(column: &ArrayRef, style: &TableStyle) -> Result<Vec<String>> {
    let rows = column.len();
    let null_or = |i: usize, f: &dyn Fn(usize) -> String| {
        if column.is_null(i) {
            "NULL".to_string()
        } else {
            f(i)
        }
    };
    let cells: Vec<String> = match column.data_type() {
        DataType::Float16 => {
            let a = column.as_primitive::<Float16Type>();
            (0..rows)
                .map(|i| null_or(i, &|i| float_text(a.value(i).to_f64())))
                .collect()
        }
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            (0..rows)
                .map(|i| null_or(i, &|i| float_text(f64::from(a.value(i)))))
                .collect()
        }
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            (0..rows)
                .map(|i| null_or(i, &|i| float_text(a.value(i))))
                .collect()
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let bytes = arrow::compute::cast(column, &DataType::LargeBinary)?;
            let bytes = bytes.as_binary::<i64>();
            (0..rows)
                .map(|i| null_or(i, &|i| binary_text(bytes.value(i), style.summarise)))
                .collect()
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let mut cells = Vec::with_capacity(rows);
            for i in 0..rows {
                cells.push(if column.is_null(i) {
                    "NULL".to_string()
                } else {
                    list_text(&list_value(column, i), style)?
                });
            }
            cells
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = arrow::compute::cast(column, &DataType::LargeUtf8)?;
            let text = text.as_string::<i64>();
            (0..rows)
                .map(|i| null_or(i, &|i| one_line(text.value(i))))
                .collect()
        }
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            (0..rows)
                .map(|i| one_line(&formatter.value(i).to_string()))
                .collect()
        }
    };
    Ok(cells)
}

/// Row `i` of a list column (checked to be one by the caller).
fn list_value(column: &ArrayRef, i: usize) -> ArrayRef {
    match column.data_type() {
        DataType::List(_) => column.as_list::<i32>().value(i),
        DataType::LargeList(_) => column.as_list::<i64>().value(i),
        _ => column.as_fixed_size_list().value(i),
    }
}

/// `[a, b, c]`; on a terminal at most [`LIST_ELEMENTS`] elements, then `… (N values)`.
fn list_text(values: &ArrayRef, style: &TableStyle) -> Result<String> {
    let len = values.len();
    let shown = if style.summarise {
        len.min(LIST_ELEMENTS)
    } else {
        len
    };
    let cells = column_cells(&values.slice(0, shown), style)?;
    let mut text = format!("[{}", cells.join(", "));
    if shown < len {
        text.push_str(&format!(", … ({len} values)"));
    }
    text.push(']');
    Ok(text)
}

/// Bytes as hex, or on a terminal what they are: `<png 64×48, 2.1 KB>`, `<32 bytes>`.
fn binary_text(bytes: &[u8], summarise: bool) -> String {
    if !summarise {
        return hex::encode(bytes);
    }
    match crate::image::header(bytes) {
        Some(info) => format!(
            "<{} {}×{}, {}>",
            crate::image::format_name(info.format),
            info.width,
            info.height,
            byte_size(bytes.len())
        ),
        None => format!("<{}>", byte_size(bytes.len())),
    }
}

/// `512 B`, `2.1 KB`, `3.4 MB` (powers of 1024).
fn byte_size(n: usize) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GB", n / (1024.0 * 1024.0 * 1024.0))
    }
}

/// A float at six significant digits without trailing zeros; scientific notation outside 1e-4 ≤ |v| < 1e15.
pub fn float_text(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs();
    if (1e-4..1e15).contains(&magnitude) {
        let decimals = (5 - magnitude.log10().floor() as i32).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    } else {
        let text = format!("{v:.5e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => text,
        }
    }
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// Line breaks and tabs shown as `↵` and a space, so each row stays one line.
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r', '\t']) {
        text.replace("\r\n", "↵")
            .replace(['\n', '\r'], "↵")
            .replace('\t', " ")
    } else {
        text.to_string()
    }
}

/// `1734` → `1,734`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Float32Array, Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn floats_read_at_six_significant_digits() {
        assert_eq!(float_text(0.1f32 as f64), "0.1");
        assert_eq!(float_text(1.0 / 3.0), "0.333333");
        assert_eq!(float_text(-1234.56789), "-1234.57");
        assert_eq!(float_text(4.0), "4");
        assert_eq!(float_text(0.00001234567), "1.23457e-5");
        assert_eq!(float_text(2e20), "2e20");
        assert_eq!(float_text(f64::NAN), "NaN");
        assert_eq!(float_text(0.0), "0");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1734), "1,734");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn widest_columns_are_narrowed_first() {
        assert_eq!(fit(&[3, 40, 100], 200), vec![3, 40, 100]);
        let widths = fit(&[3, 40, 100], 60);
        assert_eq!(widths, vec![3, 28, 28]);
        assert!(widths.iter().sum::<usize>() <= 60);
    }

    fn result() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("b", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some(""), None, Some("a\nb")])) as ArrayRef,
                Arc::new(Float64Array::from(vec![Some(0.5), Some(1.0 / 3.0), None])),
                Arc::new(BinaryArray::from(vec![
                    Some(&[1u8, 2][..]),
                    None,
                    Some(&[0xffu8; 2000][..]),
                ])),
            ],
        )
        .expect("batch");
        (schema, vec![batch])
    }

    #[test]
    fn null_is_not_the_empty_string_and_piped_tables_are_complete() {
        let (schema, batches) = result();
        let text = render(&schema, &batches, &TableStyle::complete()).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            format!("| s    | x        | b{} |", " ".repeat(3999))
        );
        assert!(lines[3].starts_with("|      | 0.5      | 0102 "), "{text}");
        assert!(lines[4].starts_with("| NULL | 0.333333 | NULL "), "{text}");
        assert!(lines[5].starts_with("| a↵b  | NULL     | ffff"), "{text}");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn terminal_tables_are_cut_to_rows_and_width() {
        let (schema, batches) = result();
        let mut style = TableStyle::terminal(30);
        style.max_rows = Some(2);
        let text = render(&schema, &batches, &style).expect("render");
        for line in text.lines().take(5) {
            assert!(text_width(line) <= 30, "{line:?} is wider than 30\n{text}");
        }
        assert!(text.contains("<2 B>"), "{text}");
        assert!(
            text.ends_with("3 rows (2 shown; \\maxrows N or off to change)"),
            "{text}"
        );
    }

    #[test]
    fn long_vectors_are_cut_on_a_terminal() {
        let values = Float32Array::from((0..512).map(|i| i as f32 / 512.0).collect::<Vec<_>>());
        let list = arrow::array::FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            512,
            Arc::new(values),
            None,
        )
        .expect("list");
        let column: ArrayRef = Arc::new(list);
        let cells = column_cells(&column, &TableStyle::terminal(80)).expect("cells");
        assert!(
            cells[0].starts_with("[0, 0.00195312, 0.00390625,"),
            "{}",
            cells[0]
        );
        assert!(cells[0].ends_with(", … (512 values)]"), "{}", cells[0]);
        let whole = column_cells(&column, &TableStyle::complete()).expect("cells");
        assert_eq!(whole[0].matches(", ").count(), 511);
    }
}
