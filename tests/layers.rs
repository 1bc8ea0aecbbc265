//! The floors of DESIGN §2, read from the source: every `crate::…` path in `src/` is an import of one top-level
//! module by another, and an import may only point down (or along its own floor). The top-level modules must also
//! form no cycle, so each can be read knowing only what stands below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → floor (1 = top). Every module of `src/` must be listed.
const FLOORS: &[(&str, u8)] = &[
    ("main", 1),
    ("cli", 1),
    ("commands", 2),
    ("sql", 3),
    ("inference", 4),
    ("caption_loop", 4),
    ("eval", 4),
    ("cluster", 4),
    ("train", 4),
    ("plot", 4),
    ("models", 5),
    ("ingest", 6),
    ("store", 7),
    ("simd", 8),
    ("image", 8),
    ("error", 8),
    ("rng", 8),
    ("progress", 8),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/eval/ranks.rs` → `eval`); `None` for `lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src/");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The top-level modules a file names through `crate::` paths, comments left out (doc links are not imports).
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::b, c}`: the first segment of every item of the group.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// (importing module, imported module) → the files that make the import.
fn import_graph() -> BTreeMap<(String, String), Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for to in imports(&text) {
            if to != from {
                let shown = file
                    .strip_prefix(&src)
                    .expect("under src/")
                    .display()
                    .to_string();
                graph.entry((from.clone(), to)).or_default().push(shown);
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(&src, f))
        .filter(|m| floor(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no floor in tests/layers.rs (add them to FLOORS): {unplaced:?}"
    );
}

#[test]
fn imports_only_point_down_the_floors() {
    let mut upward = Vec::new();
    for ((from, to), files) in import_graph() {
        let (Some(f), Some(t)) = (floor(&from), floor(&to)) else {
            continue;
        };
        if t < f {
            upward.push(format!(
                "{from} (floor {f}) imports {to} (floor {t}) in {}",
                files.join(", ")
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the floors:\n{}",
        upward.join("\n")
    );
}

#[test]
fn models_stand_on_the_ground_floor_only() {
    // Models are config + weights → forward: no store, no SQL, no training, no evaluation.
    let imported: BTreeSet<String> = import_graph()
        .into_keys()
        .filter(|(from, _)| from == "models")
        .map(|(_, to)| to)
        .collect();
    let allowed: BTreeSet<String> = ["simd", "image", "error", "rng", "progress"]
        .map(String::from)
        .into();
    assert!(
        imported.is_subset(&allowed),
        "models imports {:?}",
        imported.difference(&allowed).collect::<Vec<_>>()
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = import_graph();
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in graph.keys() {
        next.entry(from).or_default().insert(to);
    }
    // A module is on a cycle when it reaches itself.
    let mut cycles = Vec::new();
    for &start in next.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = next[start].iter().copied().collect();
        while let Some(module) = stack.pop() {
            if module == start {
                cycles.push(start.to_string());
                break;
            }
            if seen.insert(module) {
                stack.extend(next.get(module).into_iter().flatten().copied());
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules on an import cycle: {cycles:?} (edges: {:?})",
        graph
            .keys()
            .filter(|(f, t)| cycles.contains(f) && cycles.contains(t))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_reader_sees_paths_and_groups() {
    let text = "use crate::store::Store;\nuse crate::{error::Error, rng};\n// crate::cli in a comment\n\
                let x = crate::simd::kernel::available();";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["error", "rng", "simd", "store"]);
}
