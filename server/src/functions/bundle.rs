//! What a deploy is made of, parsed at the edge: the function's [`Slug`], its
//! [`Bundle`] of source files (with the entrypoint and an optional import
//! map) and its checksum, and the names of [`SecretName`]s.
//!
//! File paths become real paths under the version's directory on the local
//! runtime, so they are refused when they could escape it or confuse Deno:
//! absolute paths, `.`/`..` or empty segments, backslashes, characters other
//! than ASCII letters, digits, `_`, `-`, `.` and `@`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::FunctionsError;

/// Longest slug, in characters.
const MAX_SLUG: usize = 63;
/// Most files in one bundle.
pub const MAX_FILES: usize = 200;
/// Largest bundle (sum of file sizes), in bytes.
pub const MAX_BUNDLE_BYTES: usize = 5 * 1024 * 1024;
/// Slugs that would be shadowed by admin routes.
const RESERVED: &[&str] = &["secrets", "schedules", "versions", "logs", "invocations"];

/// A function name in URLs: 1-63 of lowercase ASCII letters, digits, `_` and
/// `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// Parses a slug.
    pub fn parse(s: &str) -> Result<Self, FunctionsError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SLUG
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && !RESERVED.contains(&s);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FunctionsError::Invalid(format!(
                "{:?} is not a valid function slug: use 1-63 lowercase letters, digits, '_' or '-' \
                 (not {RESERVED:?}).",
                s.chars().take(80).collect::<String>()
            )))
        }
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The code part of a create/update request: either `code` (one file, the
/// entrypoint `index.ts`) or `files` + `entrypoint` (+ `import_map`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct Source {
    /// The whole function as one TypeScript/JavaScript file.
    #[serde(default)]
    pub code: Option<String>,
    /// Several files by relative path (`{"index.ts": "...", "lib/util.ts": "..."}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub files: Option<BTreeMap<String, String>>,
    /// The file that is run, among `files` (default `index.ts`).
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// An import map among `files` (`{"imports": {...}}`), e.g. `import_map.json`
    /// or `deno.json`; default: `deno.json` or `import_map.json` when present.
    #[serde(default)]
    pub import_map: Option<String>,
}

impl Source {
    /// Whether the request carries code at all.
    pub fn is_present(&self) -> bool {
        self.code.is_some() || self.files.is_some()
    }
}

/// A validated set of source files, ready to store as a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Files by relative path.
    pub files: BTreeMap<String, String>,
    /// The file that is run.
    pub entrypoint: String,
    /// The import map, when there is one.
    pub import_map: Option<String>,
}

/// Extensions Deno runs as a module.
const MODULE_EXTENSIONS: &[&str] = &[".ts", ".js", ".mts", ".mjs", ".tsx", ".jsx"];

