//! The verbs on resources, each following the API server's handler for it: reads
//! (`get`, `list`), writes (`create`, `update`, `patch` in its three flavours), deletes.

mod apply;
mod delete;
mod read;
mod write;

use serde_json::Value;

use crate::auth::UserInfo;
use crate::kinds::Kind;
use crate::request::Query;
use crate::server::App;
use crate::status::ApiError;

pub use delete::{delete, delete_collection};
pub use read::{get, list};
pub use write::{create, patch, update};

/// One request, authenticated and authorized.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub user: &'a UserInfo,
    pub query: &'a Query,
    pub content_type: &'a str,
    pub accept: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
}

/// The object or collection a request is about.
pub struct Target {
    pub kind: &'static Kind,
    /// Empty for cluster-scoped kinds or lists across namespaces.
    pub ns: String,
    /// Empty for collections.
    pub name: String,
}

pub struct Reply {
    pub code: u16,
    pub body: Value,
    /// `Warning` headers (field validation's `Warn`).
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, body: Value) -> Self {
        Self {
            code,
            body,
            warnings: Vec::new(),
        }
    }
}

pub type Outcome = Result<Reply, ApiError>;
