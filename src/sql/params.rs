//! Parameter binding. `--param name=value` binds `$name`. Values are never spliced into SQL text: the statement is
//! parsed first, then every `$name` placeholder in the syntax tree is replaced by a typed literal node, then the
//! statement is planned. Binding on the tree (rather than DataFusion's `with_param_values` on a plan) also reaches
//! table-function arguments and DDL such as `CREATE VIEW`, which DataFusion plans before placeholders could be filled.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr, Value, ValueWithSpan, VisitMut, visit_expressions_mut,
};

use crate::error::{Error, Result};

/// A bound value. Its type decides the literal: `5` is an integer, `0.5` a float, `true` a boolean, anything else
/// text; `name:text=5` forces a type.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// SQL NULL (an optional parameter left unset by a command).
    Null,
}

impl ParamValue {
    /// Infer the type of a command-line value.
    pub fn infer(text: &str) -> ParamValue {
        if let Ok(i) = text.parse::<i64>() {
            return ParamValue::Int(i);
        }
        let numeric = !text.is_empty()
            && text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if numeric && let Ok(f) = text.parse::<f64>() {
            return ParamValue::Float(f);
        }
        match text {
            "true" => ParamValue::Bool(true),
            "false" => ParamValue::Bool(false),
            _ => ParamValue::Text(text.to_string()),
        }
    }

    /// Parse `text` as the named type (`int`, `float`, `bool`, `text`, or `null` with an empty value).
    pub fn typed(name: &str, type_name: &str, text: &str) -> Result<ParamValue> {
        let bad = |what: &str| Error::Param {
            name: name.to_string(),
            message: format!("'{text}' is not {what}"),
        };
        Ok(match type_name {
            "int" => ParamValue::Int(text.parse().map_err(|_| bad("an integer"))?),
            "float" => ParamValue::Float(text.parse().map_err(|_| bad("a number"))?),
            "bool" => ParamValue::Bool(text.parse().map_err(|_| bad("true or false"))?),
            "text" => ParamValue::Text(text.to_string()),
            // `--param margin:null=`: SQL files read NULL as "not given" (no filter, no margin, …).
            "null" if text.is_empty() => ParamValue::Null,
            "null" => return Err(bad("empty (a null parameter is written NAME:null=)")),
            other => {
                return Err(Error::Param {
                    name: name.to_string(),
                    message: format!("unknown type '{other}' (use int, float, bool, text or null)"),
                });
            }
        })
    }

    fn literal(&self) -> Value {
        match self {
            ParamValue::Int(i) => Value::Number(i.to_string(), false),
            // `{:?}` keeps a decimal point or exponent, so the planner reads a float back.
            ParamValue::Float(f) if f.is_finite() => Value::Number(format!("{f:?}"), false),
            ParamValue::Float(f) => Value::SingleQuotedString(f.to_string()),
            ParamValue::Bool(b) => Value::Boolean(*b),
            ParamValue::Text(s) => Value::SingleQuotedString(s.clone()),
            ParamValue::Null => Value::Null,
        }
    }
}

/// Named parameters for one command or session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

impl Params {
    /// Parse `name=value` / `name:type=value` arguments.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Params> {
        let mut params = Params::default();
        for arg in args {
            let arg = arg.as_ref();
            let (lhs, value) = arg.split_once('=').ok_or_else(|| Error::Param {
                name: arg.to_string(),
                message: "expected name=value".into(),
            })?;
            let value = match lhs.split_once(':') {
                Some((name, type_name)) => (name, ParamValue::typed(name, type_name, value)?),
                None => (lhs, ParamValue::infer(value)),
            };
            params.set(value.0, value.1)?;
        }
        Ok(params)
    }

    /// Bind `name` (without the `$`).
    pub fn set(&mut self, name: &str, value: ParamValue) -> Result<()> {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::Param {
                name: name.to_string(),
                message: "names are letters, digits and _ (not starting with a digit)".into(),
            });
        }
        self.values.insert(name.to_string(), value);
        Ok(())
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// Names and values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }

    /// The parameters as a JSON object (for run configs).
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .values
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    ParamValue::Int(i) => serde_json::json!(i),
                    ParamValue::Float(f) => serde_json::json!(f),
                    ParamValue::Bool(b) => serde_json::json!(b),
                    ParamValue::Text(s) => serde_json::json!(s),
                    ParamValue::Null => serde_json::Value::Null,
                };
                (k.clone(), v)
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

