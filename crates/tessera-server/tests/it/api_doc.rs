//! `docs/api.md` kept true: its routes against the router's `ROUTES` and the
//! running server, its error codes against the source, its settings against
//! the command line of `tessera serve`, its routes against the OpenAPI
//! document generated from the handlers (`GET /openapi.json`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use reqwest::Method;
use reqwest::header::HeaderMap;
use tessera_server::cli::Cli;
use tessera_server::openapi;
use tessera_server::router::ROUTES;
use tessera_server::settings::{Settings, SettingsArgs, parse_duration};

use crate::support::start_with_args;

/// A `(METHOD, /path)` pair.
type Route = (String, String);

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Read at run time, so that an edit of the document needs no rebuild.
fn doc() -> String {
    let path = crate_dir().join("../../docs/api.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the `## {title}` section, up to the next `## ` heading.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/api.md has no '## {title}' section"))
        + heading.len();
    let end = doc[start..].find("\n## ").map_or(doc.len(), |i| start + i);
    &doc[start..end]
}

/// The inline code spans (`` `…` ``) of a text, outside fenced blocks.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            spans.extend(line.split('`').skip(1).step_by(2));
        }
    }
    spans
}

/// `METHOD /path` in a code span, the query string dropped.
fn as_route(span: &str) -> Option<Route> {
    let (method, path) = span.split_once(' ')?;
    if !METHODS.contains(&method) || !path.starts_with('/') || path.contains(' ') {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    Some((method.to_owned(), path.to_owned()))
}

/// Every route the document mentions anywhere.
fn mentioned_routes(doc: &str) -> BTreeSet<Route> {
    code_spans(doc).into_iter().filter_map(as_route).collect()
}

/// The rows of the markdown tables of a text (lines starting with `|`,
/// separator rows excluded).
fn table_rows(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
}

/// The first cell of a table row, trimmed.
fn first_cell(row: &str) -> &str {
    row.trim_start_matches('|')
        .split('|')
        .next()
        .unwrap_or("")
        .trim()
}

/// The routes listed in the `## Routes` index table.
fn indexed_routes(doc: &str) -> BTreeSet<Route> {
    table_rows(section(doc, "Routes"))
        .filter_map(|row| as_route(first_cell(row).trim_matches('`')))
        .collect()
}

fn router_routes() -> BTreeSet<Route> {
    ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

fn show(routes: &BTreeSet<Route>) -> String {
    routes
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_router() {
    let doc = doc();
    let served = router_routes();
    assert!(
        served.len() >= 20,
        "ROUTES looks truncated: {}",
        show(&served)
    );
    let indexed = indexed_routes(&doc);
    let missing: BTreeSet<_> = served.difference(&indexed).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes the router serves but the '## Routes' table of docs/api.md lacks: {}",
        show(&missing)
    );
    let mentioned = mentioned_routes(&doc);
    let unknown: BTreeSet<_> = mentioned.difference(&served).cloned().collect();
    assert!(
        unknown.is_empty(),
        "routes docs/api.md documents that the router does not serve: {}",
        show(&unknown)
    );
    // Each route has its own section (a `### METHOD /path` heading) or a row
    // in the operations table.
    let ops = section(&doc, "Operations");
    for (method, path) in &served {
        let heading = format!("### `{method} {path}`");
        let row = format!("| `{method} {path}` |");
        assert!(
            doc.lines().any(|l| l.trim() == heading) || ops.contains(&row),
            "docs/api.md describes {method} {path} nowhere (no '{heading}' and no row in '## Operations')"
        );
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    // With an admin key, so that the admin route is on (else it is 404 by design).
    let server = start_with_args(&["--admin-key", "api-doc-test-admin-key"]).await;
    let documented = mentioned_routes(&doc());
    assert!(!documented.is_empty());
    for (method, path) in &documented {
        let concrete = path.replace("{id}", "ses_apiDocCheck0000000000");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let res = server.request(m, &concrete, HeaderMap::new(), None).await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        assert!(
            status != 404 && status != 405,
            "docs/api.md documents {method} {path}, but the server answers {status}: {body}"
        );
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The first string literal in `text`.
fn first_literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Every error code the server's source produces: the code argument of each
/// `ApiError::new(…)` (and `Self::new(…)` in `error.rs`), and each
/// `"error": "…"` written directly into a JSON body.
fn produced_error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for file in rust_files(&crate_dir().join("src")) {
        // Code only: comments may quote codes that are not produced.
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut needles = vec!["ApiError::new(", "\"error\": "];
        if file.ends_with("error.rs") {
            needles.push("Self::new(");
        }
        for needle in needles {
            for (i, _) in text.match_indices(needle) {
                let after = &text[i + needle.len()..];
                if needle.starts_with('"') && !after.starts_with('"') {
                    // `"error": self.code`: the code comes from a constructor.
                    continue;
                }
                // The code is the first literal, before the call's end.
                let call = after.split(';').next().unwrap_or(after);
                if let Some(code) = first_literal(call) {
                    let is_code = !code.is_empty()
                        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                    assert!(
                        is_code,
                        "{}: {needle}… has {code:?} where an error code should be",
                        file.display()
                    );
                    codes.insert(code.to_owned());
                }
            }
        }
    }
    codes
}

#[test]
fn every_error_code_is_documented() {
    let produced = produced_error_codes();
    // The scan must see the codes of error.rs, router.rs and the handlers.
    for sure in [
        "unauthenticated",
        "csrf_failed",
        "internal_error",
        "method_not_allowed",
        "username_taken",
        "unsupported_media_type",
    ] {
        assert!(
            produced.contains(sure),
            "the scan of src/ missed {sure}: {produced:?}"
        );
    }
    let doc = doc();
    let table: BTreeSet<String> = table_rows(section(&doc, "Error codes"))
        .map(|row| first_cell(row).trim_matches('`').to_owned())
        .filter(|c| c != "code")
        .collect();
    let missing: Vec<_> = produced.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "error codes the server produces that the '## Error codes' table of docs/api.md lacks: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&produced).collect();
    assert!(
        stale.is_empty(),
        "error codes in docs/api.md that the server never produces: {stale:?}"
    );
}

#[test]
fn every_setting_is_documented() {
    let doc = doc();
    let rows: Vec<&str> = table_rows(section(&doc, "Settings")).collect();
    let flag_of = |row: &str| {
        let cell = first_cell(row).trim_matches('`');
        cell.strip_prefix("--")
            .map(|f| f.split(' ').next().unwrap_or(f).to_owned())
    };
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve subcommand");
    let mut flags = BTreeSet::new();
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        flags.insert(long.to_owned());
        let row = rows
            .iter()
            .find(|r| flag_of(r).as_deref() == Some(long))
            .unwrap_or_else(|| {
                panic!("--{long} is missing from the '## Settings' table of docs/api.md")
            });
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{long} has no environment variable"))
            .to_str()
            .unwrap();
        assert!(
            row.contains(&format!("`{env}`")),
            "the docs/api.md row of --{long} lacks its variable {env}: {row}"
        );
        if long != "config" {
            let key = long.replace('-', "_");
            assert!(
                row.contains(&format!("`{key}`")),
                "the docs/api.md row of --{long} lacks its TOML key {key}: {row}"
            );
        }
    }
    assert!(
        flags.len() >= 20,
        "the serve command looks wrong: {flags:?}"
    );
    for row in &rows {
        if let Some(flag) = flag_of(row) {
            assert!(
                flags.contains(&flag),
                "docs/api.md documents --{flag}, which `tessera serve` does not have"
            );
        }
    }
    // The defaults, as `tessera config check` prints them with no settings.
    let defaults = Settings::resolve(SettingsArgs::default()).unwrap();
    for line in defaults.summary().lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.split_once(" = ").unwrap();
        let value = value.trim_matches('"');
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("the TOML key {key} is missing from docs/api.md"));
        let shown = match value {
            "false" => row.contains("| off |"),
            _ if key == "audience" => row.contains("the issuer"),
            // A duration may be written in another unit (`24h` for `1d`).
            _ => match parse_duration(value) {
                Ok(d) => code_spans(row)
                    .into_iter()
                    .any(|span| parse_duration(span) == Ok(d)),
                Err(_) => row.contains(&format!("`{value}`")),
            },
        };
        assert!(
            shown,
            "the docs/api.md row of {key} does not give its default {value}: {row}"
        );
    }
}

/// The `(METHOD, /path)` operations of the generated OpenAPI document.
fn openapi_operations(doc: &serde_json::Value) -> BTreeSet<Route> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let upper = method.to_uppercase();
            if METHODS.contains(&upper.as_str()) {
                operations.insert((upper, path.clone()));
            }
        }
    }
    operations
}

