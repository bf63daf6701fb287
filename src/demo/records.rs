//! The demo "records" backend: a small CRM / contracts / tickets / billing HTTP API with
//! the renewal-review scenario's data. It accepts only the credential it was given (the
//! one the gateway holds in its vault) and keeps a log of the requests it received, so the
//! demo and the tests can show that the vaulted credential arrived and the agent's
//! envelope did not.

use crate::http::write::full_response;
use crate::server::{ConnIo, Disposition, Request, Service};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What a backend saw of one request (for the demo's printout and the tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Requests a demo backend has received, shared across its worker threads.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// Keeps the log from growing without bound in a long-running demo.
const MAX_SEEN: usize = 1000;

pub fn record(log: &SeenLog, req: &Request<'_>) {
    let text = std::str::from_utf8(&req.buf[..req.head.len]).unwrap_or("");
    let headers: Vec<(String, String)> = text
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let seen = Seen {
        method: req.head.method().as_str().to_owned(),
        target: req.target().to_owned(),
        authorization: req.field(&req.head.authorization).map(str::to_owned),
        headers,
        body: String::from_utf8_lossy(req.body).into_owned(),
    };
    if let Ok(mut l) = log.lock() {
        if l.len() >= MAX_SEEN {
            l.remove(0);
        }
        l.push(seen);
    }
}

pub struct Records {
    /// The full `Authorization` value the backend accepts (`Bearer <vaulted secret>`).
    pub expected_auth: String,
    pub log: SeenLog,
}

fn reply(io: &mut ConnIo, status: u16, v: &Value) {
    let body = serde_json::to_vec(v).unwrap_or_default();
    full_response(&mut io.wbuf, status, "application/json", &[], &body, false);
}

fn contract(id: &str) -> Option<Value> {
    let (customer, tenant, value) = match id {
        "contract_7781" => ("cust_acme_1042", "tenant_acme", 184_000),
        "contract_7790" => ("cust_acme_1042", "tenant_acme", 22_500),
        "contract_5555" => ("cust_globex_2001", "tenant_globex", 310_000),
        _ => return None,
    };
    Some(json!({
        "contract_id": id, "customer_id": customer, "tenant_id": tenant,
        "status": "active", "annual_value_usd": value, "renewal_date": "2026-12-31",
        "renewal_terms": {"auto_renew": false, "notice_days": 60, "price_cap_pct": 5},
        "clauses": ["limitation_of_liability", "termination_for_convenience", "price_escalation"],
    }))
}

fn account(id: &str) -> Option<Value> {
    let (name, tenant, health) = match id {
        "cust_acme_1042" => ("Acme Corp", "tenant_acme", "at_risk"),
        "cust_globex_2001" => ("Globex", "tenant_globex", "healthy"),
        _ => return None,
    };
    Some(json!({
        "customer_id": id, "name": name, "tenant_id": tenant, "health": health,
        "csm": if id == "cust_acme_1042" { "user_7f3a91" } else { "user_2b9c44" },
        "support_summary": {"open_tickets": 3, "escalations_90d": 1, "csat": 3.8},
    }))
}

impl Service for Records {
    async fn call(&self, req: Request<'_>, io: &mut ConnIo) -> Disposition {
        if req.path() == "/_demo/requests" {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            reply(io, 200, &serde_json::to_value(log).unwrap_or_default());
            return Disposition::KeepAlive;
        }
        record(&self.log, &req);
        let auth = req.field(&req.head.authorization);
        if auth != Some(self.expected_auth.as_str()) {
            reply(
                io,
                401,
                &json!({"error": "missing or wrong credential for the records API"}),
            );
            return Disposition::KeepAlive;
        }
        let echo = req.target().contains("echo=true");
        let path: Vec<&str> = req.path().trim_matches('/').split('/').collect();
        let method = req.head.method().as_str();
        let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
        let (status, mut v) = match (method, path.as_slice()) {
            ("GET", ["contracts", id]) => match contract(id) {
                Some(c) => (200, c),
                None => (404, json!({"error": format!("no contract {id}")})),
            },
            ("GET", ["crm", "accounts", id]) => match account(id) {
                Some(a) => (200, a),
                None => (404, json!({"error": format!("no account {id}")})),
            },
            ("POST", ["tickets"]) => (
                201,
                json!({"ticket_id": "TCK-40211", "customer_id": body.get("customer_id"),
                       "subject": body.get("subject"), "status": "open"}),
            ),
            ("PUT", ["contracts", id, "renewal-notes"]) => (
                200,
                json!({"contract_id": id, "renewal_notes": body.get("note"), "updated": true}),
            ),
            ("PUT", ["billing", id, "terms"]) => (
                200,
                json!({"customer_id": id, "billing_terms": body.get("terms"), "updated": true}),
            ),
            _ => (
                404,
                json!({"error": format!("no route {method} {}", req.path())}),
            ),
        };
        if echo {
            // A careless debug feature some real backends have: it quotes the request's
            // credential back. The gateway must scrub it before the agent sees it.
            v["debug"] = json!({"received_authorization": auth});
        }
        reply(io, status, &v);
        Disposition::KeepAlive
    }
}
