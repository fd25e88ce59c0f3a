//! Amazon EKS authentication, in-process: the bearer token that `aws eks get-token` and
//! aws-iam-authenticator produce (a presigned STS `GetCallerIdentity` URL), the checks the
//! authenticator's server makes on it, and the `ExecCredential` that kubectl reads.

pub mod exec_credential;
pub mod source;
pub mod token;
pub mod verify;

pub use source::{SourceError, TokenSource};
pub use token::{EksToken, TokenError, sign_token};