impl Bundle {
    /// Validates a [`Source`].
    pub fn parse(source: Source) -> Result<Self, FunctionsError> {
        let invalid = |m: String| Err(FunctionsError::Invalid(m));
        let (files, entrypoint) = match (source.code, source.files) {
            (Some(_), Some(_)) => {
                return invalid("Send either `code` or `files`, not both.".into());
            }
            (None, None) => return invalid("Send the function's `code` (or `files`).".into()),
            (Some(code), None) => {
                let entry = source.entrypoint.unwrap_or_else(|| "index.ts".to_owned());
                (BTreeMap::from([(entry.clone(), code)]), entry)
            }
            (None, Some(files)) => {
                let entry = source.entrypoint.unwrap_or_else(|| "index.ts".to_owned());
                (files, entry)
            }
        };
        if files.is_empty() || files.len() > MAX_FILES {
            return invalid(format!("A function has 1 to {MAX_FILES} files."));
        }
        let total: usize = files.iter().map(|(p, c)| p.len() + c.len()).sum();
        if total > MAX_BUNDLE_BYTES {
            return invalid(format!(
                "The function's files total {total} bytes; the limit is {MAX_BUNDLE_BYTES}."
            ));
        }
        for (path, content) in &files {
            check_path(path)?;
            if content.contains('\0') {
                return invalid(format!(
                    "{path:?} contains a NUL character, which cannot be stored."
                ));
            }
            if path.rsplit('/').next() == Some(".npmrc") {
                // Deno fetches npm packages itself, outside the function's
                // net permissions, from the registry an .npmrc names.
                return invalid(format!(
                    "{path:?}: a function cannot choose the npm registry (.npmrc); \
                     the operator sets it with NPM_CONFIG_REGISTRY."
                ));
            }
        }
        check_path(&entrypoint)?;
        if !files.contains_key(&entrypoint) {
            return invalid(format!(
                "The entrypoint {entrypoint:?} is not among the files."
            ));
        }
        if !MODULE_EXTENSIONS.iter().any(|e| entrypoint.ends_with(e)) {
            return invalid(format!(
                "The entrypoint {entrypoint:?} must end in one of {MODULE_EXTENSIONS:?}."
            ));
        }
        let import_map = match source.import_map {
            Some(m) if files.contains_key(&m) => Some(m),
            Some(m) => return invalid(format!("The import map {m:?} is not among the files.")),
            None => ["deno.json", "import_map.json"]
                .into_iter()
                .find(|m| files.contains_key(*m))
                .map(str::to_owned),
        };
        if let Some(m) = &import_map {
            let text = files.get(m).map(String::as_str).unwrap_or_default();
            let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text) else {
                return invalid(format!("The import map {m:?} is not valid JSON."));
            };
            if is_deno_config(m) {
                check_deno_config(m, &parsed, &files)?;
            }
        }
        Ok(Self {
            files,
            entrypoint,
            import_map,
        })
    }

    /// Total size of the files, in bytes.
    pub fn size(&self) -> usize {
        self.files.values().map(String::len).sum()
    }

    /// SHA-256 (hex) over the entrypoint, the import map and every file
    /// (path and content, length-prefixed, in path order): two bundles have
    /// the same checksum exactly when they run the same code.
    pub fn checksum(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(self.entrypoint.as_bytes());
        field(self.import_map.as_deref().unwrap_or_default().as_bytes());
        for (path, content) in &self.files {
            field(path.as_bytes());
            field(content.as_bytes());
        }
        hex(ctx.finish().as_ref())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Whether the import map is a Deno config file (run with `--config`).
pub fn is_deno_config(path: &str) -> bool {
    path.ends_with("deno.json") || path.ends_with("deno.jsonc")
}

/// Settings of a `deno.json` that name other files, which the Deno CLI reads
/// itself, outside the function's permissions: refused, except an
/// `importMap` among the bundle's own files. (The lock file is off anyway.)
const CONFIG_PATH_KEYS: &[&str] = &["workspace", "links", "patch"];

fn check_deno_config(
    config: &str,
    value: &serde_json::Value,
    files: &BTreeMap<String, String>,
) -> Result<(), FunctionsError> {
    let invalid = |m: String| Err(FunctionsError::Invalid(m));
    if let Some(key) = CONFIG_PATH_KEYS.iter().find(|k| value.get(**k).is_some()) {
        return invalid(format!(
            "{config:?}: `{key}` is not supported in a function's config (it names files outside the function)."
        ));
    }
    if let Some(map) = value.get("importMap") {
        let dir = config.rsplit_once('/').map(|(d, _)| d);
        let inside = map.as_str().map(|p| {
            let p = p.strip_prefix("./").unwrap_or(p);
            match dir {
                Some(d) => format!("{d}/{p}"),
                None => p.to_owned(),
            }
        });
        if !inside.is_some_and(|p| check_path(&p).is_ok() && files.contains_key(&p)) {
            return invalid(format!(
                "{config:?}: `importMap` must name one of the function's files (e.g. \"./import_map.json\")."
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), FunctionsError> {
    let ok = !path.is_empty()
        && path.len() <= 200
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
        });
    if ok {
        Ok(())
    } else {
        Err(FunctionsError::Invalid(format!(
            "{:?} is not an allowed file path: use relative paths of letters, digits, '_', '-', \
             '.' and '@' separated by '/', without '.' or '..' segments.",
            path.chars().take(80).collect::<String>()
        )))
    }
}

/// A secret's name: an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`,
/// at most 128 characters) that is not one the platform sets itself
/// (`FERROBASE_*`, `SUPABASE_*`, `DENO_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    /// Parses a secret name.
    pub fn parse(s: &str) -> Result<Self, FunctionsError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(FunctionsError::Invalid(format!(
                "{:?} is not a valid secret name: use letters, digits and '_', not starting with a digit.",
                s.chars().take(80).collect::<String>()
            )));
        }
        let upper = s.to_ascii_uppercase();
        if ["FERROBASE_", "SUPABASE_", "DENO_"]
            .iter()
            .any(|p| upper.starts_with(p))
        {
            return Err(FunctionsError::Invalid(format!(
                "Secret names starting with FERROBASE_, SUPABASE_ or DENO_ are reserved ({s:?})."
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(files: &[(&str, &str)], entry: &str) -> Source {
        Source {
            code: None,
            files: Some(
                files
                    .iter()
                    .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
                    .collect(),
            ),
            entrypoint: Some(entry.to_owned()),
            import_map: None,
        }
    }

    #[test]
    fn slugs() {
        for ok in ["hello", "a", "hello-world_2", "0day"] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "Hello",
            "-a",
            "_a",
            "a/b",
            "a.b",
            "secrets",
            "é",
            long.as_str(),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_cannot_escape() {
        for bad in [
            "../x.ts",
            "/etc/passwd",
            "a//b.ts",
            "./a.ts",
            "a\\b.ts",
            "a/../../b.ts",
            "",
            "a b.ts",
            ".npmrc",
            "lib/.npmrc",
        ] {
            let s = source(&[("index.ts", "x"), (bad, "y")], "index.ts");
            assert!(Bundle::parse(s).is_err(), "{bad:?}");
        }
        let ok = source(&[("index.ts", "x"), ("lib/util@1.ts", "y")], "index.ts");
        assert!(Bundle::parse(ok).is_ok());
    }

    #[test]
    fn entrypoint_and_import_map() {
        assert!(Bundle::parse(source(&[("a.ts", "x")], "b.ts")).is_err());
        assert!(Bundle::parse(source(&[("a.json", "{}")], "a.json")).is_err());
        let b = Bundle::parse(source(
            &[("main.ts", "x"), ("deno.json", "{\"imports\":{}}")],
            "main.ts",
        ))
        .expect("valid");
        assert_eq!(b.import_map.as_deref(), Some("deno.json"));
        assert!(Bundle::parse(source(&[("main.ts", "x"), ("deno.json", "{")], "main.ts")).is_err());
        let code = Source {
            code: Some("export default {}".into()),
            ..Default::default()
        };
        let b = Bundle::parse(code).expect("code");
        assert_eq!(b.entrypoint, "index.ts");
        assert!(Bundle::parse(Source::default()).is_err());
    }

    #[test]
    fn checksum_is_stable_and_discriminating() {
        let a = Bundle::parse(source(&[("a.ts", "1"), ("b.ts", "2")], "a.ts")).expect("a");
        let same = Bundle::parse(source(&[("b.ts", "2"), ("a.ts", "1")], "a.ts")).expect("same");
        let moved = Bundle::parse(source(&[("a.ts", "12"), ("b.ts", "")], "a.ts")).expect("moved");
        assert_eq!(a.checksum(), same.checksum());
        assert_ne!(a.checksum(), moved.checksum());
        assert_eq!(a.checksum().len(), 64);
    }

    #[test]
    fn secret_names() {
        for ok in ["STRIPE_KEY", "_x", "a1"] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "FERROBASE_URL",
            "supabase_x",
            "DENO_DIR",
            "A B",
        ] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
    }
}