/// Both ways: an operation the router lacks, or a route the document lacks,
/// fails, naming it.
fn assert_same_routes(documented: &BTreeSet<Route>, served: &BTreeSet<Route>) {
    let undocumented: BTreeSet<_> = served.difference(documented).cloned().collect();
    assert!(
        undocumented.is_empty(),
        "routes the router serves that the OpenAPI document lacks (add #[utoipa::path] to the \
         handler and list it in src/openapi.rs): {}",
        show(&undocumented)
    );
    let unserved: BTreeSet<_> = documented.difference(served).cloned().collect();
    assert!(
        unserved.is_empty(),
        "operations of the OpenAPI document that the router does not serve: {}",
        show(&unserved)
    );
}

#[test]
fn the_openapi_document_has_exactly_the_routes_of_the_router() {
    let doc = openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let served = router_routes();
    let documented = openapi_operations(&doc);
    assert_same_routes(&documented, &served);
    // The comparison catches a missing route, and an extra one.
    let mut fewer = documented.clone();
    fewer.remove(&("POST".to_owned(), "/v1/tokens/introspect".to_owned()));
    let missing = std::panic::catch_unwind(|| assert_same_routes(&fewer, &served));
    let message = missing.expect_err("a route missing from the document must fail");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("POST /v1/tokens/introspect"), "{message}");
    let mut more = documented.clone();
    more.insert(("GET".to_owned(), "/v1/nowhere".to_owned()));
    assert!(std::panic::catch_unwind(|| assert_same_routes(&more, &served)).is_err());
    assert!(
        openapi::problems().is_empty(),
        "the generated OpenAPI document is inconsistent:\n{}",
        openapi::problems().join("\n")
    );
}

