//! Resolving the image paths a dataset names, without letting them escape the images root: absolute paths,
//! `..` components and symlinks that lead outside the root are refused.

use std::path::{Component, Path, PathBuf};

/// Resolve `relative` inside `root`; the error is the reason the item is rejected.
pub fn resolve(root: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if relative.is_empty() {
        return Err("empty image path".into());
    }
    if rel.is_absolute() {
        return Err(format!(
            "absolute path {relative} is outside the images root"
        ));
    }
    if rel
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!("path {relative} escapes the images root"));
    }
    let joined = root.join(rel);
    let meta = std::fs::symlink_metadata(&joined);
    if meta.is_err() {
        return Err(format!("missing image file {}", joined.display()));
    }
    let real = joined
        .canonicalize()
        .map_err(|_| format!("missing image file {} (dangling link)", joined.display()))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("images root {}: {e}", root.display()))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "{relative} is a link to {} outside the images root",
            real.display()
        ));
    }
    if !real.is_file() {
        return Err(format!("{relative} is not a file"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("a.png"), b"x").expect("write");
        std::fs::write(dir.path().join("outside.png"), b"x").expect("write");
        std::os::unix::fs::symlink(dir.path().join("outside.png"), root.join("out.png"))
            .expect("symlink");
        assert!(resolve(&root, "a.png").is_ok());
        assert!(resolve(&root, "./a.png").is_ok());
        assert!(
            resolve(&root, "../outside.png")
                .expect_err("dotdot")
                .contains("escapes")
        );
        assert!(
            resolve(&root, "/etc/hostname")
                .expect_err("abs")
                .contains("absolute")
        );
        assert!(
            resolve(&root, "out.png")
                .expect_err("link")
                .contains("outside the images root")
        );
        assert!(
            resolve(&root, "nope.png")
                .expect_err("missing")
                .contains("missing image file")
        );
    }
}
