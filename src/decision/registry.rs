//! The tool registry and purpose profiles: which upstream serves each tool and how, which
//! arguments name the resource and are bounded by the envelope, which data classes it
//! touches; and, per declared purpose, which tools and data classes it admits. Read from
//! `tools.toml` and `purposes.toml` by the compiler, carried in the bundle for the gateway.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a tool is reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ToolKind {
    /// A plain HTTP API: `method` and `path` (a template over the arguments).
    Http,
    /// An MCP server: `path` is its endpoint; the tool is `remote_name` there.
    Mcp { remote_name: String },
}

/// The argument naming the entity a call acts on, and that entity's Cedar type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceArg {
    pub entity_type: String,
    pub arg: String,
}

/// An argument bounded by an envelope resource constraint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeArg {
    pub arg: String,
    /// The `resource_constraints` key (`customer_id`, `contract_ids`, ...).
    pub constraint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub kind: ToolKind,
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub credential: String,
    pub credential_header: Option<String>,
    pub credential_prefix: Option<String>,
    pub data_classes: Vec<String>,
    pub resource: ResourceArg,
    pub scope: Vec<ScopeArg>,
    pub record_count_arg: Option<String>,
    /// JSON Schema (text) advertised in MCP `tools/list` for HTTP tools.
    pub input_schema: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurposeProfile {
    pub name: String,
    pub description: String,
    pub tools: Vec<String>,
    pub data_classes: Vec<String>,
}

/// A problem in `tools.toml` or `purposes.toml`, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct RegistryError {
    pub file: String,
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsFile {
    #[serde(default = "default_principal")]
    principal_type: String,
    #[serde(default)]
    tools: BTreeMap<String, ToolEntry>,
}

fn default_principal() -> String {
    "User".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    #[serde(rename = "type")]
    entity_type: String,
    arg: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolEntry {
    #[serde(default)]
    description: String,
    upstream: String,
    #[serde(default = "default_kind")]
    kind: String,
    remote_name: Option<String>,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    credential: String,
    credential_header: Option<String>,
    credential_prefix: Option<String>,
    #[serde(default)]
    data_classes: Vec<String>,
    resource: ResourceEntry,
    #[serde(default)]
    scope: BTreeMap<String, String>,
    record_count_arg: Option<String>,
    input_schema: Option<String>,
}

fn default_kind() -> String {
    "http".into()
}

fn default_method() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposesFile {
    #[serde(default)]
    purposes: BTreeMap<String, PurposeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeEntry {
    #[serde(default)]
    description: String,
    tools: Vec<String>,
    #[serde(default)]
    data_classes: Vec<String>,
}

fn toml_error(file: &str, text: &str, e: toml::de::Error) -> RegistryError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    RegistryError {
        file: file.into(),
        field: line.map_or("(parse)".into(), |l| format!("line {l}")),
        message: e.message().trim().to_owned(),
    }
}

/// Parses `tools.toml`: the principal entity type and the tools, by name.
pub fn parse_tools(file: &str, text: &str) -> Result<(String, Vec<ToolSpec>), RegistryError> {
    let f: ToolsFile = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
    let err = |field: String, message: String| RegistryError {
        file: file.into(),
        field,
        message,
    };
    let mut out = Vec::with_capacity(f.tools.len());
    for (name, t) in f.tools {
        let at = |k: &str| format!("tools.\"{name}\".{k}");
        let kind = match t.kind.as_str() {
            "http" => {
                if t.remote_name.is_some() {
                    return Err(err(
                        at("remote_name"),
                        "only MCP tools have a remote name".into(),
                    ));
                }
                ToolKind::Http
            }
            "mcp" => ToolKind::Mcp {
                remote_name: t.remote_name.unwrap_or_else(|| name.clone()),
            },
            other => {
                return Err(err(
                    at("kind"),
                    format!("`{other}`; expected \"http\" or \"mcp\""),
                ));
            }
        };
        let method = t.method.to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(err(
                at("method"),
                format!("`{}` is not GET, POST, PUT, PATCH or DELETE", t.method),
            ));
        }
        if matches!(kind, ToolKind::Mcp { .. }) && method != "POST" {
            return Err(err(at("method"), "MCP tools are called with POST".into()));
        }
        if !t.path.starts_with('/') {
            return Err(err(at("path"), format!("`{}` must start with '/'", t.path)));
        }
        let mut open = false;
        for c in t.path.chars() {
            match c {
                '{' if open => {
                    return Err(err(at("path"), "nested '{' in the path template".into()));
                }
                '{' => open = true,
                '}' if !open => {
                    return Err(err(
                        at("path"),
                        "unbalanced '}' in the path template".into(),
                    ));
                }
                '}' => open = false,
                _ => {}
            }
        }
        if open {
            return Err(err(at("path"), "unclosed '{' in the path template".into()));
        }
        if let Some(s) = &t.input_schema
            && serde_json::from_str::<serde_json::Value>(s).map_or(true, |v| !v.is_object())
        {
            return Err(err(
                at("input_schema"),
                "must be a JSON Schema object (JSON text)".into(),
            ));
        }
        if t.credential.is_empty() || t.upstream.is_empty() {
            return Err(err(
                at("credential"),
                "upstream and credential must be named".into(),
            ));
        }
        out.push(ToolSpec {
            name: name.clone(),
            description: t.description,
            kind,
            upstream: t.upstream,
            method,
            path: t.path,
            credential: t.credential,
            credential_header: t.credential_header,
            credential_prefix: t.credential_prefix,
            data_classes: t.data_classes,
            resource: ResourceArg {
                entity_type: t.resource.entity_type,
                arg: t.resource.arg,
            },
            scope: t
                .scope
                .into_iter()
                .map(|(arg, constraint)| ScopeArg { arg, constraint })
                .collect(),
            record_count_arg: t.record_count_arg,
            input_schema: t.input_schema,
        });
    }
    Ok((f.principal_type, out))
}