#[test]
fn the_openapi_document_has_the_routes_of_docs_api_md() {
    let doc = openapi::document();
    let operations = openapi_operations(&doc);
    let documented = mentioned_routes(&self::doc());
    assert_eq!(
        operations, documented,
        "the operations of the OpenAPI document (left) and the routes of docs/api.md (right) differ"
    );
}

#[test]
fn the_openapi_error_codes_are_the_codes_of_the_source() {
    let produced = produced_error_codes();
    let listed: BTreeSet<String> = openapi::ERROR_CODES
        .iter()
        .map(|(c, ..)| (*c).to_owned())
        .collect();
    assert_eq!(
        listed, produced,
        "openapi::ERROR_CODES (left) and the codes the source produces (right) differ"
    );
    // Each with the status docs/api.md gives it.
    let doc = doc();
    for row in table_rows(section(&doc, "Error codes")) {
        let code = first_cell(row).trim_matches('`');
        if code == "code" {
            continue;
        }
        let status = row.split('|').nth(2).unwrap_or("").trim();
        let listed = openapi::ERROR_CODES.iter().find(|(c, ..)| *c == code);
        assert_eq!(
            listed.map(|(_, s, _)| s.to_string()).as_deref(),
            Some(status),
            "{code}: docs/api.md and openapi::ERROR_CODES give different statuses"
        );
    }
}
