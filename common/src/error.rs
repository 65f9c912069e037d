//! Domain errors and their one mapping to gRPC status codes.

use thiserror::Error;

pub type Result<T, E = DockyardError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum DockyardError {
    /// Bad input from a client: names the field and says what to fix.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// Over a limit: the message names the limit and the current usage.
    #[error("{0}")]
    ResourceExhausted(String),
    /// No credentials, or credentials that are not (or no longer) valid: says what to fix.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right (e.g. an organisation token on an admin call).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DockyardError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DockyardError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        DockyardError::NotFound { what: what.into() }
    }

    pub fn code(&self) -> tonic::Code {
        match self {
            DockyardError::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            DockyardError::NotFound { .. } => tonic::Code::NotFound,
            DockyardError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            DockyardError::ResourceExhausted(_) => tonic::Code::ResourceExhausted,
            DockyardError::Unauthenticated(_) => tonic::Code::Unauthenticated,
            DockyardError::PermissionDenied(_) => tonic::Code::PermissionDenied,
            DockyardError::Unavailable(_) => tonic::Code::Unavailable,
            DockyardError::Storage(_) => tonic::Code::Unavailable,
            DockyardError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<DockyardError> for tonic::Status {
    fn from(e: DockyardError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<std::io::Error> for DockyardError {
    fn from(e: std::io::Error) -> Self {
        DockyardError::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_maps_to_grpc_code_and_names_the_field() {
        let s: tonic::Status = DockyardError::invalid("box.size", "must be > 0").into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("box.size"));
    }

    #[test]
    fn auth_errors_map_to_their_codes() {
        let s: tonic::Status = DockyardError::Unauthenticated("no token".into()).into();
        assert_eq!((s.code(), s.message()), (tonic::Code::Unauthenticated, "no token"));
        let s: tonic::Status = DockyardError::PermissionDenied("needs the admin token".into()).into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
    }
}
