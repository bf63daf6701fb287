//! The identity envelope's claims: the seed's fields with the seed's names, the registered
//! JWT claims, the agent's own identity and its delegation chain.
//!
//! Claims are read from a JSON object by hand rather than by `serde` derive so that every
//! refusal names the exact claim (`resource_constraints.max_records`) and says whether it
//! was missing or mistyped. The same reader validates tokens at verification and claim
//! files at minting, so the two can never disagree about what a valid envelope is.

use super::EnvelopeError;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The most records an envelope may grant; larger values are refused as a typo rather
/// than treated as "unlimited".
pub const MAX_RECORDS_CEILING: u64 = 1_000_000;

/// Verified (or about-to-be-signed) envelope claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iss: String,
    #[serde(serialize_with = "ser_audience")]
    pub aud: Vec<String>,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    pub jti: String,
    pub delegator_id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub task_id: String,
    pub purpose: String,
    pub allowed_tools: Vec<String>,
    pub resource_constraints: ResourceConstraints,
    pub expires_at: String,
    pub agent_id: String,
    pub agent_kind: String,
    /// `jti`s of the ancestor envelopes, root first; empty for an envelope minted directly
    /// for the delegating human's agent.
    pub delegation_chain: Vec<String>,
    /// Always `delegation_chain.len()`; carried explicitly so policies can read it.
    pub delegation_depth: u32,
    /// Derived from the fields above and never signed: the claims' audit-record fragment,
    /// filled by the gateway on first use.
    #[serde(skip)]
    pub audit_memo: Memo,
}

/// A value computed once from the claims it sits in. Claims that differ only in whether it
/// has been computed yet are the same claims: it takes no part in equality.
#[derive(Clone, Default)]
pub struct Memo(std::sync::OnceLock<Box<[u8]>>);

impl Memo {
    pub fn get_or_init(&self, f: impl FnOnce() -> Box<[u8]>) -> &[u8] {
        self.0.get_or_init(f)
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// What the envelope's holder may touch: record limit, data classes, and named resource
/// ids (`customer_id`, `contract_ids`, or any other `*_id`/`*_ids` key a tool registry uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceConstraints {
    pub max_records: u64,
    pub data_classes: Vec<String>,
    /// Resource id constraints by key, in key order.
    pub ids: BTreeMap<String, IdScope>,
}

/// One resource-id constraint: a single id (`"customer_id": "cust_1"`) or a list of ids
/// (`"contract_ids": ["c1", "c2"]`). The JSON shape is kept so a re-minted envelope looks
/// like its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdScope {
    One(String),
    Many(Vec<String>),
}

impl IdScope {
    pub fn contains(&self, id: &str) -> bool {
        match self {
            IdScope::One(v) => v == id,
            IdScope::Many(vs) => vs.iter().any(|v| v == id),
        }
    }

    pub fn as_slice(&self) -> &[String] {
        match self {
            IdScope::One(v) => std::slice::from_ref(v),
            IdScope::Many(vs) => vs,
        }
    }
}

impl ResourceConstraints {
    /// The id constraint under `key` (`customer_id`, `contract_ids`, ...), if the envelope
    /// sets one. The tool registry names the key explicitly for each argument.
    pub fn scope(&self, key: &str) -> Option<&IdScope> {
        self.ids.get(key)
    }
}

impl Serialize for ResourceConstraints {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.ids.len() + 2))?;
        for (k, v) in &self.ids {
            match v {
                IdScope::One(id) => m.serialize_entry(k, id)?,
                IdScope::Many(ids) => m.serialize_entry(k, ids)?,
            }
        }
        m.serialize_entry("max_records", &self.max_records)?;
        m.serialize_entry("data_classes", &self.data_classes)?;
        m.end()
    }
}

fn ser_audience<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    if aud.len() == 1 {
        s.serialize_str(&aud[0])
    } else {
        aud.serialize(s)
    }
}

fn missing(claim: &str) -> EnvelopeError {
    EnvelopeError::MissingClaim {
        claim: claim.to_owned(),
    }
}

fn invalid(claim: &str, detail: impl Into<String>) -> EnvelopeError {
    EnvelopeError::InvalidClaim {
        claim: claim.to_owned(),
        detail: detail.into(),
    }
}

