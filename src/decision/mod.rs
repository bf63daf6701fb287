//! The compiled decision table: the IR (`ir`), the bundle file and its loader (`bundle`),
//! the entity index (`uids`), the evaluator (`eval`) and its programs (`vm`), request
//! data (`context`) and the tool registry and purpose profiles the bundle carries
//! (`registry`).
//!
//! The gateway's use, per call, without heap allocation:
//!
//! ```ignore
//! let attrs = [("tenant_id", CtxValue::Str(&claims.tenant_id)), /* ... */];
//! let context = Context::new(&attrs);
//! let req = Request {
//!     principal: EntityUid { ty: bundle.principal_type(), id: &claims.delegator_id },
//!     action: EntityUid { ty: "Action", id: &tool.name },
//!     resource: EntityUid { ty: &tool.resource.entity_type, id: resource_id },
//!     context: &context,
//! };
//! let decision = bundle.decide(&req, &mut scratch);
//! for p in scratch.determining() { bundle.policy_id(*p); }
//! ```
//!
//! The compiler (`portcullis-compile`) builds `ir::BundleData` from Cedar and writes it
//! with `bundle::encode`; this module never depends on Cedar itself.

pub mod bundle;
pub mod context;
pub mod eval;
pub mod ir;
pub mod registry;
pub mod uids;
pub mod vm;

pub use bundle::{Bundle, BundleError, BundleMeta};
pub use context::{Context, CtxValue, EntityUid, OwnedContext, OwnedValue, Request};
pub use eval::{Decision, PolicyRef, Scratch};
pub use ir::Counts;
pub use registry::{PurposeProfile, ResourceArg, ScopeArg, ToolKind, ToolSpec};
