//! The front end's layers, read from its sources: an update's path goes intake → inbox →
//! router → one feature → shared → outbox, and no module reaches back up it. A feature
//! (`src/features/*.rs`) names no other feature and not the router; the shared layer
//! (`src/shared/`) names no feature and not the router; below the router nothing names a
//! feature (but `run.rs`, which starts the broadcaster) and only `run.rs` names the router.
//!
//! Paths are read as Rust reads them (`crate::a::{b, c::d}`, `self::`, `super::`), from the
//! code without its comments and strings.

use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The code's tokens: words, `::`, `{`, `}`, `,`, `*` (the rest is dropped); comments and
/// string literals left out.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut chars = line.chars().peekable();
        let mut in_string = false;
        while let Some(c) = chars.next() {
            if in_string {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            } else if c.is_alphanumeric() || c == '_' {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                    word.push(next);
                    chars.next();
                }
                out.push(word);
            } else if c == ':' && chars.peek() == Some(&':') {
                chars.next();
                out.push("::".into());
            } else if matches!(c, '{' | '}' | ',' | '*') {
                out.push(c.into());
            }
        }
    }
    out
}

/// Reads the path tree at `tokens[at]` (after `prefix::`), adding each full path to `out`;
/// returns where it ends.
fn tree(tokens: &[String], mut at: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    match tokens.get(at).map(String::as_str) {
        Some("{") => {
            at += 1;
            while let Some(token) = tokens.get(at) {
                match token.as_str() {
                    "}" => return at + 1,
                    "," => at += 1,
                    _ => at = tree(tokens, at, prefix, out),
                }
            }
            at
        }
        Some(word) if word != "}" && word != "," && word != "::" => {
            let mut path = prefix.to_vec();
            path.push(word.to_owned());
            if tokens.get(at + 1).map(String::as_str) == Some("::") {
                tree(tokens, at + 2, &path, out)
            } else {
                out.push(path);
                at + 1
            }
        }
        _ => at + 1,
    }
}

/// The module `file` (relative to `src`) is: `features/rerun.rs` is `[features, rerun]`.
fn module_of(file: &str) -> Vec<String> {
    let file = file.strip_suffix(".rs").unwrap_or(file);
    let mut module: Vec<String> = file.split('/').map(str::to_owned).collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        module.pop();
    }
    module
}

/// The crate paths the code of `module` names, each from `crate` on: `crate::`, `self::` and
/// `super::` resolved (in the `#[cfg(test)]` tail, a module nested in `module`).
fn crate_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let (main, tests) = code.split_once("#[cfg(test)]").unwrap_or((code, ""));
    let mut paths = Vec::new();
    for (part, in_tests) in [(main, false), (tests, true)] {
        let tokens = tokens(part);
        for (at, token) in tokens.iter().enumerate() {
            let is = |i: usize, word: &str| tokens.get(i).is_some_and(|t| t == word);
            if (at > 0 && is(at - 1, "::")) || !is(at + 1, "::") {
                continue;
            }
            let mut base = module.to_vec();
            if in_tests {
                base.push("tests".into());
            }
            let mut next = at;
            match token.as_str() {
                "crate" => {
                    base.clear();
                    next += 2;
                }
                "self" => next += 2,
                "super" => {
                    while is(next, "super") && is(next + 1, "::") {
                        base.pop();
                        next += 2;
                    }
                }
                _ => continue,
            }
            let mut prefix = vec!["crate".to_owned()];
            prefix.extend(base);
            tree(&tokens, next, &prefix, &mut paths);
        }
    }
    paths
}

/// What `file` (relative to `src`) names that its layer may not.
fn violations(file: &str, code: &str) -> Vec<String> {
    let module = module_of(file);
    let own_feature = match module.as_slice() {
        // A feature's own submodules (`features/payments/payload.rs`) are the feature's.
        [features, own, ..] if features == "features" => Some(own.as_str()),
        _ => None,
    };
    let mut found = Vec::new();
    for path in crate_paths(code, &module) {
        let top = path.get(1).map_or("", String::as_str);
        let inner = path.get(2).map_or("", String::as_str);
        let allowed = match (file, top) {
            ("features/mod.rs", _) => true,
            (_, "features") if inner == "*" => false,
            ("router.rs", _) => true,
            // The intake starts the broadcaster with the bot's other tasks.
            ("run.rs", "features") => inner == "broadcast",
            ("run.rs", "router") => true,
            (_, "router") => false,
            (_, "features") => own_feature == Some(inner),
            // Sending sits below the handlers' isolation, which sends its notices through it.
            (f, "isolation") if f.starts_with("pacing") || f == "outbox.rs" => false,
            _ => true,
        };
        if !allowed {
            found.push(format!("{file} names {}", path.join("::")));
        }
    }
    found
}

#[test]
fn no_module_reaches_back_up_the_update_path() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    assert!(
        files.iter().any(|f| f.ends_with("features/settings.rs")),
        "the features were not found under {}",
        src.display()
    );
    let mut found = Vec::new();
    for path in &files {
        let code = std::fs::read_to_string(path).expect("a source file");
        let file = path
            .strip_prefix(&src)
            .expect("below src")
            .to_string_lossy();
        found.extend(violations(&file.replace('\\', "/"), &code));
    }
    assert!(found.is_empty(), "layers crossed:\n{}", found.join("\n"));
}

/// The reader finds each way of naming another feature or the router.
#[test]
fn the_reader_sees_every_way_of_naming_a_module() {
    let named = |file: &str, code: &str| violations(file, code);
    assert!(named("features/img2img.rs", "use crate::shared::submit;").is_empty());
    assert!(named("features/img2img.rs", "crate::features::img2img::x();").is_empty());
    assert!(named(
        "features/rerun.rs",
        "#[cfg(test)]\nmod tests { use super::*; }"
    )
    .is_empty());
    assert!(named("router.rs", "use crate::features::{groups, rerun};").is_empty());
    for (file, code) in [
        ("features/img2img.rs", "use crate::features::groups;"),
        (
            "features/img2img.rs",
            "use crate::{features::{groups, rerun}, Front};",
        ),
        ("features/img2img.rs", "use super::groups;"),
        ("features/img2img.rs", "use super::*;"),
        (
            "features/img2img.rs",
            "let x = crate :: features :: groups::reply();",
        ),
        ("features/img2img.rs", "use crate::router::schema;"),
        (
            "features/img2img.rs",
            "#[cfg(test)]\nmod t { use super::super::groups; }",
        ),
        ("shared/submit.rs", "use super::super::features::groups;"),
        ("shared/submit.rs", "use crate::features::rerun::again;"),
        (
            "outbox.rs",
            "crate::features::rerun::result_keyboard(lang, job)",
        ),
        ("isolation.rs", "use crate::router;"),
        ("pacing.rs", "crate::isolation::is_transient(e)"),
        ("run.rs", "use crate::features::rerun;"),
    ] {
        assert!(!named(file, code).is_empty(), "{file}: {code}");
    }
    // Comments and strings name nothing.
    assert!(named(
        "features/a.rs",
        "// crate::features::b\nlet s = \"crate::router\";"
    )
    .is_empty());
}