fn get<'a>(m: &'a Map<String, Value>, claim: &str) -> Result<&'a Value, EnvelopeError> {
    m.get(claim).ok_or_else(|| missing(claim))
}

fn string_at(v: &Value, claim: &str) -> Result<String, EnvelopeError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::String(_) => Err(invalid(claim, "must not be empty")),
        other => Err(invalid(
            claim,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn string(m: &Map<String, Value>, claim: &str) -> Result<String, EnvelopeError> {
    string_at(get(m, claim)?, claim)
}

fn strings_at(v: &Value, claim: &str) -> Result<Vec<String>, EnvelopeError> {
    let Value::Array(items) = v else {
        return Err(invalid(
            claim,
            format!("expected an array of strings, found {}", kind(v)),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(string_at(item, &format!("{claim}[{i}]"))?);
    }
    Ok(out)
}

fn strings(m: &Map<String, Value>, claim: &str) -> Result<Vec<String>, EnvelopeError> {
    strings_at(get(m, claim)?, claim)
}

fn int_at(v: &Value, claim: &str) -> Result<i64, EnvelopeError> {
    v.as_i64()
        .ok_or_else(|| invalid(claim, format!("expected an integer, found {}", kind(v))))
}

fn int(m: &Map<String, Value>, claim: &str) -> Result<i64, EnvelopeError> {
    int_at(get(m, claim)?, claim)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Claims {
    /// Reads and validates claims from a JSON object. Checks shapes and internal
    /// consistency (`exp` agrees with `expires_at`, depth with chain); time, audience and
    /// signature are the verifier's business.
    pub fn from_json(m: &Map<String, Value>) -> Result<Self, EnvelopeError> {
        let aud = match get(m, "aud")? {
            Value::String(s) if !s.is_empty() => vec![s.clone()],
            v @ Value::Array(_) => {
                let a = strings_at(v, "aud")?;
                if a.is_empty() {
                    return Err(invalid("aud", "must name at least one audience"));
                }
                a
            }
            other => {
                return Err(invalid(
                    "aud",
                    format!(
                        "expected a string or an array of strings, found {}",
                        kind(other)
                    ),
                ));
            }
        };
        let exp = int(m, "exp")?;
        let expires_at = string(m, "expires_at")?;
        let expires_unix =
            crate::clock::parse_rfc3339(&expires_at).map_err(|e| invalid("expires_at", e))?;
        if expires_unix != exp {
            return Err(invalid(
                "exp",
                format!("exp ({exp}) and expires_at ({expires_at} = {expires_unix}) disagree"),
            ));
        }
        let nbf = match m.get("nbf") {
            None => None,
            Some(v) => Some(int_at(v, "nbf")?),
        };
        let delegation_chain = strings(m, "delegation_chain")?;
        let depth = int(m, "delegation_depth")?;
        if depth < 0 || depth as usize != delegation_chain.len() {
            return Err(invalid(
                "delegation_depth",
                format!(
                    "is {depth} but delegation_chain names {} ancestor(s)",
                    delegation_chain.len()
                ),
            ));
        }
        Ok(Claims {
            iss: string(m, "iss")?,
            aud,
            iat: int(m, "iat")?,
            nbf,
            exp,
            jti: string(m, "jti")?,
            delegator_id: string(m, "delegator_id")?,
            tenant_id: string(m, "tenant_id")?,
            session_id: string(m, "session_id")?,
            task_id: string(m, "task_id")?,
            purpose: string(m, "purpose")?,
            allowed_tools: strings(m, "allowed_tools")?,
            resource_constraints: ResourceConstraints::from_json(get(m, "resource_constraints")?)?,
            expires_at,
            agent_id: string(m, "agent_id")?,
            agent_kind: string(m, "agent_kind")?,
            delegation_chain,
            delegation_depth: depth as u32,
            audit_memo: Memo::default(),
        })
    }

    /// The claims as a JSON object, the form that is signed.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl ResourceConstraints {
    fn from_json(v: &Value) -> Result<Self, EnvelopeError> {
        const RC: &str = "resource_constraints";
        let Value::Object(m) = v else {
            return Err(invalid(
                RC,
                format!("expected an object, found {}", kind(v)),
            ));
        };
        let max_records = match m.get("max_records") {
            None => return Err(missing("resource_constraints.max_records")),
            Some(v) => match v.as_u64() {
                Some(n) if n <= MAX_RECORDS_CEILING => n,
                Some(n) => {
                    return Err(invalid(
                        "resource_constraints.max_records",
                        format!("{n} is over the ceiling of {MAX_RECORDS_CEILING}"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "resource_constraints.max_records",
                        format!("expected a non-negative integer, found {}", kind(v)),
                    ));
                }
            },
        };
        let data_classes = match m.get("data_classes") {
            None => return Err(missing("resource_constraints.data_classes")),
            Some(v) => strings_at(v, "resource_constraints.data_classes")?,
        };
        let mut ids = BTreeMap::new();
        for (k, v) in m {
            if k == "max_records" || k == "data_classes" {
                continue;
            }
            let claim = format!("{RC}.{k}");
            let scope = match v {
                Value::String(_) => IdScope::One(string_at(v, &claim)?),
                Value::Array(_) => IdScope::Many(strings_at(v, &claim)?),
                other => {
                    return Err(invalid(
                        &claim,
                        format!(
                            "a resource constraint is an id or an array of ids, found {}",
                            kind(other)
                        ),
                    ));
                }
            };
            ids.insert(k.clone(), scope);
        }
        Ok(ResourceConstraints {
            max_records,
            data_classes,
            ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "iss": "issuer", "aud": "portcullis", "iat": 1, "exp": 1778610600, "jti": "j1",
            "delegator_id": "user_7f3a91", "tenant_id": "tenant_acme", "session_id": "s",
            "task_id": "t", "purpose": "p", "allowed_tools": ["contracts.read"],
            "resource_constraints": {"customer_id": "cust_acme_1042", "contract_ids": ["contract_7781"],
                                     "max_records": 25, "data_classes": ["contract_metadata"]},
            "expires_at": "2026-05-12T18:30:00Z", "agent_id": "a", "agent_kind": "k",
            "delegation_chain": [], "delegation_depth": 0
        })
    }

    fn parse(v: Value) -> Result<Claims, EnvelopeError> {
        Claims::from_json(v.as_object().unwrap())
    }

    #[test]
    fn round_trips_through_json() {
        let c = parse(base()).unwrap();
        assert_eq!(parse(c.to_json()).unwrap(), c);
        assert!(
            c.resource_constraints
                .scope("contract_ids")
                .unwrap()
                .contains("contract_7781")
        );
        assert!(
            c.resource_constraints
                .scope("customer_id")
                .unwrap()
                .contains("cust_acme_1042")
        );
        assert!(
            !c.resource_constraints
                .scope("customer_id")
                .unwrap()
                .contains("cust_other")
        );
        assert!(c.resource_constraints.scope("ticket_id").is_none());
    }

    #[test]
    fn names_the_missing_or_mistyped_claim() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("tenant_id");
        assert_eq!(parse(v).unwrap_err(), missing("tenant_id"));

        let mut v = base();
        v["resource_constraints"]["max_records"] = json!("25");
        let e = parse(v).unwrap_err();
        assert!(
            matches!(&e, EnvelopeError::InvalidClaim { claim, .. } if claim == "resource_constraints.max_records"),
            "{e}"
        );

        let mut v = base();
        v["allowed_tools"] = json!(["ok", 3]);
        let e = parse(v).unwrap_err();
        assert!(
            matches!(&e, EnvelopeError::InvalidClaim { claim, .. } if claim == "allowed_tools[1]"),
            "{e}"
        );

        let mut v = base();
        v["exp"] = json!(1778610601);
        assert!(
            matches!(parse(v).unwrap_err(), EnvelopeError::InvalidClaim { claim, .. } if claim == "exp")
        );

        let mut v = base();
        v["delegation_depth"] = json!(1);
        assert!(
            matches!(parse(v).unwrap_err(), EnvelopeError::InvalidClaim { claim, .. } if claim == "delegation_depth")
        );
    }
}