/// Replace every `$name` placeholder in `statement` with the literal bound to `name`.
pub fn bind(statement: &mut Statement, params: &Params) -> Result<()> {
    match statement {
        Statement::Statement(s) => bind_node(s.as_mut(), params),
        Statement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(q) => bind_node(q.as_mut(), params),
            CopyToSource::Relation(_) => Ok(()),
        },
        Statement::Explain(explain) => bind(explain.statement.as_mut(), params),
        Statement::CreateExternalTable(_) | Statement::Reset(_) => Ok(()),
    }
}

fn bind_node<V: VisitMut>(node: &mut V, params: &Params) -> Result<()> {
    let flow = visit_expressions_mut(node, |expr| {
        if let Expr::Value(ValueWithSpan { value, .. }) = expr
            && let Value::Placeholder(placeholder) = value
        {
            let placeholder = placeholder.clone();
            let name = placeholder.trim_start_matches(['$', ':', '?']);
            if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                return ControlFlow::Break(Error::Param {
                    name: placeholder.clone(),
                    message: "positional placeholders are not supported; use $name".into(),
                });
            }
            match params.get(name) {
                Some(bound) => *value = bound.literal(),
                None => {
                    return ControlFlow::Break(Error::Param {
                        name: format!("${name}"),
                        message: format!("not bound (pass --param {name}=VALUE)"),
                    });
                }
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn bound(sql: &str, params: &Params) -> Result<String> {
        let mut statements = DFParser::parse_sql(sql).map_err(Error::from)?;
        let mut statement = statements.pop_front().expect("one statement");
        bind(&mut statement, params)?;
        Ok(statement.to_string())
    }

    #[test]
    fn infers_types() {
        assert_eq!(ParamValue::infer("5"), ParamValue::Int(5));
        assert_eq!(ParamValue::infer("-2"), ParamValue::Int(-2));
        assert_eq!(ParamValue::infer("0.25"), ParamValue::Float(0.25));
        assert_eq!(ParamValue::infer("true"), ParamValue::Bool(true));
        assert_eq!(ParamValue::infer("nan"), ParamValue::Text("nan".into()));
        assert_eq!(ParamValue::infer("1e"), ParamValue::Text("1e".into()));
        assert_eq!(ParamValue::infer("coco"), ParamValue::Text("coco".into()));
    }

    #[test]
    fn hostile_text_stays_one_literal() {
        let params = Params::from_args(&["v=x' OR '1'='1"]).expect("params");
        let sql = bound("SELECT * FROM t WHERE a = $v", &params).expect("bind");
        assert_eq!(sql, "SELECT * FROM t WHERE a = 'x'' OR ''1''=''1'");
    }

    #[test]
    fn binds_table_function_arguments_and_views() {
        let params = Params::from_args(&["n=3", "name:text=7"]).expect("params");
        let sql = bound("SELECT * FROM generate_series(1, $n)", &params).expect("bind");
        assert_eq!(sql, "SELECT * FROM generate_series(1, 3)");
        let sql = bound("CREATE VIEW v AS SELECT $name AS s", &params).expect("bind");
        assert_eq!(sql, "CREATE VIEW v AS SELECT '7' AS s");
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = bound("SELECT $missing", &Params::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter $missing: not bound (pass --param missing=VALUE)"
        );
        let e = bound("SELECT $1", &Params::default()).unwrap_err();
        assert!(e.to_string().contains("positional"), "{e}");
        let e = Params::from_args(&["novalue"]).unwrap_err();
        assert_eq!(e.to_string(), "parameter novalue: expected name=value");
        let e = Params::from_args(&["n:int=x"]).unwrap_err();
        assert_eq!(e.to_string(), "parameter n: 'x' is not an integer");
    }
}
