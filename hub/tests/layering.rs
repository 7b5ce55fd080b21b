//! The service library's layers and which way their dependencies point, checked over its
//! sources: the domain (matching, the detector's rules) reaches neither storage nor HTTP;
//! storage reaches no access control, audit service, core service or HTTP, and derives no
//! public schema; the services (core, access, the indexes, the error type) reach no HTTP;
//! HTTP reaches no storage row. A path in a comment does not count; a path
//! in code, `use` or not, does.

use std::fmt;
use std::path::{Path, PathBuf};

/// One layer: the modules (top-level under `src/`) it is made of and the paths its code
/// may not name.
struct Layer {
    name: &'static str,
    modules: &'static [&'static str],
    forbidden: &'static [&'static str],
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "domain",
        modules: &["matching", "mid"],
        forbidden: &[
            "crate::store",
            "crate::http",
            "crate::core",
            "crate::access",
            "crate::startup",
            "crate::biometrics",
            "sqlx::",
            "axum::",
        ],
    },
    Layer {
        name: "storage",
        modules: &["store"],
        forbidden: &[
            "crate::access",
            "crate::core",
            "crate::http",
            "crate::startup",
            "crate::biometrics",
            "crate::error",
            "axum::",
            "utoipa::",
            "ToSchema",
        ],
    },
    Layer {
        name: "service",
        modules: &["core", "access", "biometrics", "error", "batch"],
        forbidden: &[
            "crate::http",
            "crate::startup",
            "axum::",
            "hyper::",
            "tower_http::",
        ],
    },
    Layer {
        name: "HTTP",
        modules: &["http"],
        forbidden: &["crate::store", "sqlx::"],
    },
];

/// A forbidden path named in a layer's code.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: PathBuf,
    line: usize,
    layer: &'static str,
    path: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: the {} layer names `{}`",
            self.file.display(),
            self.line,
            self.layer,
            self.path
        )
    }
}

/// Every violation under `src`, a crate's source directory.
fn violations(src: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    for layer in LAYERS {
        for module in layer.modules {
            let mut files = Vec::new();
            let file = src.join(format!("{module}.rs"));
            if file.is_file() {
                files.push(file);
            }
            rust_files(&src.join(module), &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                for (index, line) in text.lines().enumerate() {
                    let code = code_of(line);
                    for path in layer.forbidden {
                        if names(code, path) {
                            found.push(Violation {
                                file: file.clone(),
                                line: index + 1,
                                layer: layer.name,
                                path,
                            });
                        }
                    }
                }
            }
        }
    }
    found
}

/// Whether `code` names `path` as a path of its own (`crate::store`, not
/// `crate::stored`).
fn names(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + path.len()..].chars().next();
        let starts = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let ends = path.ends_with("::") || after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        starts && ends
    })
}

/// A line without its comment (`//`, doc comments included). Good enough for this
/// codebase: no string literal in the checked layers holds `//` before a path.
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_library_keeps_its_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "dependencies against the layering:\n{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A source tree of the given files, for the check's own tests.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
        std::fs::write(path, text).expect("a file");
    }
    dir
}

#[test]
fn each_wrong_import_is_named_with_its_place() {
    let src = tree(&[
        (
            "matching/rules.rs",
            "//! Rules.\nuse crate::store::NewLink;\n",
        ),
        ("mid.rs", "fn f() -> axum::Json<()> { todo!() }\n"),
        (
            "store/links.rs",
            "use crate::access::Principal;\n#[derive(utoipa::IntoParams, ToSchema)]\nstruct Row;\n",
        ),
        ("store/mod.rs", "use crate::core::Hub;\n"),
        ("http/records.rs", "use crate::store::UpsertOutcome;\n"),
        (
            "core/records.rs",
            "impl axum::response::IntoResponse for X {}\n",
        ),
    ]);
    let found: Vec<(String, usize, &str)> = violations(src.path())
        .into_iter()
        .map(|v| {
            let file = v.file.strip_prefix(src.path()).expect("inside");
            (file.display().to_string(), v.line, v.path)
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("matching/rules.rs".to_owned(), 2, "crate::store"),
            ("mid.rs".to_owned(), 1, "axum::"),
            ("store/links.rs".to_owned(), 1, "crate::access"),
            ("store/links.rs".to_owned(), 2, "utoipa::"),
            ("store/links.rs".to_owned(), 2, "ToSchema"),
            ("store/mod.rs".to_owned(), 1, "crate::core"),
            ("core/records.rs".to_owned(), 1, "axum::"),
            ("http/records.rs".to_owned(), 1, "crate::store"),
        ]
    );
}

#[test]
fn comments_and_longer_names_are_not_imports() {
    let src = tree(&[
        (
            "store/links.rs",
            "//! Unlike crate::core, this is storage.\nuse crate::stored::Thing; // crate::access\n",
        ),
        ("http/mod.rs", "use crate::core::Hub; // not crate::store\n"),
    ]);
    assert_eq!(violations(src.path()), Vec::new());
}
