//! The functions a session knows, with their documentation: what `\df` lists and `\df NAME` shows.

use datafusion::prelude::SessionContext;

/// What kind of function a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionKind {
    Scalar,
    Aggregate,
    Window,
    Table,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Scalar => "scalar",
            FunctionKind::Aggregate => "aggregate",
            FunctionKind::Window => "window",
            FunctionKind::Table => "table",
        }
    }
}

/// One function's documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDoc {
    pub name: String,
    /// vlmdb's own function (else one of DataFusion's built-ins).
    pub vlmdb: bool,
    pub kind: FunctionKind,
    pub description: String,
    pub syntax: String,
    pub arguments: Vec<(String, String)>,
    pub example: Option<String>,
}

/// Every function of the session with its documentation, sorted by name then kind.
pub fn list(ctx: &SessionContext) -> Vec<FunctionDoc> {
    let state = ctx.state();
    let builtins = builtin_names();
    let mut docs = Vec::new();
    let mut push = |name: &str, kind, doc: Option<&datafusion::logical_expr::Documentation>| {
        let vlmdb = !builtins.contains(&(name.to_string(), kind));
        docs.push(match doc {
            Some(d) => FunctionDoc {
                name: name.to_string(),
                vlmdb,
                kind,
                description: d.description.clone(),
                syntax: d.syntax_example.clone(),
                arguments: d.arguments.clone().unwrap_or_default(),
                example: d.sql_example.clone(),
            },
            None => FunctionDoc {
                name: name.to_string(),
                vlmdb,
                kind,
                description: String::new(),
                syntax: String::new(),
                arguments: Vec::new(),
                example: None,
            },
        });
    };
    for (name, f) in state.scalar_functions() {
        let doc = f
            .documentation()
            .or_else(|| super::udf::async_documentation(name));
        push(name, FunctionKind::Scalar, doc);
    }
    for (name, f) in state.aggregate_functions() {
        push(name, FunctionKind::Aggregate, f.documentation());
    }
    for (name, f) in state.window_functions() {
        push(name, FunctionKind::Window, f.documentation());
    }
    for name in state.table_functions().keys() {
        push(name, FunctionKind::Table, super::udtf::documentation(name));
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name).then(a.kind.cmp(&b.kind)));
    docs
}

/// The functions a bare DataFusion session has, by name and kind: what is not among them is vlmdb's. Made once
/// per process (a bare session registers every built-in).
fn builtin_names() -> &'static std::collections::HashSet<(String, FunctionKind)> {
    static NAMES: std::sync::OnceLock<std::collections::HashSet<(String, FunctionKind)>> =
        std::sync::OnceLock::new();
    NAMES.get_or_init(bare_names)
}

fn bare_names() -> std::collections::HashSet<(String, FunctionKind)> {
    let state = SessionContext::new().state();
    let mut names = std::collections::HashSet::new();
    names.extend(
        state
            .scalar_functions()
            .keys()
            .map(|n| (n.clone(), FunctionKind::Scalar)),
    );
    names.extend(
        state
            .aggregate_functions()
            .keys()
            .map(|n| (n.clone(), FunctionKind::Aggregate)),
    );
    names.extend(
        state
            .window_functions()
            .keys()
            .map(|n| (n.clone(), FunctionKind::Window)),
    );
    names.extend(
        state
            .table_functions()
            .keys()
            .map(|n| (n.clone(), FunctionKind::Table)),
    );
    names
}

/// The documentation of the function(s) called `name` (case-insensitive).
pub fn find(ctx: &SessionContext, name: &str) -> Vec<FunctionDoc> {
    let name = name.to_ascii_lowercase();
    list(ctx).into_iter().filter(|d| d.name == name).collect()
}
