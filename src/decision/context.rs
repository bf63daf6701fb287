//! Request data for a decision: entity references, the context record, and owned values
//! for callers that build contexts from JSON (the compiler's `decide`, the tests).
//!
//! The gateway builds its context on the stack from borrowed strings
//! (`CtxValue::Str`, `CtxValue::StrSet`, ...): no allocation per call.

/// An entity reference: type name (`User`, `Action`, `NS::Type`) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityUid<'a> {
    pub ty: &'a str,
    pub id: &'a str,
}

/// One context attribute value.
#[derive(Debug, Clone, Copy)]
pub enum CtxValue<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    StrSet(&'a [String]),
    Entity(EntityUid<'a>),
    /// Any value, owned elsewhere (parsed from JSON).
    Value(&'a OwnedValue),
}

/// The context record.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub attrs: &'a [(&'a str, CtxValue<'a>)],
}

impl<'a> Context<'a> {
    pub fn new(attrs: &'a [(&'a str, CtxValue<'a>)]) -> Self {
        Context { attrs }
    }
}

/// A request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: EntityUid<'a>,
    pub action: EntityUid<'a>,
    pub resource: EntityUid<'a>,
    pub context: &'a Context<'a>,
}

/// A Cedar value owned by the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Bool(bool),
    Long(i64),
    Str(String),
    Entity { ty: String, id: String },
    Set(Vec<OwnedValue>),
    Record(Vec<(String, OwnedValue)>),
}

impl OwnedValue {
    /// Reads Cedar's JSON value format: booleans, integers, strings, arrays (sets),
    /// objects (records), and `{"__entity": {"type": .., "id": ..}}` for entity references.
    /// Extension values (`__extn`) are not supported by the decision table.
    pub fn from_json(v: &serde_json::Value) -> Result<OwnedValue, String> {
        use serde_json::Value as J;
        Ok(match v {
            J::Bool(b) => OwnedValue::Bool(*b),
            J::Number(n) => OwnedValue::Long(
                n.as_i64()
                    .ok_or_else(|| format!("{n} is not a 64-bit integer (Cedar Long)"))?,
            ),
            J::String(s) => OwnedValue::Str(s.clone()),
            J::Array(a) => {
                OwnedValue::Set(a.iter().map(Self::from_json).collect::<Result<_, _>>()?)
            }
            J::Object(m) => {
                if let Some(e) = m.get("__entity") {
                    let ty = e.get("type").and_then(J::as_str);
                    let id = e.get("id").and_then(J::as_str);
                    match (ty, id) {
                        (Some(ty), Some(id)) if m.len() == 1 => OwnedValue::Entity {
                            ty: ty.to_owned(),
                            id: id.to_owned(),
                        },
                        _ => return Err("`__entity` needs exactly {\"type\", \"id\"}".into()),
                    }
                } else if m.contains_key("__extn") {
                    return Err(
                        "extension values (decimal, ipaddr, datetime, duration) are not supported"
                            .into(),
                    );
                } else {
                    OwnedValue::Record(
                        m.iter()
                            .map(|(k, v)| Ok((k.clone(), Self::from_json(v)?)))
                            .collect::<Result<_, String>>()?,
                    )
                }
            }
            J::Null => return Err("null is not a Cedar value".into()),
        })
    }
}

/// A context parsed from JSON, to be viewed as a `Context`.
#[derive(Debug, Clone, Default)]
pub struct OwnedContext {
    pub attrs: Vec<(String, OwnedValue)>,
}

impl OwnedContext {
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        match OwnedValue::from_json(v)? {
            OwnedValue::Record(attrs) => Ok(OwnedContext { attrs }),
            _ => Err("the context must be a JSON object (a Cedar record)".into()),
        }
    }

    /// The borrowed attribute list a `Context` views.
    pub fn view(&self) -> Vec<(&str, CtxValue<'_>)> {
        self.attrs
            .iter()
            .map(|(k, v)| (k.as_str(), CtxValue::Value(v)))
            .collect()
    }
}