/// Parses `purposes.toml`; every tool a purpose admits must be in `tools`.
pub fn parse_purposes(
    file: &str,
    text: &str,
    tools: &[ToolSpec],
) -> Result<Vec<PurposeProfile>, RegistryError> {
    let f: PurposesFile = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
    let mut out = Vec::with_capacity(f.purposes.len());
    for (name, p) in f.purposes {
        for t in &p.tools {
            if !tools.iter().any(|x| &x.name == t) {
                return Err(RegistryError {
                    file: file.into(),
                    field: format!("purposes.{name}.tools"),
                    message: format!("`{t}` is not a tool in the registry"),
                });
            }
        }
        out.push(PurposeProfile {
            name,
            description: p.description,
            tools: p.tools,
            data_classes: p.data_classes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &str = r#"
principal_type = "User"
[tools."contracts.read"]
description = "Read a contract"
upstream = "records"
method = "GET"
path = "/contracts/{contract_id}"
credential = "records_api"
data_classes = ["contract_metadata"]
resource = { type = "Contract", arg = "contract_id" }
scope = { contract_id = "contract_ids" }

[tools."contracts.classify_clauses"]
kind = "mcp"
upstream = "docs-mcp"
path = "/mcp"
credential = "docs_mcp"
resource = { type = "Contract", arg = "contract_id" }
"#;

    #[test]
    fn parses_tools_and_purposes() {
        let (p, tools) = parse_tools("tools.toml", TOOLS).unwrap();
        assert_eq!(p, "User");
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[1].kind, ToolKind::Http);
        assert_eq!(
            tools[0].kind,
            ToolKind::Mcp {
                remote_name: "contracts.classify_clauses".into()
            }
        );
        assert_eq!(
            tools[1].scope[0],
            ScopeArg {
                arg: "contract_id".into(),
                constraint: "contract_ids".into()
            }
        );
        let purposes = parse_purposes(
            "purposes.toml",
            "[purposes.review]\ntools = [\"contracts.read\"]\n",
            &tools,
        )
        .unwrap();
        assert_eq!(purposes[0].tools, ["contracts.read"]);
        let e = parse_purposes(
            "purposes.toml",
            "[purposes.review]\ntools = [\"nope\"]\n",
            &tools,
        )
        .unwrap_err();
        assert_eq!(e.field, "purposes.review.tools");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse_tools(
            "tools.toml",
            &TOOLS.replace("method = \"GET\"", "method = \"FETCH\""),
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.field.as_str()),
            ("tools.toml", "tools.\"contracts.read\".method")
        );
        let e = parse_tools(
            "tools.toml",
            &TOOLS.replace(
                "upstream = \"records\"",
                "upstream = \"records\"\nretries = 3",
            ),
        )
        .unwrap_err();
        assert!(
            e.field.starts_with("line") && e.message.contains("retries"),
            "{e}"
        );
        let e = parse_tools(
            "tools.toml",
            &TOOLS.replace("/contracts/{contract_id}", "/contracts/{contract_id"),
        )
        .unwrap_err();
        assert!(e.message.contains("unclosed"), "{e}");
    }
}
