//! Compiles `config/` (the flow file, jq mappings, contracts) into the library, so a
//! deployed function reads the flows it was built and tested with.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((rel.to_string_lossy().replace('\\', "/"), path.canonicalize().unwrap_or(path.clone())));
        }
    }
}

fn main() {
    // Read at run time: a build-script binary cargo reuses from another checkout
    // would otherwise look for that checkout's config/ and bundle nothing.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../config");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(
        files.iter().any(|(rel, _)| rel == "flows.toml"),
        "no flow file at {}: the functions bundle config/ at build time",
        root.join("flows.toml").display()
    );
    files.sort();
    let mut code = String::from("pub static FILES: &[(&str, &str)] = &[\n");
    for (rel, abs) in files {
        writeln!(code, "    ({rel:?}, include_str!({:?})),", abs.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}
