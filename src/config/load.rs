//! From text to a validated [`AppConfig`]: parse the embedded default, layer
//! a config file over it, apply `SWITCHBOARD__…` environment overrides to the
//! TOML value tree, deserialize with field paths, validate.
//!
//! It reads no file itself, and only [`process_env`] reads the environment
//! (for `AppConfig::load`): everything else takes the texts and the
//! `(name, value)` pairs it is given, so tests never touch the process
//! environment.

use super::{AppConfig, ConfigError, ConfigProblem, DEFAULT_CONFIG, ENV_PREFIX};
use std::path::Path;
use toml::{Table, Value};

/// Top-level key of a config file that says whether it is layered over the
/// embedded default. Removed before deserialization.
const INHERIT_KEY: &str = "inherit_default";

/// The origin label used in errors for a file path (or the default).
pub(super) fn origin_of(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "embedded default".to_string(),
    }
}

/// The process's `SWITCHBOARD__…` variables; a variable whose value is not
/// UTF-8 is a problem rather than a silently mangled setting.
pub(super) fn process_env() -> (Vec<(String, String)>, Vec<ConfigProblem>) {
    let mut vars = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) => problems.push(ConfigProblem::new(name, "value is not valid UTF-8")),
        }
    }
    (vars, problems)
}

/// Builds and validates a configuration: `file` (if any) layered over the
/// embedded default, then `env`. `origin` names the file in syntax errors.
pub(super) fn build<I>(file: Option<&str>, origin: &str, env: I) -> Result<AppConfig, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let invalid = |problems: Vec<ConfigProblem>| ConfigError::Invalid {
        origin: origin.to_string(),
        problems,
    };
    let mut problems = Vec::new();

    let mut tree = parse_table(DEFAULT_CONFIG, "embedded default").map_err(|p| invalid(vec![p]))?;
    tree.remove(INHERIT_KEY);
    if let Some(text) = file {
        let mut layer = parse_table(text, origin).map_err(|p| invalid(vec![p]))?;
        let inherit = match layer.remove(INHERIT_KEY) {
            None => true,
            Some(Value::Boolean(b)) => b,
            Some(other) => {
                problems.push(ConfigProblem::new(
                    INHERIT_KEY,
                    format!("expected true or false, found {}", other.type_str()),
                ));
                true
            }
        };
        if inherit {
            merge(&mut tree, layer, &mut Vec::new());
        } else {
            tree = layer;
        }
    }

    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Sorted, so that `SWITCHBOARD__SERVER` applies before
    // `SWITCHBOARD__SERVER__LISTEN` whatever order the OS lists them in.
    env.sort();
    let mut env_paths: Vec<(String, String)> = Vec::new();
    for (name, value) in &env {
        match apply_env(&mut tree, &name[ENV_PREFIX.len()..], value) {
            Ok(path) => {
                if let Some((_, earlier)) = env_paths.iter().find(|(p, _)| *p == path) {
                    problems.push(ConfigProblem::new(
                        name.clone(),
                        format!("sets `{path}`, as {earlier} does already"),
                    ));
                }
                env_paths.push((path, name.clone()));
            }
            Err(message) => problems.push(ConfigProblem::new(name.clone(), message)),
        }
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }

    let config: AppConfig = match serde_path_to_error::deserialize(Value::Table(tree)) {
        Ok(config) => config,
        Err(e) => {
            let path = match e.path().to_string() {
                p if p == "." => "<root>".to_string(),
                p => p,
            };
            let problem = ConfigProblem::new(path, e.inner().message().to_string());
            return Err(invalid(vec![annotate(problem, &env_paths)]));
        }
    };
    let problems: Vec<ConfigProblem> = config
        .validate()
        .into_iter()
        .map(|p| annotate(p, &env_paths))
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

/// Parses TOML text into a table; a syntax error names `origin:line:column`.
fn parse_table(text: &str, origin: &str) -> Result<Table, ConfigProblem> {
    text.parse::<Table>().map_err(|e| {
        let location = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{origin}:{line}:{column}")
            }
            None => origin.to_string(),
        };
        let message: Vec<&str> = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        ConfigProblem::new(
            location,
            format!("TOML syntax error: {}", message.join("; ")),
        )
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Whether the value at `path` is replaced whole by a layer rather than
/// merged key by key: a queue's `skills` map is a requirement, not a section.
fn replaced_whole(path: &[String]) -> bool {
    matches!(path, [queues, _, skills] if queues == "queues" && skills == "skills")
}

/// Layers `over` onto `base`: tables merge key by key, anything else
/// (values, arrays, a queue's `skills`) replaces. Keys keep their first position.
fn merge(base: &mut Table, over: Table, path: &mut Vec<String>) {
    for (key, value) in over {
        path.push(key.clone());
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) if !replaced_whole(path) => merge(b, o, path),
            (_, value) => {
                base.insert(key, value);
            }
        }
        path.pop();
    }
}

/// Applies one override; `rest` is the variable name after the prefix.
/// Returns the dotted path it set.
fn apply_env(tree: &mut Table, rest: &str, value: &str) -> Result<String, String> {
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!(
            "empty path segment: expected {ENV_PREFIX}SECTION__KEY"
        ));
    }
    if segments[0] == INHERIT_KEY {
        return Err(format!("`{INHERIT_KEY}` can only be set in a config file"));
    }
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| "empty path".to_string())?;
    let mut table = tree;
    let mut walked: Vec<&str> = Vec::new();
    for segment in parents {
        walked.push(segment);
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            Value::Array(_) => {
                return Err(format!(
                    "`{}` is an array: set it whole, as a TOML array",
                    walked.join(".")
                ));
            }
            other => {
                return Err(format!(
                    "`{}` is a {}, not a table",
                    walked.join("."),
                    other.type_str()
                ))
            }
        };
    }
    table.insert(last.clone(), parse_env_value(value));
    Ok(segments.join("."))
}

/// A TOML literal when the text is one (`5`, `true`, `[1, 2]`, `{ a = 1 }`,
/// `"quoted"`), else the text as a string.
fn parse_env_value(raw: &str) -> Value {
    let literal = format!("value = {raw}");
    if let Ok(mut table) = literal.parse::<Table>() {
        if table.len() == 1 {
            if let Some(value) = table.remove("value") {
                if !matches!(value, Value::Datetime(_)) {
                    return value;
                }
            }
        }
    }
    Value::String(raw.to_string())
}

/// Adds the name of the environment variable that set a field (or a field
/// inside it, or a table it created) to a problem about it.
fn annotate(mut problem: ConfigProblem, env_paths: &[(String, String)]) -> ConfigProblem {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || (inner.starts_with(outer)
                && matches!(inner.as_bytes().get(outer.len()), Some(b'.') | Some(b'[')))
    };
    let vars: Vec<&str> = env_paths
        .iter()
        .filter(|(path, _)| within(&problem.path, path) || within(path, &problem.path))
        .map(|(_, var)| var.as_str())
        .collect();
    if !vars.is_empty() {
        problem.message = format!("{} (set by {})", problem.message, vars.join(", "));
    }
    problem
}
